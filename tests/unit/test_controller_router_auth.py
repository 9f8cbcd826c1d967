"""The router's configuration and the controller's authenticator and authorizer, as pure functions."""
import json
import os
from types import SimpleNamespace

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.task import Clock

from pdserver.cloud import protocol
from pdserver.controller import router, wamp
from tests.fleet_store import MemoryFleetStore

NODE = "0123456789abcdef"
OTHER = "fedcba9876543210"
TICKET = "t" * 32


def node(authid=NODE, role=protocol.NODE_ROLE):
    return {"session": 1, "authid": authid, "authrole": role, "authmethod": "wampcra"}


def test_crossbar_path_from_the_environment(monkeypatch):
    monkeypatch.setenv("PARADROP_CROSSBAR", "/opt/cb/bin/crossbar")
    assert router.crossbar_path() == "/opt/cb/bin/crossbar"
    monkeypatch.delenv("PARADROP_CROSSBAR")
    assert router.crossbar_path() == str(router.REPO / ".venv-crossbar" / "bin" / "crossbar")


def test_router_config_has_one_realm_the_two_roles_and_both_auth_methods():
    config = router.router_config("127.0.0.1", 9086, TICKET)
    json.dumps(config)
    (worker,) = config["workers"]
    (realm,) = worker["realms"]
    assert realm["name"] == protocol.REALM
    roles = {r["name"]: r for r in realm["roles"]}
    assert roles[protocol.NODE_ROLE] == {"name": protocol.NODE_ROLE, "authorizer": protocol.AUTHORIZE}
    assert roles[protocol.CONTROLLER_ROLE]["permissions"][0]["allow"] == {
        "call": True, "register": True, "publish": True, "subscribe": True}
    (transport,) = worker["transports"]
    assert transport["endpoint"] == {"type": "tcp", "interface": "127.0.0.1", "port": 9086, "backlog": 4096}
    ws = transport["paths"]["ws"]
    assert ws["serializers"] == ["json", "msgpack", "cbor"]
    assert ws["options"]["max_message_size"] == 1024 * 1024 and ws["options"]["enable_webstatus"] is False
    assert ws["auth"]["wampcra"] == {"type": "dynamic", "authenticator": protocol.AUTHENTICATE}
    assert ws["auth"]["ticket"]["principals"] == {
        protocol.CONTROLLER_AUTHID: {"ticket": TICKET, "role": protocol.CONTROLLER_ROLE}}
    assert "anonymous" not in ws["auth"]
    assert router.router_url("::1", 9086) == "ws://[::1]:9086/ws"


@pytest.mark.parametrize("ticket", [None, "", "short", 12345678901234567890])
def test_router_config_refuses_a_weak_ticket(ticket):
    with pytest.raises(ValueError):
        router.router_config("127.0.0.1", 9086, ticket)


def test_a_node_may_register_under_its_prefix_checked_per_session():
    assert wamp.authorize(node(), protocol.node_uri(NODE, protocol.INSTALL_CHUTE), "register", {}) == \
        {"allow": True, "disclose": False, "cache": False}


def test_a_node_may_publish_under_its_prefix_cached_and_disclosed():
    assert wamp.authorize(node(), protocol.node_uri(NODE, protocol.STATE), "publish", {}) == \
        {"allow": True, "disclose": True, "cache": True}


def details(authid=NODE, role=protocol.NODE_ROLE, forward_for=None, topic=protocol.node_uri(NODE, protocol.STATE)):
    """What autobahn's EventDetails carries for an event the router disclosed the publisher of."""
    return SimpleNamespace(publisher=7, publisher_authid=authid, publisher_authrole=role, topic=topic,
                           forward_for=forward_for)


def test_an_event_counts_only_when_the_topics_node_published_it_itself():
    assert wamp.publisher_is(details(), NODE)
    assert not wamp.publisher_is(details(OTHER), NODE)
    assert not wamp.publisher_is(details(None, None), NODE)  # not disclosed
    assert not wamp.publisher_is(details(role=protocol.CONTROLLER_ROLE), NODE)
    assert not wamp.publisher_is(details(forward_for=[{"session": 1, "authid": NODE, "authrole": "node"}]), NODE)
    assert not wamp.publisher_is(None, NODE)


@pytest.mark.parametrize("details,uri,action", [
    (node(), protocol.node_uri(OTHER, protocol.STATE), "publish"),
    (node(), protocol.node_uri(OTHER, protocol.INSTALL_CHUTE), "register"),
    (node(), protocol.node_uri(OTHER, protocol.INSTALL_CHUTE), "call"),
    (node(), protocol.node_uri(NODE, protocol.INSTALL_CHUTE), "call"),
    (node(), protocol.node_uri(NODE, protocol.STATE), "subscribe"),
    (node(), protocol.node_prefix(NODE), "register"),
    (node(), protocol.NODE_PREFIX + NODE, "publish"),
    (node(), protocol.AUTHENTICATE, "call"),
    (node(), protocol.AUTHENTICATE, "register"),
    (node(), "wamp.session.list", "call"),
    (node(), protocol.RELAY, "subscribe"),  # what the backends tell each other
    (node(), protocol.RELAY, "publish"),
    (node(NODE[:8]), protocol.node_uri(NODE, protocol.STATE), "publish"),  # a prefix of another id is no id
    (node(NODE + "\n"), protocol.node_uri(NODE + "\n", protocol.STATE), "publish"),
    (node("controller"), "org.paradrop.node.controller.state", "publish"),
    (node(role="controller"), protocol.node_uri(NODE, protocol.STATE), "publish"),
    (node(authid=None), protocol.node_uri(NODE, protocol.STATE), "publish"),
    ("not a dict", protocol.node_uri(NODE, protocol.STATE), "publish"),
    (node(), None, "publish"),
])
def test_everything_else_is_refused_and_never_cached(details, uri, action):
    assert wamp.authorize(details, uri, action, {}) == {"allow": False, "disclose": False, "cache": False}


@pytest_twisted.ensureDeferred
async def test_authenticate_answers_the_nodes_key_as_the_secret_without_salt():
    store = MemoryFleetStore()
    node_id, secret = store.add_node()
    principal = await wamp.authenticate(store, protocol.REALM, node_id, {})
    assert principal == {"secret": secret, "role": protocol.NODE_ROLE}


@pytest.mark.parametrize("realm,authid", [
    (protocol.REALM, OTHER),  # unknown
    (protocol.REALM, "controller"),
    (protocol.REALM, "ABCDEF0123456789"),
    (protocol.REALM, NODE + "\n"),
    (protocol.REALM, None),
    (protocol.REALM, 12345678),
    ("other-realm", NODE),
])
@pytest_twisted.ensureDeferred
async def test_authenticate_refuses_unknown_and_malformed_ids(realm, authid):
    store = MemoryFleetStore()
    store.add_node(NODE)
    with pytest.raises(ApplicationError) as raised:
        await wamp.authenticate(store, realm, authid, {})
    assert raised.value.error == wamp.NOT_AUTHORIZED


def test_only_auth_errors_are_fatal_to_the_controllers_session():
    assert wamp.is_auth_error(ApplicationError("wamp.error.not_authorized"))
    assert not wamp.is_auth_error(ApplicationError("wamp.error.no_such_procedure"))
    assert not wamp.is_auth_error(ConnectionRefusedError())


@pytest.mark.parametrize("host,url", [("0.0.0.0", "ws://127.0.0.1:9086/ws"), ("::", "ws://[::1]:9086/ws"),
                                      ("192.0.2.7", "ws://192.0.2.7:9086/ws")])
def test_the_embedded_router_is_joined_locally_even_when_it_listens_everywhere(tmp_path, host, url):
    assert router.EmbeddedRouter(Clock(), tmp_path, host, 9086, TICKET).url == url


def test_the_embedded_routers_config_file_is_private_and_its_command_line_names_it(tmp_path):
    embedded = router.EmbeddedRouter(Clock(), tmp_path, "127.0.0.1", 9086, TICKET, crossbar="/x/crossbar")
    path = embedded.write_config()
    assert path == tmp_path / "router" / ".crossbar" / "config.json"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert json.loads(path.read_text()) == router.router_config("127.0.0.1", 9086, TICKET)
    spec = embedded.spec()
    assert spec.argv[:4] == ("/x/crossbar", "start", "--cbdir", str(path.parent))
    assert "PARADROP_CROSSBAR" not in spec.environment()  # the daemon's environment is not inherited


class TestStaleCrossbar:
    """Which process a crossbar node.pid names is one to stop: a fake /proc, with the pid reused or not."""

    def make(self, tmp_path, title=b"crossbar-controller\0", started_ticks=100, state="S", btime=1000):
        ticks = os.sysconf("SC_CLK_TCK")
        proc = tmp_path / "proc"
        (proc / "42").mkdir(parents=True)
        (proc / "stat").write_text(f"cpu 1 2 3\nbtime {btime}\n")
        fields = [state, "1"] + ["0"] * 17 + [str(started_ticks * ticks)]
        (proc / "42" / "stat").write_text("42 (crossbar-con) " + " ".join(fields) + " 0 0\n")
        (proc / "42" / "cmdline").write_bytes(title)
        cbdir = tmp_path / "cb"
        cbdir.mkdir()
        (cbdir / "node.pid").write_text(json.dumps({"pid": 42, "argv": ["crossbar", "start"]}))
        os.utime(cbdir / "node.pid", (btime + 110, btime + 110))
        return cbdir, proc

    def test_the_crossbar_that_wrote_node_pid_is_stale(self, tmp_path):
        assert router.stale_crossbar(*self.make(tmp_path)) == (42, 1100.0)

    @pytest.mark.parametrize("change", [{"started_ticks": 200}, {"title": b"python3\0server.py\0"}, {"state": "Z"}])
    def test_a_reused_pid_another_program_or_a_zombie_is_not(self, tmp_path, change):
        assert router.stale_crossbar(*self.make(tmp_path, **change)) is None

    def test_no_or_a_torn_node_pid_names_nothing(self, tmp_path):
        cbdir, proc = self.make(tmp_path)
        (cbdir / "node.pid").write_text("{\"pid\": ")
        assert router.stale_crossbar(cbdir, proc) is None
        (cbdir / "node.pid").unlink()
        assert router.stale_crossbar(cbdir, proc) is None


class Observer:
    def __init__(self):
        self.heard = []

    def __getattr__(self, name):
        return lambda *args: self.heard.append((name,) + args)


def test_node_events_are_attributed_to_the_topics_node_and_unknown_topics_dropped():
    observer = Observer()
    session = wamp.ControllerSession(Clock(), "ws://127.0.0.1:1/ws", TICKET, MemoryFleetStore(), observer)
    for uri, args, kwargs in [
            (protocol.node_uri(NODE, protocol.STATE), ({"node_id": OTHER},), {}),
            (protocol.node_uri(NODE, protocol.TELEMETRY), (), {"cpu": 1}),
            (protocol.node_uri(NODE, "state.more"), ({},), {}),
            (protocol.node_uri(NODE, "secrets"), ({},), {}),
            ("org.paradrop.node.NOTHEX.state", ({},), {}),
            ("org.paradrop.other", ({},), {})]:
        session._on_node_event(*args, details=details(topic=uri), **kwargs)
    assert observer.heard == [("node_published", NODE, protocol.STATE, {"node_id": OTHER}),
                              ("node_published", NODE, protocol.TELEMETRY, {"cpu": 1})]


def test_events_on_a_nodes_topic_published_by_another_session_are_dropped():
    observer = Observer()
    session = wamp.ControllerSession(Clock(), "ws://127.0.0.1:1/ws", TICKET, MemoryFleetStore(), observer)
    for impostor in [details(OTHER), details(OTHER), details(None, None), details(role=protocol.CONTROLLER_ROLE),
                     details(OTHER, forward_for=[{"session": 1, "authid": NODE, "authrole": protocol.NODE_ROLE}])]:
        session._on_node_event({"node_id": NODE, "chutes": []}, details=impostor)
    assert observer.heard == []
    assert (OTHER, False) in session.impostors


def test_node_sessions_with_node_ids_count_as_nodes_and_callees_of_the_authenticator_as_backends():
    observer = Observer()
    session = wamp.ControllerSession(Clock(), "ws://127.0.0.1:1/ws", TICKET, MemoryFleetStore(), observer)
    session.session, session._authenticator = SimpleNamespace(session_id=9), 77
    session._on_session_join({"session": 1, "authid": NODE, "authrole": protocol.NODE_ROLE})
    session._on_session_join({"session": 2, "authid": "controller", "authrole": protocol.CONTROLLER_ROLE})  # a probe
    session._on_session_join({"session": 3, "authid": "x", "authrole": protocol.NODE_ROLE})
    session._on_session_join("junk")
    session._on_register(2, 78)  # another procedure
    session._on_register(9, 77)  # itself
    session._on_register(5, 77)
    session._on_unregister(5, 78)
    session._on_session_leave(1)
    session._on_unregister(5, 77)
    assert observer.heard == [("node_joined", 1, NODE), ("backend_joined", 5), ("node_left", 1),
                              ("backend_left", 1),  # a leave is anybody's: each side looks the session up
                              ("backend_left", 5)]
    session._on_relay({"wake": []})
    session._on_relay(["not", "a", "dict"])
    assert observer.heard[-1] == ("relayed", {"wake": []})


def test_call_node_refuses_what_is_no_procedure_and_when_not_joined():
    session = wamp.ControllerSession(Clock(), "ws://127.0.0.1:1/ws", TICKET, MemoryFleetStore(), Observer())
    failures = []
    session.call_node(NODE, "shutdown_host").addErrback(failures.append)
    session.call_node("../x", protocol.GET_STATE).addErrback(failures.append)
    session.call_node(NODE, protocol.GET_STATE).addErrback(failures.append)
    assert [type(f.value) for f in failures] == [ValueError, ValueError, ApplicationError]
