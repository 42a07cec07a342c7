"""Start a session from the request page: prints the one-time `ssh` command the page shows.
Environment: BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, REQUEST."""

import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        # bypass_csp only so the scan can inject axe-core (the page has no script of its own).
        page = browser.new_context(bypass_csp=True).new_page()
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}/requests/{os.environ['REQUEST']}")
        page.click("button:has-text('Start a session')")
        expect(page.locator("main")).to_contain_text("works once")
        check(page, "launch")
        ssh = page.locator(".commands code").first.inner_text()
        browser.close()
    print(f"SSH_COMMAND={ssh}")


if __name__ == "__main__":
    run(main)
