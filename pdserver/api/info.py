"""Node information: hardware, software and features. Never the daemon's environment (it holds secrets)."""
import platform
import sys
from pathlib import Path

from pdserver import __version__
from pdserver.api.routing import PUBLIC, Call, RouteTable
from pdserver.auth.roles import Permission


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _os_release() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def hardware() -> dict:
    import psutil  # about 1 MB resident: imported when someone asks, not by an idle node
    disk = psutil.disk_usage("/")
    return {
        "vendor": _read("/sys/class/dmi/id/sys_vendor") or None,
        "board": _read("/sys/class/dmi/id/product_name") or None,
        "cpu": _cpu_model(),
        "cpu_count": psutil.cpu_count(),
        "architecture": platform.machine(),
        "memory_total": psutil.virtual_memory().total,
        "disk_total": disk.total,
        "wifi_devices": sorted(p.name for p in Path("/sys/class/ieee80211").glob("*")),
    }


def software() -> dict:
    return {
        "pdserver_version": __version__,
        "python_version": platform.python_version(),
        "os": _os_release(),
        "kernel": platform.release(),
        "twisted_version": sys.modules["twisted"].__version__,
    }


FEATURES = ("edge-api-v1", "change-queue", "change-stream", "audit-log", "roles", "hostconfig", "chutes",
            "chute-logs", "chute-tokens", "telemetry", "status-stream")


class InfoResource:
    routes = RouteTable("info")

    def __init__(self, started_at: float, clock, telemetry):
        self._started_at = started_at
        self._clock = clock
        self._telemetry = telemetry

    @routes.route("/api/v1/health", "GET", permission=PUBLIC, summary="Liveness of the node daemon")
    def health(self, call: Call):
        return {"status": "ok", "version": __version__, "uptime": round(self._clock.seconds() - self._started_at, 3)}

    @routes.route("/api/v1/info/hardware", "GET", permission=Permission.READ_INFO, summary="Hardware of the node")
    def hardware(self, call: Call):
        return hardware()

    @routes.route("/api/v1/info/software", "GET", permission=Permission.READ_INFO, summary="Software versions")
    def software(self, call: Call):
        return software()

    @routes.route("/api/v1/info/features", "GET", permission=Permission.READ_INFO, summary="Features of this node")
    def features(self, call: Call):
        return {"features": list(FEATURES)}

    @routes.route("/api/v1/info/telemetry", "GET", permission=Permission.READ_INFO,
                  summary="CPU, memory, disk, load, uptime and per-interface counters of the node (at most 1 s old)")
    def telemetry(self, call: Call):
        return self._telemetry.current()
