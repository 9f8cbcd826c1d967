"""Network namespaces and veth pairs that a test makes and always removes.

Sysconfig tests send traffic only inside namespaces they create (DESIGN.md section 8): a `Lab` makes
them with iproute2, names them uniquely (several test runs and engineers share one machine), and
deletes every namespace and link it made when the test ends, also when it fails.
"""
import os
import subprocess
import uuid
from typing import List, Tuple

import pytest


def ip(*args: str, netns: str = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run /usr/sbin/ip (inside `netns` when given)."""
    argv = ["ip"] + (["-n", netns] if netns else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def in_netns(netns: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a command inside a namespace (`ip netns exec`)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(["ip", "netns", "exec", netns] + list(argv), **kwargs)


def popen_in_netns(netns: str, *argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns] + list(argv), **kwargs)


class Lab:
    """Namespaces and veths of one test; `close()` removes them all (idempotent)."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self._namespaces: List[str] = []
        self._links: List[str] = []

    def netns(self, role: str) -> str:
        """A new empty namespace with loopback up; its name carries the test's tag."""
        name = f"pdt-{role}-{self.tag}"
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("link", "set", "lo", "up", netns=name)
        return name

    def veth(self, role: str, peer_netns: str = None, host_netns: str = None) -> Tuple[str, str]:
        """A veth pair (names at most 15 characters); the peer end moved into `peer_netns` when given,
        the first end into `host_netns` when given (else it stays in the test's own namespace)."""
        a, b = f"{role[:4]}{self.tag}a", f"{role[:4]}{self.tag}b"
        ip("link", "add", a, "type", "veth", "peer", "name", b)
        self._links.append(a)
        if host_netns:
            ip("link", "set", a, "netns", host_netns)
        if peer_netns:
            ip("link", "set", b, "netns", peer_netns)
        for end, ns in ((a, host_netns), (b, peer_netns)):
            ip("link", "set", end, "up", netns=ns)
        return a, b

    def close(self) -> None:
        for link in self._links:
            ip("link", "del", link, check=False)
        for name in reversed(self._namespaces):
            # Processes left in the namespace (a dnsmasq a test forgot) would keep it alive: kill them.
            pids = ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", name, check=False)
        self._links.clear()
        self._namespaces.clear()


@pytest.fixture
def lab():
    """A `Lab` for the test; everything it made is removed afterwards."""
    made = Lab()
    try:
        yield made
    finally:
        made.close()
