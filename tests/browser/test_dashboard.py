"""The controller dashboard in a real headless Chromium against a real ``pdserver controller`` process (with its
embedded crossbar) and a simulated node process speaking the node protocol: log in, see the node come online live,
add a chute and a version from a project archive to the store, deploy the version to the node and watch its delivery
go through queued and running to succeeded live, see the chute on the node's page, deploy the next version to a group
the node is in; every page at phone width; and no page writes an error to the browser's console."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request

import psutil
import pytest
import yaml
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import REPO, free_port, wait_until

ADMIN_PASSWORD = "dashboard-admin-password"
CONFIG = {"name": "hello", "version": 1, "description": "dashboard test",
          "services": {"main": {"type": "image", "image": "example/hello"}}}
STEP = 1.0  # seconds the simulated node spends queued and running: long enough to be seen live


def _stop(process):
    if process.poll() is not None:
        return
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in children:
        if child.is_running():
            child.kill()


class Api:
    """The controller's HTTP API from the test (urllib: the test blocks on the browser anyway)."""

    def __init__(self, url, token=None):
        self.url, self.token = url, token

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")


@pytest.fixture
def controller(tmp_path):
    """A ``pdserver controller`` process (own state dir, free ports), healthy; stopped with its router."""
    port, wamp_port = free_port(), free_port()
    env = {**os.environ, "PARADROP_CONTROLLER_ADMIN_PASSWORD": ADMIN_PASSWORD, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "controller.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pdserver.main", "controller", "--state-dir",
                                    str(tmp_path / "state"), "--port", str(port), "--wamp-port", str(wamp_port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = Api(f"http://127.0.0.1:{port}")

        def healthy():
            assert process.poll() is None, (tmp_path / "controller.log").read_text()[-3000:]
            try:
                return api.call("GET", "/api/v1/health")["status"] == "ok"
            except OSError:
                return False
        wait_until(healthy, timeout=60, interval=0.1, message="the controller answers")
        yield api
    finally:
        _stop(process)


@pytest.fixture
def simulated_node(controller, tmp_path):
    """A node created on the controller, and ``start()``, which runs a simulated node process joined with its
    secret (stopped at teardown)."""
    admin = Api(controller.url, controller.call("POST", "/api/v1/auth/login",
                                                {"username": "admin", "password": ADMIN_PASSWORD})["token"])
    node = admin.call("POST", "/api/v1/nodes", {"name": "rooftop"})
    env = {**os.environ, "PYTHONPATH": str(REPO), "SIMULATED_NODE_SECRET": node["secret"]}
    processes = []

    def start():
        with open(tmp_path / "node.log", "wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.simulated_node", node["id"], node["wamp_router"], str(STEP)], env=env,
                stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO)))
    try:
        yield admin, node, start
    finally:
        for process in processes:
            _stop(process)


def wait(driver, condition, timeout=20):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def text_of(selector, expected):
    """The text of ``selector`` equals ``expected`` (read in one script: the page re-renders while it polls)."""
    script = "const e = document.querySelector(arguments[0]); return e && e.textContent;"
    return lambda d: d.execute_script(script, selector) == expected


def console_errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def log_in(driver, url, password):
    driver.get(url + "/")
    wait(driver, ec.visibility_of_element_located((By.NAME, "password"))).send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    try:
        wait(driver, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main h2"), "Nodes"), timeout=60)
    except TimeoutException:
        raise AssertionError(f"not logged in; the page shows: {driver.find_element(By.TAG_NAME, 'body').text!r}, "
                             f"console: {driver.get_log('browser')}") from None


def test_wrong_password_is_refused_on_the_page(controller, browser):
    browser.get(controller.url + "/")
    wait(browser, ec.visibility_of_element_located((By.NAME, "password"))).send_keys("not-the-password")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#login .error"), "Wrong user name"))
    assert browser.execute_script("return sessionStorage.getItem('paradrop.controller.token')") is None
    assert [e for e in console_errors(browser) if "/api/v1/auth/login" not in e["message"]] == []


def archive(path):
    """A .tar.gz of the chute project CONFIG describes."""
    data = yaml.safe_dump(CONFIG).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("paradrop.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_see_the_node_online_deploy_to_it_and_watch_it_finish(simulated_node, browser, screenshots, tmp_path):
    admin, node, start_node = simulated_node
    log_in(browser, admin.url, ADMIN_PASSWORD)
    online = f'[data-node-online="{node["id"]}"]'
    wait(browser, text_of(online, "offline"))
    start_node()
    wait(browser, text_of(online, "online"), timeout=60)  # pushed by /ws/nodes: the page never re-reads the list
    fetched = "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/v1/nodes')).length"
    assert browser.execute_script(fetched) == 0
    assert browser.find_element(By.ID, "status").text == "rooftop is online"  # announced (a live region)
    assert browser.find_element(By.ID, "who").text == "admin"
    screenshots(browser, "nodes")

    # The store: a chute, then its version 1 from a project archive, both from the page.
    browser.find_element(By.LINK_TEXT, "Store").click()
    form = wait(browser, ec.visibility_of_element_located((By.ID, "add-chute")))
    form.find_element(By.NAME, "name").send_keys("hello")
    form.find_element(By.NAME, "description").send_keys("says hello")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    form = wait(browser, ec.visibility_of_element_located((By.ID, "add-version-hello")))
    form.find_element(By.NAME, "archive").send_keys(str(archive(tmp_path / "hello.tar.gz")))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "main table"), "project archive"))
    screenshots(browser, "store")
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, '[aria-label="Deploy hello 1"]'))).click()
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, f'input[name=node][value="{node["id"]}"]'))).click()
    browser.find_element(By.CSS_SELECTOR, "#deploy button[type=submit]").click()

    state = f'[data-delivery-state="{node["id"]}"]'
    wait(browser, text_of(state, "running"), timeout=30)  # seen live, before the end
    wait(browser, text_of(state, "succeeded"), timeout=30)
    wait(browser, ec.text_to_be_present_in_element((By.ID, "summary"), "Finished: 1 succeeded"))
    progress = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#progress li")]
    assert any("running" in p for p in progress) and "rooftop: succeeded (installed)" in progress, progress
    deployment_id = browser.current_url.rsplit("/", 1)[1]
    assert admin.call("GET", f"/api/v1/deployments/{deployment_id}")["finished"] is True
    screenshots(browser, "deployment")

    browser.get(f"{admin.url}/#/node/{node['id']}")
    wait(browser, text_of('[data-chute-version="hello"]', "1"))
    assert browser.find_element(By.CSS_SELECTOR, '[data-chute-state="hello"]').text == "running"
    screenshots(browser, "node")

    # Version 2 to a group the node is in: the node updates its chute.
    admin.call("POST", "/api/v1/groups", {"name": "roofs"})
    admin.call("PUT", f"/api/v1/groups/roofs/nodes/{node['id']}")
    admin.call("POST", "/api/v1/store/chutes/hello/versions", {"config": dict(CONFIG, version="2")})
    browser.find_element(By.LINK_TEXT, "Store").click()
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, '[aria-label="Deploy hello 2"]'))).click()
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, "input[name=target][value=group]"))).click()
    browser.find_element(By.CSS_SELECTOR, "#deploy button[type=submit]").click()
    wait(browser, text_of(state, "succeeded"), timeout=30)
    browser.find_element(By.LINK_TEXT, "Nodes").click()
    wait(browser, ec.element_to_be_clickable((By.LINK_TEXT, "rooftop"))).click()
    wait(browser, text_of('[data-chute-version="hello"]', "2"))

    browser.set_window_size(390, 844)  # phone-size: the tables become labelled blocks, nothing scrolls sideways
    for page, shown in [("deployments", "1 succeeded"), ("nodes", "rooftop"), (f"node/{node['id']}", "hello"),
                        ("store", "Add a chute"), (f"deployment/{deployment_id}", "Finished")]:
        browser.get(f"{admin.url}/#/{page}")
        wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), shown))
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), page
    screenshots(browser, "deployment-phone")

    token = browser.execute_script("return sessionStorage.getItem('paradrop.controller.token')")
    browser.find_element(By.ID, "logout").click()
    wait(browser, ec.visibility_of_element_located((By.NAME, "password")))
    assert browser.execute_script("return sessionStorage.getItem('paradrop.controller.token')") is None
    with pytest.raises(urllib.error.HTTPError) as refused:
        Api(admin.url, token).call("GET", "/api/v1/auth/me")
    assert refused.value.code == 401  # logging out revoked the token
    assert console_errors(browser) == []
