"""A session's recording played in the request page (asciinema-player under the page's strict
CSP), as a reviewer sees it. Environment: BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, REQUEST,
EXPECT (text the terminal must show once played)."""

import os

from common import launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        # Not bypassing CSP here: the player must work under the pages' own policy.
        page = browser.new_context().new_page()
        problems = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}/requests/{os.environ['REQUEST']}")
        player = page.locator(".player .ap-player")
        expect(player).to_be_visible(timeout=15000)
        player.click()  # play
        try:
            expect(page.locator(".player")).to_contain_text(os.environ["EXPECT"], timeout=15000)
        except AssertionError as e:
            raise AssertionError(f"{e}\nbrowser console: {problems}") from None
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "recording-played.png"), full_page=True)
        assert not problems, f"script or CSP errors: {problems}"
        browser.close()
    print("recording played in the page")


if __name__ == "__main__":
    run(main)
