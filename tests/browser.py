"""A real headless browser for the dashboard's tests and benchmark: Debian's Chromium
(``/usr/bin/chromium``, installed by ``scripts/test`` with apt) driven by Playwright for Python.
Playwright's own browser download is never used (``executable_path``), so nothing but the
package registries is needed. Missing Chromium is a failure with the reason, never a skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("ARWX_CHROMIUM", "/usr/bin/chromium")
# As root (CI) Chromium exits at once without --no-sandbox; /dev/shm is small in containers.
ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
VIEWPORT = {"width": 1280, "height": 900}


def missing() -> str | None:
    """Why the browser cannot start, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing: it is in the test extra (pip install -e '.[test]')"
    return None


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (Playwright's sync ``Browser``) for the duration of the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page, url: str, email: str, password: str) -> None:  # noqa: ANN001 - playwright Page
    """Through the sign-in form, as a person does; returns once the header shows the account."""
    page.goto(url + "/")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#signin button[type=submit]")
    page.wait_for_selector(f"#me:text('{email}')", timeout=15_000)


def drawn_panels(page) -> int:  # noqa: ANN001
    return page.evaluate("document.querySelectorAll('.panel[data-drawn=\"1\"]').length")
