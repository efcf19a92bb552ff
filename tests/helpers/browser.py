"""A real browser for the station page tests: Debian's chromium, headless, via chromedriver.

Screenshots go to `$INSPECTOR_TEST_OUTPUT/web/` (default `test-output/web/` in the working
directory) so a reviewer can look at each page as the test saw it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromedriver are not installed (apt-get install chromium "
           "chromium-driver; scripts/setup.sh --dev does)")


def screenshot_dir() -> Path:
    """Where page screenshots go."""
    out = Path(os.environ.get("INSPECTOR_TEST_OUTPUT", "test-output")) / "web"
    out.mkdir(parents=True, exist_ok=True)
    return out


def start_browser():
    """A headless chromium driven by chromedriver, with the console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=DriverService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


def console_errors(driver) -> list[str]:
    """Console messages of level SEVERE since the last call (chromium's log drains)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(pred: Callable[[], object], timeout: float = 30.0, interval: float = 0.1):
    """The first truthy value of `pred()`, or AssertionError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {pred}")
        time.sleep(interval)
