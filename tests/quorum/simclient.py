"""Simulated clients of the ensemble: a client connection as the server sees it, and a client.

`FakeConnection` is zkfast.net.connection.ClientConnection itself (its queue, a real ConnCore that
frames the bytes and answers fast reads, flush, close, close_after_flush, abort, established,
send_raw) over a simulated pipe instead of a socket; only its wake-up is scheduled on the simulated
clock. `SimClient` speaks the client protocol over it as a ZooKeeper client library does: a
ConnectRequest (a new session, or its own to move it to this server), requests with increasing xids,
a ping when idle for a third of its session timeout, a read timeout of two thirds of it and a connect
timeout of its share of the server list; a lost connection leaves its requests' outcome unknown.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from zkfast._jute import (
    OP_CREATE,
    OP_GET_DATA,
    OP_PING,
    OP_RECONFIG,
    OP_SET_DATA,
    OP_SYNC,
    Reader,
    WriteBuffer,
)

from zkfast.net.connection import ClientConnection
from zkfast.server.zkserver import ZooKeeperServer

from .simports import CLIENT_PORT, MAX_FRAME_BYTES, End, Pipe, Proc, connect, host_of

OPEN_ACL = [(31, "world", "anyone")]
XID_PING = -2
XID_NOTIFICATION = -1
CLIENT_DELAY_MS = 2  # client <-> server latency bound


# ------------------------------------------------------------------------------------------------ server side


class SimListener:
    """The client listener a connection belongs to, as far as the connection and the server ask it
    (connection limits are not simulated)."""

    tls = False
    max_frame_bytes = MAX_FRAME_BYTES

    def admit(self, conn: Any) -> bool:
        return True

    def admit_session(self, conn: Any, session_id: int) -> bool:
        return True

    def session_established(self, conn: Any) -> None:
        pass

    def release(self, conn: Any) -> None:
        pass


LISTENER = SimListener()


class FakeConnection(ClientConnection):
    """zkfast.net.connection's client connection over a Pipe: only its wake-up runs on the
    simulated clock instead of asyncio's."""

    def __init__(self, server: ZooKeeperServer, soon: Callable[[Callable[[], None]], None]) -> None:
        super().__init__(server, LISTENER)  # type: ignore[arg-type]
        self.soon = soon

    def wake(self) -> None:
        if not self._wake_scheduled and not self.closed:
            self._wake_scheduled = True
            self.soon(self._process_buffered)


# ------------------------------------------------------------------------------------------------ client side


class ClientHost(Protocol):
    """What a client needs of the simulator."""

    now: int
    pipes: set[Pipe]

    def rand(self, lo: int, hi: int) -> int: ...
    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None: ...
    def log(self, msg: str) -> None: ...
    def proc_of(self, sid: int) -> Proc | None: ...
    def established(self, client: SimClient) -> None: ...
    def sent(self, op: Op) -> None: ...
    def replied(self, op: Op) -> None: ...
    def reconnect_to(self, client: SimClient) -> int: ...
    def session_zxid(self, client: SimClient, zxid: int) -> None: ...


@dataclass(eq=False)
class Op:
    """A request and, once it came, its reply."""

    client: SimClient
    kind: str                  # create, set, get, sync, reconfig
    xid: int
    session_id: int
    path: bytes = b""
    data: bytes = b""
    sid: int = 0               # the server it was sent to
    err: int | None = None     # the reply's error code; None: no reply (yet)
    zxid: int | None = None    # the reply's zxid
    logged: int | None = None  # the zxid of its txn, once a leader logged it
    value: bytes | None = None  # a read's data, a reconfig's new config
    lost: bool = False         # its connection closed first: the outcome is unknown
    ephemeral: bool = False    # a create of an ephemeral znode: gone with its session

    @property
    def done(self) -> bool:
        return self.err is not None or self.lost

    @property
    def acked(self) -> bool:
        return self.err == 0


def _frame(xid: int, op: int, fill: Callable[[WriteBuffer], None] | None = None) -> bytes:
    b = WriteBuffer(256)
    start = b.frame_start()
    b.write_int(xid)
    b.write_int(op)
    if fill is not None:
        fill(b)
    b.frame_end(start)
    return b.take()


class ClientSide:
    """The client's end of its connection: frames in, to the client."""

    def __init__(self, client: SimClient, sid: int) -> None:
        self.client = client
        self.sid = sid
        self.buf = bytearray()
        self.transport: Any = None
        self.greeted = False   # the ConnectResponse came
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from(">i", self.buf)
            if len(self.buf) < 4 + n:
                return
            frame = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            if self.closed:
                return
            self.client.on_frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.on_lost(self)

    def send(self, frame: bytes) -> None:
        if not self.closed:
            self.transport.write(frame)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


class SimClient:
    """A client with at most one connection and one session at a time (kept across connections)."""

    def __init__(self, host: ClientHost, cid: int, timeout_ms: int, servers: int, read_only: bool = False,
                 auto: bool = True) -> None:
        self.host = host
        self.cid = cid
        self.asked_timeout_ms = timeout_ms
        self.servers = servers      # how many in its connect string: the connect timeout is its share
        self.read_only = read_only  # it accepts read-only servers
        self.auto = auto            # it reconnects by itself (else only when told)
        self.session_id = 0
        self.passwd = bytes(16)
        self.timeout_ms = 0
        self.last_zxid = 0
        self.xid = 0
        self.conn: ClientSide | None = None
        self.ops: dict[int, Op] = {}
        self.established = False
        self.last_heard = 0
        self.last_sent = 0
        self.moves = 0          # connections that took its session to another server
        self.expired = 0        # sessions the servers said were gone
        self.failures = 0       # connection attempts in a row that gave no session

    @property
    def name(self) -> str:
        return f"c{self.cid}"

    @property
    def sid(self) -> int | None:
        return self.conn.sid if self.conn is not None else None

    def connect(self, sid: int) -> bool:
        """Open a connection to n<sid> (False: nobody listens there) and send the ConnectRequest."""
        assert self.conn is None, "one connection at a time"
        host = self.host
        proc = host.proc_of(sid)
        if proc is None or proc.server is None:
            return False
        side = ClientSide(self, sid)
        server = FakeConnection(proc.server, proc.clock.soon)
        connect(host, f"{self.name}->n{sid}", End(host, None, side, None), End(host, proc, server, sid),
                CLIENT_DELAY_MS, host.pipes, ((f"10.0.1.{self.cid}", 50000 + self.xid), (host_of(sid), CLIENT_PORT)))
        self.conn = side
        self.established = False
        self.last_heard = self.last_sent = host.now
        b = WriteBuffer(64)
        start = b.frame_start()
        b.write_int(0)
        b.write_long(self.last_zxid)
        b.write_int(self.asked_timeout_ms)
        b.write_long(self.session_id)
        b.write_buffer(self.passwd)
        b.write_bool(self.read_only)
        b.frame_end(start)
        side.send(b.take())
        host.log(f"{self.name} connects to n{sid}" + (f" with session 0x{self.session_id:x}" if self.session_id else ""))
        host.at(host.now + self.timeout_or_asked() // max(self.servers, 1), self._connect_timeout, side)
        return True

    def take_session(self, other: SimClient) -> None:
        """Use other's session from now on (its id and password), as a client that moved."""
        self.session_id, self.passwd, self.last_zxid = other.session_id, other.passwd, other.last_zxid
        self.asked_timeout_ms = other.timeout_or_asked()

    def timeout_or_asked(self) -> int:
        return self.timeout_ms or self.asked_timeout_ms

    def _connect_timeout(self, side: ClientSide) -> None:
        if self.conn is side and not self.established:
            self.host.log(f"{self.name}: no session from n{side.sid} in time")
            self.disconnect()

    def disconnect(self) -> None:
        """Close the connection; its requests' outcome is unknown."""
        side = self.conn
        if side is not None:
            side.close()
            self._lost(side)

    # -- requests

    def _send(self, kind: str, op: int, fill: Callable[[WriteBuffer], None] | None, path: bytes = b"",
              data: bytes = b"", now: bool = False) -> Op:
        """`now`: the server reads it at once (scripts that act right after it)."""
        side = self.conn
        assert side is not None and self.established, f"{self.name} has no session to send with"
        self.xid += 1
        o = Op(self, kind, self.xid, self.session_id, path, data, side.sid)
        self.ops[o.xid] = o
        self.host.sent(o)
        frame = _frame(o.xid, op, fill)
        self.last_sent = self.host.now
        if now:
            proc = self.host.proc_of(side.sid)
            assert proc is not None and side.transport.end.last <= self.host.now, "nothing of ours in flight"
            peer = side.transport.pipe.other(side.transport.end)
            proc.run(peer.protocol.data_received, frame)
        else:
            side.send(frame)
        return o

    def create(self, path: bytes, data: bytes, now: bool = False, ephemeral: bool = False) -> Op:
        def fill(b: WriteBuffer) -> None:
            b.write_ustring(path)
            b.write_buffer(data)
            b.write_acl_list(OPEN_ACL)
            b.write_int(1 if ephemeral else 0)
        op = self._send("create", OP_CREATE, fill, path, data, now)
        op.ephemeral = ephemeral
        return op

    def set(self, path: bytes, data: bytes) -> Op:
        def fill(b: WriteBuffer) -> None:
            b.write_ustring(path)
            b.write_buffer(data)
            b.write_int(-1)
        return self._send("set", OP_SET_DATA, fill, path, data)

    def get(self, path: bytes) -> Op:
        def fill(b: WriteBuffer) -> None:
            b.write_ustring(path)
            b.write_bool(False)
        return self._send("get", OP_GET_DATA, fill, path)

    def sync(self, path: bytes = b"/") -> Op:
        return self._send("sync", OP_SYNC, lambda b: b.write_ustring(path), path)

    def reconfig(self, joining: str | None, leaving: str | None, members: str | None, now: bool = False) -> Op:
        def fill(b: WriteBuffer) -> None:
            for text in (joining, leaving, members):
                b.write_ustring(text)
            b.write_long(-1)
        return self._send("reconfig", OP_RECONFIG, fill, now=now)

    def ping(self) -> None:
        if self.conn is not None and self.established:
            self.last_sent = self.host.now
            self.conn.send(_frame(XID_PING, OP_PING))

    # -- replies

    def on_frame(self, side: ClientSide, frame: bytes) -> None:
        if side is not self.conn:
            return
        self.last_heard = self.host.now
        if not side.greeted:
            side.greeted = True
            self._session(side, frame)
            return
        r = Reader(frame)
        xid, zxid, err = r.read_int(), r.read_long(), r.read_int()
        if xid == XID_NOTIFICATION:
            return
        if zxid > 0:
            self.host.session_zxid(self, zxid)
            self.last_zxid = max(self.last_zxid, zxid)
        if xid == XID_PING:
            return
        o = self.ops.pop(xid, None)
        assert o is not None, f"{self.name}: a reply to xid {xid}, which it never sent or had answered"
        o.err, o.zxid = err, zxid
        if err == 0 and o.kind in ("get", "reconfig", "create"):
            o.value = r.read_buffer()
        self.host.replied(o)

    def _session(self, side: ClientSide, frame: bytes) -> None:
        r = Reader(frame)
        _, timeout, session_id = r.read_int(), r.read_int(), r.read_long()
        passwd = r.read_buffer()
        if timeout <= 0:
            # the session is gone (expired, or unknown to the ensemble): the next connection starts anew
            self.host.log(f"{self.name}: n{side.sid} says session 0x{self.session_id:x} is expired")
            self.expired += 1
            self.session_id, self.passwd, self.timeout_ms, self.last_zxid = 0, bytes(16), 0, 0
            self.disconnect()
            return
        if self.session_id and session_id == self.session_id:
            self.moves += 1
        self.session_id, self.passwd, self.timeout_ms = session_id, passwd or bytes(16), timeout
        self.established = True
        self.host.established(self)
        self.host.log(f"{self.name} has session 0x{session_id:x} on n{side.sid}")
        self.host.at(self.host.now + timeout // 3, self._keepalive, side)

    def _keepalive(self, side: ClientSide) -> None:
        """A ping when idle; a connection silent for 2/3 of the session timeout is given up."""
        if side is not self.conn:
            return
        now = self.host.now
        if now - self.last_heard >= self.timeout_ms * 2 // 3:
            self.host.log(f"{self.name}: n{side.sid} silent for {now - self.last_heard} ms")
            self.disconnect()
            return
        if now - self.last_sent >= self.timeout_ms // 3:
            self.ping()
        self.host.at(now + max(self.timeout_ms // 6, 1), self._keepalive, side)

    def on_lost(self, side: ClientSide) -> None:
        if side is self.conn:
            self.host.log(f"{self.name} lost its connection to n{side.sid}")
            self._lost(side)

    def _lost(self, side: ClientSide) -> None:
        self.conn = None
        self.failures = 0 if self.established else self.failures + 1
        self.established = False
        ops, self.ops = self.ops, {}
        for o in ops.values():
            o.lost = True
            self.host.replied(o)
        if self.auto:
            self._retry()

    def _retry(self) -> None:
        """The next server soon; once every server was tried in vain, a pause (as Apache's client
        waits up to a second when its host list wraps around)."""
        host = self.host
        wait = host.rand(200, 1000) if self.failures and self.failures % self.servers == 0 else host.rand(1, 20)
        host.at(host.now + wait, self._reconnect)

    def _reconnect(self) -> None:
        if self.conn is not None:
            return
        if not self.connect(self.host.reconnect_to(self)):
            self.failures += 1
            self._retry()
