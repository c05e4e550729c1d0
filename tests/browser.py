"""A real headless browser for the tests of pages a person opens (the inspect page, the serve
playground): Debian's chromium driven by selenium through chromedriver.

    def test_page(browser):            # the fixture, from tests/conftest.py
        browser.get("file:///...")      # a selenium WebDriver
        browser.save_screenshot("x.png")

Where chromium or chromedriver is missing the test is skipped, saying how to install them
(`.ci/run` does: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> tuple[str | None, str | None]:
    """(the browser binary, chromedriver), each None where missing."""
    binary = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    return binary, shutil.which("chromedriver")


def start(width: int = 1200, height: int = 900):
    """A headless chromium WebDriver; pytest.skip with the reason when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    binary, driver = find_browser()
    if binary is None or driver is None:
        pytest.skip("no headless browser here: apt-get install chromium chromium-driver "
                    "(as .ci/run does) to run the browser tests")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)
