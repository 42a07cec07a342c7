"""An RDP session's recording in the request page, as a reviewer sees it: the screen as
recorded (frames decoded by the server), played, sought to its end, and saved as a picture,
under the page's strict CSP. Environment: BASE_URL, ARTIFACTS, AXE, USER, PASSWORD, REQUEST."""

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
        page.goto(f"{base}/requests/{os.environ['REQUEST']}")
        player = page.locator(".screen-player").first
        expect(player).to_be_visible(timeout=15000)
        screen = player.locator("img.screen")
        # The first frame loads: a picture of the recorded desktop's size.
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=screen.element_handle(), timeout=30000
        )
        width = screen.evaluate("img => img.naturalWidth")
        assert width == 800, f"the recorded screen is {width} pixels wide, not 800"
        expect(player.locator(".time")).to_contain_text(" / ")
        player.locator("button.play").click()
        expect(player.locator("button.play")).to_have_text("Pause")
        # Sought to the end: the last frame shows, and the still link points there.
        seek = player.locator("input.seek")
        end = seek.get_attribute("max")
        seek.evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", end)
        href = player.locator("a.still-link").get_attribute("href")
        assert "/screen.png?at=" in href, href
        still = page.request.get(f"{base}{href}")
        assert still.status == 200 and still.headers["content-type"] == "image/png", still.status
        page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], "rdp-recording.png"), full_page=True)
        assert not problems, f"script or CSP errors: {problems}"
        browser.close()
    print("RDP recording played in the page")


if __name__ == "__main__":
    run(main)
