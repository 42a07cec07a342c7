"""An Appliance Administrator sets up everything the walk needs in the browser alone, by names:
three users, an asset with an account and its vaulted password, an entitlement and its
policy (approver, reviewer, ticket required), a user group and a reason code. Then the
refusals: a requester is refused the administration pages, and a forged cross-site form
changes nothing. Environment: BASE_URL, ARTIFACTS, AXE, ADMIN_PW, ALICE_PW, BOB_PW, CAROL_PW,
VAULTED."""

import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE_URL"]


def main():
    with sync_playwright() as p:
        browser = launch(p)
        # bypass_csp only so the scan can inject axe-core.
        admin = browser.new_context(bypass_csp=True).new_page()
        errors = []
        admin.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(admin, BASE, "admin", os.environ["ADMIN_PW"])
        admin.click("nav >> text=Administration")
        check(admin, "administration")

        # Users.
        admin.click("main >> text=Users")
        for user, pw in (("alice", "ALICE_PW"), ("bob", "BOB_PW"), ("carol", "CAROL_PW")):
            admin.fill("#new-user-username", user)
            admin.fill("#new-user-display_name", user.capitalize())
            admin.fill("#new-user-time_zone", "Europe/Paris")
            admin.fill("#new-user-password", os.environ[pw])
            admin.click("button:has-text('Add the user')")
            expect(admin.locator(".notice")).to_contain_text(f"User {user} was added")
        # A mistake gets a message that says what to fix, and nothing is added.
        admin.fill("#new-user-username", "dave")
        admin.fill("#new-user-password", "short")
        admin.click("button:has-text('Add the user')")
        expect(admin.locator("h1")).to_contain_text("Please correct this")
        expect(admin.locator("main")).to_contain_text("password")
        admin.go_back()
        admin.goto(f"{BASE}/admin/users")
        check(admin, "users")
        expect(admin.locator("tbody")).not_to_contain_text("dave")
        admin.click("tbody >> text=carol")
        expect(admin.locator("h1")).to_contain_text("User carol")
        check(admin, "user")
        admin.check("#roles-roles-5")  # auditor, the last of the roles
        admin.click("button:has-text('Set the roles')")
        expect(admin.locator(".notice")).to_contain_text("The roles were set")
        expect(admin.locator("main")).to_contain_text("auditor")

        # A user group, members by name.
        admin.goto(f"{BASE}/admin/groups/user")
        admin.fill("#new-group-name", "web approvers")
        admin.click("button:has-text('Add the group')")
        expect(admin.locator(".notice")).to_contain_text("Group web approvers was added")
        admin.click("tbody >> text=web approvers")
        admin.fill("#add-member", "bob")
        admin.click("button:has-text('Add the member')")
        expect(admin.locator(".notice")).to_contain_text("bob was added")
        admin.fill("#add-member", "nobody")
        admin.click("button:has-text('Add the member')")
        expect(admin.locator("main")).to_contain_text("no user is named 'nobody'")
        admin.go_back()
        check(admin, "user-group")

        # The asset, its account and the vaulted password (never shown again).
        admin.goto(f"{BASE}/admin/assets")
        admin.fill("#new-asset-name", "web")
        admin.fill("#new-asset-address", "10.0.0.5")
        admin.click("button:has-text('Add the asset')")
        expect(admin.locator(".notice")).to_contain_text("Asset web was added")
        check(admin, "assets")
        admin.click("tbody >> text=web")
        check(admin, "asset")
        admin.fill("#new-account-name", "root")
        admin.click("button:has-text('Add the account')")
        expect(admin.locator("h1")).to_contain_text("Account root@web")
        admin.fill("#set-password", os.environ["VAULTED"])
        admin.click("button:has-text('Store the password')")
        expect(admin.locator(".notice")).to_contain_text("stored as version 1")
        assert os.environ["VAULTED"] not in admin.content(), "the vaulted password is on the page"
        check(admin, "account")

        # Moving an asset to another address leaves it unconfirmed until another Asset
        # Administrator confirms it (issue 13, finding 1); nobody confirms their own change.
        admin.goto(f"{BASE}/admin/assets")
        admin.fill("#new-asset-name", "scratch")
        admin.fill("#new-asset-address", "10.0.0.7")
        admin.click("button:has-text('Add the asset')")
        admin.click("tbody >> text=scratch")
        admin.fill("#asset-address", "10.0.0.8")
        admin.click("button:has-text('Save the asset')")
        expect(admin.locator(".notice")).to_contain_text("another Asset Administrator must confirm them")
        expect(admin.locator("main")).to_contain_text("not confirmed: no credential is sent to this asset")
        check(admin, "asset-unconfirmed")
        admin.click("button:has-text('Confirm the address, ports and host key')")
        expect(admin.locator("main")).to_contain_text("another administrator must confirm it")

        # A reason code.
        admin.goto(f"{BASE}/admin/reason-codes")
        admin.fill("#new-reason-name", "maintenance")
        admin.click("button:has-text('Add the reason code')")
        expect(admin.locator(".notice")).to_contain_text("Reason code maintenance was added")
        check(admin, "reason-codes")

        # The entitlement and its policy, by names.
        admin.goto(f"{BASE}/admin/entitlements")
        admin.fill("#new-entitlement-name", "web-ops")
        admin.fill("#new-entitlement-priority", "1")
        admin.fill("#new-entitlement-users", "alice")
        admin.click("button:has-text('Add the entitlement')")
        expect(admin.locator("h1")).to_contain_text("Entitlement web-ops")
        admin.fill("#new-policy-name", "web root")
        admin.fill("#new-policy-priority", "1")
        admin.select_option("#new-policy-access_type", "password")
        admin.fill("#new-policy-accounts", "root@web")
        admin.check("#new-policy-ticket_required")
        admin.fill("#new-policy-approver_groups", "web approvers")
        admin.check("#new-policy-review_required")
        admin.fill("#new-policy-reviewers", "carol")
        admin.uncheck("#new-policy-change_password_after_checkin")
        admin.click("button:has-text('Add the policy')")
        expect(admin.locator(".notice")).to_contain_text("Policy web root was added")
        check(admin, "entitlement")
        admin.click("tbody >> text=web root")
        expect(admin.locator("#policy-accounts")).to_have_value("root@web")
        expect(admin.locator("#policy-approver_groups")).to_have_value("web approvers")
        check(admin, "policy")
        admin.goto(f"{BASE}/admin/profiles")
        check(admin, "password-profiles")
        admin.goto(f"{BASE}/admin/groups/account")
        check(admin, "account-groups")
        admin.goto(f"{BASE}/admin/entitlements")
        check(admin, "entitlements")
        assert not errors, errors

        # A requester is refused the administration pages.
        alice = browser.new_context().new_page()
        sign_in(alice, BASE, "alice", os.environ["ALICE_PW"])
        expect(alice.locator("nav")).not_to_contain_text("Administration")
        alice.goto(f"{BASE}/admin/users")
        expect(alice.locator("h1")).to_contain_text("Not allowed")
        # A form forged on another site, in the administrator's browser, does nothing.
        forged = admin.request.post(f"{BASE}/admin/users", form={"username": "mallory", "password": "mallory password 1"},
                                    headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
        assert "another site" in forged.text(), forged.text()
        browser.close()
    print("set up in the browser")


if __name__ == "__main__":
    run(main)
