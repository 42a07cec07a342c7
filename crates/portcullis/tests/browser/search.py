"""Search sessions: a phrase typed in a session found on the Search sessions page (axe-clean),
its hit opening the request's player at its second under the page's own CSP, and (with a
policy asking for approval) asking to view a recording and deciding the ask on the Recording
views page. Environment: BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, QUERY, EXPECT (text the
player shows at the hit)."""

import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(bypass_csp=True).new_page()
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}/requests")
        page.click("text=Search sessions")
        page.fill("#q", os.environ["QUERY"])
        page.fill("#since", "1h")
        page.click("button:has-text('Search')")
        hit = page.locator("table.hits tbody tr", has_text="command").first
        expect(hit.locator("mark").first).to_be_visible()
        check(page, "search")
        link = hit.locator("a:has-text('Play from')")
        href = link.get_attribute("href")
        browser.close()

        # The player, under the pages' own CSP, starts at the hit: what was shown then is on
        # the screen without pressing play.
        browser = launch(p)
        page = browser.new_context().new_page()
        problems = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.goto(f"{base}{href}")
        expect(page.locator(".notice", has_text="Playing from the search hit")).to_be_visible()
        expect(page.locator(".player[data-start-at]")).to_contain_text(os.environ["EXPECT"], timeout=15000)
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "search-hit-played.png"), full_page=True)
        assert not problems, f"script or CSP errors: {problems}"
        browser.close()
    print("search found the session and played it from the hit")


if __name__ == "__main__":
    run(main)
