"""Request frames the attacks send, built with `struct` on top of testbase.rawclient (never with
zkfast's codec, so a codec bug cannot hide on both sides), and the little reply parsing they need."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from testbase.rawclient import OPEN, frame, request, u_acl, u_str

CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_CHILDREN = 1, 2, 3, 4, 5, 8
CHECK, MULTI, MULTI_READ = 13, 14, 22
AUTH, SET_WATCHES, SASL, ADD_WATCH, CLOSE_SESSION = 100, 101, 102, 106, -11
# the xids Java's ClientCnxn gives these packets (the servers answer with the same xid)
AUTH_XID, SET_WATCHES_XID = -4, -8
NOTIFICATION_XID = -1
OK, NONODE, NODEEXISTS = 0, -101, -110
ADD_WATCH_PERSISTENT = 0

_REPLY_HEADER = struct.Struct(">iqi")
_INT = struct.Struct(">i")


def i32(v: int) -> bytes:
    return _INT.pack(v)


def boolean(v: bool) -> bytes:
    return b"\1" if v else b"\0"


def reply_header(payload: bytes) -> tuple[int, int, int]:
    """(xid, zxid, err) of a reply frame's payload."""
    return _REPLY_HEADER.unpack_from(payload, 0)


# ------------------------------------------------------------------------------ request bodies

def path_watch(path: str, watch: bool = False) -> bytes:
    """The body of exists, getData and getChildren."""
    return u_str(path) + boolean(watch)


def create_body(path: str, data: bytes = b"", flags: int = 0) -> bytes:
    return u_str(path) + u_str(data) + u_acl(OPEN) + i32(flags)


def set_data_body(path: str, data: bytes, version: int = -1) -> bytes:
    return u_str(path) + u_str(data) + i32(version)


def multi_body(ops: Iterable[tuple[int, bytes]]) -> bytes:
    """A MultiTransactionRecord (or MultiReadRecord): a MultiHeader before each op, then the end
    marker (type -1, done, err -1)."""
    parts = [struct.pack(">i?i", op, False, -1) + body for op, body in ops]
    parts.append(struct.pack(">i?i", -1, True, -1))
    return b"".join(parts)


def set_watches_body(exist_paths: Sequence[str], relative_zxid: int = 0) -> bytes:
    """SetWatches with exist watches only: on paths that do not exist they are kept (data and child
    watches on a missing node fire NodeDeleted at once)."""
    def vec(paths: Sequence[str]) -> bytes:
        return i32(len(paths)) + b"".join(u_str(p) for p in paths)

    return struct.pack(">q", relative_zxid) + vec([]) + vec(exist_paths) + vec([])


def add_watch_body(path: str, mode: int = ADD_WATCH_PERSISTENT) -> bytes:
    return u_str(path) + i32(mode)


def auth_packet(scheme: str, auth: bytes) -> bytes:
    """An AuthPacket frame (addauth)."""
    return frame(request(AUTH_XID, AUTH, i32(0) + u_str(scheme) + u_str(auth)))


def sasl_frame(xid: int, token: bytes) -> bytes:
    return frame(request(xid, SASL, u_str(token)))


def req_frame(xid: int, op: int, body: bytes = b"") -> bytes:
    return frame(request(xid, op, body))


def frame_of_length(length: int, xid: int, path: str) -> bytes:
    """A setData frame whose length prefix is exactly `length` (the data fills the rest)."""
    fixed = len(request(xid, SET_DATA, set_data_body(path, b"")))
    return req_frame(xid, SET_DATA, set_data_body(path, b"x" * (length - fixed)))


# ------------------------------------------------------------------------------ reply bodies

def children_of(payload: bytes) -> list[str]:
    """The names in a getChildren reply (after its 16-byte header)."""
    (n,) = _INT.unpack_from(payload, 16)
    out = []
    pos = 20
    for _ in range(max(n, 0)):
        (ln,) = _INT.unpack_from(payload, pos)
        out.append(payload[pos + 4:pos + 4 + ln].decode())
        pos += 4 + ln
    return out
