"""A byte-level ZooKeeper client built on `struct` only (not zkfast's codec), for differential tests.

It sends hand-built frames to a server and returns the raw frames that come back, so the same
bytes can be sent to Apache ZooKeeper and to zkfast and the answers compared byte for byte.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

READ_TIMEOUT_S = 5.0


def u_str(s: bytes | str | None) -> bytes:
    if s is None:
        return struct.pack(">i", -1)
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">i", len(b)) + b


def u_acl(acl: list[tuple[int, str, str]] | None) -> bytes:
    if acl is None:
        return struct.pack(">i", -1)
    out = struct.pack(">i", len(acl))
    for perms, scheme, ident in acl:
        out += struct.pack(">i", perms) + u_str(scheme) + u_str(ident)
    return out


OPEN = [(31, "world", "anyone")]


def connect_request(timeout_ms: int = 30000, session_id: int = 0, passwd: bytes = b"\0" * 16,
                    last_zxid: int = 0, read_only: bool | None = False) -> bytes:
    body = struct.pack(">iqiq", 0, last_zxid, timeout_ms, session_id) + u_str(passwd)
    if read_only is not None:
        body += b"\1" if read_only else b"\0"
    return body


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def request(xid: int, op: int, body: bytes = b"") -> bytes:
    return struct.pack(">ii", xid, op) + body


@dataclass
class RawSession:
    host: str
    port: int
    sock: socket.socket | None = None
    session_id: int = 0
    passwd: bytes = b""
    timeout_ms: int = 0
    buf: bytes = b""
    frames: list[bytes] = field(default_factory=list)
    closed: bool = False

    def open(self, connect_body: bytes | None = None) -> bytes:
        """Connect and handshake; returns the ConnectResponse payload ('' if the server closed)."""
        self.sock = socket.create_connection((self.host, self.port), timeout=READ_TIMEOUT_S)
        self.sock.sendall(frame(connect_body if connect_body is not None else connect_request()))
        resp = self.read_frame()
        if resp is not None and len(resp) >= 32:
            _, self.timeout_ms, self.session_id = struct.unpack(">iiq", resp[:16])
            n = struct.unpack(">i", resp[16:20])[0]
            self.passwd = resp[20:20 + n]
        return resp or b""

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def read_frame(self, timeout_s: float = READ_TIMEOUT_S) -> bytes | None:
        """The next frame's payload, or None if the server closed the connection."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">i", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from server")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return None
            self.buf += data

    def call(self, xid: int, op: int, body: bytes = b"") -> list[bytes]:
        """Send one request; collect frames up to and including the reply with this xid (or close)."""
        self.send(frame(request(xid, op, body)))
        out = []
        while True:
            f = self.read_frame()
            if f is None:
                out.append(b"<closed>")
                return out
            out.append(f)
            if struct.unpack(">i", f[:4])[0] == xid:
                return out

    def drain(self, wait_s: float = 0.3) -> list[bytes]:
        """Frames that arrive within wait_s (notifications), and whether the server closed."""
        out = []
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                f = self.read_frame(left)
            except TimeoutError:
                return out
            if f is None:
                out.append(b"<closed>")
                return out
            out.append(f)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
