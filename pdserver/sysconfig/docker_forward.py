"""Chute traffic to the WAN on a host where Docker set the FORWARD policy to DROP.

Docker sets iptables' FORWARD policy to DROP when it turns IP forwarding on itself. A drop policy is final
whatever our own nftables table accepts, so chute networks would not reach the WAN. The least intrusive way
through is Docker's own: DOCKER-USER, the chain Docker keeps for its users and jumps to first. There the node
inserts one accept rule per direction between each chute bridge and the WAN, marked with our comment, and
removes only rules carrying that mark; our nftables table still decides what may pass (isolation, established
traffic and port forwards only inward). Without DOCKER-USER (a DROP policy that is not Docker's) nothing is
written: the status says chute traffic to the WAN is dropped. Detection only reads (`iptables -S`).
"""
import re
import shlex
import shutil
from typing import Iterable, List, Optional

from twisted.application.service import Service
from twisted.internet import defer, utils
from twisted.logger import Logger

from pdserver.errors import InvalidInput, Unavailable
from pdserver.sysconfig.linknames import check_name

log = Logger()

CHAIN = "DOCKER-USER"
COMMENT = "paradrop chute network"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
_NETNS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def forward_policy(listing: str) -> Optional[str]:
    """The FORWARD policy in `iptables -S FORWARD` output (ACCEPT, DROP), None when it shows none."""
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[:2] == ["-P", "FORWARD"]:
            return parts[2]
    return None


def rules_for(wan: Optional[str], bridges: Iterable[str]) -> List[tuple]:
    """Our DOCKER-USER rules (iptables arguments after the chain name), in the form `iptables -S` prints."""
    if not wan:
        return []
    check_name(wan, "wan")
    mark = ("-m", "comment", "--comment", COMMENT, "-j", "ACCEPT")
    rules = []
    for bridge in sorted(set(bridges)):
        check_name(bridge, "bridge")
        rules += [("-i", bridge, "-o", wan) + mark, ("-i", wan, "-o", bridge) + mark]
    return rules


def our_rules(listing: str) -> List[tuple]:
    """The rules carrying our comment in `iptables -S DOCKER-USER` output; every other line is left alone."""
    found = []
    for line in listing.splitlines():
        try:
            parts = shlex.split(line)
        except ValueError:
            continue
        if parts[:2] == ["-A", CHAIN] and any(a == "--comment" and b == COMMENT for a, b in zip(parts, parts[1:])):
            found.append(tuple(parts[2:]))
    return found


class DockerForward(Service):
    """Reads the FORWARD policy at start and keeps our DOCKER-USER rules equal to the chute networks."""

    def __init__(self, reactor, netns: Optional[str] = None, timeout: float = 10.0, binary: str = "iptables"):
        if netns is not None and not _NETNS.fullmatch(netns):
            raise InvalidInput(f"not a namespace name: {netns!r}", field="netns")
        self._reactor = reactor
        self._netns = netns
        self._timeout = timeout
        self._binary = binary
        self.state = {"policy": None, "docker_user": False, "rules": 0, "wan_blocked": False, "error": None}

    def startService(self):
        super().startService()
        self.detect().addCallback(self._report).addErrback(lambda f: log.failure("reading iptables failed", f))

    def _report(self, state):
        if state["policy"] == "DROP":
            log.warn("the FORWARD policy is DROP (Docker's): chute networks reach the WAN through accept rules of "
                     "ours in {chain}" if state["docker_user"] else
                     "the FORWARD policy is DROP and there is no {chain}: chute networks cannot reach the WAN",
                     chain=CHAIN)

    def _argv(self, *args) -> list:
        iptables = shutil.which(self._binary)
        if iptables is None:
            raise Unavailable(f"{self._binary} not found")
        argv = [iptables, "-w", "5"] + list(args)
        if self._netns is None:
            return argv
        ip = shutil.which("ip")
        if ip is None:
            raise Unavailable("ip not found")
        return [ip, "netns", "exec", self._netns] + argv

    async def _run(self, *args) -> tuple:
        argv = self._argv(*args)
        d = utils.getProcessOutputAndValue(argv[0], argv[1:], env=_ENV, reactor=self._reactor)
        out, err, code = await d.addTimeout(self._timeout, self._reactor)
        return out.decode(errors="replace"), err.decode(errors="replace"), code

    def detect(self) -> defer.Deferred:
        """Read only: the FORWARD policy and whether Docker's DOCKER-USER chain is there."""
        return defer.ensureDeferred(self._detect())

    async def _detect(self) -> dict:
        policy, docker_user, error = None, False, None
        try:
            out, err, code = await self._run("-S", "FORWARD")
            if code == 0:
                policy = forward_policy(out)
                docker_user = (await self._run("-S", CHAIN))[2] == 0
            else:
                error = err.strip()[:200] or f"iptables exited {code}"
        except (Unavailable, OSError, defer.TimeoutError) as e:
            error = str(e)
        self.state.update(policy=policy, docker_user=docker_user, wan_blocked=policy == "DROP" and not docker_user,
                          error=error)
        return dict(self.state)

    def sync(self, wan: Optional[str], bridges: Iterable[str]) -> defer.Deferred:
        """Our rules for exactly these chute bridges when Docker's policy drops forwarded traffic, else none."""
        try:
            wanted = rules_for(wan, bridges)
        except Exception:
            return defer.fail()
        return defer.ensureDeferred(self._sync(wanted))

    async def _sync(self, wanted: List[tuple]) -> dict:
        state = await self._detect()
        if not state["docker_user"]:
            return state
        if state["policy"] != "DROP":
            wanted = []
        out, err, code = await self._run("-S", CHAIN)
        present = our_rules(out) if code == 0 else []
        errors = []
        for rule in present:
            if rule not in wanted:
                errors += await self._change("-D", rule)
        for rule in wanted:
            if rule not in present:
                errors += await self._change("-I", rule)
        self.state.update(rules=len(wanted), error="; ".join(errors) or None)
        return dict(self.state)

    async def _change(self, op: str, rule: tuple) -> List[str]:
        out, err, code = await self._run(op, CHAIN, *rule)
        if code == 0:
            return []
        log.warn("iptables {op} {chain} failed: {err}", op=op, chain=CHAIN, err=err.strip()[:200])
        return [err.strip()[:200] or f"iptables {op} exited {code}"]
