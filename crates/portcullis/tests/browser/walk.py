"""The requester -> approver -> reviewer walk in a real browser (Debian's chromium, headless,
driven by Playwright), against a running Portcullis. Each person signs in in their own browser
context. Every page is scanned with axe-core (no serious or critical violation) and saved as a
screenshot. Exits non-zero with a message on the first failure.

Environment: BASE_URL, ARTIFACTS (a directory), AXE (path of axe.min.js), CHROMIUM (the
browser), and the passwords ALICE_PW, BOB_PW, CAROL_PW.
"""

import os
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from common import check, checked, launch, run
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE_URL"]
ARTIFACTS = os.environ["ARTIFACTS"]


def sign_in(browser, user, password):
    # bypass_csp only so the scan can inject axe-core; the pages' own CSP is checked below.
    ctx = browser.new_context(bypass_csp=True)
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{BASE}/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    check(page, f"login-{user}")
    page.fill("#username", user)
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("Wrong username or password")
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/requests$"))
    return ctx, page, errors


def main():
    with sync_playwright() as p:
        browser = launch(p)

        # The requester finds the account by searching, fills what the policy requires.
        _, alice, alice_errors = sign_in(browser, "alice", os.environ["ALICE_PW"])
        check(alice, "my-requests-empty")
        alice.click("text=New request >> nth=0")
        alice.fill("#search", "web")
        alice.press("#search", "Enter")
        expect(alice.locator("main")).to_contain_text("root@web")
        expect(alice.locator("label[for=ticket]")).to_contain_text("required by web root")
        check(alice, "new-request")
        # Keyboard only: tick the account, type the ticket and comment, submit with Enter.
        alice.focus("#pick1")
        alice.keyboard.press("Space")
        alice.focus("#ticket")
        alice.keyboard.type("CHG-7")
        alice.focus("#comment")
        alice.keyboard.type("browser walk")
        alice.focus("#favorite")
        alice.keyboard.type("patching")
        alice.focus("#ticket")
        alice.keyboard.press("Enter")
        expect(alice.locator(".outcomes")).to_contain_text("root@web (password): request is Pending 1 approval")
        check(alice, "request-outcome")
        alice.click("text=My requests >> nth=0")
        expect(alice.locator("main")).to_contain_text("Pending 1 approval")

        # The approver decides from their inbox.
        _, bob, bob_errors = sign_in(browser, "bob", os.environ["BOB_PW"])
        bob.click("nav >> text=Approvals")
        row = bob.locator("tr", has_text="root@web")
        expect(row).to_contain_text("alice")
        expect(row).to_contain_text("CHG-7")
        expect(row).to_contain_text("browser walk")
        check(bob, "approvals")
        row.locator("a").click()
        check(bob, "request-for-approver")
        # The approver shortens the window, in their own local time, and approves with the
        # keyboard only: type the comment, Tab to the Approve button, Enter.
        end = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M")
        bob.fill("#end_at", end)
        bob.focus("#comment")
        bob.keyboard.type("go ahead")
        for _ in range(12):
            bob.keyboard.press("Tab")
            if bob.evaluate("document.activeElement.textContent.trim()") == "Approve":
                break
        else:
            raise AssertionError("the Approve button cannot be reached with Tab from the comment")
        bob.keyboard.press("Enter")
        expect(bob.locator(".notice")).to_contain_text("Approved")
        expect(bob.locator("dl.facts")).to_contain_text(end.replace("T", " "))
        bob.click("nav >> text=Approved by me")
        expect(bob.locator("main")).to_contain_text("root@web")
        check(bob, "approved-by-me")

        # The requester sees it available, checks the password out, and checks in.
        alice.reload()
        available = alice.locator("section", has_text="Approved and available")
        expect(available).to_contain_text("root@web")
        check(alice, "my-requests-available")
        alice.context.grant_permissions(["clipboard-read", "clipboard-write"])
        alice.clock.install()
        available.locator("a", has_text="root@web").click()
        secret = alice.locator("#secret")
        alice.click("button:has-text('Copy to clipboard')")
        expect(secret).to_have_text("Copied to the clipboard.")
        copied = alice.evaluate("navigator.clipboard.readText()")
        assert copied == os.environ["VAULTED"], "the clipboard holds the vaulted password"
        alice.click("button:has-text('Show password')")
        expect(secret).to_have_text(os.environ["VAULTED"])
        alice.clock.fast_forward(31000)
        expect(secret).to_have_text("")
        check(alice, "request-for-requester")
        alice.click("nav >> text=My requests")
        available = alice.locator("section", has_text="Approved and available")
        available.locator("button:has-text('Check in')").click()
        expect(alice.locator(".notice")).to_contain_text("Checked in")

        # The reviewer reviews from their queue, with the whole history.
        _, carol, carol_errors = sign_in(browser, "carol", os.environ["CAROL_PW"])
        carol.click("nav >> text=Reviews")
        expect(carol.locator("main")).to_contain_text("root@web")
        check(carol, "reviews")
        carol.locator("tr", has_text="root@web").locator("a").click()
        history = carol.locator("table").last
        for step in ("approve", "go ahead", "check in"):
            expect(history).to_contain_text(step)
        check(carol, "request-for-reviewer")
        carol.fill("#comment", "all in order")
        carol.click("button:has-text('Mark reviewed')")
        expect(carol.locator(".notice")).to_contain_text("Marked reviewed")
        carol.click("nav >> text=Reviews")
        expect(carol.locator("main")).to_contain_text("Nothing waits for you here")

        # Profile: the time zone, then every time is shown in it, named.
        alice.click("nav >> text=alice")
        check(alice, "profile")
        alice.fill("#time_zone", "Asia/Tokyo")
        alice.click("button:has-text('Save')")
        expect(alice.locator(".notice")).to_contain_text("saved")
        alice.click("text=My requests >> nth=0")
        expect(alice.locator(".zone")).to_contain_text("Asia/Tokyo")
        expect(alice.locator("main")).to_contain_text("JST")

        # A page another role may not act on: the reviewer cannot approve (the use case says no).
        resp = carol.request.get(f"{BASE}/approvals")
        assert resp.ok, resp.status

        # A forged cross-site form post (a page of another origin) changes nothing.
        evil = browser.new_context()
        forged = evil.new_page()
        forged.set_content(f"""<form id=f method=post action="{BASE}/me">
            <input name=time_zone value=UTC><input name=csrf value=guess></form>""")
        forged.evaluate("document.getElementById('f').submit()")
        forged.wait_for_load_state()
        alice.reload()
        alice.click("nav >> text=alice")
        expect(alice.locator("#time_zone")).to_have_value("Asia/Tokyo")
        # A form of our own origin without the right token is refused too.
        resp = alice.request.post(f"{BASE}/me", form={"time_zone": "UTC", "csrf": "0" * 64})
        assert "security token does not match" in resp.text(), resp.text()[:300]

        # The pages' headers: strict CSP, no framing.
        resp = alice.request.get(f"{BASE}/requests")
        csp = resp.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp

        # An auditor searches the log (the checkouts are there) and verifies it; others may not.
        _, admin, admin_errors = sign_in(browser, "admin", os.environ["ADMIN_PW"])
        admin.click("nav >> text=Audit")
        admin.fill("#action", "request.checkout")
        admin.press("#action", "Enter")
        events = admin.locator("tbody tr")
        expect(events).to_have_count(2)
        expect(admin.locator("main")).to_contain_text('"action":"copy"')
        check(admin, "audit")
        admin.click("button:has-text('Verify the whole log')")
        expect(admin.locator("#verdict")).to_contain_text("The audit log is intact")
        # The services switch (Appliance Administrators).
        admin.click("nav >> text=Administration")
        admin.click("main >> text=Request services")
        expect(admin.locator("#state")).to_contain_text("are on")
        check(admin, "services")
        admin.click("button:has-text('Switch session requests off')")
        expect(admin.locator(".notice")).to_contain_text("Session requests are off")
        admin.click("button:has-text('Switch session requests on')")
        expect(admin.locator(".notice")).to_contain_text("Session requests are on")
        admin.click("nav >> text=Live sessions")
        expect(admin.locator("main")).to_contain_text("No live sessions")
        check(admin, "live-sessions")
        # The explain tool, by names and in the requester's local time.
        admin.click("nav >> text=Explain")
        admin.fill("#user", "alice")
        admin.fill("#account", "root@web")
        admin.select_option("#access_type", "password")
        admin.fill("#at", "2030-07-01T09:00")
        admin.click("button:has-text('Explain')")
        expect(admin.locator("#governing")).to_contain_text("Governing policy: web root")
        expect(admin.locator("#governing")).to_contain_text("2030-07-01T09:00:00+09:00[Asia/Tokyo]")
        check(admin, "explain")
        refused = alice.request.get(f"{BASE}/audit")
        assert refused.status == 403 and "auditor" in refused.text(), refused.status
        assert not admin_errors, admin_errors

        # The favorite saved with the first request: one click requests it again.
        alice.click("nav >> text=Favorites")
        fav = alice.locator("tr", has_text="patching")
        expect(fav).to_contain_text("root@web (password)")
        check(alice, "favorites")
        fav.locator("button:has-text('Request again')").click()
        expect(alice.locator(".outcomes")).to_contain_text("root@web (password): request is Pending 1 approval")

        # Sign out ends the session.
        alice.click("button:has-text('Sign out')")
        expect(alice).to_have_url(re.compile(r"/login"))
        alice.goto(f"{BASE}/requests")
        expect(alice).to_have_url(re.compile(r"/login\?next="))

        for who, errs in (("alice", alice_errors), ("bob", bob_errors), ("carol", carol_errors)):
            assert not errs, f"script errors in {who}'s pages: {errs}"
        browser.close()
    print(f"browser walk passed; {checked()} pages checked")


if __name__ == "__main__":
    run(main)
