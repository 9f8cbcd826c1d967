"""What ``pdserver doctor`` reads of this machine: the settings, the state dir, the API port, the Docker engine, the
programs on PATH, the kernel, the cgroups, the radios and NetworkManager; through the node's own code where it has
some (settings loader, engine adapter, link listing, NetworkManager client). Blocking reads run in the reactor's
threads (``thd_*``), each bounded in time.
"""
import os
import re
import stat
from pathlib import Path
from typing import Optional, Sequence


class MachineProbes:
    """The probes of this machine, through the node's own code where it has some (settings, engine adapter, link
    listing, NetworkManager client). Blocking ones run in the reactor's threads."""

    ENGINE_TIMEOUT = 10
    PROGRAM_TIMEOUT = 5
    SECRETS = ("node-secret", "initial-admin-password", "cloud.json", "node.db")

    def __init__(self, reactor):
        self._reactor = reactor

    def _in_thread(self, function, *args):
        from twisted.internet import threads
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)

    def settings(self, config_file, state_dir):
        from pdserver import settings as settings_module
        return settings_module.load(config_file, state_dir=state_dir)

    def state_dir(self, settings):
        return self._in_thread(thd_state_dir, settings.state_dir, self.SECRETS)

    def port(self, host, port, state_dir):
        return self._in_thread(thd_port, host, port, state_dir / "node.db")

    async def engine(self, refs: Sequence[str]) -> dict:
        import docker

        from pdserver.containers.engine import DockerEngine
        clients = []

        def client_factory():
            clients.append(docker.from_env(timeout=self.ENGINE_TIMEOUT))
            return clients[-1]
        engine = DockerEngine(self._reactor, client_factory=client_factory, max_threads=2)
        engine.startService()
        try:
            version = await engine.ping()
            images = {ref: await engine.image_exists(ref) for ref in refs}
        finally:
            await engine.stopService()
        return {"version": version, "api_version": clients[-1].api.api_version, "images": images}

    def program(self, name):
        return self._in_thread(thd_program, name, self.PROGRAM_TIMEOUT)

    def kernel(self):
        return self._in_thread(thd_kernel)

    def cgroup(self):
        return self._in_thread(thd_cgroup)

    def radios(self, netns):
        from pdserver.sysconfig.device_list import thd_devices
        return self._in_thread(lambda: sorted({d["phy"] for d in thd_devices(netns) if d.get("phy")}))

    async def networkmanager(self, bus_address):
        from pdserver.sysconfig.networkmanager import SYSTEM_BUS, NetworkManagerClient, missing_sockets
        address = bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS)
        missing = missing_sockets(address)
        if missing:
            return False, f"no system bus at {', '.join(missing)}"
        client = await NetworkManagerClient.connect(self._reactor, bus_address, timeout=3.0)
        if client is None:
            return False, f"not found on the system bus at {address}"
        client.disconnect()
        return True, ""


def thd_state_dir(path: Path, secrets: Sequence[str]) -> dict:
    """Whether ``path`` (or, while it does not exist, its nearest existing parent) takes a new file, its mode, and
    the secrets in it that others may read."""
    import tempfile
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{existing} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".doctor-"):
            writable = True
    except OSError:
        writable = False
    facts = {"exists": existing == path, "writable": writable, "mode": None, "open_secrets": {}}
    if existing == path:
        facts["mode"] = stat.S_IMODE(path.stat().st_mode)
        for name in secrets:
            secret = path / name
            if secret.exists() and stat.S_IMODE(secret.stat().st_mode) & 0o077:
                facts["open_secrets"][name] = stat.S_IMODE(secret.stat().st_mode)
    return facts


def thd_port(host: str, port: int, database: Path) -> dict:
    """Whether the API could listen on host:port; when it is taken, who holds it and whether that is the node
    whose database is ``database``."""
    import errno
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's listenTCP does
        try:
            probe.bind((host, port))
            return {"free": True}
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                return {"free": False, "error": e.strerror or str(e)}
    return {"free": False, **_holder(port, database)}


def _holder(port: int, database: Path) -> dict:
    import psutil
    try:
        listeners = [c for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid]
    except psutil.Error:
        return {}
    for conn in listeners:
        try:
            process = psutil.Process(conn.pid)
            files = {Path(f.path) for f in process.open_files()}
            return {"pid": conn.pid, "process": process.name(), "ours": database.resolve() in files}
        except psutil.Error:
            continue
    return {}


_VERSION = re.compile(r"\d+(?:\.\d+)+")
_VERSION_FLAGS = {"hostapd": "-v", "ip": "-V"}


def thd_program(name: str, timeout: float) -> Optional[dict]:
    """{path, version} of ``name`` on the PATH the node's children get (the node's own), or None."""
    import shutil
    import subprocess
    path = shutil.which(name)
    if path is None:
        return None
    done = subprocess.run([path, _VERSION_FLAGS.get(name, "--version")], capture_output=True, text=True,
                          timeout=timeout)
    version = _VERSION.search(done.stdout + done.stderr)
    return {"path": path, "version": version.group(0) if version else ""}


def thd_kernel(proc: Path = Path("/proc"), sys_module: Path = Path("/sys/module"),
               lib_modules: Path = Path("/lib/modules"), boot: Path = Path("/boot")) -> dict:
    """The kernel's config options (from /proc/config.gz or /boot/config-RELEASE), its loaded modules and the
    modules installed for it; None for what there is nothing to read of."""
    import gzip
    release = os.uname().release
    config = None
    for path, opener in ((proc / "config.gz", gzip.open), (boot / f"config-{release}", open)):
        if path.exists():
            with opener(path, "rt") as f:
                config = dict(line.strip().split("=", 1) for line in f if line.startswith("CONFIG_") and "=" in line)
            break
    loaded = sorted(p.name for p in sys_module.iterdir()) if sys_module.is_dir() else []
    modules = None
    tree = lib_modules / release
    if tree.is_dir():
        modules = set()
        for listing in ("modules.dep", "modules.builtin"):
            if (tree / listing).exists():
                for line in (tree / listing).read_text().splitlines():
                    base = line.split(":", 1)[0].rsplit("/", 1)[-1]
                    modules.add(re.sub(r"\.ko(\.\w+)?$", "", base).replace("-", "_"))
        modules = sorted(modules)
    return {"config": config, "loaded": loaded, "modules": modules, "release": release}


def thd_cgroup(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc")) -> dict:
    """The cgroup v2 controllers at ``root`` (None when it is no v2 hierarchy) and the v1 controllers this process
    is in."""
    controllers = root / "cgroup.controllers"
    v2 = controllers.read_text().split() if controllers.exists() else None
    v1 = []
    for line in (proc / "self" / "cgroup").read_text().splitlines():
        names = line.split(":", 2)[1] if line.count(":") >= 2 else ""
        v1.extend(n for n in names.split(",") if n)
    return {"v2_controllers": v2, "v1_controllers": v1}
