"""Logging: JSON lines in the state dir for machines, readable lines on stdout for people."""
import io
import sys
from pathlib import Path

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
                            jsonFileLogObserver, textFileLogObserver)


def start_logging(log_dir: Path, level: str = "info", stdout=None) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    json_file = io.open(str(log_dir / "pdserver.jsonl"), "a", encoding="utf-8")
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    observers = [
        FilteringLogObserver(jsonFileLogObserver(json_file, recordSeparator=""), [predicate]),
        FilteringLogObserver(textFileLogObserver(stdout or sys.stdout), [predicate]),
    ]
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)
