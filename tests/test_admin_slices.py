"""Long admin answers are produced in slices between request batches: `wchp` over 50k watches, as a
four-letter word and from the AdminServer, read slowly while a probe client works on the server.

The answer (about 10 MB) is larger than what the kernel's socket buffers take in, so once the reader
stops, the server has produced only the start of it. The probe then adds a watch on the last path
and fires the watch of the second to last one: the rest of the answer, read afterwards, shows both,
which is only possible if the server served the probe between two slices of the answer. Apart from
that the answer is byte for byte the one read at once.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from testbase.process import ZkfastProcess, free_port
from zkfast._datatree import DataTree, Watcher

from zkfast.net import fourletter, serverdata
from zkfast.net.admin import LazyObject, jackson_json, jackson_pieces
from zkfast.server.session import SessionTracker

pytestmark = pytest.mark.timeout(120)

WATCHES = 50_000
PREFIX = "/slices/" + "p" * 160  # long paths: the answer outgrows the socket buffers
PATHS = [f"{PREFIX}/{i:05d}" for i in range(WATCHES)]
SMALL_RCVBUF = 4096


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _exists(xid: int, path: str) -> bytes:
    p = path.encode()
    return _frame(struct.pack(">ii", xid, 3) + struct.pack(">i", len(p)) + p + b"\1")


class Watching:
    """A raw session that sets an exists-watch on each path, pipelined."""

    def __init__(self, address: tuple[str, int], paths: list[str]) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.buf = b""
        self.sock.sendall(_frame(struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16))
        [resp] = self.replies(1)
        self.session_id = struct.unpack_from(">iiq", resp)[2]
        self.sock.sendall(b"".join(_exists(xid, path) for xid, path in enumerate(paths, 1)))
        replies = self.replies(len(paths))
        assert all(struct.unpack_from(">iqi", r)[2] == -101 for r in replies)  # NONODE: watched anyway

    def replies(self, count: int) -> list[bytes]:
        """The next `count` frames that are not notifications."""
        frames: list[bytes] = []
        while len(frames) < count:
            while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack_from(">i", self.buf)[0]:
                data = self.sock.recv(1 << 20)
                assert data, "the server closed the connection"
                self.buf += data
            n = struct.unpack_from(">i", self.buf)[0]
            frame, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            if struct.unpack_from(">i", frame)[0] != -1:
                frames.append(frame)
        return frames

    def rewatch(self, path: str) -> None:
        """Set again a watch that fired."""
        self.sock.sendall(_exists(1 << 30, path))
        self.replies(1)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ZkfastProcess, int, Watching]]:
    admin_port = free_port()
    proc = ZkfastProcess(cfg={"admin.enableServer": "true", "admin.serverPort": str(admin_port),
                              "admin.serverAddress": "127.0.0.1"})
    proc.start()
    watching = Watching((proc.host, proc.port), PATHS)
    try:
        yield proc, admin_port, watching
    finally:
        watching.close()
        proc.stop()
        proc.cleanup()


def _send_buffer_max() -> int:
    """The most the kernel buffers for one socket's sending (tcp_wmem's maximum; 4 MiB by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


def _slow_socket(port: int) -> socket.socket:
    if _send_buffer_max() > 6 << 20:
        pytest.skip("the kernel buffers more than these answers hold: nothing would wait for the reader")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)  # before connecting: the window stays small
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    return s


def _read_all(s: socket.socket, start: bytes = b"") -> bytes:
    chunks = [start]
    while data := s.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def _while_streaming(s: socket.socket, request: bytes, zk_address: str) -> tuple[bytes, int]:
    """Send `request`, read a little of the answer, let the probe change the watches of the last two
    paths, then read the rest; (the whole answer, the probe's session id)."""
    s.sendall(request)
    start = s.recv(1000)
    assert start
    time.sleep(0.3)  # the server fills the socket buffers, then waits for the reader
    probe = KazooClient(hosts=zk_address, timeout=30)
    probe.start(timeout=30)
    try:
        t0 = time.monotonic()
        assert probe.exists(PATHS[-1], watch=lambda e: None) is None  # a watch added ahead of the answer
        probe.create(PATHS[-2], makepath=True)  # fires the watch the answer has not reached yet
        assert time.monotonic() - t0 < 5  # answered while the answer waits for its reader
        return _read_all(s, start), probe.client_id[0]
    finally:
        probe.stop()
        probe.close()
        # the watched paths are back as they were for the next test
        undo = KazooClient(hosts=zk_address, timeout=30)
        undo.start(timeout=30)
        undo.delete(PATHS[-2])
        undo.stop()
        undo.close()


def _blocks(answer: bytes) -> dict[str, bytes]:
    """wchp's text by path: each path's line and its sessions' lines, in the answer's order."""
    out: dict[str, bytes] = {}
    assert answer.endswith(b"\n\n")
    path = ""
    for line in answer[:-1].decode().splitlines(keepends=True):
        if not line.startswith("\t"):
            path = line[:-1]
            out[path] = b""
        out[path] += line.encode()
    return out


def test_wchp_four_letter_word_streams_between_requests(served: tuple[ZkfastProcess, int, Watching]) -> None:
    proc, _, watching = served
    whole = proc.four_letter("wchp").encode()
    assert len(whole) > 8 * (1 << 20)  # more than the kernel's socket buffers hold
    blocks = _blocks(whole)
    sid = f"\t0x{watching.session_id & serverdata.U64:x}\n"
    assert blocks == {p: f"{p}\n{sid}".encode() for p in PATHS}

    with _slow_socket(proc.port) as s:
        streamed, probe_sid = _while_streaming(s, b"wchp", proc.address)
    watching.rewatch(PATHS[-2])
    del blocks[PATHS[-2]]  # its only watch fired before the answer got there
    blocks[PATHS[-1]] += f"\t0x{probe_sid & serverdata.U64:x}\n".encode()
    assert streamed == b"".join(blocks.values()) + b"\n"


def _http_body(raw: bytes) -> tuple[str, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode("iso-8859-1"), body


def test_wchp_admin_command_streams_between_requests(served: tuple[ZkfastProcess, int, Watching]) -> None:
    proc, admin_port, watching = served
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
    conn.request("GET", "/commands/wchp")
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"  # as Jetty sends a body beyond its buffer
    whole = resp.read()
    conn.close()
    fast: dict[str, Any] = json.loads(whole)
    assert fast["path_to_session_ids"] == {p: [watching.session_id] for p in PATHS}
    assert whole.decode() == jackson_json(fast)  # Jackson's layout, whatever the slicing

    with _slow_socket(admin_port) as s:
        raw, probe_sid = _while_streaming(s, b"GET /commands/wchp HTTP/1.1\r\nConnection: close\r\n\r\n",
                                          proc.address)
    watching.rewatch(PATHS[-2])
    head, body = _http_body(raw)
    assert "Content-Length" not in head and "Transfer-Encoding" not in head  # until the connection closes
    expected = dict(fast)
    expected["path_to_session_ids"] = dict(fast["path_to_session_ids"])
    del expected["path_to_session_ids"][PATHS[-2]]
    expected["path_to_session_ids"][PATHS[-1]] = [watching.session_id, probe_sid]
    assert body.decode() == jackson_json(expected)


def test_head_counts_the_streamed_body(served: tuple[ZkfastProcess, int, Watching]) -> None:
    _, admin_port, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
    try:
        conn.request("GET", "/commands/wchs")
        small = conn.getresponse()
        assert small.getheader("Content-Length") == str(len(small.read()))
        conn.request("HEAD", "/commands/wchp")
        head = conn.getresponse()
        assert head.read() == b""
        assert int(head.getheader("Content-Length") or 0) > 8 * (1 << 20)
    finally:
        conn.close()


# ------------------------------------------------------------------------------ in process

class _Conn:
    def __init__(self, sid: int) -> None:
        self.core = Watcher()
        self.core.session_id = sid


class _Server:
    """What the four-letter words and admin commands read, with a real DataTree."""

    def __init__(self, sessions: int, paths_per_session: int) -> None:
        self.config = None
        self.serving = True
        self.tree = DataTree()
        self.sessions = SessionTracker(2000, clock_ms=lambda: 1_000_000)
        self.connections: set[_Conn] = set()
        for s in range(sessions):
            conn = _Conn(0x100 + s)
            self.connections.add(conn)
            self.sessions.track(conn.core.session_id, 4000 + 2000 * (s % 3))
            for i in range(paths_per_session):
                self.tree.watch(b"/w/%d" % (s * paths_per_session + i), conn.core, False)


def test_each_piece_is_bounded_work() -> None:
    server = _Server(sessions=10, paths_per_session=5000)
    for cmd in ("wchp", "wchc", "dump"):
        pieces = fourletter.answer_pieces(server, None, cmd, b"")  # type: ignore[arg-type]
        first = next(pieces)
        sizes = [len(first)] + [len(p) for p in pieces]
        if cmd == "dump":
            assert b"Session Sets (3)/(10):" in first
            continue
        assert len(sizes) > 10, cmd
        assert max(sizes) <= serverdata.SLICE_STEPS * 20, cmd  # at most SLICE_STEPS lines each


def test_walks_tolerate_changes_between_pieces() -> None:
    server = _Server(sessions=4, paths_per_session=3000)
    conns = list(server.connections)
    pieces = fourletter.answer_pieces(server, None, "wchp", b"")  # type: ignore[arg-type]
    text = next(pieces)
    for conn in conns[:2]:  # two connections close: their watches go
        server.tree.remove_watcher(conn.core)
        server.connections.discard(conn)
    text += b"".join(pieces)
    paths = [line for line in text.decode().splitlines() if line.startswith("/")]
    assert len(paths) == len(set(paths)) < 12_000  # none twice; those of the closed ones not reached are gone
    assert set(paths) >= {p.decode() for c in conns[2:] for p in server.tree.watched_paths(c.core, False)}
    assert text.endswith(b"\n\n")

    pieces = fourletter.answer_pieces(server, None, "wchc", b"")  # type: ignore[arg-type]
    text = next(pieces)
    gone = conns[2]
    server.tree.remove_watcher(gone.core)
    server.connections.discard(gone)
    text += b"".join(pieces)
    sessions = [line for line in text.decode().splitlines() if line.startswith("0x")]
    assert len(sessions) == len(set(sessions)) >= 1  # the closed one is left out unless listed already
    assert f"0x{conns[3].core.session_id:x}" in sessions

    pieces = jackson_pieces({"path_to_session_ids": LazyObject(serverdata.watches_by_path(server))})
    body = next(pieces)
    for conn in conns[3:]:
        server.tree.remove_watcher(conn.core)
        server.connections.discard(conn)
    body += b"".join(pieces)
    listed = json.loads(body)["path_to_session_ids"]
    assert len(listed) < 3000  # those of the closed connection not reached yet are gone
    assert body.decode() == jackson_json({"path_to_session_ids": listed})
