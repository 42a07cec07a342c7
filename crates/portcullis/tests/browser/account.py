"""A user's own account in the browser: change the password, set up one-time codes with an
authenticator (the code computed here, RFC 6238), sign in with password and code; then an
administrator resets the password: the open page's session ends with a clear message, and the
user chooses a new password with the link they were mailed.
Environment: BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, NEW_PASSWORD, ADMIN_PW, MAIL_DIR (the
SMTP receiver's .eml files), RESET_PASSWORD."""

import email
import email.policy
import glob
import re
import subprocess
import tempfile

import base64
import hashlib
import hmac
import os
import struct
import time

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE_URL"]


def totp(secret, at):
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at // 30)), hashlib.sha1).digest()
    o = digest[-1] & 15
    return "%06d" % ((struct.unpack(">I", digest[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def mailed_token():
    """The token of the set-password link in the newest mail, waiting for it to arrive."""
    deadline = time.time() + 30
    while time.time() < deadline:
        for path in sorted(glob.glob(os.path.join(os.environ["MAIL_DIR"], "*.eml")), reverse=True):
            with open(path, "rb") as f:
                message = email.message_from_binary_file(f, policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            found = re.search(r"/set-password/([a-z0-9]{32})", body.get_content() if body else "")
            if found:
                return found.group(1)
        time.sleep(0.5)
    raise AssertionError("no set-password mail arrived")


def next_step():
    """Waits for the next 30-second step: a code is accepted once."""
    time.sleep(30 - time.time() % 30 + 0.5)


def main():
    user, old, new = os.environ["USER"], os.environ["PASSWORD"], os.environ["NEW_PASSWORD"]
    with sync_playwright() as p:
        browser = launch(p)
        # bypass_csp only so the scan can inject axe-core.
        page = browser.new_context(bypass_csp=True).new_page()
        sign_in(page, BASE, user, old)
        page.click(f"nav >> text={user.capitalize()}")
        check(page, "profile")
        # Saving the profile confirms the e-mail address the administrator typed as her own.
        page.click("button:has-text('Save')")
        expect(page.locator(".notice")).to_contain_text("Your profile was saved")
        # A wrong current password changes nothing and says so.
        page.fill("#current_password", "not my password")
        page.fill("#new_password", new)
        page.click("button:has-text('Change the password')")
        expect(page.locator("main")).to_contain_text("current password")
        page.goto(f"{BASE}/me")
        page.fill("#current_password", old)
        page.fill("#new_password", new)
        page.click("button:has-text('Change the password')")
        expect(page.locator(".notice")).to_contain_text("Your password was changed")

        # An SSH key for the proxy: registered with a signature of the page's text, made by the
        # real ssh-keygen as the page says; a wrong signature first.
        keydir = tempfile.mkdtemp()
        key = os.path.join(keydir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", key], check=True)
        command = page.locator("pre").inner_text().replace("~/.ssh/id_ed25519", key)
        signature = subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True).stdout
        def register(signed):
            page.fill("#key_name", "laptop")
            page.fill("#public_key", open(key + ".pub").read())
            page.fill("#signature", signed)
            page.click("button:has-text('Register the key')")
        register(signature.replace("A", "B", 1) if "A" in signature else signature + "x")
        expect(page.locator("main")).to_contain_text("signature")
        page.goto(f"{BASE}/me")
        register(signature)
        expect(page.locator(".notice")).to_contain_text("The key was registered")
        expect(page.locator("table")).to_contain_text("laptop")
        page.click("button[aria-label='Remove the key laptop']")
        expect(page.locator(".notice")).to_contain_text("The key was removed")

        # One-time codes: the key is shown once; a code from it turns them on.
        page.click("button:has-text('Set up an authenticator app')")
        secret = page.locator("#totp-secret").get_attribute("data-secret")
        check(page, "totp-setup")
        page.fill("#code", totp(secret, time.time()))
        page.click("button:has-text('Confirm')")
        expect(page.locator(".notice")).to_contain_text("One-time codes are on")
        page.click("button:has-text('Sign out')")

        # Sign-in now needs the code as well.
        page.fill("#username", user)
        page.fill("#password", new)
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("one-time code")
        next_step()
        page.fill("#username", user)
        page.fill("#password", new)
        page.fill("#totp", totp(secret, time.time()))
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_contain_text("My requests")

        # An administrator resets the password: the open page's session ends.
        login = page.request.post(f"{BASE}/api/v1/auth/login",
                                  data={"username": "admin", "password": os.environ["ADMIN_PW"]})
        assert login.ok, login.text()
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        users = page.request.get(f"{BASE}/api/v1/users", headers=bearer).json()
        uid = next(u["id"] for u in users if u["username"] == user)
        reset = page.request.post(f"{BASE}/api/v1/users/{uid}/password", headers=bearer)
        assert reset.status == 202, reset.text()
        assert "/set-password/" not in reset.text(), "the administrator saw the link"
        page.reload()
        expect(page.locator("main")).to_contain_text("Your session has ended; sign in again")

        # The link from the mail: a bad one first, then the real one; mistyped twice, then set.
        token = mailed_token()
        page.goto(f"{BASE}/set-password/{'x' * 32}")
        expect(page.locator(".error")).to_contain_text("not valid or was already used")
        page.goto(f"{BASE}/set-password/{token}")
        expect(page.locator("h1")).to_contain_text(f"Set the password of {user}")
        check(page, "set-password")
        reset_pw = os.environ["RESET_PASSWORD"]
        page.fill("#new_password", reset_pw)
        page.fill("#repeat", reset_pw + "x")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("The two passwords differ")
        page.fill("#new_password", reset_pw)
        page.fill("#repeat", reset_pw)
        page.click("button[type=submit]")
        expect(page.locator(".notice")).to_contain_text("Your password is set; sign in with it")
        next_step()
        page.fill("#username", user)
        page.fill("#password", reset_pw)
        page.fill("#totp", totp(secret, time.time()))
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_contain_text("My requests")
        # The link worked once.
        page.goto(f"{BASE}/set-password/{token}")
        expect(page.locator(".error")).to_contain_text("not valid or was already used")
        browser.close()
    print("account managed in the browser")


if __name__ == "__main__":
    run(main)
