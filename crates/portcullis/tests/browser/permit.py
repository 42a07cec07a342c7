"""Permit a session waiting for four-eyes from the Live sessions page. Environment: BASE_URL,
ARTIFACTS, USER, PASSWORD, WAITING_USER."""

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
        row = page.locator("tr[data-wait]").first
        expect(row).to_contain_text(os.environ["WAITING_USER"])
        expect(row).to_contain_text("waits for an authorizer")
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "waiting.png"), full_page=True)
        row.locator("button:has-text('Permit')").click()
        expect(page.locator(".notice")).to_contain_text("goes on")
        browser.close()
    print("permitted from the page")


if __name__ == "__main__":
    run(main)
