"""Single sign-on in the browser, against the test OpenID provider. Environment: BASE_URL,
ARTIFACTS, LOGIN, PASSWORD, MFA ("1": tick the provider's second-factor box), and either
MODE=web (from Portcullis's sign-in page; TOTP_CODE when Portcullis will ask for one) or
MODE=cli with URL (the address `portcullis login --sso` printed), or MODE=refused with URL (the
provider's answer is refused by Portcullis: prints the message shown)."""

import os

from common import check, launch, run
from playwright.sync_api import expect, sync_playwright


def provider_sign_in(page):
    expect(page.locator("h1")).to_have_text("Test provider")
    page.fill("#login", os.environ["LOGIN"])
    page.fill("#password", os.environ["PASSWORD"])
    if os.environ.get("MFA") == "1":
        page.check("#mfa")
    page.click("#submit")


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(bypass_csp=True).new_page()
        if os.environ["MODE"] == "cli":
            page.goto(os.environ["URL"])
            provider_sign_in(page)
            expect(page.locator("body")).to_contain_text("Signed in to Portcullis")
            print("the command got its answer")
            return
        if os.environ["MODE"] == "refused":
            page.goto(os.environ["URL"])
            provider_sign_in(page)
            expect(page.locator(".error")).to_be_visible()
            check(page, "sso-refused")
            print(page.locator(".error").inner_text())
            return
        page.goto(f"{base}/login")
        check(page, "login-with-sso")
        page.click("text=Sign in with")
        provider_sign_in(page)
        if os.environ.get("TOTP_CODE"):
            expect(page.locator("body")).to_contain_text("also uses a one-time code")
            check(page, "sso-totp")
            page.fill("#totp", "000000")
            page.click("button[type=submit]")
            expect(page.locator(".error")).to_contain_text("Wrong or reused one-time code")
            page.fill("#totp", os.environ["TOTP_CODE"])
            page.click("button[type=submit]")
        try:
            page.wait_for_url(f"{base}/requests*", timeout=10000)
        except Exception:  # noqa: BLE001 - say where the browser ended up instead
            raise AssertionError(f"not signed in; at {page.url}: {page.inner_text('body')}")
        expect(page.locator("body")).to_contain_text(os.environ.get("EXPECT", os.environ["LOGIN"]))
        check(page, "signed-in-with-sso")
        print(f"signed in as {os.environ['LOGIN']}")
        browser.close()


if __name__ == "__main__":
    run(main)
