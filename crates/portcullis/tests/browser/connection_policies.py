"""Connection policies in the web UI as a Security Policy Administrator: the list in order, a
new Telnet policy from the editor, a mistake in the rules told by field, explain. Environment:
BASE_URL, ARTIFACTS, AXE, ADMIN_PW."""

import json
import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(bypass_csp=True).new_page()
        sign_in(page, base, "admin", os.environ["ADMIN_PW"])
        page.click("nav >> text=Administration")
        page.click("text=Connection policies")
        rows = page.locator("table tbody tr")
        expect(rows.first).to_contain_text("ssh-default")
        check(page, "connection-policies")

        # A Telnet policy, first position, from the editor.
        page.fill("#new-policy-name", "telnet-lab")
        page.fill("#new-policy-position", "1")
        rules = {"protocol": "telnet", "clients": ["10.20.0.0/16"], "targets": [{"asset": "switch*"}],
                 "channels": [{"kind": "shell"}], "gateway_authentication": True}
        page.fill("#new-policy-rules", json.dumps(rules, indent=2))
        page.click("button:has-text('Add the policy')")
        expect(page.locator(".notice")).to_contain_text("telnet-lab was added")
        expect(page.locator("dl.facts")).to_contain_text("TELNET")
        expect(page.locator("dl.facts")).to_contain_text("gateway authentication")
        check(page, "connection-policy")

        # A channel Telnet does not relay: refused, the field and the reason shown.
        rules["channels"].append({"kind": "sftp"})
        page.fill("#policy-rules", json.dumps(rules))
        page.click("button:has-text('Save the policy')")
        expect(page.locator("main")).to_contain_text("channels[1].kind")
        expect(page.locator("main")).to_contain_text("does not relay sftp")
        page.go_back()

        # Not JSON at all: said so, with where.
        page.fill("#policy-rules", "{ protocol: telnet }")
        page.click("button:has-text('Save the policy')")
        expect(page.locator("main")).to_contain_text("not valid JSON (line 1")

        # Explain: an SSH client from anywhere gets ssh-default; Telnet from 10.20.1.1 to
        # switch1 gets telnet-lab, and from elsewhere nothing.
        page.goto(f"{base}/admin/connection-policies")
        expect(rows.first).to_contain_text("telnet-lab")
        page.select_option("#explain-protocol", "telnet")
        page.fill("#explain-client", "192.0.2.9")
        page.fill("#explain-asset", "switch1")
        page.click("button:has-text('Explain')")
        expect(page.locator("dl.facts")).to_contain_text("No policy applies")
        expect(page.locator("table")).to_contain_text("192.0.2.9 is not in 10.20.0.0/16")
        check(page, "connection-explain")
        page.fill("#explain-client", "10.20.1.1")
        page.click("button:has-text('Explain')")
        expect(page.locator("dl.facts")).to_contain_text("telnet-lab applies.")
        browser.close()
    print("connection policies administered in the browser")


if __name__ == "__main__":
    run(main)
