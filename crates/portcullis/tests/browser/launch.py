"""Start a session from the request page: prints the one-time `ssh` command the page shows.
Environment: BASE_URL, ARTIFACTS, USER, PASSWORD, REQUEST."""

import os

from common import launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}/requests/{os.environ['REQUEST']}")
        page.click("button:has-text('Start a session')")
        expect(page.locator("main")).to_contain_text("works once")
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "launch.png"), full_page=True)
        ssh = page.locator(".commands code").first.inner_text()
        browser.close()
    print(f"SSH_COMMAND={ssh}")


if __name__ == "__main__":
    run(main)
