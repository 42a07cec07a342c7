"""Start a session from the request page: prints the one-time `ssh` command the page shows.
Environment: BASE_URL, ARTIFACTS, USER, PASSWORD, REQUEST."""

import os
import sys

from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox"])
        page = browser.new_context().new_page()
        page.goto(f"{base}/login")
        page.fill("#username", os.environ["USER"])
        page.fill("#password", os.environ["PASSWORD"])
        page.click("button[type=submit]")
        page.goto(f"{base}/requests/{os.environ['REQUEST']}")
        page.click("button:has-text('Start a session')")
        expect(page.locator("main")).to_contain_text("works once")
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "launch.png"), full_page=True)
        ssh = page.locator(".commands code").first.inner_text()
        browser.close()
    print(f"SSH_COMMAND={ssh}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
