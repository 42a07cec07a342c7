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


def run(main):
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure with its message
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
