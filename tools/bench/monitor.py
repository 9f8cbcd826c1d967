"""Monitoring: how soon a killed chute shows on /ws/status, what telemetry costs an idle node, how fast the portal
first loads.

Goals (issue 11): detection < 200 ms median; daemon CPU < 2% of one core with 20 running chutes, idle, over 60 s;
portal first load on loopback < 300 ms to interactive and < 150 KB transferred.

1. Cost. A daemon (ready grace 0) installs --chutes image chutes (paradrop/busybox:latest running ``sleep``:
   light on purpose, so the figure is the node's own) and settles for 3 s. Its CPU time (user + system, psutil)
   is then read over --seconds twice: with nobody listening (the node samples nothing), and with one /ws/status
   client connected (node telemetry and every service's CPU and memory every 5 s) plus a /metrics scrape every
   15 s, as a dashboard and Prometheus would. Reported as a percentage of one core.
2. Detection. With a /ws/status client connected, one chute container at a time is killed with the Docker SDK
   (``kill``, SIGKILL); the clock runs from just before the SDK call until the client has the "container" message
   whose action is "die" for that container. KILLS rounds, each on another chute; the median and the worst.
3. Portal. Debian's headless chromium (Selenium, fresh profile, the browser cache disabled through the DevTools
   protocol so every load is a first load). The login page: navigation start to DOMContentLoaded, after which the
   page's module has drawn the login form (the page is interactive), and every byte transferred (document, scripts,
   style, icon). The overview while logged in: navigation start until the node's facts are on the page (polled
   every 5 ms in the page's time), with the bytes of its API answers. LOADS loads each; medians.

Everything made is removed at the end, also on an error, Ctrl-C or SIGTERM: the chutes' containers, networks and
volumes by the run's node label; Scratch stops the daemon and removes the temp dir.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import docker  # noqa: E402
import psutil  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import _common as c  # noqa: E402
from deploy import LABEL_NODE, SLEEP, Daemon, install_body, sweep  # noqa: E402

KILLS = 10
LOADS = 10
SCRAPE_EVERY = 15.0
DETECT_GOAL_MS, CPU_GOAL_PERCENT, TTI_GOAL_MS, BYTES_GOAL_KB = 200.0, 2.0, 300.0, 150.0
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

_TIMING = """
const nav = performance.getEntriesByType("navigation")[0];
const bytes = [nav, ...performance.getEntriesByType("resource")].reduce((n, e) => n + e.transferSize, 0);
return {dcl: nav.domContentLoadedEventEnd, bytes: bytes, form: !!document.querySelector("#login [name=password]")};
"""
_OVERVIEW = """
const done = arguments[arguments.length - 1];
const t = setInterval(() => {
  if (!document.querySelector("main").textContent.includes("Hardware")) return;
  clearInterval(t);
  const api = performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/"));
  done({ready: performance.now(), api_bytes: api.reduce((n, e) => n + e.transferSize, 0)});
}, 5);
"""


class StatusClient:
    """A /ws/status client on a thread of its own: the time each container message arrived, by container."""

    def __init__(self, url: str, token: str):
        self._ws = connect(url.replace("http://", "ws://") + "/ws/status",
                           additional_headers={"Authorization": f"Bearer {token}"})
        self._deaths = {}
        self._seen = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for frame in self._ws:
                message = json.loads(frame)
                if message["type"] == "container" and message["action"] == "die":
                    with self._seen:
                        self._deaths.setdefault(message["container"], time.perf_counter())
                        self._seen.notify_all()
        except Exception:  # the socket closed (the end, or the daemon went away): nothing more to wait for
            pass

    def death_of(self, container: str, limit: float = 5.0) -> float:
        with self._seen:
            if not self._seen.wait_for(lambda: container in self._deaths, limit):
                raise RuntimeError(f"no die message for {container} within {limit} s")
            return self._deaths[container]

    def close(self):
        self._ws.close()
        self._thread.join(5)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure_cpu(proc: psutil.Process, seconds: float, tick=None) -> float:
    """Percent of one core the process used over ``seconds``; ``tick()`` is called once a second meanwhile."""
    before, started = cpu_seconds(proc), time.perf_counter()
    while time.perf_counter() - started < seconds:
        time.sleep(min(1.0, seconds - (time.perf_counter() - started)))
        if tick is not None:
            tick()
    return 100.0 * (cpu_seconds(proc) - before) / (time.perf_counter() - started)


def bench_node(scratch, client, chutes: int, seconds: float) -> dict:
    state = scratch.dir / "state"
    daemon = Daemon(scratch, state, {"PARADROP_READY_GRACE": "0"}).login()
    node_label = f"{LABEL_NODE}={(state / 'node-id').read_text().strip()}"
    out = {"node_label": node_label}
    try:
        names = [f"mon{i:02d}" for i in range(chutes)]
        started = time.perf_counter()
        for change_id in [daemon.submit("POST", "/api/v1/chutes", install_body(n, SLEEP)) for n in names]:
            daemon.wait_change(change_id, limit=120)
        out["installed"] = time.perf_counter() - started
        time.sleep(3.0)  # let the installs' after-effects (image checks, idle thread trim) settle
        proc = psutil.Process(daemon.proc.pid)
        out["cpu_idle"] = measure_cpu(proc, seconds)
        token = daemon.http.headers["Authorization"].split()[1]
        status = StatusClient(daemon.url, token)
        scrapes = []

        def scrape():
            if not scrapes or time.perf_counter() - scrapes[-1] >= SCRAPE_EVERY:
                scrapes.append(time.perf_counter())
                daemon.http.get(daemon.url + "/metrics", timeout=10).raise_for_status()
        try:
            out["cpu_watched"] = measure_cpu(proc, seconds, scrape)
            out["scrapes"] = len(scrapes)
            latencies = []
            for name in names[:min(KILLS, chutes)]:
                container = daemon.http.get(f"{daemon.url}/api/v1/chutes/{name}",
                                            timeout=10).json()["service_states"][0]["container"]
                t0 = time.perf_counter()
                client.api.kill(container)
                latencies.append(status.death_of(container) - t0)
            out["detect"] = latencies
        finally:
            status.close()
        out["portal"] = bench_portal(daemon.url, token)
    finally:
        daemon.stop()
    return out


def browser():
    os.environ["SE_OFFLINE"] = "true"  # Selenium never looks for a browser or driver to download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def bench_portal(url: str, token: str) -> dict:
    driver = browser()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        driver.set_script_timeout(20)
        login = []
        for _ in range(LOADS + 1):
            driver.get("about:blank")
            driver.get(url + "/")
            timing = driver.execute_script(_TIMING)
            if not timing["form"]:
                raise RuntimeError("the login form was not drawn by DOMContentLoaded")
            login.append(timing)
        driver.execute_script("sessionStorage.setItem('paradrop.token', arguments[0]);"
                              "sessionStorage.setItem('paradrop.role', 'owner');", token)
        overview = []
        for _ in range(LOADS + 1):
            driver.get("about:blank")
            driver.get(url + "/#/overview")
            overview.append(driver.execute_async_script(_OVERVIEW))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    login, overview = login[1:], overview[1:]  # the first of each warms the browser up
    return {"login_ms": statistics.median(t["dcl"] for t in login),
            "login_bytes": statistics.median(t["bytes"] for t in login),
            "overview_ms": statistics.median(t["ready"] for t in overview),
            "overview_api_bytes": statistics.median(t["api_bytes"] for t in overview), "console_errors": errors}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chutes", type=int, default=20, help="running chutes during the cost and detection runs")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each CPU reading")
    args = parser.parse_args()
    client = docker.from_env(timeout=60)
    client.images.get("paradrop/busybox:latest")  # fails early when the image is missing
    started = time.perf_counter()
    with c.Scratch("monitor") as scratch:
        result = {}
        try:
            result = bench_node(scratch, client, args.chutes, args.seconds)
        finally:
            if "node_label" in result or (scratch.dir / "state" / "node-id").exists():
                label = result.get("node_label") or \
                    f"{LABEL_NODE}={(scratch.dir / 'state' / 'node-id').read_text().strip()}"
                sweep(client, [label])
            client.close()
    total = time.perf_counter() - started
    detect_ms = [x * 1000 for x in result["detect"]]
    portal = result["portal"]
    print(f"{args.chutes} image chutes (busybox sleep) installed in {result['installed']:.1f} s; CPU read over "
          f"{args.seconds:.0f} s each; {len(detect_ms)} kills; {LOADS} portal loads each; took {total:.0f} s")
    print("  detection (ms): " + ", ".join(f"{x:.0f}" for x in detect_ms))
    print(f"  watched: one /ws/status client and {result['scrapes']} /metrics scrapes; overview API answers "
          f"{portal['overview_api_bytes'] / 1024:.1f} KB; browser console errors: {len(portal['console_errors'])}")
    median_ms = statistics.median(detect_ms)
    c.table("monitoring", [
        ("kill -> /ws/status die, median (ms)", f"{median_ms:.0f}", "-", "-", f"< {DETECT_GOAL_MS:.0f}",
         median_ms < DETECT_GOAL_MS),
        ("kill -> /ws/status die, worst (ms)", f"{max(detect_ms):.0f}", "-", "-", "-", None),
        (f"daemon CPU, {args.chutes} chutes, idle (% core)", f"{result['cpu_idle']:.2f}", "-", "-",
         f"< {CPU_GOAL_PERCENT:.0f}", result["cpu_idle"] < CPU_GOAL_PERCENT),
        (f"daemon CPU, {args.chutes} chutes, watched (% core)", f"{result['cpu_watched']:.2f}", "-", "-",
         f"< {CPU_GOAL_PERCENT:.0f}", result["cpu_watched"] < CPU_GOAL_PERCENT),
        ("portal login page interactive (ms)", f"{portal['login_ms']:.0f}", "-", "-", f"< {TTI_GOAL_MS:.0f}",
         portal["login_ms"] < TTI_GOAL_MS),
        ("portal first load, bytes (KB)", f"{portal['login_bytes'] / 1024:.1f}", "-", "-",
         f"< {BYTES_GOAL_KB:.0f}", portal["login_bytes"] / 1024 < BYTES_GOAL_KB),
        ("portal overview drawn, logged in (ms)", f"{portal['overview_ms']:.0f}", "-", "-", f"< {TTI_GOAL_MS:.0f}",
         portal["overview_ms"] < TTI_GOAL_MS),
    ])


if __name__ == "__main__":
    main()
