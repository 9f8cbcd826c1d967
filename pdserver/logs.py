"""Logging: JSON lines in the state dir for machines (rotated by size), readable lines on stdout for people, the
last lines in memory for /ws/paradrop_logs; all three behind the one ``log_level``.

Libraries say things at info level that mean nothing to a person running a node: Twisted's "Starting factory" and
"Stopping factory" for every HTTP client connection, "... starting on PORT" and "(TCP Port N Closed)" for every
listener, autobahn's narration of each connection attempt, the Docker SDK's and urllib3's stdlib logging. Those
lines are kept, at debug level: the ones we can name are moved there on their way in (whichever pool, endpoint or
library made the factory), and the stdlib's records below warning are bridged in at debug.
"""
import logging
import re
import sys
from pathlib import Path

from twisted.logger import (FilteringLogObserver, ILogObserver, LogLevel, LogLevelFilterPredicate, Logger,
                            LogPublisher, globalLogBeginner, jsonFileLogObserver, textFileLogObserver)
from zope.interface import implementer

from pdserver.settings import Settings

JSON_LOG = "pdserver.jsonl"
FILE_MODE = 0o600

# Twisted's Factory.doStart / doStop (twisted.internet.protocol): one pair per outgoing HTTP connection.
_FACTORY_CHATTER = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})
# twisted.python.log.msg lines of listening ports (tcp.Port, unix.Port) and of noisy protocols.
_LEGACY_CHATTER = re.compile(r".* starting on \S+|\((?:TCP |UDP |UNIX )?Port \S+ Closed\)|"
                             r"(?:Starting|Stopping) (?:factory|protocol) .*")

# Libraries whose info lines narrate their own routine (autobahn: each connection attempt of the cloud link).
_CHATTY_NAMESPACES = ("autobahn.", "txaio.")
# autobahn's Component on every attempt to reach a router: a warning that it tries (narration), an error when the
# attempt fails (the Component retries: a warning). The node's and controller's own lines say what the link does.
_AUTOBAHN_LEVELS = {
    'trying transport {transport_idx} ("{transport_url}") using connect delay {transport_delay}': LogLevel.debug,
    "Connection failed: {error}": LogLevel.warn,
    "Connection failed with OS error: {msg}": LogLevel.warn,
}

_STDLIB_LEVELS = ((logging.CRITICAL, LogLevel.critical), (logging.ERROR, LogLevel.error),
                  (logging.WARNING, LogLevel.warn))


def is_chatter(event: dict) -> bool:
    """A library's routine line: a factory or port starting or stopping, autobahn's info."""
    if event.get("log_format") in _FACTORY_CHATTER:
        return True
    if str(event.get("log_namespace", "")).startswith(_CHATTY_NAMESPACES):
        return event.get("log_level") is LogLevel.info
    if event.get("log_namespace") == "log_legacy" and not event.get("isError"):
        text = event.get("log_text")
        if text is None:
            text = " ".join(str(m) for m in event.get("message", ()))
        return bool(_LEGACY_CHATTER.fullmatch(text))
    return False


def level_of(event: dict):
    """The level a person should see ``event`` at: chatter at debug, autobahn's retries as above, the rest as
    logged."""
    if is_chatter(event):
        return LogLevel.debug
    if str(event.get("log_namespace", "")).startswith(_CHATTY_NAMESPACES):
        return _AUTOBAHN_LEVELS.get(event.get("log_format"), event.get("log_level"))
    return event.get("log_level")


@implementer(ILogObserver)
class Relevel:
    """Passes events to ``observer`` at the level ``level_of`` gives them: library chatter at debug."""

    def __init__(self, observer):
        self._observer = observer

    def __call__(self, event: dict) -> None:
        level = level_of(event)
        if level is not event.get("log_level"):
            event = dict(event, log_level=level)
        self._observer(event)


class StdlibBridge(logging.Handler):
    """Records of the stdlib's ``logging`` (the Docker SDK, urllib3, pyroute2) as Twisted log events in the
    logger's namespace: warning and above at their level, the rest at debug."""

    def emit(self, record: logging.LogRecord) -> None:
        level = next((twisted for stdlib, twisted in _STDLIB_LEVELS if record.levelno >= stdlib), LogLevel.debug)
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg!r} (unformattable arguments)"
        Logger(namespace=record.name).emit(level, "{text}", text=text)


def rotating_file(log_dir: Path, max_bytes: int, files: int):
    """The JSON log as a file that rotates to ``.1``, ``.2``... when it reaches ``max_bytes``, keeping ``files``
    files in all; each is at most ``max_bytes`` plus one record."""
    from twisted.python.logfile import LogFile
    return LogFile(JSON_LOG, str(log_dir), rotateLength=max_bytes, defaultMode=FILE_MODE,
                   maxRotatedFiles=files - 1)


def build_observer(log_dir: Path, level: str = "info", stdout=None, recent=None,
                    max_bytes: int = Settings.log_max_bytes, files: int = Settings.log_files) -> Relevel:
    """The observer of ``start_logging``: library chatter moved to debug, then the JSON file, ``stdout`` and
    ``recent``, each filtered at ``level``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    if recent is None:
        from pdserver.monitor.node_log import NODE_LOG
        recent = NODE_LOG
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    sinks = [jsonFileLogObserver(rotating_file(log_dir, max_bytes, files), recordSeparator=""),
             textFileLogObserver(stdout or sys.stdout), recent]
    return Relevel(LogPublisher(*(FilteringLogObserver(sink, [predicate]) for sink in sinks)))


def bridge_stdlib(level: str) -> StdlibBridge:
    """Route the stdlib's ``logging`` into ours (replacing an earlier bridge); below debug, records under warning
    are not even made."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibBridge)]:
        root.removeHandler(handler)
    bridge = StdlibBridge()
    root.addHandler(bridge)
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return bridge


def plain_autobahn_text() -> None:
    """autobahn styles the arguments of its log lines with click's terminal colours whenever click can be
    imported (pdtools needs it), and does so for every WAMP message sent or received, even when the line is then
    dropped: about a tenth of a controller's CPU in a deployment. Our logs are plain text. Called by the modules
    that import autobahn (never at start: an unprovisioned node does not import autobahn at all)."""
    import autobahn.util
    autobahn.util._HAS_CLICK = False


def start_logging(log_dir: Path, level: str = "info", stdout=None, recent=None,
                  max_bytes: int = Settings.log_max_bytes, files: int = Settings.log_files) -> None:
    """``recent`` (by default the node's NodeLog) keeps the last lines for /ws/paradrop_logs."""
    observer = build_observer(log_dir, level, stdout, recent, max_bytes, files)
    bridge_stdlib(level)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
