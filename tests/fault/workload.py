"""Pipelined write load from several raw-socket clients, its recorded history, and the checkers.

Each client owns a session and a subtree `/w/<tag>/c<N>` and keeps up to WINDOW requests in flight:
  create   `n<k>` with unique data (create2, so the reply carries the Stat)
  set      `reg` with a version chain: set(reg, unique, version=v) pipelined v, v+1, v+2, ...
  delete   an `n<k>` whose create was acknowledged (version 0)
  multi    [create ma<k>, create mb<k>, setData mreg=k]: all or nothing
  seq      a sequential create under the shared `/seq/s-`
Every request is recorded with its outcome: ok (with reply zxid and Stat/path), err (with the code)
or pending (the connection died first: the outcome is unknown).

The checkers (`check_recovered`) compare what a restarted server serves with that history:
  - every acknowledged create/set/delete/multi/seq is there, with its data, version and zxid;
  - nothing unacknowledged is half there: data exactly as sent or absent, a multi all or nothing,
    a register's value is the one sent for its version, no znode nobody created;
  - a session's writes apply in order: the applied ones are a prefix of what it sent;
  - reply zxids never went backwards per session (also across a reconnect after the restart);
  - sequential names are unique, and increase with the zxid of their create, also across restarts;
  - the server's last zxid is at least the last acknowledged one.
"""

from __future__ import annotations

import asyncio
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OP_CREATE = 1
OP_DELETE = 2
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_CHILDREN = 8
OP_PING = 11
OP_MULTI = 14
OP_CREATE2 = 15
OP_CLOSE = -11

OK = 0
SYSTEMERROR = -1
NONODE = -101
NODEEXISTS = -110

SEQUENTIAL = 2
WINDOW = 48
OPEN_ACL = [(31, "world", "anyone")]
STAT = struct.Struct(">qqqqiiiqiiq")


class ConnectionLost(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# encoding


def _str(s: str | bytes | None) -> bytes:
    if s is None:
        return struct.pack(">i", -1)
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">i", len(b)) + b


def _acl(acl: list[tuple[int, str, str]]) -> bytes:
    out = struct.pack(">i", len(acl))
    for perms, scheme, ident in acl:
        out += struct.pack(">i", perms) + _str(scheme) + _str(ident)
    return out


def create_body(path: str, data: bytes, flags: int = 0) -> bytes:
    return _str(path) + _str(data) + _acl(OPEN_ACL) + struct.pack(">i", flags)


def set_body(path: str, data: bytes, version: int) -> bytes:
    return _str(path) + _str(data) + struct.pack(">i", version)


def delete_body(path: str, version: int) -> bytes:
    return _str(path) + struct.pack(">i", version)


def path_watch_body(path: str) -> bytes:
    return _str(path) + b"\0"


def multi_body(ops: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for op, body in ops:
        out += struct.pack(">i?i", op, False, -1) + body
    return out + struct.pack(">i?i", -1, True, -1)


@dataclass(frozen=True)
class Stat:
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int


class Buf:
    def __init__(self, b: bytes) -> None:
        self.b = b
        self.pos = 0

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.b, self.pos)
        self.pos += 4
        return int(v)

    def bool(self) -> bool:
        v = self.b[self.pos]
        self.pos += 1
        return v != 0

    def buffer(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def string(self) -> str:
        v = self.buffer()
        return "" if v is None else v.decode()

    def stat(self) -> Stat:
        v = Stat(*STAT.unpack_from(self.b, self.pos))
        self.pos += STAT.size
        return v


# ---------------------------------------------------------------------------------------------------
# a raw pipelined connection


@dataclass
class Reply:
    zxid: int
    err: int
    body: bytes


class RawConn:
    """One session on one connection; requests pipelined, replies matched in order."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.session_id = 0
        self.passwd = bytes(16)
        self.timeout_ms = 0
        self.xid = 0
        self.pending: list[tuple[int, asyncio.Future[Reply]]] = []
        self.reply_zxids: list[int] = []   # in the order replies arrived (this connection and earlier ones)
        self.last_zxid = 0
        self.closed = True
        self.lost_reason = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self, timeout_ms: int = 30000, session_id: int = 0, passwd: bytes | None = None,
                      last_zxid: int = 0) -> bool:
        """Handshake; False if the server closed the connection or called the session expired."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)
        self.reader, self.writer = reader, writer
        body = struct.pack(">iqiq", 0, last_zxid, timeout_ms, session_id) + _str(passwd or bytes(16)) + b"\0"
        writer.write(struct.pack(">i", len(body)) + body)
        try:
            head = await asyncio.wait_for(reader.readexactly(4), 10)
            resp = await asyncio.wait_for(reader.readexactly(struct.unpack(">i", head)[0]), 10)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return False
        b = Buf(resp)
        b.int()
        self.timeout_ms = b.int()
        sid = struct.unpack_from(">q", resp, b.pos)[0]
        b.pos += 8
        pw = b.buffer() or b""
        if self.timeout_ms <= 0 or sid == 0:
            writer.close()
            return False
        self.session_id, self.passwd = sid, pw
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._read_loop())
        return True

    async def _read_loop(self) -> None:
        assert self.reader is not None
        try:
            while True:
                head = await self.reader.readexactly(4)
                frame = await self.reader.readexactly(struct.unpack(">i", head)[0])
                xid, zxid, err = struct.unpack_from(">iqi", frame)
                if xid in (-1, -2):  # a watch event or a ping's answer
                    continue
                if not self.pending:
                    raise ConnectionLost(f"reply xid {xid} with nothing pending")
                want, fut = self.pending.pop(0)
                if want != xid:
                    raise ConnectionLost(f"reply xid {xid}, expected {want}")
                self.reply_zxids.append(zxid)
                self.last_zxid = max(self.last_zxid, zxid)
                if not fut.done():
                    fut.set_result(Reply(zxid, err, frame[16:]))
        except (asyncio.IncompleteReadError, ConnectionError, ConnectionLost, OSError) as e:
            self._lost(e)
        except asyncio.CancelledError:
            self._lost(ConnectionLost("cancelled"))
            raise

    def _lost(self, why: BaseException) -> None:
        self.closed = True
        self.lost_reason = f"{type(why).__name__}: {why}"
        pending, self.pending = self.pending, []
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(ConnectionLost(str(why)))
        if self.writer is not None:
            self.writer.close()

    def send(self, op: int, body: bytes) -> asyncio.Future[Reply]:
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if self.closed or self.writer is None:
            fut.set_exception(ConnectionLost(f"closed ({self.lost_reason or 'never opened'})"))
            return fut
        self.xid += 1
        frame = struct.pack(">ii", self.xid, op) + body
        self.pending.append((self.xid, fut))
        self.writer.write(struct.pack(">i", len(frame)) + frame)
        return fut

    async def call(self, op: int, body: bytes) -> Reply:
        return await asyncio.wait_for(self.send(op, body), 30)

    async def drain(self) -> None:
        if self.writer is not None and not self.closed:
            try:
                await self.writer.drain()
            except ConnectionError:
                pass

    async def close_session(self) -> None:
        if not self.closed:
            try:
                await asyncio.wait_for(self.send(OP_CLOSE, b""), 10)
            except (TimeoutError, ConnectionLost):
                pass
        self.abort()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.task is not None:
            self.task.cancel()
        self.closed = True

    # convenience calls for set-up and verification

    async def ensure(self, path: str, data: bytes = b"") -> None:
        r = await self.call(OP_CREATE, create_body(path, data))
        if r.err not in (OK, NODEEXISTS):
            raise AssertionError(f"create {path}: error {r.err}")

    async def get(self, path: str) -> tuple[bytes, Stat] | None:
        r = await self.call(OP_GET_DATA, path_watch_body(path))
        if r.err == NONODE:
            return None
        if r.err != OK:
            raise AssertionError(f"getData {path}: error {r.err}")
        b = Buf(r.body)
        data = b.buffer() or b""
        return data, b.stat()

    async def children(self, path: str) -> list[str] | None:
        r = await self.call(OP_GET_CHILDREN, path_watch_body(path))
        if r.err == NONODE:
            return None
        if r.err != OK:
            raise AssertionError(f"getChildren {path}: error {r.err}")
        b = Buf(r.body)
        return [b.string() for _ in range(b.int())]


async def dump_children(conn: RawConn, parent: str) -> dict[str, tuple[bytes, Stat]]:
    """name → (data, Stat) of every child of parent, read pipelined."""
    names = await conn.children(parent) or []
    futs = [conn.send(OP_GET_DATA, path_watch_body(f"{parent.rstrip('/')}/{n}")) for n in names]
    out: dict[str, tuple[bytes, Stat]] = {}
    for name, fut in zip(names, futs, strict=True):
        r = await asyncio.wait_for(fut, 30)
        if r.err == NONODE:
            continue
        b = Buf(r.body)
        data = b.buffer() or b""
        out[name] = (data, b.stat())
    return out


async def dump_tree(conn: RawConn, root: str) -> dict[str, tuple[bytes, Stat]]:
    """path → (data, Stat) of root and everything under it."""
    out: dict[str, tuple[bytes, Stat]] = {}
    top = await conn.get(root)
    if top is None:
        return out
    out[root] = top
    level = [root]
    while level:
        nxt: list[str] = []
        dumps = await asyncio.gather(*(dump_children(conn, p) for p in level))
        for parent, kids in zip(level, dumps, strict=True):
            for name, v in kids.items():
                path = f"{parent.rstrip('/')}/{name}"
                out[path] = v
                if v[1].num_children:
                    nxt.append(path)
        level = nxt
    return out


# ---------------------------------------------------------------------------------------------------
# the history


@dataclass
class Op:
    seq: int                 # order sent on its session
    kind: str                # create | set | delete | multi | seq
    path: str
    data: bytes = b""
    version: int = -1        # set: the expected version
    k: int = 0
    status: str = "pending"  # pending | ok | err
    err: int = 0
    zxid: int = 0
    stat: Stat | None = None
    result_path: str = ""
    xid: int = 0             # the request's xid (the cxid of its txn)


@dataclass
class ClientLoad:
    """One client's session and what it sent."""

    index: int
    tag: str
    conn: RawConn
    rng: random.Random
    max_ops: int
    ops: list[Op] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    creates_acked: list[int] = field(default_factory=list)   # k of acknowledged, not yet deleted n<k>
    reg_next: int = 0
    reg_outstanding: int = 0
    reg_resync: bool = False
    n_k: int = 0
    m_k: int = 0
    s_k: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    pad: int = 0             # bytes of filler appended to created data (bigger log entries)
    acked: asyncio.Event | None = None  # set at every acknowledgement (a fault can wait for one)

    @property
    def base(self) -> str:
        return f"/w/{self.tag}/c{self.index}"

    def token(self) -> str:
        return f"{self.rng.getrandbits(40):010x}" + "." * self.pad

    async def setup(self) -> None:
        await self.conn.ensure(self.base)
        await self.conn.ensure(f"{self.base}/reg", b"init")
        await self.conn.ensure(f"{self.base}/mreg", b"-1")

    async def run(self, stop: asyncio.Event, window: int = WINDOW) -> None:
        sem = asyncio.Semaphore(window)
        inflight: set[asyncio.Future[Reply]] = set()
        while not stop.is_set() and not self.conn.closed and len(self.ops) < self.max_ops:
            await sem.acquire()
            if stop.is_set() or self.conn.closed:
                sem.release()
                break
            op, fut = self._next()
            inflight.add(fut)

            def done(f: asyncio.Future[Reply], op: Op = op) -> None:
                sem.release()
                inflight.discard(f)
                self._finish(op, f)

            fut.add_done_callback(done)
            if len(self.ops) % 16 == 0:
                await self.conn.drain()
        if inflight:
            await asyncio.wait(inflight, timeout=30)

    def _next(self) -> tuple[Op, asyncio.Future[Reply]]:
        r = self.rng.random()
        seq = len(self.ops)
        if r < 0.25 and not self.reg_resync:
            v = self.reg_next
            self.reg_next += 1
            self.reg_outstanding += 1
            op = Op(seq, "set", f"{self.base}/reg", f"{self.tag}-c{self.index}-v{v + 1}-{self.token()}".encode(),
                    version=v)
            fut = self.conn.send(OP_SET_DATA, set_body(op.path, op.data, v))
        elif r < 0.35 and self.creates_acked:
            k = self.creates_acked.pop(self.rng.randrange(len(self.creates_acked)))
            op = Op(seq, "delete", f"{self.base}/n{k}", k=k)
            fut = self.conn.send(OP_DELETE, delete_body(op.path, 0))
        elif r < 0.50:
            k = self.m_k
            self.m_k += 1
            data = f"{self.tag}-c{self.index}-m{k}-{self.token()}".encode()
            op = Op(seq, "multi", f"{self.base}/ma{k}", data, k=k)
            fut = self.conn.send(OP_MULTI, multi_body([
                (OP_CREATE, create_body(f"{self.base}/ma{k}", data)),
                (OP_CREATE, create_body(f"{self.base}/mb{k}", data)),
                (OP_SET_DATA, set_body(f"{self.base}/mreg", str(k).encode(), -1))]))
        elif r < 0.65:
            k = self.s_k
            self.s_k += 1
            op = Op(seq, "seq", "/seq/s-", f"{self.tag}-c{self.index}-s{k}-{self.token()}".encode(), k=k)
            fut = self.conn.send(OP_CREATE2, create_body(op.path, op.data, SEQUENTIAL))
        else:
            k = self.n_k
            self.n_k += 1
            op = Op(seq, "create", f"{self.base}/n{k}", f"{self.tag}-c{self.index}-n{k}-{self.token()}".encode(),
                    k=k)
            fut = self.conn.send(OP_CREATE2, create_body(op.path, op.data))
        op.xid = self.conn.xid
        self.ops.append(op)
        return op, fut

    def _finish(self, op: Op, f: asyncio.Future[Reply]) -> None:
        if op.kind == "set":
            self.reg_outstanding -= 1
        if f.cancelled() or f.exception() is not None:
            return  # pending: unknown outcome
        rep = f.result()
        op.zxid = rep.zxid
        if rep.err != OK:
            op.status, op.err = "err", rep.err
            self.errors[rep.err] = self.errors.get(rep.err, 0) + 1
            if op.kind == "set":
                self.reg_resync = True
                if self.reg_outstanding == 0:
                    asyncio.get_running_loop().create_task(self._resync())
            return
        op.status = "ok"
        if self.acked is not None:
            self.acked.set()
        b = Buf(rep.body)
        if op.kind in ("create", "seq"):
            op.result_path = b.string()
            op.stat = b.stat()
            if op.stat.czxid != rep.zxid:
                self.violations.append(f"{op.path}: create reply zxid 0x{rep.zxid:x} != czxid 0x{op.stat.czxid:x}")
            if op.kind == "create":
                self.creates_acked.append(op.k)
        elif op.kind == "set":
            op.stat = b.stat()
            if op.stat.version != op.version + 1:
                self.violations.append(f"{op.path}: set with version {op.version} acknowledged as version "
                                       f"{op.stat.version}")
        elif op.kind == "multi":
            results = []
            while True:
                typ, done, err = b.int(), b.bool(), b.int()
                if done:
                    break
                results.append((typ, err))
                if typ == OP_CREATE:
                    b.string()
                elif typ == OP_SET_DATA:
                    b.stat()
                elif typ == -1:
                    b.int()
            if [t for t, _ in results] != [OP_CREATE, OP_CREATE, OP_SET_DATA]:
                self.violations.append(f"multi {op.k}: acknowledged with results {results}")
        if op.kind == "set" and self.reg_resync and self.reg_outstanding == 0:
            asyncio.get_running_loop().create_task(self._resync())

    async def _resync(self) -> None:
        # a set failed (SYSTEMERROR on a full disk): read the register's version before going on
        try:
            got = await self.conn.get(f"{self.base}/reg")
        except (TimeoutError, ConnectionLost, AssertionError):
            return
        if got is not None and self.reg_outstanding == 0:
            self.reg_next = got[1].version
            self.reg_resync = False


# ---------------------------------------------------------------------------------------------------
# checkers


SEQ_RE = re.compile(r"^s-(\d{10})$")


def seq_number(path: str) -> int:
    m = SEQ_RE.match(path.rsplit("/", 1)[-1])
    if m is None:
        raise ValueError(f"not a sequential name: {path}")
    return int(m.group(1))


def check_reply_zxids(loads: list[ClientLoad]) -> list[str]:
    out = []
    for ld in loads:
        z = ld.conn.reply_zxids
        for i in range(1, len(z)):
            if z[i] < z[i - 1]:
                out.append(f"client {ld.index} (session 0x{ld.conn.session_id:x}): reply zxid went back from "
                           f"0x{z[i - 1]:x} to 0x{z[i]:x} (reply {i})")
                break
    return out


def check_acked_zxids_unique(loads: list[ClientLoad]) -> list[str]:
    seen: dict[int, str] = {}
    out = []
    for ld in loads:
        for op in ld.ops:
            if op.status == "ok" and op.kind != "get":
                if op.zxid in seen:
                    out.append(f"zxid 0x{op.zxid:x} acknowledged twice: {seen[op.zxid]} and {op.kind} {op.path}")
                seen[op.zxid] = f"{op.kind} {op.path}"
    return out


def max_acked_zxid(loads: list[ClientLoad]) -> int:
    return max((op.zxid for ld in loads for op in ld.ops if op.status == "ok"), default=0)


def check_client(ld: ClientLoad, kids: dict[str, tuple[bytes, Stat]]) -> list[str]:
    """The recovered children of one client's subtree against its history."""
    out: list[str] = list(ld.violations)
    base = ld.base
    applied: dict[int, bool | None] = {}   # op.seq → was it applied (None: cannot tell)
    creates = {op.k: op for op in ld.ops if op.kind == "create"}
    deletes = {op.k: op for op in ld.ops if op.kind == "delete"}
    known = {"reg", "mreg"}
    for k, op in creates.items():
        name = f"n{k}"
        known.add(name)
        got = kids.get(name)
        d = deletes.get(k)
        if got is not None and got[0] != op.data:
            out.append(f"{base}/{name}: data {got[0]!r}, sent {op.data!r}")
        if op.status == "err":
            applied[op.seq] = False
            if got is not None:
                out.append(f"{base}/{name}: create failed with {op.err} but the znode exists")
            continue
        if d is None or d.status == "err":
            applied[op.seq] = got is not None
            if op.status == "ok":
                if got is None:
                    out.append(f"{base}/{name}: acknowledged create (zxid 0x{op.zxid:x}) lost")
                elif op.stat is not None and got[1].czxid != op.stat.czxid:
                    out.append(f"{base}/{name}: czxid 0x{got[1].czxid:x}, acknowledged 0x{op.stat.czxid:x}")
        else:
            # only acknowledged creates are deleted
            applied[op.seq] = True
            applied[d.seq] = got is None
            if d.status == "ok" and got is not None:
                out.append(f"{base}/{name}: acknowledged delete (zxid 0x{d.zxid:x}) lost")
    # the version-chained register
    reg = kids.get("reg")
    sets = [op for op in ld.ops if op.kind == "set"]
    if reg is None:
        out.append(f"{base}/reg missing")
    else:
        data, st = reg
        acked = [op for op in sets if op.status == "ok"]
        top = max((op.version + 1 for op in acked), default=0)
        if st.version < top:
            out.append(f"{base}/reg: version {st.version}, but version {top} was acknowledged")
        if st.version == 0:
            if data != b"init":
                out.append(f"{base}/reg: version 0 with data {data!r}")
        else:
            cands = [op for op in sets if op.version == st.version - 1 and op.status != "err"]
            if not any(op.data == data for op in cands):
                out.append(f"{base}/reg: version {st.version} holds {data!r}, which no set for that version sent")
            for op in cands:
                if op.status == "ok" and op.data == data and op.stat is not None and op.stat.mzxid != st.mzxid:
                    out.append(f"{base}/reg: mzxid 0x{st.mzxid:x}, acknowledged 0x{op.stat.mzxid:x}")
        per_version: dict[int, int] = {}
        for op in sets:
            if op.status != "err":
                per_version[op.version] = per_version.get(op.version, 0) + 1
        for op in sets:
            if op.status == "err":
                applied[op.seq] = False
            elif per_version[op.version] == 1:
                applied[op.seq] = op.version < st.version
    # multis: all or nothing, and mreg counts them
    multis = [op for op in ld.ops if op.kind == "multi"]
    applied_ks = []
    for op in multis:
        known.update((f"ma{op.k}", f"mb{op.k}"))
        a, b = kids.get(f"ma{op.k}"), kids.get(f"mb{op.k}")
        if (a is None) != (b is None):
            out.append(f"{base}: multi {op.k} half applied (ma {a is not None}, mb {b is not None})")
        for got in (a, b):
            if got is not None and got[0] != op.data:
                out.append(f"{base}: multi {op.k} data {got[0]!r}, sent {op.data!r}")
        there = a is not None and b is not None
        applied[op.seq] = there
        if there:
            applied_ks.append(op.k)
        if op.status == "ok" and not there:
            out.append(f"{base}: acknowledged multi {op.k} (zxid 0x{op.zxid:x}) lost")
        if op.status == "err" and (a is not None or b is not None):
            out.append(f"{base}: multi {op.k} failed with {op.err} but is applied")
    mreg = kids.get("mreg")
    if mreg is None:
        out.append(f"{base}/mreg missing")
    else:
        want = str(max(applied_ks)).encode() if applied_ks else b"-1"
        if mreg[0] != want or mreg[1].version != len(applied_ks):
            out.append(f"{base}/mreg: ({mreg[0]!r}, version {mreg[1].version}) but the applied multis "
                       f"say ({want!r}, version {len(applied_ks)})")
    for name in kids:
        if name not in known:
            out.append(f"{base}/{name}: a znode this client never created")
    # one session's writes apply in order: nothing applied after something that was not
    first_missing: Op | None = None
    for op in ld.ops:
        was = applied.get(op.seq)
        if op.status == "err" or was is None:
            continue
        if not was and first_missing is None:
            first_missing = op
        elif was and first_missing is not None:
            out.append(f"{base}: {op.kind} #{op.seq} ({op.path}) is applied but {first_missing.kind} "
                       f"#{first_missing.seq} ({first_missing.path}), sent before it, is not")
            break
    return out


def check_seq(loads: list[ClientLoad], seq_kids: dict[str, tuple[bytes, Stat]]) -> list[str]:
    """Sequential creates of these loads against /seq's recovered children."""
    out: list[str] = []
    by_data: dict[bytes, list[str]] = {}
    for name, (data, _) in seq_kids.items():
        by_data.setdefault(data, []).append(name)
    acked: list[Op] = []
    for ld in loads:
        last = -1
        for op in ld.ops:
            if op.kind != "seq":
                continue
            names = by_data.get(op.data, [])
            if len(names) > 1:
                out.append(f"sequential create {op.data!r} is there {len(names)} times: {names}")
            if op.status == "ok":
                acked.append(op)
                name = op.result_path.rsplit("/", 1)[-1]
                n = seq_number(name)
                if n <= last:
                    out.append(f"client {ld.index}: sequential name {name} after {last:010d}")
                last = n
                if name not in seq_kids:
                    out.append(f"acknowledged sequential create {op.result_path} (zxid 0x{op.zxid:x}) lost")
                elif seq_kids[name][0] != op.data:
                    out.append(f"{op.result_path}: data {seq_kids[name][0]!r}, sent {op.data!r}")
            elif op.status == "err" and names:
                out.append(f"sequential create {op.data!r} failed with {op.err} but is there as {names}")
    names_acked = [op.result_path for op in acked]
    if len(set(names_acked)) != len(names_acked):
        out.append("the same sequential name was acknowledged twice")
    acked.sort(key=lambda op: op.zxid)
    for a, b in zip(acked, acked[1:], strict=False):
        if seq_number(b.result_path) <= seq_number(a.result_path):
            out.append(f"sequential names do not follow zxids: {a.result_path} (0x{a.zxid:x}) then "
                       f"{b.result_path} (0x{b.zxid:x})")
            break
    return out


def stable_part(st: Stat) -> tuple[Any, ...]:
    return (st.czxid, st.mzxid, st.ctime, st.mtime, st.version, st.cversion, st.aversion,
            st.ephemeral_owner, st.data_length, st.num_children, st.pzxid)


def compare_dumps(before: dict[str, tuple[bytes, Stat]], after: dict[str, tuple[bytes, Stat]],
                  what: str) -> list[str]:
    """Everything in `before` is in `after`, unchanged."""
    out = []
    for path, (data, st) in before.items():
        got = after.get(path)
        if got is None:
            out.append(f"{what}: {path} is gone")
        elif got[0] != data or stable_part(got[1]) != stable_part(st):
            out.append(f"{what}: {path} changed from ({data!r}, {st}) to ({got[0]!r}, {got[1]})")
        if len(out) > 20:
            out.append("...")
            break
    return out


# ---------------------------------------------------------------------------------------------------
# an iteration: load, a fault at some moment, and what the clients saw


@dataclass
class LoadRun:
    tag: str
    loads: list[ClientLoad]
    seconds: float = 0.0
    acked: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_ack(self, timeout_s: float) -> bool:
        """Wait for the next acknowledgement to any client; False after timeout_s."""
        self.acked.clear()
        try:
            await asyncio.wait_for(self.acked.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    @property
    def counts(self) -> dict[str, int]:
        c = {"ok": 0, "err": 0, "pending": 0}
        for ld in self.loads:
            for op in ld.ops:
                c[op.status] += 1
        return c


async def start_loads(host: str, port: int, tag: str, n_clients: int, rng: random.Random,
                      max_ops: int, session_timeout_ms: int = 30000, pad: int = 0) -> LoadRun:
    loads = []
    for i in range(n_clients):
        conn = RawConn(host, port)
        if not await conn.connect(session_timeout_ms):
            raise AssertionError("could not open a session")
        loads.append(ClientLoad(i, tag, conn, random.Random(rng.getrandbits(64)), max_ops, pad=pad))
    run = LoadRun(tag, loads)
    for ld in loads:
        ld.acked = run.acked
    c0 = loads[0].conn
    for p in ("/w", f"/w/{tag}", "/seq"):
        await c0.ensure(p)
    for ld in loads:
        await ld.setup()
    return run


async def run_until(run: LoadRun, fault: Callable[[asyncio.Event], Any], window: int = WINDOW) -> None:
    """Run the loads until `fault(stop)` returns (it sets stop or kills the server)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks = [loop.create_task(ld.run(stop, window)) for ld in run.loads]
    try:
        await fault(stop)
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=60)
        for ld in run.loads:
            ld.conn.abort()
    run.seconds = loop.time() - t0


async def verify(host: str, port: int, runs: list[LoadRun], check_sessions: bool = True) -> list[str]:
    """After a restart: the recovered tree against the histories of `runs` (each run once, the last
    fault's), reconnect their sessions with their last zxid, probe sequential numbering."""
    conn = RawConn(host, port)
    if not await conn.connect(30000):
        return ["cannot open a session after the restart"]
    out: list[str] = []
    try:
        seq_kids = await dump_children(conn, "/seq")
        for run in runs:
            for ld in run.loads:
                kids = await dump_children(conn, ld.base)
                out += check_client(ld, kids)
            out += check_seq(run.loads, seq_kids)
            out += check_reply_zxids(run.loads)
            out += check_acked_zxids_unique(run.loads)
        top = max((max_acked_zxid(r.loads) for r in runs), default=0)
        # a new sequential create numbers after every one there is
        r = await conn.call(OP_CREATE2, create_body("/seq/s-", b"probe", SEQUENTIAL))
        if r.err != OK:
            out.append(f"probe sequential create failed with {r.err}")
        else:
            probe = Buf(r.body).string()
            highest = max((seq_number(n) for n in seq_kids), default=-1)
            if seq_number(probe) <= highest:
                out.append(f"after the restart a sequential create got {probe}, but s-{highest:010d} exists")
            if r.zxid <= top:
                out.append(f"after the restart the next zxid is 0x{r.zxid:x}, not past the last acknowledged "
                           f"0x{top:x}")
        if check_sessions:
            for run in runs:
                out += await reconnect_sessions(host, port, run.loads)
    finally:
        await conn.close_session()
    return out


async def reconnect_sessions(host: str, port: int, loads: list[ClientLoad]) -> list[str]:
    """Each session comes back with the last zxid it saw: the server must not have gone back past it."""
    out = []
    for ld in loads:
        old = ld.conn
        conn = RawConn(host, port)
        conn.reply_zxids = list(old.reply_zxids)
        ok = await conn.connect(old.timeout_ms or 30000, old.session_id, old.passwd, old.last_zxid)
        if not ok:
            probe = RawConn(host, port)
            if await probe.connect(30000, last_zxid=old.last_zxid):
                await probe.close_session()
                continue  # the session expired meanwhile; the server has seen that zxid
            out.append(f"client {ld.index}: refused after the restart although it saw zxid 0x{old.last_zxid:x}: "
                       "the server went back in time")
            continue
        r = await conn.call(OP_GET_DATA, path_watch_body(ld.base))
        if r.zxid < old.last_zxid:
            out.append(f"client {ld.index}: reply zxid 0x{r.zxid:x} after reconnecting, it had seen "
                       f"0x{old.last_zxid:x}")
        out += check_reply_zxids([ClientLoad(ld.index, ld.tag, conn, ld.rng, 0)])
        await conn.close_session()
    return out


async def snapshot_of(host: str, port: int, roots: list[str]) -> dict[str, tuple[bytes, Stat]]:
    conn = RawConn(host, port)
    if not await conn.connect(30000):
        raise AssertionError("cannot open a session")
    try:
        out: dict[str, tuple[bytes, Stat]] = {}
        for root in roots:
            out.update(await dump_tree(conn, root))
        return out
    finally:
        await conn.close_session()
