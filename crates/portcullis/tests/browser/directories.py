"""Administration → Directories: the directory's last synchronisation, and one started from
the page. Environment: BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, DIRECTORY, DIRECTORY_USER."""

import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base, name = os.environ["BASE_URL"], os.environ["DIRECTORY"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(bypass_csp=True).new_page()
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}/admin")
        page.click("text=Directories")
        row = page.locator("tr", has_text=name)
        expect(row).to_contain_text("users created")
        check(page, "directories")
        row.locator(f"button:has-text('Synchronise {name} now')").click()
        expect(page.locator(".notice")).to_contain_text(f"Directory {name} synchronised")
        check(page, "directories-synchronised")
        # A directory user's page says where they sign in, and offers no password reset.
        page.goto(f"{base}/admin/users")
        page.click(f"a:text-is('{os.environ['DIRECTORY_USER']}')")
        expect(page.locator("main")).to_contain_text(f"the directory {name}")
        expect(page.locator("button:has-text('Reset the password')")).to_have_count(0)
        check(page, "directory-user")
        browser.close()
    print("synchronised from the page")


if __name__ == "__main__":
    run(main)
