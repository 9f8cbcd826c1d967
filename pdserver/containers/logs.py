"""Following a container's output: a reader thread, lines delivered on the reactor thread."""
import sys
import threading
from typing import Callable, Iterable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pdserver.containers.streams import LineSplitter

log = Logger()


class LogFollower:
    """One follow of one container's output.

    ``on_line(text)`` is called on the reactor thread for every line, in order, until the stream ends
    (the container stopped or was removed) or ``stop()`` is called. ``done`` fires with None when the
    stream has ended (or errbacks with what broke it); ``stop()`` returns a Deferred of the same moment.
    No line is delivered after ``stop()``."""

    def __init__(self, reactor, name: str, on_line: Callable[[str], None]):
        self._reactor = reactor
        self.name = name
        self._on_line = on_line
        self.done = defer.Deferred()
        self._waiters = []
        self._finished = False
        self._stopped = False
        self._stream = None
        self._lock = threading.Lock()

    def stop(self) -> defer.Deferred:
        with self._lock:
            self._stopped = True
            stream = self._stream
        if stream is not None:
            _close(stream)
        return self._when_done()

    def _when_done(self) -> defer.Deferred:
        if self._finished:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    # reactor thread

    def _deliver(self, line: str) -> None:
        if self._stopped:
            return
        try:
            self._on_line(line)
        except Exception:
            log.failure("log line handler of {name} failed", name=self.name)

    def _finish(self, failure: Optional[Failure]) -> None:
        self._finished = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if failure is not None and not self._stopped:
            self.done.errback(failure)
        else:
            self.done.callback(None)

    # reader thread

    def _thd_run(self, open_stream: Callable[[], Iterable[bytes]], opened: defer.Deferred) -> None:
        call = self._reactor.callFromThread
        try:
            stream = open_stream()
        except Exception:
            call(opened.errback, Failure())
            return
        with self._lock:
            self._stream = stream
            stopped = self._stopped
        call(opened.callback, self)
        if stopped:
            _close(stream)
        splitter = LineSplitter()
        try:
            for chunk in stream:
                for line in splitter.feed(chunk):
                    call(self._deliver, line)
            for line in splitter.flush():
                call(self._deliver, line)
        except Exception:
            call(self._finish, Failure())
        else:
            call(self._finish, None)
        finally:
            _close(stream)


def _close(stream) -> None:
    try:
        stream.close()
    except Exception:  # closed twice, or the stream ended on its own meanwhile: either way it is closed
        log.debug("closing a log stream: {error}", error=str(sys.exc_info()[1]))


def start_follower(reactor, name: str, on_line: Callable[[str], None],
                   thd_open_stream: Callable[[], Iterable[bytes]], thread_name: Optional[str] = None
                   ) -> defer.Deferred:
    """Start a reader thread of its own (a follow lasts as long as the container, so it must not hold a
    thread of the shared pool), named ``thread_name`` (default ``pd-logs-<name>``); fires with the LogFollower
    once the stream is open."""
    follower = LogFollower(reactor, name, on_line)
    opened = defer.Deferred()
    thread = threading.Thread(target=follower._thd_run, args=(thd_open_stream, opened),
                              name=thread_name or f"pd-logs-{name}", daemon=True)
    thread.start()
    return opened
