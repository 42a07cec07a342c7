"""Watching a live SSH session in the page as it happens. The script opens the watch page,
then writes READY_FILE; the test types a command into the session only after that, so what
the page shows was streamed, not read from the recording. Then the session's own user is
refused the same page. Environment: BASE_URL, ARTIFACTS, USER, PASSWORD, EXPECT,
READY_FILE, OWNER, OWNER_PASSWORD."""

import os

from common import check, launch, run, sign_in
from playwright.sync_api import expect, sync_playwright


def main():
    base = os.environ["BASE_URL"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        problems = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        sign_in(page, base, os.environ["USER"], os.environ["PASSWORD"])
        page.click("nav >> text=Live sessions")
        row = page.locator("tbody tr").first
        expect(row).to_contain_text("alice")
        row.locator("a:has-text('Watch')").click()
        expect(page.locator("h1")).to_contain_text("Watching alice")
        expect(page.locator(".player .ap-player")).to_be_visible(timeout=15000)
        watch_url = page.url
        with open(os.environ["READY_FILE"], "w") as f:
            f.write("watching")
        try:
            expect(page.locator(".player")).to_contain_text(os.environ["EXPECT"], timeout=20000)
        except AssertionError as e:
            raise AssertionError(f"{e}\nbrowser console: {problems}") from None
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "watch-live.png"), full_page=True)
        assert not problems, f"script or CSP errors: {problems}"
        # bypass_csp only so the scan can inject axe-core.
        scan = browser.new_context(bypass_csp=True).new_page()
        sign_in(scan, base, os.environ["USER"], os.environ["PASSWORD"])
        scan.goto(f"{base}/sessions")
        check(scan, "live-sessions")
        scan.goto(watch_url)
        expect(scan.locator(".player .ap-player")).to_be_visible(timeout=15000)
        check(scan, "watch")

        # The session's own user may not watch it (nor read its stream).
        own = browser.new_context().new_page()
        sign_in(own, base, os.environ["OWNER"], os.environ["OWNER_PASSWORD"])
        own.goto(watch_url)
        expect(own.locator("h1")).to_contain_text("Not allowed")
        expect(own.locator("main")).to_contain_text("approvers and reviewers")
        stream = own.request.get(watch_url.replace("/watch", "/live"))
        assert stream.status == 403, f"the stream answered {stream.status} to the session's own user"
        browser.close()
    print("watched live in the page")


if __name__ == "__main__":
    run(main)
