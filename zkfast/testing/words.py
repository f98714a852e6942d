"""Four-letter words: how a test asks a server whether it serves, and in which role."""

from __future__ import annotations

import socket
import time

READ_LIMIT_BYTES = 16 * 1024 * 1024


def four_letter(host: str, port: int, word: str, timeout_s: float = 5.0) -> str:
    """Send a four-letter word (`srvr`, `mntr`, `conf`, ...) and return the whole answer; the server
    closes the connection after it. OSError if it cannot be reached or does not answer in time."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(word.encode("ascii"))
        chunks: list[bytes] = []
        size = 0
        while size < READ_LIMIT_BYTES:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    return b"".join(chunks).decode("utf-8", "replace")


def mode_of(srvr_answer: str) -> str | None:
    """The `Mode:` of a `srvr` answer (standalone, leader, follower, observer, read-only); None when
    the server does not serve (it answers `This ZooKeeper instance is not currently serving requests`)."""
    for line in srvr_answer.splitlines():
        if line.startswith("Mode: "):
            return line[6:].strip()
    return None


def setting_of(conf_answer: str, key: str) -> str | None:
    """One `key=value` line of a `conf` answer."""
    prefix = key + "="
    for line in conf_answer.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None
