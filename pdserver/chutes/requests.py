"""Requests for chute changes, checked and queued the same way whoever asks: the Edge API or a remote command.

What can be checked at once is (4xx naming the field: pdserver.errors, SpecError); the change handler checks again
at run time. Every submission returns the queued Change.
"""
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from twisted.internet import defer

from pdserver.chutes import checks, networks, policy
from pdserver.chutes.networks import NetworkFacts
from pdserver.chutes.source import DESCRIPTION, thd_unpack_project
from pdserver.chutes.spec import ChuteSpec, SpecError, build

# Change types of the chute commands that take nothing but the chute's name.
SIMPLE = ("delete", "start", "stop", "restart")


def spec_from_config(config: dict) -> ChuteSpec:
    """The chute a JSON install/update's ``config`` (a paradrop.yaml as a dict) describes; errors name
    ``config.<field>``. Normal services need their Dockerfile, which only a tar brings."""
    try:
        spec = build(config)
    except SpecError as e:
        field = f"config.{e.field}" if e.field else "config"
        raise SpecError(e.message if e.field else f"config: {e.message}", field) from None
    if any(service.type == "normal" for service in spec.services):
        raise SpecError("normal services need their Dockerfile: upload the project as a tar", "config.services")
    return spec


class ChuteRequests:
    def __init__(self, queue, store, chute_policy: Callable[[], policy.NodePolicy], sources_dir: Path,
                 max_upload_bytes: int, run_in_thread, network_facts: Callable[[], NetworkFacts] = NetworkFacts):
        """``chute_policy()`` and ``network_facts()`` are the node's policy for chutes and its host networks as
        they stand."""
        self._queue = queue
        self._store = store
        self._chute_policy = chute_policy
        self._network_facts = network_facts
        self.sources_dir = sources_dir
        self.max_upload = max_upload_bytes
        self._run_in_thread = run_in_thread

    def installed(self, name: str):
        """The chute's record, or NotFound."""
        return checks.installed(self._store, name)

    def check_supported(self, spec: ChuteSpec) -> None:
        """Refuse what this node cannot give (by its policy, its radios, its free subnets) rather than queue a
        change that fails."""
        policy.check(spec, self._chute_policy())
        record = self._store.get(spec.name)
        others = [a for r in self._store.list() if r.name != spec.name for a in r.networks.values()]
        networks.assign(self._network_facts(), spec, record.networks if record else {}, others)

    def new_source_dir(self) -> Path:
        return self.sources_dir / uuid.uuid4().hex

    def thread_owning(self, dest: Path, f, *args) -> defer.Deferred:
        """Run thread code that creates ``dest``. Cancelling the Deferred (a client that went away) does not stop
        the thread: then wait for it and remove what it made."""
        work = self._run_in_thread(f, *args)
        result = defer.Deferred(lambda _: work.addBoth(lambda _: self.discard(str(dest))))
        work.addCallbacks(lambda value: result.called or result.callback(value),
                          lambda failure: result.called or result.errback(failure))
        return result

    @defer.inlineCallbacks
    def unpack(self, stream: BinaryIO):
        """(description, chute, source dir) from a tar of a chute project, unpacked and validated in a thread.
        The caller keeps or discards the source dir."""
        dest = self.new_source_dir()
        try:
            description, spec = yield self.thread_owning(dest, thd_unpack_project, stream, dest, self.max_upload)
        except SpecError as e:
            raise SpecError(e.message, e.field or DESCRIPTION) from None
        return description, spec, str(dest)

    def discard(self, source: Optional[str]) -> defer.Deferred:
        """Remove an uploaded project (in a thread: a tree of thousands of files)."""
        if not source:
            return defer.succeed(None)
        return self._run_in_thread(shutil.rmtree, source, True)

    def submit(self, type_: str, target: Optional[str], user: Optional[str], params: Optional[dict] = None):
        return self._queue.submit(type_, target, user, params or {})

    def install(self, user, description: dict, spec: ChuteSpec, source: Optional[str]) -> defer.Deferred:
        """Queue the install of a new chute; on any failure the upload goes."""
        return self._submit_upload("install", user, description, spec, source,
                                   lambda: checks.name_free(self._store, description["name"]))

    def update(self, user, chute: str, description: dict, spec: ChuteSpec, source: Optional[str]) -> defer.Deferred:
        """Queue the update of ``chute`` to a newer version; on any failure the upload goes."""
        def check():
            checks.same_chute(description["name"], chute)
            checks.newer(self.installed(chute), description["version"])
        return self._submit_upload("update", user, description, spec, source, check)

    @defer.inlineCallbacks
    def _submit_upload(self, type_, user, description, spec, source, check):
        try:
            self.check_supported(spec)
            check()
            return self.submit(type_, description["name"], user, {"description": description, "source_dir": source})
        except BaseException:
            yield self.discard(source)
            raise

    def simple(self, type_: str, chute: str, user):
        """Queue one of SIMPLE on an installed chute."""
        if type_ not in SIMPLE:
            raise ValueError(type_)
        self.installed(chute)
        return self.submit(type_, chute, user)
