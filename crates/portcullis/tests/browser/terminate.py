"""Terminate a live session from the Live sessions page. Environment: BASE_URL, ARTIFACTS, USER,
PASSWORD, REASON."""

import os

from common import launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.click("nav >> text=Live sessions")
        row = page.locator("tbody tr").first
        expect(row).to_contain_text("alice")
        row.locator("input[name=reason]").fill(os.environ["REASON"])
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "live-sessions.png"), full_page=True)
        row.locator("button:has-text('Terminate')").click()
        expect(page.locator(".notice")).to_contain_text("terminated")
        expect(page.locator("main")).to_contain_text("No live sessions")
        browser.close()
    print("terminated from the page")


if __name__ == "__main__":
    run(main)
