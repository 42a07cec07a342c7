"""A live RDP session watched in the web UI (as a four-eyes authorizer or an administrator
does): the session's screen as a picture, refreshed, under the page's CSP. Environment:
BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, SESSION."""

import os

from common import launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        problems = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}/sessions/{os.environ['SESSION']}/watch")
        screen = page.locator("img.live-screen")
        expect(screen).to_be_visible(timeout=15000)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth === 800", arg=screen.element_handle(), timeout=30000
        )
        expect(page.get_by_role("button", name="Terminate the session")).to_be_visible()
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "rdp-watch.png"), full_page=True)
        assert not problems, f"script or CSP errors: {problems}"
        browser.close()
    print("live RDP session watched in the page")


if __name__ == "__main__":
    run(main)
