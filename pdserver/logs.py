"""Logging: JSON lines in the state dir for machines, readable lines on stdout for people, the last lines in memory
for /ws/paradrop_logs."""
import io
import sys
from pathlib import Path

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
                            jsonFileLogObserver, textFileLogObserver)

from pdserver.monitor.node_log import NODE_LOG


def start_logging(log_dir: Path, level: str = "info", stdout=None, recent=None) -> None:
    """``recent`` (by default the node's NodeLog) keeps the last lines for /ws/paradrop_logs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    json_file = io.open(str(log_dir / "pdserver.jsonl"), "a", encoding="utf-8")
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    observers = [
        FilteringLogObserver(jsonFileLogObserver(json_file, recordSeparator=""), [predicate]),
        FilteringLogObserver(textFileLogObserver(stdout or sys.stdout), [predicate]),
        FilteringLogObserver(recent if recent is not None else NODE_LOG, [predicate]),
    ]
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
