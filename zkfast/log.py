"""Server logging: Apache ZooKeeper's line format, a size-rotated log file, levels as operators set them.

A line reads like Apache's `%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n`:

    2024-05-01 12:00:00,123 [myid:] - WARN  [zkfast-txnlog:txnlog@420] - fsync-ing the write ahead log ...

(thread name, then the module where Apache names the class). The file rotates by size as log4j's
RollingFileAppender does: `zkfast.log`, then `zkfast.log.1` ... `zkfast.log.10`, 10 MB each.

The level comes from, first to last: `--log-level`, `$ZKFAST_LOG_LEVEL`, the level part of
`$ZOO_LOG4J_PROP` (`INFO,ROLLINGFILE` → INFO, as zkServer.sh passes it), else INFO. log4j's names are
accepted (TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF) as well as Python's (WARNING, CRITICAL).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUP_COUNT = 10
LEVEL_ENV = "ZKFAST_LOG_LEVEL"
LOG4J_ENV = "ZOO_LOG4J_PROP"
FORMAT = "%(asctime)s [myid:%(myid)s] - %(level4j)-5s [%(threadName)s:%(where)s@%(lineno)d] - %(message)s"
OFF = logging.CRITICAL + 10

_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
           "CRITICAL": logging.CRITICAL, "OFF": OFF, "ALL": logging.DEBUG}
_LOG4J_NAMES = {logging.WARNING: "WARN", logging.CRITICAL: "FATAL"}

_myid = ""
_installed: list[logging.Handler] = []


def parse_level(text: str) -> int:
    """A level name (log4j's or Python's, any case) → a logging level; ValueError if unknown."""
    level = _LEVELS.get(text.strip().upper())
    if level is None:
        raise ValueError(f"unknown log level {text!r} (use one of {', '.join(_LEVELS)})")
    return level


def level_name(level: int) -> str:
    """log4j's name of a level (what `start` passes on as --log-level): DEBUG, INFO, WARN, ERROR, FATAL, OFF."""
    if level >= OFF:
        return "OFF"
    return _LOG4J_NAMES.get(level) or logging.getLevelName(level)


def resolve_level(cli_level: str | None, environ: Mapping[str, str]) -> int:
    """--log-level, else $ZKFAST_LOG_LEVEL, else $ZOO_LOG4J_PROP's level, else INFO.

    A bad --log-level or $ZKFAST_LOG_LEVEL raises ValueError naming it; a $ZOO_LOG4J_PROP whose first
    part is no level (it may name appenders only) is ignored."""
    if cli_level:
        return parse_level(cli_level)
    env = environ.get(LEVEL_ENV)
    if env:
        try:
            return parse_level(env)
        except ValueError as e:
            raise ValueError(f"${LEVEL_ENV}: {e}") from None
    prop = environ.get(LOG4J_ENV, "")
    first = prop.split(",", 1)[0].strip()
    if first.upper() in _LEVELS:
        return _LEVELS[first.upper()]
    return logging.INFO


def set_myid(myid: int | None) -> None:
    """The `[myid:N]` of every line from now on (empty for a standalone server, as Apache's)."""
    global _myid
    _myid = "" if myid is None else str(myid)


class _ApacheFields(logging.Filter):
    """Adds the fields FORMAT uses (a filter, so any formatter or handler can share the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.myid = _myid
        record.level4j = _LOG4J_NAMES.get(record.levelno, record.levelname)
        record.where = record.module
        return True


class ApacheFormatter(logging.Formatter):
    """ISO8601 as log4j writes it: `2024-05-01 12:00:00,123`."""

    default_time_format = "%Y-%m-%d %H:%M:%S"
    default_msec_format = "%s,%03d"

    def __init__(self) -> None:
        super().__init__(FORMAT)


def setup_logging(level: str | int, log_file: Path | None, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  backup_count: int = DEFAULT_BACKUP_COUNT, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record at `level` or above to `log_file` (rotated by size) or, without one, to
    `stream` (stderr). Replaces what an earlier call installed; returns the handler.

    With a log file, uncaught exceptions (main thread and others) are logged there too, since a
    daemon's stderr is not where operators look."""
    numeric = parse_level(level) if isinstance(level, str) else level
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed.clear()
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backup_count,
                                                       encoding="utf-8")
        _log_uncaught()
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ApacheFields())
    handler.setFormatter(ApacheFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    _installed.append(handler)
    return handler


def _log_uncaught() -> None:
    log = logging.getLogger("zkfast")
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            log.critical("uncaught exception, exiting", exc_info=(kind, value, tb))
        previous(kind, value, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit and args.exc_value is not None:
            name = args.thread.name if args.thread is not None else "?"
            log.critical("uncaught exception in thread %s", name,
                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    if getattr(sys.excepthook, "__name__", "") != "hook":
        sys.excepthook = hook
    threading.excepthook = thread_hook
