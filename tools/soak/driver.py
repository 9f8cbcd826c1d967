"""Phase 2, the churn: install, update and delete small chutes through the API in a loop while the GET clients
run, plus a canary (one client, one request at a time) whose latency is the server's own under that load."""
import statistics
import threading
import time

import requests

from node import FINAL, chute_body

NAMES = ("soak-load-0", "soak-load-1")


class Driver(threading.Thread):
    """Cycles install (v1) -> update (v2) -> delete of NAMES in turn until ``stop`` is set; a cycle that started
    runs to its end, so no chute of its own is left installed."""

    def __init__(self, url: str, token: str):
        super().__init__(name="soak-driver", daemon=True)
        self.url = url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.stop = threading.Event()
        self.seconds = {"install": [], "update": [], "delete": []}
        self.errors = []
        self.cycles = 0

    def _change(self, kind: str, method: str, path: str, body) -> bool:
        t0 = time.monotonic()
        try:
            answer = self.http.request(method, self.url + path, json=body, timeout=30)
            if answer.status_code != 202:
                self.errors.append(f"{kind}: {method} {path} answered {answer.status_code} {answer.text[:200]}")
                return False
            change_id = answer.json()["change_id"]
            while True:
                change = self.http.get(f"{self.url}/api/v1/changes/{change_id}", timeout=30).json()
                if change.get("state") in FINAL:
                    break
                if time.monotonic() - t0 > 180:
                    self.errors.append(f"{kind}: change {change_id} still {change.get('state')} after 180 s")
                    return False
                time.sleep(0.1)
        except (requests.RequestException, ValueError) as e:
            self.errors.append(f"{kind}: {method} {path}: {type(e).__name__}: {e}")
            return False
        self.seconds[kind].append(time.monotonic() - t0)
        if change["state"] != "succeeded":
            messages = " | ".join(m["message"] for m in (change.get("messages") or [])[-3:])
            self.errors.append(f"{kind}: change {change_id} {change['state']}: {messages[:300]}")
            return False
        return True

    def run(self):
        i = 0
        while not self.stop.is_set():
            name = NAMES[i % len(NAMES)]
            i += 1
            ok = self._change("install", "POST", "/api/v1/chutes", chute_body(name, 1))
            if ok:
                self._change("update", "PUT", f"/api/v1/chutes/{name}", chute_body(name, 2))
            if ok or self._installed(name):
                self._change("delete", "DELETE", f"/api/v1/chutes/{name}", None)
            self.cycles += 1
        self.http.close()

    def _installed(self, name: str) -> bool:
        try:
            return self.http.get(f"{self.url}/api/v1/chutes/{name}", timeout=30).status_code == 200
        except requests.RequestException:
            return False

    def summary(self) -> dict:
        every = sorted(v for values in self.seconds.values() for v in values)
        out = {"cycles": self.cycles, "errors": self.errors, "changes": len(every),
               "p50": statistics.median(every) if every else None,
               "p99": every[min(len(every) - 1, int(len(every) * 0.99))] if every else None}
        for kind, values in self.seconds.items():
            out[kind] = {"count": len(values), "p50": statistics.median(values) if values else None,
                         "max": max(values) if values else None}
        return out


class Canary(threading.Thread):
    """GET ``path`` one at a time, every ``interval`` s, on its own connection: the latency a lone client sees
    while the load runs, free of the load client's own queueing."""

    def __init__(self, url: str, token: str, path: str = "/api/v1/info/software", interval: float = 0.2):
        super().__init__(name="soak-canary", daemon=True)
        self.url, self.path, self.interval = url, path, interval
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.stop = threading.Event()
        self.latencies = []
        self.errors = 0

    def run(self):
        while not self.stop.wait(self.interval):
            t0 = time.perf_counter()
            try:
                ok = self.http.get(self.url + self.path, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                self.latencies.append((time.perf_counter() - t0) * 1000)
            else:
                self.errors += 1
        self.http.close()
