"""Server logging (zkfast/log.py) and the operator warnings Apache ZooKeeper logs, checked on a real zkfast."""

from __future__ import annotations

import logging
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from testbase.process import ZkfastProcess

from zkfast.log import level_name, parse_level, resolve_level, setup_logging

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[myid:\] - (\w+) +\[(\S+):(\w+)@(\d+)\] - (.*)$")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    setup_logging(level, None)  # closes what the test installed
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_lines_read_like_apaches(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "logs" / "zkfast.log"
    setup_logging("INFO", log_file)
    logging.getLogger("zkfast.storage.txnlog").warning("fsync-ing took %dms", 1234)
    logging.getLogger("zkfast.x").debug("not shown at INFO")
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    m = LINE.match(lines[0])
    assert m, lines[0]
    assert m.group(1) == "WARN" and m.group(2) == "MainThread" and m.group(3) == "test_log"
    assert m.group(5) == "fsync-ing took 1234ms"


def test_the_log_file_rotates_by_size(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "zkfast.log"
    setup_logging("DEBUG", log_file, max_bytes=2000, backup_count=3)
    for i in range(200):
        logging.getLogger("zkfast").info("line %d %s", i, "x" * 50)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["zkfast.log", "zkfast.log.1", "zkfast.log.2", "zkfast.log.3"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert "line 199 " in log_file.read_text()


def test_levels_come_from_the_option_then_the_environment() -> None:
    assert resolve_level(None, {}) == logging.INFO
    assert resolve_level(None, {"ZOO_LOG4J_PROP": "WARN,ROLLINGFILE"}) == logging.WARNING
    assert resolve_level(None, {"ZOO_LOG4J_PROP": "ROLLINGFILE"}) == logging.INFO
    assert resolve_level(None, {"ZKFAST_LOG_LEVEL": "debug", "ZOO_LOG4J_PROP": "ERROR"}) == logging.DEBUG
    assert resolve_level("error", {"ZKFAST_LOG_LEVEL": "debug"}) == logging.ERROR
    assert parse_level("TRACE") == logging.DEBUG and parse_level("fatal") == logging.CRITICAL
    assert [level_name(parse_level(n)) for n in ("INFO", "WARNING", "WARN", "OFF")] == ["INFO", "WARN", "WARN", "OFF"]
    with pytest.raises(ValueError, match="ZKFAST_LOG_LEVEL"):
        resolve_level(None, {"ZKFAST_LOG_LEVEL": "loud"})
    with pytest.raises(ValueError):
        resolve_level("loud", {})


def _wait_for(proc: ZkfastProcess, text: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in proc.log_tail(200_000):
            return True
        time.sleep(0.05)
    return False


def test_operator_warnings_are_logged() -> None:
    """Apache's warnings for a slow txn log sync, a client over its connection limit and a frame over
    jute.maxbuffer: the same words in zkfast's log."""
    proc = ZkfastProcess(cfg={"maxClientCnxns": "1", "fsync.warningthresholdms": "0", "jute.maxbuffer": "4096"})
    proc.start()
    try:
        zk = KazooClient(hosts=proc.address)
        zk.start(timeout=30)
        try:
            zk.create("/w", b"x")
            assert _wait_for(proc, "fsync-ing the write ahead log in")
            assert "which will adversely effect operation latency" in proc.log_tail(200_000)
            with socket.create_connection((proc.host, proc.port), timeout=5) as extra:
                extra.recv(1)  # closed at once
            assert _wait_for(proc, "Too many connections from 127.0.0.1 - max is 1")
        finally:
            zk.stop()
            zk.close()
        time.sleep(0.2)  # the server lets go of the session's connection
        with socket.create_connection((proc.host, proc.port), timeout=5) as big:
            big.sendall(struct.pack(">i", 1_000_000) + b"\0" * 100)
            big.recv(1)
        assert _wait_for(proc, "Len error")
    finally:
        proc.stop()
        proc.cleanup()
