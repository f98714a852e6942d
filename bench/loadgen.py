#!/usr/bin/env python3
"""A raw-protocol ZooKeeper load generator that is not the bottleneck.

Several worker processes (multiprocessing), each running one uvloop event loop with many
connections, each connection pipelined to depth D. Requests are framed with zkfast's own codec
(`zkfast._jute.WriteBuffer`); replies are parsed with `struct` and only their reply header
(xid, zxid, err) is looked at, so the generator spends a few microseconds per operation.

Phases (create and delete: one op per key of the key space; the others cycle over the keys for a
set duration; keys are split evenly over processes and connections):

  create       create a znode per key (OPEN_ACL_UNSAFE, persistent) with `data_size` bytes
  set          setData on each key (version -1)
  get          getData on each key (no watch)
  exists       exists on each key (no watch)
  getChildren  getChildren on a parent with 10 children
  multi        multi(check(key, -1), setData(key)) per key: one txn of two ops
  watch        watcher sessions set exists-watches on the keys, other sessions setData them; the
               latency is setData sent -> NodeDataChanged received on the watcher's connection
  delete       delete each key
  session      open a session (TCP connect + ConnectRequest) and close it (closeSession): one op

Each phase reports ops/s and p50/p99/p999 latency (histograms merged across processes), the
generator's own CPU (utime+stime of its worker processes from /proc, as a share of the machine)
and, given the server's pid, the server's CPU per operation.

Standalone use (a server must be running):

    python bench/loadgen.py --server 127.0.0.1:2181 --conns 8 --depth 16 --procs 2 --keys 40000 --duration 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import socket
import struct
import sys
import time
import traceback
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import uvloop
from zkfast._jute import WriteBuffer

# ---------------------------------------------------------------------------------------- protocol

OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_CHILDREN = 8
OP_CHECK = 13
OP_MULTI = 14
OP_CLOSE_SESSION = -11
EVENT_NODE_DATA_CHANGED = 3
XID_NOTIFICATION = -1
XID_PING = -2

OPEN_ACL_UNSAFE = [(31, "world", "anyone")]
ROOT = "/zkbench"
KEYS_PARENT = ROOT + "/k"
KIDS_PARENT = ROOT + "/c"
KIDS = 10
KEY_DIGITS = 8

PHASES = ("create", "set", "get", "exists", "getChildren", "multi", "watch", "delete", "session")
NEEDS_KEYS = frozenset({"set", "get", "exists", "multi", "watch", "delete"})

ERROR_NAMES = {-4: "CONNECTIONLOSS", -101: "NONODE", -103: "BADVERSION", -110: "NODEEXISTS",
               -111: "NOTEMPTY", -112: "SESSIONEXPIRED", -7: "OPERATIONTIMEOUT"}

_HDR = struct.Struct(">iqi")      # ReplyHeader: xid, zxid, err
_LEN = struct.Struct(">i")
_CONNECT_RESP = struct.Struct(">iiq")  # protocolVersion, timeOut, sessionId

NCPU = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASE_TIMEOUT_S = 600.0


def key_path(parent: str, idx: int) -> bytes:
    return b"%s/%0*d" % (parent.encode(), KEY_DIGITS, idx)


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads, live and exited) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2:].split()
    # after "pid (comm) ": state is field 3, utime field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine (all cores, everything but idle and iowait), /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    vals = [int(v) for v in fields]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already counted in user/nice
    return (sum(vals[:8]) - idle) / CLK_TCK


def pids_cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime summed over processes (an ensemble's members)."""
    return sum(proc_cpu_seconds(p) for p in pids)


def proc_rss_bytes(pid: int | str = "self") -> int:
    """VmRSS of a process from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def connect_frame(timeout_ms: int, session_id: int = 0, passwd: bytes = b"\0" * 16) -> bytes:
    """A ConnectRequest: a new session, or (given its id and password) reattaching one."""
    wb = WriteBuffer(64)
    start = wb.frame_start()
    wb.write_int(0)               # protocolVersion
    wb.write_long(0)              # lastZxidSeen
    wb.write_int(timeout_ms)
    wb.write_long(session_id)     # sessionId
    wb.write_buffer(passwd)       # passwd
    wb.write_bool(False)          # readOnly
    wb.frame_end(start)
    return bytes(wb.take())


# ------------------------------------------------------------------------------------- histograms

SUB_BITS = 8  # 256 sub-buckets per power of two: values kept within 1/128 (< 0.8 %)


def bucket_of(v: int) -> int:
    if v < 0:
        v = 0
    e = v.bit_length() - SUB_BITS
    if e <= 0:
        return v
    return (e << SUB_BITS) + (v >> e)


def bucket_value(b: int) -> float:
    """The middle of a bucket, in the recorded unit (ns)."""
    e = b >> SUB_BITS
    if e == 0:
        return float(b)
    m = b - (e << SUB_BITS)
    return (m + 0.5) * (1 << e)


class Histogram:
    """Log-linear latency histogram (ns), mergeable across processes."""

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    @classmethod
    def of(cls, values: Iterable[int]) -> Histogram:
        h = cls()
        h.counts.update(bucket_of(v) for v in values)
        return h

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) in ns; 0.0 when empty."""
        n = self.total
        if n == 0:
            return 0.0
        rank = max(1, int(q / 100.0 * n + 0.999999))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return bucket_value(b)
        return bucket_value(max(self.counts))

    def mean(self) -> float:
        n = self.total
        return sum(bucket_value(b) * c for b, c in self.counts.items()) / n if n else 0.0

    def max(self) -> float:
        return bucket_value(max(self.counts)) if self.counts else 0.0


# ------------------------------------------------------------------------------------- connections

class SessionRefused(ConnectionError):
    """The server answered the ConnectRequest with session id 0 (expired, or a wrong password)."""


class Conn(asyncio.Protocol):
    """One client session; replies are handed to `job`, notifications to `on_event`."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_event: Callable[[bytes, int, int], None] | None = None) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.rest = b""
        self.session_id = 0
        self.passwd = b""
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.job: PipeJob | None = None
        self.on_event = on_event
        self.next_xid = 1
        self.reply_waiter: asyncio.Future[int] | None = None
        self.waiting_xid = 0

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        err = ConnectionError(f"server closed the connection ({exc})")
        for fut in (self.handshake, self.reply_waiter):
            if fut is not None and not fut.done():
                fut.set_exception(err)
        if self.job is not None:
            self.job.lost(err)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self.rest:
            data = self.rest + data
        n = len(data)
        off = 0
        if not self.handshake.done():
            if n < 4:
                self.rest = data
                return
            (ln,) = _LEN.unpack_from(data, 0)
            if n < 4 + ln:
                self.rest = data
                return
            _, _, self.session_id = _CONNECT_RESP.unpack_from(data, 4)
            if ln >= 20:
                (plen,) = _LEN.unpack_from(data, 20)
                self.passwd = data[24:24 + max(0, plen)]
            off = 4 + ln
            if self.session_id == 0:
                self.handshake.set_exception(SessionRefused("session refused"))
            else:
                self.handshake.set_result(None)
        job = self.job
        unpack_len = _LEN.unpack_from
        unpack_hdr = _HDR.unpack_from
        while n - off >= 4:
            (ln,) = unpack_len(data, off)
            end = off + 4 + ln
            if end > n:
                break
            xid, zxid, err = unpack_hdr(data, off + 4)
            if xid >= 0:
                if job is not None:
                    job.reply(xid, err, now)
                elif self.reply_waiter is not None and xid == self.waiting_xid:
                    w, self.reply_waiter = self.reply_waiter, None
                    if not w.done():
                        w.set_result(err)
            elif xid == XID_NOTIFICATION:
                if self.on_event is not None:
                    typ = _LEN.unpack_from(data, off + 20)[0]
                    plen = _LEN.unpack_from(data, off + 28)[0]
                    self.on_event(data[off + 32:off + 32 + plen], typ, now)
            off = end
        self.rest = data[off:] if off < n else b""
        if job is not None:
            job.refill()

    # -- helpers
    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def call(self, build: Callable[[WriteBuffer, int], None], timeout_s: float = 30.0) -> int:
        """Send one request built by `build(wb, xid)`; the reply's err."""
        xid = self.next_xid
        self.next_xid += 1
        wb = WriteBuffer(256)
        build(wb, xid)
        self.waiting_xid = xid
        self.reply_waiter = self.loop.create_future()
        self.write(wb.take())
        return await asyncio.wait_for(self.reply_waiter, timeout_s)

    async def close_session(self, timeout_s: float = 10.0) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.job = None
        try:
            await self.call(lambda wb, xid: _frame(wb, xid, OP_CLOSE_SESSION), timeout_s)
        except (ConnectionError, TimeoutError):
            pass
        self.transport.close()


def _frame(wb: WriteBuffer, xid: int, op: int) -> None:
    s = wb.frame_start()
    wb.write_int(xid)
    wb.write_int(op)
    wb.frame_end(s)


async def open_session(loop: asyncio.AbstractEventLoop, host: str, port: int, timeout_ms: int,
                       on_event: Callable[[bytes, int, int], None] | None = None,
                       session: tuple[int, bytes] | None = None, handshake_timeout_s: float = 30.0,
                       source_ip: str | None = None) -> Conn:
    """A connected session: a new one, or `session` = (id, password) reattached; from source_ip if
    given (127.0.0.x: many clients, as maxClientCnxns sees them). On a failed handshake the
    connection is closed before the exception goes up."""
    _, conn = await loop.create_connection(lambda: Conn(loop, on_event), host, port,
                                           local_addr=(source_ip, 0) if source_ip else None)
    conn.write(connect_frame(timeout_ms, *session) if session else connect_frame(timeout_ms))
    try:
        await asyncio.wait_for(conn.handshake, handshake_timeout_s)
    except BaseException:
        if conn.transport is not None:
            conn.transport.close()
        raise
    return conn


# ------------------------------------------------------------------------------------ request bodies

Encoder = Callable[[WriteBuffer, int, int], None]


def make_encoder(phase: str, parent: str, data: bytes) -> Encoder:
    """encode(wb, xid, key index) appends one whole request frame."""
    prefix = parent.encode() + b"/"
    fmt = b"%0" + str(KEY_DIGITS).encode() + b"d"
    acl = OPEN_ACL_UNSAFE
    kids = KIDS_PARENT.encode()

    def path(i: int) -> bytes:
        return prefix + fmt % i

    if phase == "create":
        def enc(wb: WriteBuffer, xid: int, i: int) -> None:
            s = wb.frame_start()
            wb.write_int(xid)
            wb.write_int(OP_CREATE)
            wb.write_ustring(path(i))
            wb.write_buffer(data)
            wb.write_acl_list(acl)
            wb.write_int(0)
            wb.frame_end(s)
    elif phase in ("set", "trigger"):
        def enc(wb: WriteBuffer, xid: int, i: int) -> None:
            s = wb.frame_start()
            wb.write_int(xid)
            wb.write_int(OP_SET_DATA)
            wb.write_ustring(path(i))
            wb.write_buffer(data)
            wb.write_int(-1)
            wb.frame_end(s)
    elif phase in ("get", "exists", "watch_register"):
        op = OP_GET_DATA if phase == "get" else OP_EXISTS
        watch = phase == "watch_register"

        def enc(wb: WriteBuffer, xid: int, i: int) -> None:
            s = wb.frame_start()
            wb.write_int(xid)
            wb.write_int(op)
            wb.write_ustring(path(i))
            wb.write_bool(watch)
            wb.frame_end(s)
    elif phase == "getChildren":
        def enc(wb: WriteBuffer, xid: int, i: int) -> None:
            s = wb.frame_start()
            wb.write_int(xid)
            wb.write_int(OP_GET_CHILDREN)
            wb.write_ustring(kids)
            wb.write_bool(False)
            wb.frame_end(s)
    elif phase == "multi":
        def enc(wb: WriteBuffer, xid: int, i: int) -> None:
            p = path(i)
            s = wb.frame_start()
            wb.write_int(xid)
            wb.write_int(OP_MULTI)
            wb.write_int(OP_CHECK)        # MultiHeader(type, done, err)
            wb.write_bool(False)
            wb.write_int(-1)
            wb.write_ustring(p)           # CheckVersionRequest
            wb.write_int(-1)
            wb.write_int(OP_SET_DATA)
            wb.write_bool(False)
            wb.write_int(-1)
            wb.write_ustring(p)           # SetDataRequest
            wb.write_buffer(data)
            wb.write_int(-1)
            wb.write_int(-1)              # the closing MultiHeader
            wb.write_bool(True)
            wb.write_int(-1)
            wb.frame_end(s)
    elif phase == "delete":
        def enc(wb: WriteBuffer, xid: int, i: int) -> None:
            s = wb.frame_start()
            wb.write_int(xid)
            wb.write_int(OP_DELETE)
            wb.write_ustring(path(i))
            wb.write_int(-1)
            wb.frame_end(s)
    else:
        raise ValueError(f"no encoder for phase {phase!r}")
    return enc


class PipeJob:
    """Requests over one connection, `depth` outstanding: one per key of `keys`, or, with a
    deadline (perf_counter_ns), cycling over the keys until the deadline has passed."""

    def __init__(self, conn: Conn, keys: range, encode: Encoder, depth: int, lat: array,
                 errors: Counter[int], deadline_ns: int = 0, send_times: array | None = None,
                 base: int = 0) -> None:
        self.conn = conn
        self.keys = keys
        self.limit = len(keys) if not deadline_ns else 1 << 62
        self.deadline = deadline_ns
        self.pos = 0
        self.encode = encode
        self.depth = max(1, depth)
        self.lat = lat
        self.errors = errors
        self.sent: deque[int] = deque()
        self.expect_xid = conn.next_xid
        self.wb = WriteBuffer(16384)
        self.send_times = send_times
        self.base = base
        self.done: asyncio.Future[None] = conn.loop.create_future()
        self.last_reply = 0

    def start(self) -> None:
        self.conn.job = self
        self.refill()

    def reply(self, xid: int, err: int, now: int) -> None:
        if xid != self.expect_xid:
            self.lost(RuntimeError(f"reply xid {xid}, expected {self.expect_xid}: replies out of order"))
            return
        self.expect_xid += 1
        self.lat.append(now - self.sent.popleft())
        self.last_reply = now
        if err:
            self.errors[err] += 1

    def refill(self) -> None:
        room = self.depth - len(self.sent)
        now = time.perf_counter_ns()
        if self.deadline and now >= self.deadline:
            self.limit = self.pos
        if room > 0 and self.pos < self.limit:
            keys = self.keys
            n = len(keys)
            wb = self.wb
            conn = self.conn
            xid = conn.next_xid
            enc = self.encode
            st = self.send_times
            sent = self.sent
            pos = self.pos
            limit = self.limit
            while room > 0 and pos < limit:
                k = keys[pos % n]
                enc(wb, xid, k)
                sent.append(now)
                if st is not None:
                    st[k - self.base] = now
                xid += 1
                pos += 1
                room -= 1
            self.pos = pos
            conn.next_xid = xid
            conn.write(wb.take())
        elif not self.sent and self.pos >= self.limit and not self.done.done():
            self.conn.job = None
            self.done.set_result(None)

    def lost(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


def split(r: range, parts: int) -> list[range]:
    n = len(r)
    return [r[i * n // parts:(i + 1) * n // parts] for i in range(parts)]


# --------------------------------------------------------------------------------------- one phase

@dataclass
class Spec:
    """What every worker process runs for one phase."""

    host: str
    port: int
    phase: str
    keys: int                      # key space, over all processes (create/delete: one op per key)
    duration_s: float = 0.0        # other phases: cycle over the keys this long (0: once over them)
    conns: int = 8                 # per process
    depth: int = 16
    procs: int = 2
    data_size: int = 100
    parent: str = KEYS_PARENT
    timeout_ms: int = 30000
    watch_batch: int = 0           # keys per watch round; 0: conns * depth * 4
    # servers to spread the connections over (an ensemble's members): connection c of worker w,
    # number w * conns + c over all workers, goes to targets[(w * conns + c) % len(targets)];
    # empty: every connection goes to host:port
    targets: tuple[tuple[str, int], ...] = ()

    def target(self, worker: int, conn: int) -> tuple[str, int]:
        """Where connection `conn` of worker `worker` goes."""
        if not self.targets:
            return self.host, self.port
        return self.targets[(worker * self.conns + conn) % len(self.targets)]


COUNTED_PHASES = frozenset({"create", "delete"})


@dataclass
class WorkerResult:
    ops: int
    t_start: int
    t_end: int
    busy_ns: int
    cpu_s: float
    hist: dict[int, int]
    errors: dict[int, int]
    missing: int = 0


def worker_range(spec: Spec, index: int) -> range:
    return split(range(spec.keys), spec.procs)[index]


class Worker:
    """The event-loop side of one worker process."""

    def __init__(self, loop: asyncio.AbstractEventLoop, spec: Spec, index: int) -> None:
        self.loop = loop
        self.spec = spec
        self.index = index
        self.keys = worker_range(spec, index)
        self.conns: list[Conn] = []
        self.watchers: list[Conn] = []
        self.lat = array("q")
        self.errors: Counter[int] = Counter()
        self.missing = 0
        # watch phase state
        self.arrivals = array("q")
        self.send_times = array("q")
        self.pending_events = 0
        self.events_done: asyncio.Future[None] | None = None

    def deadline(self) -> int:
        s = self.spec
        if s.phase in COUNTED_PHASES or s.duration_s <= 0:
            return 0
        return time.perf_counter_ns() + int(s.duration_s * 1e9)

    async def prepare(self) -> None:
        s = self.spec
        if s.phase == "session":
            return
        self.conns = list(await asyncio.gather(
            *(open_session(self.loop, *s.target(self.index, c), s.timeout_ms) for c in range(s.conns))))
        if s.phase == "watch":
            self.watchers = list(await asyncio.gather(
                *(open_session(self.loop, *s.target(self.index, c), s.timeout_ms, self.on_event)
                  for c in range(s.conns))))

    async def run(self) -> tuple[int, int, int]:
        """(t_start, t_end, busy ns) of the timed part."""
        phase = self.spec.phase
        if phase == "session":
            return await self.run_sessions()
        if phase == "watch":
            return await self.run_watch()
        t0 = time.perf_counter_ns()
        await self.pipe(self.conns, self.keys, make_encoder(phase, self.spec.parent, self.data()),
                        deadline=self.deadline())
        t1 = time.perf_counter_ns()
        return t0, t1, t1 - t0

    def data(self) -> bytes:
        return b"x" * self.spec.data_size

    async def pipe(self, conns: Sequence[Conn], keys: range, enc: Encoder, lat: array | None = None,
                   deadline: int = 0, send_times: array | None = None, base: int = 0) -> None:
        jobs = [PipeJob(c, part, enc, self.spec.depth, self.lat if lat is None else lat, self.errors,
                        deadline, send_times, base)
                for c, part in zip(conns, split(keys, len(conns)), strict=True) if len(part)]
        for j in jobs:
            j.start()
        await asyncio.wait_for(asyncio.gather(*(j.done for j in jobs)), PHASE_TIMEOUT_S)

    # -- session create/close
    async def run_sessions(self) -> tuple[int, int, int]:
        s = self.spec
        deadline = self.deadline()
        n = len(self.keys)
        loops = max(1, s.conns)
        counts = [len(r) for r in split(range(n), loops)]

        async def churn(c: int, k: int) -> None:
            host, port = s.target(self.index, c)
            done = 0
            while (time.perf_counter_ns() < deadline) if deadline else done < k:
                t = time.perf_counter_ns()
                conn = await open_session(self.loop, host, port, s.timeout_ms)
                err = await conn.call(lambda wb, xid: _frame(wb, xid, OP_CLOSE_SESSION))
                self.lat.append(time.perf_counter_ns() - t)
                if err:
                    self.errors[err] += 1
                try:  # the server closes after answering closeSession
                    await asyncio.wait_for(asyncio.shield(conn.lost), 1.0)
                except TimeoutError:
                    pass
                assert conn.transport is not None
                conn.transport.close()
                done += 1

        t0 = time.perf_counter_ns()
        await asyncio.wait_for(asyncio.gather(*(churn(c, k) for c, k in enumerate(counts))), PHASE_TIMEOUT_S)
        t1 = time.perf_counter_ns()
        return t0, t1, t1 - t0

    # -- watches: set from one set of sessions, fired from another
    def on_event(self, path: bytes, typ: int, now: int) -> None:
        if typ != EVENT_NODE_DATA_CHANGED:
            self.errors[1000 + typ] += 1
            return
        i = int(path[-KEY_DIGITS:]) - self.keys.start
        if self.arrivals[i] == 0:
            self.arrivals[i] = now
            self.pending_events -= 1
            if self.pending_events == 0 and self.events_done is not None and not self.events_done.done():
                self.events_done.set_result(None)

    async def run_watch(self) -> tuple[int, int, int]:
        """Rounds over windows of the keys: register a watch on each key of the window (untimed),
        then setData them all (timed until the last notification is in)."""
        s = self.spec
        keys = self.keys
        base = keys.start
        self.arrivals = array("q", bytes(8 * len(keys)))
        self.send_times = array("q", bytes(8 * len(keys)))
        batch = s.watch_batch or max(1, s.conns * s.depth * 4)
        windows = [keys[i:i + batch] for i in range(0, len(keys), batch)]
        register = make_encoder("watch_register", s.parent, b"")
        trigger = make_encoder("trigger", s.parent, self.data())
        scratch = array("q")
        deadline = self.deadline()
        busy = t_first = t_last = 0
        rounds = 0
        while windows and (time.perf_counter_ns() < deadline if deadline else rounds < len(windows)):
            part = windows[rounds % len(windows)]
            rounds += 1
            await self.pipe(self.watchers, part, register, lat=scratch)
            self.pending_events = len(part)
            self.events_done = self.loop.create_future()
            t0 = time.perf_counter_ns()
            t_first = t_first or t0
            await self.pipe(self.conns, part, trigger, lat=scratch, send_times=self.send_times, base=base)
            try:
                await asyncio.wait_for(self.events_done, 30.0)
            except TimeoutError:
                self.missing += self.pending_events
            t1 = time.perf_counter_ns()
            busy += t1 - t0
            t_last = t1
            del scratch[:]
            for k in part:
                i = k - base
                if self.arrivals[i]:
                    self.lat.append(self.arrivals[i] - self.send_times[i])
                    self.arrivals[i] = 0
        return t_first, t_last, busy

    async def teardown(self) -> None:
        await asyncio.gather(*(c.close_session() for c in self.conns + self.watchers),
                             return_exceptions=True)


def worker_main(pipe: multiprocessing.connection.Connection, index: int) -> None:
    """A worker process: runs phases on command until told to exit."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        while True:
            msg = pipe.recv()
            if msg[0] == "exit":
                return
            if msg[0] != "run":
                continue
            spec: Spec = msg[1]
            try:
                w = Worker(loop, spec, index)
                loop.run_until_complete(w.prepare())
                pipe.send(("ready",))
                if pipe.recv()[0] != "go":
                    loop.run_until_complete(w.teardown())
                    continue
                cpu0 = proc_cpu_seconds()
                t0, t1, busy = loop.run_until_complete(w.run())
                cpu1 = proc_cpu_seconds()
                hist = Histogram.of(w.lat)
                res = WorkerResult(len(w.lat), t0, t1, busy, cpu1 - cpu0, dict(hist.counts),
                                   dict(w.errors), w.missing)
                loop.run_until_complete(w.teardown())
                pipe.send(("result", res))
            except BaseException:  # noqa: BLE001 - reported to the coordinator
                pipe.send(("error", traceback.format_exc()))
    finally:
        loop.close()


# ------------------------------------------------------------------------------------ coordinator

@dataclass
class PhaseResult:
    phase: str
    ops: int
    elapsed_s: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    gen_cpu_s: float
    gen_cpu_share: float           # of the whole machine (all cores)
    server_cpu_s: float | None = None
    server_cpu_us_per_op: float | None = None
    server_cpu_share: float | None = None
    other_cpu_share: float | None = None  # the rest of the machine's busy CPU during the phase
    errors: dict[str, int] = field(default_factory=dict)
    missing_events: int = 0
    conns: int = 0
    depth: int = 0
    procs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadGen:
    """A pool of worker processes, kept for many phases (and servers)."""

    def __init__(self, procs: int = 2) -> None:
        self.procs = procs
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for i in range(procs):
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(b, i), daemon=True, name=f"loadgen-{i}")
            p.start()
            self.pipes.append(a)
            self.processes.append(p)

    def _recv(self, pipe: multiprocessing.connection.Connection, timeout_s: float) -> tuple[Any, ...]:
        if not pipe.poll(timeout_s):
            raise TimeoutError(f"load generator worker silent for {timeout_s:.0f}s (server stalled?)")
        try:
            msg = pipe.recv()
        except (EOFError, OSError) as e:
            raise RuntimeError(f"load generator worker died: {e!r}") from e
        if msg[0] == "error":
            raise RuntimeError(f"load generator worker failed:\n{msg[1]}")
        return msg

    def run(self, spec: Spec, server_pid: int | Sequence[int] | None = None) -> PhaseResult:
        """Run one phase on the first `spec.procs` workers; with `server_pid`, the server's CPU
        (utime+stime from /proc) is read just before the workers start and after the last ends.
        A list of pids (an ensemble's members) counts their CPU summed."""
        if not 1 <= spec.procs <= self.procs:
            raise ValueError(f"spec for {spec.procs} processes, pool has {self.procs}")
        pipes = self.pipes[:spec.procs]
        for p in pipes:
            p.send(("run", spec))
        ready_errors = []
        for p in pipes:
            try:
                self._recv(p, 120.0)
            except (RuntimeError, TimeoutError) as e:
                ready_errors.append(e)
        if ready_errors:
            for p in pipes:
                p.send(("abort",))
            raise ready_errors[0]
        pids = ([server_pid] if isinstance(server_pid, int) else list(server_pid)) if server_pid else []
        srv0 = pids_cpu_seconds(pids)
        busy0 = machine_busy_seconds()
        for p in pipes:
            p.send(("go",))
        results: list[WorkerResult] = []
        failure: BaseException | None = None
        for p in pipes:
            try:
                results.append(self._recv(p, PHASE_TIMEOUT_S + 60)[1])
            except (RuntimeError, TimeoutError) as e:
                failure = failure or e
        srv1 = pids_cpu_seconds(pids)
        busy1 = machine_busy_seconds()
        if failure is not None:
            raise failure
        res = merge(spec, results, srv1 - srv0 if pids else None)
        # what else ran meanwhile (other processes, the kernel's softirqs): a noisy machine shows here
        other = busy1 - busy0 - res.gen_cpu_s - (res.server_cpu_s or 0.0)
        res.other_cpu_share = max(0.0, other) / (res.elapsed_s * NCPU)
        return res

    def close(self) -> None:
        for p in self.pipes:
            try:
                p.send(("exit",))
            except OSError:
                pass
        for proc in self.processes:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def __enter__(self) -> LoadGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge(spec: Spec, results: list[WorkerResult], server_cpu_s: float | None) -> PhaseResult:
    hist = Histogram()
    errors: Counter[str] = Counter()
    for r in results:
        hist.merge(Histogram(r.hist))
        for code, n in r.errors.items():
            errors[ERROR_NAMES.get(code, str(code))] += n
    ops = sum(r.ops for r in results)
    if spec.phase == "watch":
        elapsed = max(r.busy_ns for r in results) / 1e9
    else:
        elapsed = (max(r.t_end for r in results) - min(r.t_start for r in results)) / 1e9
    elapsed = max(elapsed, 1e-9)
    gen_cpu = sum(r.cpu_s for r in results)
    res = PhaseResult(
        phase=spec.phase, ops=ops, elapsed_s=elapsed, ops_per_s=ops / elapsed,
        p50_ms=hist.percentile(50) / 1e6, p99_ms=hist.percentile(99) / 1e6,
        p999_ms=hist.percentile(99.9) / 1e6, max_ms=hist.max() / 1e6, mean_ms=hist.mean() / 1e6,
        gen_cpu_s=gen_cpu, gen_cpu_share=gen_cpu / (elapsed * NCPU), errors=dict(errors),
        missing_events=sum(r.missing for r in results), conns=spec.conns, depth=spec.depth,
        procs=spec.procs)
    if server_cpu_s is not None:
        res.server_cpu_s = server_cpu_s
        res.server_cpu_us_per_op = server_cpu_s * 1e6 / ops if ops else None
        res.server_cpu_share = server_cpu_s / (elapsed * NCPU)
    return res


# ------------------------------------------------------------------------------ set-up and passes

class SyncClient:
    """A blocking one-request-at-a-time session for setting up the tree (not timed)."""

    def __init__(self, host: str, port: int, timeout_ms: int = 30000) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(connect_frame(timeout_ms))
        self._read_frame()
        self.xid = 0

    def _read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("server closed the connection")
            out += chunk
        return out

    def _read_frame(self) -> bytes:
        (n,) = _LEN.unpack(self._read_exact(4))
        return self._read_exact(n)

    def request(self, op: int, build: Callable[[WriteBuffer], None]) -> int:
        self.xid += 1
        wb = WriteBuffer(256)
        s = wb.frame_start()
        wb.write_int(self.xid)
        wb.write_int(op)
        build(wb)
        wb.frame_end(s)
        self.sock.sendall(wb.take())
        while True:
            frame = self._read_frame()
            xid, _, err = _HDR.unpack_from(frame, 0)
            if xid == self.xid:
                return int(err)

    def create(self, path: str, data: bytes = b"") -> int:
        def build(wb: WriteBuffer) -> None:
            wb.write_ustring(path.encode())
            wb.write_buffer(data)
            wb.write_acl_list(OPEN_ACL_UNSAFE)
            wb.write_int(0)
        return self.request(OP_CREATE, build)

    def close(self) -> None:
        try:
            self.request(OP_CLOSE_SESSION, lambda wb: None)
        except OSError:
            pass
        self.sock.close()


def setup_tree(host: str, port: int, parents: Sequence[str] = (KEYS_PARENT,)) -> None:
    """/zkbench, the key parents, and the getChildren parent with its children (idempotent)."""
    c = SyncClient(host, port)
    try:
        for p in (ROOT, KIDS_PARENT, *parents):
            c.create(p, b"")
        for i in range(KIDS):
            c.create(f"{KIDS_PARENT}/kid{i:02d}", b"x" * 10)
    finally:
        c.close()


@dataclass
class Mode:
    """One load shape: connections per process x pipeline depth x processes, the key space, and
    how long each phase that is not create/delete runs."""

    name: str
    conns: int
    depth: int
    procs: int
    keys: int
    duration_s: float
    data_size: int = 100


def mode_spec(host: str, port: int, phase: str, mode: Mode,
              targets: Sequence[tuple[str, int]] = ()) -> Spec:
    """The Spec of one phase in one load shape (with `targets`, spread over those servers)."""
    return Spec(host, port, phase, mode.keys, mode.duration_s, mode.conns, mode.depth, mode.procs,
                mode.data_size, targets=tuple(targets))


def run_pass(lg: LoadGen, host: str, port: int, phases: Sequence[str], mode: Mode,
             server_pid: int | Sequence[int] | None = None,
             on_phase: Callable[[str, PhaseResult | None], None] | None = None,
             targets: Sequence[tuple[str, int]] = ()) -> dict[str, PhaseResult]:
    """Every phase in order; keys are created (untimed) where a phase needs them and deleted at
    the end, so each pass leaves the tree as it found it. The tree's parents are made through
    host:port; with `targets` the phases' connections spread over those servers (connection k of
    all workers on the same server in every phase of the pass, so it reads what it wrote)."""
    def spec(phase: str) -> Spec:
        return mode_spec(host, port, phase, mode, targets)

    setup_tree(host, port)
    results: dict[str, PhaseResult] = {}
    have_keys = False
    for ph in phases:
        if ph in NEEDS_KEYS and not have_keys:
            lg.run(spec("create"))
            have_keys = True
        if ph == "create" and have_keys:
            lg.run(spec("delete"))
            have_keys = False
        res = lg.run(spec(ph), server_pid)
        results[ph] = res
        if ph == "create":
            have_keys = True
        elif ph == "delete":
            have_keys = False
        if on_phase is not None:
            on_phase(ph, res)
    if have_keys:
        lg.run(spec("delete"))
    return results


# ------------------------------------------------------------------------------------------- CLI

def format_table(results: dict[str, PhaseResult]) -> str:
    head = (f"{'phase':<12} {'ops':>8} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} "
            f"{'gen CPU':>8} {'srv CPU':>8} {'srv us/op':>9} {'other':>6}  errors")
    lines = [head, "-" * len(head)]
    for ph, r in results.items():
        srv = f"{r.server_cpu_share:8.0%}" if r.server_cpu_share is not None else f"{'-':>8}"
        per = f"{r.server_cpu_us_per_op:9.1f}" if r.server_cpu_us_per_op is not None else f"{'-':>9}"
        oth = f"{r.other_cpu_share:6.0%}" if r.other_cpu_share is not None else f"{'-':>6}"
        errs = ",".join(f"{k}={v}" for k, v in r.errors.items())
        if r.missing_events:
            errs += f" missing_events={r.missing_events}"
        lines.append(f"{ph:<12} {r.ops:>8} {r.ops_per_s:>10.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
                     f"{r.p999_ms:>8.3f} {r.gen_cpu_share:>8.0%} {srv} {per} {oth}  {errs}")
    return "\n".join(lines)


def parse_phases(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in phases if p not in PHASES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {bad}; known: {','.join(PHASES)}")
    return phases


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="127.0.0.1:2181", help="host:port (default %(default)s)")
    ap.add_argument("--server-pid", type=int, default=None,
                    help="the server's pid, to report its CPU per op (from /proc/PID/stat)")
    ap.add_argument("--phases", type=parse_phases, default=list(PHASES),
                    help=f"comma-separated, in order (default {','.join(PHASES)})")
    ap.add_argument("--conns", type=int, default=8, help="connections per process (default %(default)s)")
    ap.add_argument("--depth", type=int, default=16, help="pipeline depth per connection (default %(default)s)")
    ap.add_argument("--procs", type=int, default=2, help="generator processes (default %(default)s)")
    ap.add_argument("--keys", type=int, default=40000,
                    help="znodes created and deleted by create/delete, used by the others (default %(default)s)")
    ap.add_argument("--duration", type=float, default=2.0,
                    help="seconds each phase but create/delete runs (default %(default)s)")
    ap.add_argument("--data-size", type=int, default=100, help="bytes per znode (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="print results as JSON instead of a table")
    args = ap.parse_args(argv)
    host, _, port = args.server.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        ap.error("traffic goes to loopback addresses only")
    mode = Mode("cli", args.conns, args.depth, args.procs, args.keys, args.duration, args.data_size)
    with LoadGen(args.procs) as lg:
        res = run_pass(lg, host, int(port), args.phases, mode, args.server_pid)
    if args.json:
        import json
        print(json.dumps({k: v.as_dict() for k, v in res.items()}, indent=2))
    else:
        print(f"{args.procs} processes x {args.conns} connections x depth {args.depth}, "
              f"{args.keys} keys, {args.duration:g} s per phase, generator CPU as a share of {NCPU} cores")
        print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
