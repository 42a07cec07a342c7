"""An Asset Administrator checks an account's vaulted password on a real host and changes it
now, from the account's page; the secret is never on the page. Environment: BASE_URL,
ARTIFACTS, AXE, ADMIN_PW, ACCOUNT (id), SECRET (the stored password, which must not appear)."""

import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        # bypass_csp only so the scan can inject axe-core.
        page = browser.new_context(bypass_csp=True).new_page()
        sign_in(page, base, "admin", os.environ["ADMIN_PW"])
        page.goto(f"{base}/admin/accounts/{os.environ['ACCOUNT']}")
        page.click("button:has-text('Check on the target')")
        expect(page.locator(".notice")).to_contain_text("logged in to the target")
        page.click("button:has-text('Change now')")
        expect(page.locator(".notice")).to_contain_text("Changed on the target and verified: version 2")
        expect(page.locator("tbody").first).to_contain_text("rotation")
        assert os.environ["SECRET"] not in page.content(), "the secret is on the page"
        check(page, "account-changed")
        browser.close()
    print("checked and changed from the page")


if __name__ == "__main__":
    run(main)
