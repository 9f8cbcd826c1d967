"""Remote commands and the provision record without a router: the real queue, journal, chute store, audit log and
chute requests over an in-memory database and a Clock; what the controller would see is the answer of run()."""
import json
import stat

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver import errors
from pdserver.auth.audit import AuditLog
from pdserver.changes.journal import ChangeJournal
from pdserver.changes.queue import ChangeQueue
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.requests import ChuteRequests
from pdserver.chutes.store import ChuteStore
from pdserver.cloud import protocol, provisioning
from pdserver.cloud.commands import CommandLog, RemoteCommands
from tests.unit.memory_node import memory_database

CHUTE = {"name": "web", "version": 1,
         "services": {"main": {"type": "light", "image": "busybox", "command": ["sleep", "1000"]}}}


class SlowInstall(ChuteRequests):
    """Chute requests whose install waits for the test (as a fetched archive would)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending = []

    def install(self, user, description, spec, source):
        d = defer.Deferred()
        self.pending.append((d, lambda: super(SlowInstall, self).install(user, description, spec, source)))
        return d

    def finish(self):
        d, install = self.pending.pop(0)
        install().chainDeferred(d)


@pytest.fixture
def node(tmp_path):
    conn = memory_database()
    clock = Clock()
    queue = ChangeQueue(ChangeJournal(conn), {t: lambda context: None for t in (
        "install", "update", "delete", "start", "stop", "restart", "hostconfig")}, clock)
    chutes = ChuteStore(conn)
    requests = SlowInstall(queue, chutes, lambda: NodePolicy.from_config({}, 8080, 64 * 1024 * 1024),
                           tmp_path / "sources", 1024 * 1024, lambda f, *args: defer.maybeDeferred(f, *args))
    audit = AuditLog(conn, clock.seconds)
    submitted = []
    commands = RemoteCommands(requests, queue, chutes, CommandLog(conn), audit, clock,
                              on_submitted=lambda change, key: submitted.append((change.id, key)))
    return commands, requests, queue, audit, submitted


def answer(d):
    results = []
    d.addBoth(results.append)
    assert results, "the command did not answer"
    if isinstance(results[0], defer.Failure):
        results[0].raiseException()
    return results[0]


def test_two_deliveries_of_one_key_while_the_first_is_under_way_make_one_change(node):
    commands, requests, queue, audit, submitted = node
    first = commands.run(protocol.INSTALL_CHUTE, key="dep-1", user="alice", role="admin", config=CHUTE)
    second = commands.run(protocol.INSTALL_CHUTE, key="dep-1", user="alice", role="admin", config=CHUTE)
    assert not first.called and not second.called
    requests.finish()
    one, two = answer(first), answer(second)
    assert one == {"change_id": one["change_id"], "duplicate": False}
    assert two == {"change_id": one["change_id"], "duplicate": True}
    assert requests.pending == [] and [c.id for c in queue.list()] == [one["change_id"]]
    assert submitted == [(one["change_id"], "dep-1")]
    third = answer(commands.run(protocol.INSTALL_CHUTE, key="dep-1", user="alice", role="admin", config=CHUTE))
    assert third == {"change_id": one["change_id"], "duplicate": True}
    assert commands.recent() == [{"key": "dep-1", "change_id": one["change_id"], "state": "queued"}]
    assert queue.get(one["change_id"]).user == "cloud:alice"


def test_a_failed_delivery_runs_again_under_the_same_key(node):
    commands, requests, queue, audit, submitted = node
    with pytest.raises(errors.NotFound):
        answer(commands.run(protocol.START_CHUTE, key="k", user="alice", role="owner", chute="web"))
    pending = commands.run(protocol.INSTALL_CHUTE, key="k", user="alice", role="owner", config=CHUTE)
    requests.finish()
    assert answer(pending)["duplicate"] is False


@pytest.mark.parametrize("command, role, allowed", [
    (protocol.INSTALL_CHUTE, "user", False), (protocol.INSTALL_CHUTE, "admin", True),
    (protocol.STOP_CHUTE, "user", False), (protocol.SET_HOSTCONFIG, "user", False),
])
def test_the_cloud_role_is_checked_against_the_node_s_permissions(node, command, role, allowed):
    commands, requests, queue, audit, submitted = node
    arguments = {"config": CHUTE} if command == protocol.INSTALL_CHUTE else \
        {"chute": "web"} if command == protocol.STOP_CHUTE else {"config": {}}
    d = commands.run(command, key="k", user="mallory", role=role, **arguments)
    if allowed:
        requests.finish()
        assert answer(d)["duplicate"] is False
        return
    with pytest.raises(errors.Forbidden) as caught:
        answer(d)
    assert caught.value.field == "role" and queue.list() == []
    assert [(a["actor"], a["action"], a["result"]) for a in audit.list()] == [
        ("cloud:mallory", f"cloud:{command}", "forbidden")]


@pytest.mark.parametrize("arguments, field", [
    ({"key": "", "user": "a", "role": "owner", "chute": "web"}, "key"),
    ({"key": "k" * 201, "user": "a", "role": "owner", "chute": "web"}, "key"),
    ({"key": "k\n", "user": "a", "role": "owner", "chute": "web"}, "key"),
    ({"key": "k", "user": None, "role": "owner", "chute": "web"}, "user"),
    ({"key": "k", "user": "a", "role": "OWNER", "chute": "web"}, "role"),
    ({"key": "k", "user": "a", "role": "owner", "chute": "web", "force": True}, "force"),
    ({"key": "k", "user": "a", "role": "owner", "chute": ["web"]}, "chute"),
])
def test_malformed_commands_are_refused_naming_the_field(node, arguments, field):
    commands, requests, queue, audit, submitted = node
    with pytest.raises(errors.InvalidInput) as caught:
        answer(commands.run(protocol.STOP_CHUTE, **arguments))
    assert caught.value.field == field and queue.list() == []


def test_install_takes_config_or_source_not_both_nor_neither(node):
    commands = node[0]
    for arguments in ({}, {"config": CHUTE, "source": {"url": "http://h/a", "sha256": "0" * 64}}):
        with pytest.raises(errors.InvalidInput) as caught:
            answer(commands.run(protocol.INSTALL_CHUTE, key="k", user="a", role="owner", **arguments))
        assert caught.value.field == "config"


@pytest.mark.parametrize("body, expected", [
    ({"routerId": "ab" * 12, "apitoken": "s", "pdserver": "https://c.example", "wampRouter": "wss://c.example/ws"},
     ("ab" * 12, "s", "https://c.example", "wss://c.example/ws")),
    ({"node_id": "ab" * 8, "secret": "s", "wamp_router": "ws://127.0.0.1:9/ws"},
     ("ab" * 8, "s", None, "ws://127.0.0.1:9/ws")),
])
def test_a_provision_request_in_either_naming_is_one_record(body, expected):
    record = provisioning.parse(body)
    assert (record.node_id, record.secret, record.controller, record.wamp_router) == expected
    assert "topsecret" not in repr(provisioning.parse({**body, **({"apitoken": "topsecret"} if "apitoken" in body
                                                                     else {"secret": "topsecret"})}))


def test_the_provision_file_is_0600_replaced_whole_and_cleared(tmp_path):
    store = provisioning.ProvisionFile(tmp_path / "cloud.json")
    assert store.load() is None
    record = provisioning.parse({"node_id": "ab" * 8, "secret": "first", "wamp_router": "ws://h/ws"})
    store.save(record)
    store.save(provisioning.parse({"node_id": "cd" * 8, "secret": "second", "wamp_router": "ws://h/ws"}))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load().secret == "second" and list(tmp_path.iterdir()) == [store.path]
    assert json.loads(store.path.read_text())["node_id"] == "cd" * 8
    store.clear()
    assert store.load() is None
