"""Headless Chromium (Debian's chromium and chromium-driver) driven by Selenium, one fresh profile per test."""
import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """A Chromium of its own (profile under the test's tmp dir); its console log is readable with
    ``browser.get_log("browser")``. Fails clearly when Debian's packages are missing (tools/setup-system)."""
    if not (os.access(CHROMIUM, os.X_OK) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: run tools/setup-system")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium never looks for a browser or driver to download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=str(tmp_path / "driver.log")))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path):
    """``shot(browser, name)`` saves a PNG under the test's tmp dir (the test's artifacts)."""
    directory = tmp_path / "screenshots"
    directory.mkdir()

    def shot(driver, name):
        path = directory / f"{name}.png"
        driver.save_screenshot(str(path))
        return path
    shot.directory = directory
    return shot
