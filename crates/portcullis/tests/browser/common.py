"""What the browser scripts share: launching Debian's chromium headless, signing in, and
reporting a failure as one line and a non-zero exit."""

import os
import sys


def launch(playwright):
    return playwright.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                      args=["--no-sandbox"])


def sign_in(page, base, user, password):
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")


_shots = 0


def check(page, name):
    """Screenshot (into ARTIFACTS) and accessibility scan (axe-core from AXE) of the page as it
    is now: no serious or critical violation. The page's context must bypass CSP so that
    axe-core can be injected."""
    global _shots
    _shots += 1
    page.screenshot(path=os.path.join(os.environ["ARTIFACTS"], f"{_shots:02d}-{name}.png"), full_page=True)
    page.add_script_tag(path=os.environ["AXE"])
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    if bad:
        detail = "; ".join(f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)" for v in bad)
        raise AssertionError(f"accessibility violations on {name} ({page.url}): {detail}")


def checked():
    """How many pages `check` has scanned."""
    return _shots


def run(main):
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure with its message
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
