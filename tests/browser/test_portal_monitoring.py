"""The portal's monitoring views in a real headless Chromium against a real node process: a chute's services with
their CPU and memory, its networks and its output arriving live; the node's own log, recent lines then a live
one; the host's interfaces, leases and host config; all on a phone-size screen too, hidden from a user who may
not read them, and without a console error."""
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.test_portal import console_errors, log_in, wait
from tests.integration.chute_helpers import unique, wait_change

pytestmark = pytest.mark.docker
TICKER = "echo started; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"


def text_of(driver, element_id):
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e && e.textContent;",
                                 element_id) or ""


def no_sideways_scroll(driver):
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_chute_node_log_and_network_views_show_live_data(node_process, browser, screenshots):
    session, url = node_process.session(), node_process.url
    name = unique("watch")
    answer = session.post(f"{url}/api/v1/chutes", json={"config": {"name": name, "version": 1, "services": {
        "main": {"type": "image", "image": "paradrop/busybox:latest", "command": ["sh", "-c", TICKER]}}}})
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"

    log_in(browser, node_process)
    browser.find_element(By.LINK_TEXT, "Chutes").click()
    browser.find_element(By.LINK_TEXT, name).click()
    wait(browser, lambda d: "started" in text_of(d, "logs"))
    seen = text_of(browser, "logs").count("tick")
    wait(browser, lambda d: text_of(d, "logs").count("tick") >= seen + 2)  # new lines arrive without a reload
    services = browser.find_element(By.CSS_SELECTOR, "main table").text
    assert "running" in services and ("MiB" in services or "KiB" in services), services
    wait(browser, ec.text_to_be_present_in_element((By.ID, "logs-state"), "live"))
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-cpu="main"]'), "%"))  # /ws/status
    screenshots(browser, "chute")

    browser.find_element(By.LINK_TEXT, "Node log").click()
    wait(browser, lambda d: "Edge API listening" in text_of(d, "node-log"))
    intruder = unique("intruder")
    assert requests.post(f"{url}/api/v1/auth/local", json={"username": intruder, "password": "wrong-password"},
                         timeout=10).status_code == 401
    wait(browser, lambda d: intruder in text_of(d, "node-log"))
    assert "wrong-password" not in text_of(browser, "node-log")
    screenshots(browser, "node-log")

    browser.find_element(By.LINK_TEXT, "Network").click()
    wait(browser, lambda d: '"wan"' in text_of(d, "hostconfig"))
    assert "lo" in [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "main table td[data-label=Name]")]
    screenshots(browser, "network")

    browser.set_window_size(390, 844)
    for link, ready in (("Network", lambda d: text_of(d, "hostconfig")),
                        ("Node log", lambda d: "Edge API" in text_of(d, "node-log"))):
        browser.find_element(By.LINK_TEXT, link).click()
        wait(browser, ready)
        assert no_sideways_scroll(browser), link
    browser.get(f"{url}/#/chute/{name}")
    wait(browser, lambda d: "tick" in text_of(d, "logs"))
    assert no_sideways_scroll(browser)
    screenshots(browser, "chute-phone")
    assert console_errors(browser) == []


def test_a_user_who_may_not_read_them_sees_no_node_log_or_network(node_process, browser):
    session, user, password = node_process.session(), unique("user"), "password-" + unique("p")
    created = session.post(f"{node_process.url}/api/v1/users", json={"username": user, "password": password,
                                                                     "role": "user"})
    assert created.status_code == 201
    browser.get(node_process.url + "/")
    name_field = wait(browser, ec.visibility_of_element_located((By.NAME, "username")))
    name_field.clear()
    name_field.send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h2"), "Overview"))
    links = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "nav a") if a.is_displayed()}
    assert "Chutes" in links and not {"Node log", "Network"} & links
    assert console_errors(browser) == []
