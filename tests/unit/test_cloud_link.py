"""CloudLink over an in-memory session (ICloudSession): what it publishes on join, for a remote command's change
(its progress coalesced per window, its end with the command's key) and after it (one state per burst, with the
command), telemetry on the host config's interval, and nothing while not joined. The real queue, journal and
commands; a Clock."""
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pdserver.auth.audit import AuditLog
from pdserver.changes.journal import ChangeJournal
from pdserver.changes.queue import ChangeQueue
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.requests import ChuteRequests
from pdserver.chutes import naming
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, ChuteRecord, ChuteStore
from pdserver.cloud import protocol, provisioning
from pdserver.cloud.commands import CommandLog, RemoteCommands
from pdserver.cloud.link import WINDOW, CloudLink, ICloudSession
from pdserver.containers.memory import MemoryEngine
from pdserver.containers.spec import ContainerSpec
from pdserver.monitor.chutes import ChuteMonitor
from pdserver.monitor.events import ContainerEvents
from tests.unit.memory_node import memory_database

CHUTE = {"name": "web", "version": 1,
         "services": {"main": {"type": "light", "image": "busybox", "command": ["sleep", "1000"]}}}
RECORD = provisioning.ProvisionRecord("ab" * 8, "secret", None, "ws://127.0.0.1:9/ws")
NAMES = ChuteNames("node-1")
IMAGE = "paradrop/busybox:latest"


@implementer(ICloudSession)
class MemorySession:
    def __init__(self, reactor, record, retry, procedures, on_join, on_leave):
        self.record, self.procedures = record, procedures
        self._on_join, self._on_leave = on_join, on_leave
        self.joined = False
        self.started = self.stopped = False
        self.published = []

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True
        return defer.succeed(None)

    def publish(self, suffix, message):
        assert self.joined, "published while not joined"
        self.published.append((suffix, message))
        return defer.succeed(None)

    def join(self):
        self.joined = True
        self._on_join()

    def leave(self):
        self.joined = False
        self._on_leave("wamp.close.transport_lost")

    def of(self, suffix):
        return [m for s, m in self.published if s == suffix]


class Telemetry:
    def current(self):
        return defer.succeed({"memory": {"total": 1}})


@pytest.fixture
def link(tmp_path):
    conn, clock, sessions, held = memory_database(), Clock(), [], []

    def install(context):
        """Progress "working"; with ``link.hold`` set, the change then waits on a Deferred in ``link.held``."""
        context.progress("working")
        if link.hold:
            held.append((context, defer.Deferred()))
            return held[-1][1]
    queue = ChangeQueue(ChangeJournal(conn), {"install": install}, clock)
    chutes = ChuteStore(conn)
    requests = ChuteRequests(queue, chutes, lambda: NodePolicy.from_config({}, 8080, 64 * 1024 * 1024),
                             tmp_path / "sources", 1024 * 1024, lambda f, *args: defer.maybeDeferred(f, *args))
    audit = AuditLog(conn, clock.seconds)
    commands = RemoteCommands(requests, queue, chutes, CommandLog(conn), audit, clock)
    record_file = provisioning.ProvisionFile(tmp_path / "cloud.json")
    record_file.save(RECORD)

    engine = MemoryEngine(clock, images={IMAGE: {}}, owner_label=naming.LABEL_NODE)
    events = ContainerEvents(clock, engine, naming.LABEL_NODE, rand=lambda: 0.5)
    events.startService()

    def factory(*args):
        sessions.append(MemorySession(*args))
        return sessions[-1]
    link = CloudLink(clock, record_file, {}, commands, queue, chutes, Telemetry(),
                     lambda: {"enabled": True, "interval": 30}, audit, session_factory=factory, events=events,
                     monitor=ChuteMonitor(engine, NAMES, clock, events))
    queue.plug({}, on_finished=link.change_finished)
    queue.startService()
    link.startService()
    link.clock, link.sessions, link.commands, link.hold, link.held = clock, sessions, commands, False, held
    link.engine, link.chutes = engine, chutes
    yield link
    events.stopService()


def running_chute(link, name="web", restart="no"):
    """A chute recorded running with its one container started (Docker's restart policy ``restart``)."""
    description = dict(CHUTE, name=name)
    build(description)
    link.chutes.save(ChuteRecord(name, "1", RUNNING, description, 3, None, 0.0, 0.0, "vol"))
    container = NAMES.container(name, "main", 3)
    link.engine.create_container(ContainerSpec(container, IMAGE, restart_policy={"Name": restart}, labels={
        **naming.labels(name, "1", 3, "main"), **NAMES.node_labels()}))
    link.engine.start_container(container)
    return container


def chute_states(session):
    return [{c["name"]: c["state"] for c in state["chutes"]} for state in session.of(protocol.STATE)]


def test_the_memory_session_and_the_real_one_provide_the_interface():
    from pdserver.cloud.wamp import WampSession
    verifyObject(ICloudSession, MemorySession(None, RECORD, {}, {}, None, None))
    assert ICloudSession.implementedBy(WampSession)


def test_on_join_the_state_then_telemetry_every_interval_and_nothing_after_leaving(link):
    session = link.sessions[0]
    assert session.started and session.record == RECORD
    assert set(session.procedures) == set(protocol.PROCEDURES)
    session.join()
    assert link.status()["connected"] and link.status()["last_error"] is None
    assert session.of(protocol.STATE) == [{"node_id": RECORD.node_id, "version": session.of(protocol.STATE)[0][
        "version"], "time": 0.0, "chutes": [], "commands": []}]
    link.clock.advance(0)
    link.clock.advance(30)
    assert session.of(protocol.TELEMETRY) == [{"memory": {"total": 1}}] * 2
    session.leave()
    assert link.status() | {"last_connected": None} == {
        "provisioned": True, "routerId": RECORD.node_id, "pdserver": None, "wampRouter": RECORD.wamp_router,
        "connected": False, "last_connected": None, "last_error": "wamp.close.transport_lost"}
    link.clock.advance(300)
    assert len(session.of(protocol.TELEMETRY)) == 2


def test_a_remote_command_s_change_is_reported_from_queued_to_its_end_then_the_state(link):
    session = link.sessions[0]
    session.join()
    answer = session.procedures[protocol.INSTALL_CHUTE](key="dep-1", user="alice", role="owner", config=CHUTE)
    change_id = answer.result["change_id"]
    link.clock.advance(0)
    link.clock.advance(0)
    events = [(e["change_id"], e["key"], e["state"], e["message"]) for e in session.of(protocol.CHANGE)]
    assert events == [(change_id, "dep-1", "succeeded",
                       f"change {change_id} started\nworking\nchange {change_id} succeeded")]  # done at once
    assert len(session.of(protocol.STATE)) == 1  # the join's; the change's comes at the end of the window
    link.clock.advance(WINDOW)
    assert len(session.of(protocol.STATE)) == 2
    assert session.of(protocol.STATE)[-1]["commands"] == [{"key": "dep-1", "change_id": change_id,
                                                           "state": "succeeded"}]
    assert session.procedures[protocol.GET_STATE]().result["commands"] == session.of(protocol.STATE)[-1]["commands"]


def test_progress_goes_out_at_most_once_per_window_and_the_rest_with_the_end(link):
    session = link.sessions[0]
    session.join()
    link.hold = True
    change_id = session.procedures[protocol.INSTALL_CHUTE](key="dep-3", user="alice", role="owner",
                                                           config=CHUTE).result["change_id"]
    link.clock.advance(0)
    (context, hold), = link.held
    context.progress("pulling")
    assert session.of(protocol.CHANGE) == []
    link.clock.advance(WINDOW)
    started = f"change {change_id} started\nworking\npulling"
    assert [(e["state"], e["message"]) for e in session.of(protocol.CHANGE)] == [("running", started)]
    context.progress("starting")
    context.progress("started")
    link.clock.advance(WINDOW / 2)
    assert len(session.of(protocol.CHANGE)) == 1
    hold.callback(None)
    link.clock.advance(0)
    assert [(e["change_id"], e["key"], e["state"], e["message"]) for e in session.of(protocol.CHANGE)] == [
        (change_id, "dep-3", "running", started),
        (change_id, "dep-3", "succeeded", f"starting\nstarted\nchange {change_id} succeeded")]
    link.clock.advance(WINDOW)
    assert len(session.of(protocol.CHANGE)) == 2


def test_one_state_message_for_a_burst_of_changes_and_at_once_on_join(link):
    session = link.sessions[0]
    session.join()
    assert len(session.of(protocol.STATE)) == 1
    for key in ("dep-4", "dep-5"):
        session.procedures[protocol.INSTALL_CHUTE](key=key, user="alice", role="owner",
                                                   config=dict(CHUTE, name=f"web{key[-1]}"))
        link.clock.advance(0)
        link.clock.advance(WINDOW / 4)
    assert len(session.of(protocol.STATE)) == 1
    link.clock.advance(WINDOW)
    states = session.of(protocol.STATE)
    assert len(states) == 2 and {c["key"] for c in states[-1]["commands"]} == {"dep-4", "dep-5"}
    assert all(c["state"] == "succeeded" for c in states[-1]["commands"])
    link.clock.advance(10 * WINDOW)
    assert len(session.of(protocol.STATE)) == 2
    session.leave()
    session.join()
    assert len(session.of(protocol.STATE)) == 3


def test_changes_while_not_joined_publish_nothing_and_the_next_join_sends_the_state(link):
    session = link.sessions[0]
    link.commands.run(protocol.INSTALL_CHUTE, key="dep-2", user="alice", role="owner", config=CHUTE)
    link.clock.advance(0)
    link.clock.advance(0)
    assert session.published == []
    session.join()
    assert session.of(protocol.STATE)[0]["commands"][0]["key"] == "dep-2"


def test_provisioning_again_replaces_the_session_and_unprovisioning_stops_it(link, tmp_path):
    first = link.sessions[0]
    other = provisioning.ProvisionRecord("cd" * 8, "other", None, "ws://127.0.0.1:9/ws")
    link.provision(other, "paradrop")
    assert first.stopped and link.sessions[1].record == other and link.sessions[1].started
    link.unprovision("paradrop")
    assert link.sessions[1].stopped and not (tmp_path / "cloud.json").exists()
    assert link.status()["provisioned"] is False


def test_a_container_dying_behind_the_node_s_back_sends_the_state_at_once_and_its_return_after_the_window(link):
    container = running_chute(link)
    session = link.sessions[0]
    session.join()
    link.clock.advance(WINDOW)
    assert chute_states(session) == [{"web": "running"}]
    link.engine.exit_container(container, 137)
    link.clock.advance(0)
    assert chute_states(session)[1:] == [{"web": "exited"}]
    link.clock.advance(WINDOW / 2)
    link.engine.start_container(container)  # Docker's restart policy, or someone, brings it back
    link.clock.advance(0)
    assert len(session.of(protocol.STATE)) == 2  # at most one a window...
    link.clock.advance(WINDOW / 2)
    assert chute_states(session)[1:] == [{"web": "exited"}, {"web": "running"}]  # ...and the window's last
    link.clock.advance(10 * WINDOW)
    assert len(session.of(protocol.STATE)) == 3


def test_a_chute_restarted_by_its_policy_at_once_is_reported_running_again(link):
    container = running_chute(link, restart="unless-stopped")
    session = link.sessions[0]
    session.join()
    link.clock.advance(WINDOW)
    link.engine.exit_container(container, 1)  # the in-memory engine restarts it in the same instant
    link.clock.advance(WINDOW)
    assert chute_states(session) == [{"web": "running"}, {"web": "running"}]


def test_get_state_answers_the_chutes_live_state_and_a_stopped_chute_as_recorded(link):
    container = running_chute(link)
    session = link.sessions[0]
    session.join()
    link.engine.exit_container(container, 0)
    link.chutes.save(ChuteRecord("off", "2", "stopped", dict(CHUTE, name="off"), 1, None, 0.0, 0.0, "vol"))
    assert session.procedures[protocol.GET_STATE]().result["chutes"] == [
        {"name": "off", "version": "2", "state": "stopped"}, {"name": "web", "version": "1", "state": "exited"}]


def test_container_events_of_a_chute_a_change_is_at_work_on_send_nothing_until_the_change_ends(link):
    web = running_chute(link)
    session = link.sessions[0]
    session.join()
    link.clock.advance(WINDOW)
    link.hold = True
    session.procedures[protocol.INSTALL_CHUTE](key="dep-6", user="alice", role="owner", config=dict(CHUTE, name="new"))
    link.clock.advance(0)
    (context, hold), = link.held
    starting = NAMES.container("new", "main", 4)  # the change's own container comes and goes
    link.engine.create_container(ContainerSpec(starting, IMAGE, labels={**naming.labels("new", "1", 4, "main"),
                                                                        **NAMES.node_labels()}))
    link.engine.start_container(starting)
    link.engine.exit_container(starting, 1)
    link.clock.advance(WINDOW)
    assert len(session.of(protocol.STATE)) == 1
    link.engine.exit_container(web, 0)
    link.clock.advance(0)
    assert chute_states(session)[1:] == [{"web": "exited"}]
    hold.callback(None)
    link.clock.advance(WINDOW)
    assert len(session.of(protocol.STATE)) == 3  # the change's own


def test_no_container_event_publishes_while_not_joined(link):
    container = running_chute(link)
    link.engine.exit_container(container, 0)
    link.clock.advance(WINDOW)
    assert link.sessions[0].published == []


def test_a_progressive_call_is_answered_when_its_change_ends_with_the_chutes_and_nothing_is_published(link):
    running_chute(link)
    session = link.sessions[0]
    session.join()
    link.clock.advance(WINDOW)
    published = len(session.published)
    answer = session.procedures[protocol.INSTALL_CHUTE](key="dep-7", user="alice", role="owner",
                                                        config=dict(CHUTE, name="new"), progress=[].append)
    got = []
    answer.addCallback(got.append)
    assert got == []  # queued, not answered
    link.clock.advance(0)
    link.clock.advance(0)
    change_id = got[0]["change_id"]
    assert got == [{"change_id": change_id, "duplicate": False, "state": "succeeded",
                             "message": f"change {change_id} started\nworking\nchange {change_id} succeeded",
                             "version": session.of(protocol.STATE)[0]["version"],
                             "chutes": [{"name": "web", "version": "1", "state": "running"}]}]
    link.clock.advance(10 * WINDOW)
    assert len(session.published) == published  # one call, no change event, no state message


def test_a_progressive_call_s_progress_comes_as_its_progressive_results_once_a_window(link):
    session = link.sessions[0]
    session.join()
    link.hold = True
    heard = []
    answer = session.procedures[protocol.INSTALL_CHUTE](key="dep-8", user="alice", role="owner", config=CHUTE,
                                                        progress=heard.append)
    link.clock.advance(0)
    (context, hold), = link.held
    context.progress("pulling")
    link.clock.advance(WINDOW)
    assert [(p["key"], p["state"], p["message"].splitlines()[-1]) for p in heard] == [("dep-8", "running",
                                                                                       "pulling")]
    again = session.procedures[protocol.INSTALL_CHUTE](key="dep-8", user="alice", role="owner", config=CHUTE,
                                                       progress=heard.append)  # redelivered: waits for the first run
    context.progress("starting")
    hold.callback(None)
    link.clock.advance(0)
    assert answer.result["state"] == again.result["state"] == "succeeded"
    assert (answer.result["duplicate"], again.result["duplicate"]) == (False, True)
    assert answer.result["message"].splitlines() == ["starting", f"change {answer.result['change_id']} succeeded"]
    assert session.of(protocol.CHANGE) == [] and len(heard) == 1
    late = session.procedures[protocol.INSTALL_CHUTE](key="dep-8", user="alice", role="owner", config=CHUTE,
                                                      progress=heard.append)
    assert (late.result["change_id"], late.result["duplicate"], late.result["state"]) == (
        answer.result["change_id"], True, "succeeded")  # answered at once: its change has ended
    assert len(link.held) == 1  # it ran once


def test_a_cancelled_progressive_call_leaves_its_change_s_end_to_the_change_event_and_the_state(link):
    session = link.sessions[0]
    session.join()
    link.hold = True
    answer = session.procedures[protocol.INSTALL_CHUTE](key="dep-9", user="alice", role="owner", config=CHUTE,
                                                        progress=[].append)
    link.clock.advance(0)
    (context, hold), = link.held
    answer.cancel()
    answer.addErrback(lambda f: f.trap(defer.CancelledError))
    hold.callback(None)
    link.clock.advance(0)
    assert [(e["key"], e["state"]) for e in session.of(protocol.CHANGE)] == [("dep-9", "succeeded")]
    link.clock.advance(WINDOW)
    assert session.of(protocol.STATE)[-1]["commands"][0] == {"key": "dep-9", "change_id": 1, "state": "succeeded"}
