"""Headless Chromium through selenium, for the browser test and the docs screenshot.

Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`); `make test` installs
them. Selenium is pointed at both binaries explicitly and told to stay offline, so it never tries
to download a browser or driver (selenium-manager would, otherwise).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path(os.environ.get("PEFTLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PEFTLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def missing() -> str | None:
    """Why the browser cannot start, in words that say how to fix it; None when it can."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if absent:
        return (
            f"{' and '.join(absent)} not found: the browser test needs Chromium and chromedriver. Run `make test` "
            "(it installs the Debian packages chromium and chromium-driver), or `apt-get install chromium "
            "chromium-driver`, or point PEFTLAB_CHROMIUM / PEFTLAB_CHROMEDRIVER at your binaries."
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: run `make test` (it installs the test extra: pip install -e '.[test]')"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium with a fresh profile, console logging on; quits and cleans up after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must not reach the network
    with tempfile.TemporaryDirectory(prefix="peftlab-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(html: Path, out: Path, width: int = 1280, max_height: int | None = None) -> None:
    """A PNG of the whole page (or its top ``max_height`` CSS pixels), through the DevTools protocol:
    a window screenshot would stop at the viewport."""
    import base64

    with chromium(width) as driver:
        driver.get(html.resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        height = min(height, max_height) if max_height else height
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
