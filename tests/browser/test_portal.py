"""The node portal in a real headless Chromium against a real node process: log in, install a chute from an
archive and watch its change finish live, see it running, stop it, read its logs, the changes and the audit log,
start it again and delete it; and no page writes an error to the browser's console."""
import io
import tarfile

import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.chute_helpers import unique

pytestmark = pytest.mark.docker
GREETING = "hello-from-the-portal"


def archive(path, name):
    """A .tar.gz of a light chute that prints GREETING and stays up."""
    description = {"name": name, "version": 1, "description": "portal test",
                   "services": {"main": {"type": "light", "image": "python3",
                                         "command": "python3 -u /opt/chute/run.py"}}}
    files = {"paradrop.yaml": yaml.safe_dump(description).encode(),
             "run.py": f"import time\nprint({GREETING!r}, flush=True)\ntime.sleep(3600)\n".encode()}
    with tarfile.open(path, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def wait(driver, condition, timeout=20):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def chute_state(name, expected):
    """The state the chutes page shows (read in one script: the page re-renders while a change runs)."""
    script = "const e = document.querySelector(arguments[0]); return e && e.textContent;"
    return lambda d: d.execute_script(script, f'[data-chute-state="{name}"]') == expected


def console_errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def log_in(driver, node):
    driver.get(node.url + "/")
    password = wait(driver, ec.visibility_of_element_located((By.NAME, "password")))
    password.send_keys(node.admin_password)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h2"), "Overview"))


def test_wrong_password_is_refused_on_the_page(node_process, browser):
    browser.get(node_process.url + "/")
    wait(browser, ec.visibility_of_element_located((By.NAME, "password"))).send_keys("not-the-password")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#login .error"), "Wrong user name"))
    assert browser.execute_script("return sessionStorage.getItem('paradrop.token')") is None
    assert [e for e in console_errors(browser) if "/api/v1/auth/local" not in e["message"]] == []


def test_install_watch_stop_and_read_logs(node_process, browser, screenshots, tmp_path):
    name = unique("portal")
    log_in(browser, node_process)
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main"), "Hardware"))
    screenshots(browser, "overview")

    browser.find_element(By.LINK_TEXT, "Install").click()
    upload = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    upload.send_keys(str(archive(tmp_path / f"{name}.tar.gz", name)))
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "result"), "succeeded"), timeout=120)
    progress = browser.find_elements(By.CSS_SELECTOR, "#progress li")
    assert len(progress) >= 2, [p.text for p in progress]  # the change's messages arrived live, then its result
    screenshots(browser, "install")

    browser.find_element(By.LINK_TEXT, "Chutes").click()
    wait(browser, chute_state(name, "running"))
    screenshots(browser, "chutes")

    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="stop {name}"]').click()
    wait(browser, chute_state(name, "stopped"), 60)
    assert node_process.session().get(f"{node_process.url}/api/v1/chutes/{name}").json()["state"] == "stopped"

    browser.find_element(By.LINK_TEXT, "logs").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "logs"), GREETING))
    screenshots(browser, "logs")

    browser.find_element(By.LINK_TEXT, "Changes").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main table"), name))
    screenshots(browser, "changes")

    browser.find_element(By.LINK_TEXT, "Audit log").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main table"), name))
    screenshots(browser, "audit")

    browser.set_window_size(390, 844)  # a phone: the tables become labelled blocks, nothing scrolls sideways
    browser.find_element(By.LINK_TEXT, "Chutes").click()
    wait(browser, chute_state(name, "stopped"))
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshots(browser, "chutes-phone")

    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="start {name}"]').click()
    wait(browser, chute_state(name, "running"), 60)
    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="delete {name}"]').click()
    wait(browser, ec.alert_is_present()).accept()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main"), "No chute is installed"), 60)
    assert node_process.session().get(f"{node_process.url}/api/v1/chutes/{name}").status_code == 404
    assert console_errors(browser) == []
