"""The abuse cases. Each one has an optional `prepare` (not measured: the legitimate data the attack
needs, such as a 1 MB znode or a node with 100k children), the `attack` (measured: the server's RSS
is sampled and the probe runs throughout) and a `cleanup`.

An attack returns an Outcome: a line of figures for the table, the zkfast bound (the named limits it
could fill, see budget.py) and the zkfast-only expectations it checked (connection limits honoured,
half-open connections closed). Apache ZooKeeper runs the same attack; its figures are the reference.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from testbase.process import ServerProcess, four_letter
from testbase.rawclient import u_str

from abuse import servers
from abuse.attackers import (
    Attacker,
    client_hello,
    client_tls_context,
    close_all,
    hold,
    in_threads,
    open_attackers,
    source_ips,
    spread,
    wait_admitted,
)
from abuse.budget import NEVER_READING_1MB_ATTACKERS, NEVER_READING_1MB_CAP_BYTES, Bound, Budget
from abuse.measure import MIB, live_bytes, proc_status_bytes
from abuse.protocol import (
    ADD_WATCH,
    AUTH_XID,
    CHECK,
    CREATE,
    DELETE,
    EXISTS,
    GET_CHILDREN,
    GET_DATA,
    MULTI,
    MULTI_READ,
    OK,
    SET_DATA,
    SET_WATCHES,
    SET_WATCHES_XID,
    add_watch_body,
    auth_packet,
    create_body,
    frame_of_length,
    i32,
    multi_body,
    path_watch,
    req_frame,
    sasl_frame,
    set_data_body,
    set_watches_body,
)

BIG_DATA_BYTES = 1_000_000   # "one 1 MB znode"
SMALL_DATA_BYTES = 100
STAT_BYTES = 68
REPLY_HEADER_BYTES = 16
UNREAD_RCVBUF = 4096         # the attackers' receive buffer, set before connect
SETUP_TIMEOUT_S = 120.0
ATTACK_TIMEOUT_S = 300.0     # the outer bound of in_threads; every attack has its own deadline
ADMISSION_RETRY_S = 0.1
PIPELINE_TIMEOUT_S = 20.0    # pipelining clients get this long (at least hold_s) for their replies
FLOOD_TIMEOUT_S = 30.0       # a flood stops trying after this long, whatever the server answers


@dataclass(frozen=True)
class Sizes:
    """How big each attack is. CI runs the defaults; bench/abuse.py scales them."""

    hold_s: float = 2.0
    big_attackers: int = 5
    big_pipelined: int = 100
    small_pipelined: int = 100_000
    small_conns: int = 10
    small_pipelined_each: int = 20_000
    slowloris: int = 25
    half_frames: int = 20
    flood_attempts: int = 100
    flood_ips: int = 8
    watches: int = 100_000
    fanout_watchers: int = 5
    multi_conns: int = 3
    multis_per_conn: int = 10
    multi_ops: int = 5000
    multiread_ops: int = 40
    max_frame_conns: int = 3
    max_frames_per_conn: int = 20
    wide_children: int = 100_000
    wide_attackers: int = 5
    wide_pipelined: int = 20
    deep_levels: int = 1000
    deep_ops: int = 10_000
    auth_digests: int = 20_000
    auth_reconnects: int = 100
    tls_ips: int = 5  # x tls_per_ip: more than maxCnxns
    tls_per_ip: int = 20
    admin_watches: int = 100_000
    admin_readers: int = 2
    admin_unread: int = 4
    max_cnxns: int = 60
    per_ip: int = 10  # attackers per source address where the case is not about maxClientCnxns

    def scaled(self, factor: float) -> Sizes:
        """Every count times factor; durations, per-address figures and what sets a frame's size
        unchanged (a multi of 5000 setData ops is close to jute.maxbuffer already)."""
        keep = {"hold_s", "per_ip", "tls_per_ip", "multi_ops", "deep_levels"}
        changes = {k: max(1, int(v * factor)) for k, v in vars(self).items()
                   if k not in keep and isinstance(v, int)}
        return replace(self, **changes)


@dataclass
class Target:
    kind: str
    server: ServerProcess
    root: str            # this case's own znode, created before prepare
    sizes: Sizes
    budget: Budget
    secure_port: int | None = None

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    @property
    def sessionless_s(self) -> float:
        return int(self.server.cfg.get("nio.sessionlessCnxnTimeout",
                                       self.budget.sessionless_default_ms)) / 1000

    def deadline(self, seconds: float | None = None) -> float:
        return time.monotonic() + (self.sizes.hold_s if seconds is None else seconds)


@dataclass
class Outcome:
    detail: str
    bound: Bound
    checks: dict[str, bool] = field(default_factory=dict)  # zkfast-only expectations


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    attack: Callable[[Target, Any], Outcome]
    prepare: Callable[[Target], Any] | None = None
    cleanup: Callable[[Any], None] | None = None
    pair: str = servers.FRESH  # which servers (servers.py): "shared", "fresh" or "tls"


# ------------------------------------------------------------------------------------ helpers

def setup_session(t: Target) -> Attacker:
    """A session from 127.0.0.1 for setting up and checking: a server still busy with an earlier
    attack (or still counting its closed connections) is given up to SETUP_TIMEOUT_S."""
    end = time.monotonic() + SETUP_TIMEOUT_S
    while True:
        try:
            a = Attacker(t.server.host, t.server.port)
        except OSError:
            pass
        else:
            if a.handshake():
                return a
            a.close()
        if time.monotonic() > end:
            raise ConnectionError(f"{t.kind} gave no session to 127.0.0.1 within {SETUP_TIMEOUT_S:.0f}s")
        time.sleep(ADMISSION_RETRY_S)


def pipeline(a: Attacker, frames: list[bytes], deadline: float) -> list[tuple[int, int]]:
    """Send frames and read their replies at the same time (a client that reads), until all are
    answered or the deadline; the (xid, err) of the replies read."""
    data = b"".join(frames)
    out = in_threads([lambda: a.send_until(data, deadline), lambda: a.read_replies(len(frames), deadline)],
                     ATTACK_TIMEOUT_S)
    return out[1] if isinstance(out[1], list) else []


def setup_pipeline(t: Target, frames: list[bytes], what: str) -> None:
    a = setup_session(t)
    try:
        replies = pipeline(a, frames, time.monotonic() + SETUP_TIMEOUT_S)
    finally:
        a.close()
    bad = [err for _, err in replies if err != OK]
    if len(replies) != len(frames) or bad:
        raise RuntimeError(f"{t.kind}: setting up {what}: {len(replies)}/{len(frames)} answered, "
                           f"errors {bad[:5]}")


def create(t: Target, path: str, data: bytes = b"") -> None:
    setup_pipeline(t, [req_frame(1, CREATE, create_body(path, data))], f"create {path[:60]}")


def closed_count(attackers: list[Attacker]) -> int:
    return sum(a.server_closed() for a in attackers)


def four_letter_quiet(t: Target, cmd: str) -> str:
    try:
        return four_letter(t.server.host, t.server.port, cmd)
    except OSError:
        return ""


def unread_attack(t: Target, ips: list[str], frames_each: bytes, n_requests: int,
                  request_bytes: int, reply_bytes: int) -> tuple[list[Attacker], Bound, int]:
    """Never-reading attackers (4 KB receive buffers) from ips, each pipelining frames_each and
    never reading; held for hold_s. Returns them (still open), the bound and the bytes sent."""
    attackers = open_attackers(t.server, ips, rcvbuf=UNREAD_RCVBUF)
    deadline = t.deadline()
    sent = in_threads([lambda a=a: a.send_until(frames_each, deadline) for a in attackers], ATTACK_TIMEOUT_S)
    hold(max(0.0, deadline - time.monotonic()))
    bound = Bound().connections(len(attackers))
    bound.add("unread output (soft limit + one reply)", len(attackers), t.budget.unread_output(reply_bytes))
    bound.add("queued requests", len(attackers), t.budget.queued(n_requests, request_bytes))
    return attackers, bound, sum(s for s in sent if isinstance(s, int))


def pipelining_clients(t: Target, first_ip: int, frame_sets: list[list[bytes]],
                       reply_bytes: int, writes: bool = False) -> tuple[int, Bound]:
    """Clients that read their replies, each pipelining one frame set (until answered or a deadline);
    the replies they got, and the bound: each may fill its queue and its output."""
    conns = open_attackers(t.server, spread(len(frame_sets), first_ip, t.sizes.per_ip))
    deadline = t.deadline(max(t.sizes.hold_s, PIPELINE_TIMEOUT_S))
    try:
        results = in_threads([lambda a=a, f=f: pipeline(a, f, deadline) for a, f in zip(conns, frame_sets, strict=True)],
                             ATTACK_TIMEOUT_S)
    finally:
        close_all(conns)
    answered = sum(len(r) for r in results if isinstance(r, list))
    longest = max(frame_sets, key=len)
    largest = max(len(f) for fs in frame_sets for f in fs) - 4
    bound = Bound().connections(len(conns)).add("pipelining client (queue + output)", len(conns),
                        t.budget.reading_client(len(longest), largest, reply_bytes, writes))
    return answered, bound


# ------------------------------------------------------------------------------------ cases

def idle(t: Target, _: Any) -> Outcome:
    hold(t.sizes.hold_s)
    return Outcome("probe only: the allowance for noise", Bound())


def prepare_big(t: Target) -> str:
    path = f"{t.root}/big"
    create(t, path, b"b" * BIG_DATA_BYTES)
    return path


def unread_big(t: Target, path: str) -> Outcome:
    n, p = t.sizes.big_attackers, t.sizes.big_pipelined
    one = req_frame(1, GET_DATA, path_watch(path))
    attackers, bound, sent = unread_attack(t, spread(n, 100, t.sizes.per_ip), one * p, p, len(one) - 4,
                                           REPLY_HEADER_BYTES + 4 + BIG_DATA_BYTES + STAT_BYTES)
    closed = closed_count(attackers)
    close_all(attackers)
    if n <= NEVER_READING_1MB_ATTACKERS:  # the figure is for its 5 attackers
        bound.cap = NEVER_READING_1MB_CAP_BYTES
    return Outcome(f"{n}x{p} getData 1MB sent {sent // len(one)}; closed by server {closed}/{n}", bound)


def prepare_small(t: Target) -> str:
    path = f"{t.root}/small"
    create(t, path, b"s" * SMALL_DATA_BYTES)
    return path


def unread_small(conns: Callable[[Sizes], int], each: Callable[[Sizes], int]) -> Callable[[Target, str], Outcome]:
    def attack(t: Target, path: str) -> Outcome:
        n, p = conns(t.sizes), each(t.sizes)
        one = req_frame(1, GET_DATA, path_watch(path))
        attackers, bound, sent = unread_attack(t, spread(n, 110, t.sizes.per_ip), one * p, p, len(one) - 4,
                                               REPLY_HEADER_BYTES + 4 + SMALL_DATA_BYTES + STAT_BYTES)
        queued = queued_by_cons(four_letter_quiet(t, "cons"), {a.source_ip for a in attackers})
        closed = closed_count(attackers)
        close_all(attackers)
        return Outcome(f"{n}x{p} getData 100B, sent {sent // len(one)}, queued {queued} (cons); "
                       f"closed {closed}/{n}", bound)

    return attack


def queued_by_cons(cons: str, ips: set[str]) -> int:
    """The sum of `queued=` over the connections from ips in a `cons` answer."""
    total = 0
    for line in cons.splitlines():
        if any(f"/{ip}:" in line for ip in ips) and "queued=" in line:
            total += int(line.split("queued=")[1].split(",")[0].split(")")[0])
    return total


def slowloris(t: Target, half_frame: bool) -> Outcome:
    """maxClientCnxns+5 silent sockets (or maxClientCnxns sending half a maximum-size ConnectRequest)
    from one address; then a real client from that address must get a session once the server
    closed them (nio.sessionlessCnxnTimeout; Apache's expiry rounds up to twice the timeout)."""
    ip = "127.0.0.30" if not half_frame else "127.0.0.31"
    n = t.sizes.half_frames if half_frame else t.sizes.slowloris
    t0 = time.monotonic()
    attackers = open_attackers(t.server, [ip] * n, handshake=False)
    window = 2 * t.sessionless_s + ADMISSION_RETRY_S
    bound = Bound().connections(min(n, servers.MAX_CLIENT_CNXNS))
    if half_frame:
        declared = t.budget.max_frame
        half = struct.pack(">i", declared) + b"\0" * (declared // 2)
        in_threads([lambda a=a: a.send_until(half, t0 + 1.0) for a in attackers], ATTACK_TIMEOUT_S)
        bound.add("partial frame (jute.maxbuffer)", min(n, servers.MAX_CLIENT_CNXNS), declared)
    waited_from = time.monotonic() - t0
    admission = wait_admitted(t.server.host, t.server.port, ip, t0 + window, ADMISSION_RETRY_S)
    closed = closed_count(attackers)
    close_all(attackers)
    after = admission.admitted_after_s
    when = f"{waited_from + after:.1f}s" if after is not None else "never"
    what = "half-frame" if half_frame else "silent"
    return Outcome(
        f"{n} {what} sockets from {ip}: real client admitted after {when} "
        f"(limit {window:.1f}s), server closed {closed}/{n}", bound,
        {f"a real client from {ip} got a session within 2 x nio.sessionlessCnxnTimeout": after is not None})


def flood(t: Target, ips: list[str], attempts_per_ip: int) -> Outcome:
    """Connections with sessions from ips until refused, held, then closed; a real client from each
    address must get a session afterwards. zkfast must hold maxClientCnxns per address and
    maxCnxns overall (the probe's two connections count)."""
    end = t.deadline(FLOOD_TIMEOUT_S)

    def attempts(ip: str) -> list[Attacker]:
        kept = []
        for _ in range(attempts_per_ip):
            if time.monotonic() > end:
                break
            try:
                a = Attacker(t.server.host, t.server.port, ip, timeout_s=1.0)
            except OSError:
                continue
            if a.handshake(wait_s=1.0):
                kept.append(a)
            else:
                a.close()
        return kept

    before = proc_status_bytes(t.pid, "VmRSS")
    per_ip = in_threads([lambda ip=ip: attempts(ip) for ip in ips], ATTACK_TIMEOUT_S)
    held: list[Attacker] = [a for group in per_ip if isinstance(group, list) for a in group]
    hold(t.sizes.hold_s)
    per_cnxn = (proc_status_bytes(t.pid, "VmRSS") - before) / max(1, len(held))
    alive = len(held) - closed_count(held)
    close_all(held)
    counts = {ip: sum(a.source_ip == ip for a in held) for ip in ips}
    readmitted = sum(wait_admitted(t.server.host, t.server.port, ip, t.deadline(2 * t.sessionless_s)).admitted_after_s
                     is not None for ip in ips)
    max_cnxns = int(t.server.cfg["maxCnxns"])
    checks = {
        f"at most maxClientCnxns={servers.MAX_CLIENT_CNXNS} sessions per address":
            max(counts.values()) <= servers.MAX_CLIENT_CNXNS,
        f"a real client from each address got a session afterwards ({readmitted}/{len(ips)})": readmitted == len(ips),
    }
    if max_cnxns:
        checks[f"at most maxCnxns={max_cnxns} connections, the probe's 2 included"] = len(held) + 2 <= max_cnxns
    return Outcome(f"{len(ips) * attempts_per_ip} tries from {len(ips)} address(es): {len(held)} admitted "
                   f"(max {max(counts.values())}/address, {per_cnxn / 1024:.0f} KiB per connection and session), "
                   f"{alive} alive "
                   f"after {t.sizes.hold_s:.1f}s",
                   Bound().connections(len(held)), checks)


def set_watches_frames(paths: list[str], per_frame: int = 10_000) -> list[bytes]:
    """SetWatches frames of per_frame exist watches each (10k short paths stay under jute.maxbuffer)."""
    return [req_frame(SET_WATCHES_XID, SET_WATCHES, set_watches_body(paths[i:i + per_frame]))
            for i in range(0, len(paths), per_frame)]


@dataclass
class WatchState:
    holder: Attacker
    long_path: str
    watched: list[str]
    bytes_per_watch: float


def prepare_watches(t: Target, count: int) -> tuple[Attacker, list[str], float]:
    """A session holding `count` exist watches on missing znodes, and what they cost per watch (the
    live heap after a full GC for Apache where jcmd is installed: a JVM's RSS only shows heap it
    has not touched before; VmRSS for zkfast)."""
    paths = [f"{t.root}/w/{i:07d}" for i in range(count)]
    before = live_bytes(t.kind, t.pid)
    holder = setup_session(t)
    frames = set_watches_frames(paths)
    replies = pipeline(holder, frames, time.monotonic() + SETUP_TIMEOUT_S)
    if len(replies) != len(frames) or any(err != OK for _, err in replies):
        holder.close()
        raise RuntimeError(f"{t.kind}: setWatches answered {replies[:3]}")
    per_watch = (live_bytes(t.kind, t.pid) - before) / count
    return holder, paths, per_watch


def prepare_fanout(t: Target) -> WatchState:
    create(t, f"{t.root}/w")
    # a long name makes each watch event big: the events owed to a never-reading watcher pass the
    # hard limit after a few thousand changes instead of a million
    long_path = f"{t.root}/{'L' * 30_000}"
    create(t, long_path)
    holder, paths, per_watch = prepare_watches(t, t.sizes.watches)
    return WatchState(holder, long_path, paths, per_watch)


def watch_fanout(t: Target, st: WatchState) -> Outcome:
    """Never-reading watchers with a persistent watch on the long-named znode; a writer changes it
    until each watcher is owed twice the hard limit (events are owed whatever the client reads, so
    only the hard limit bounds them); then one multi creates 1000 of the holder's watched paths
    (1000 NodeCreated events from one txn, which the holder reads)."""
    b = t.budget
    watchers = open_attackers(t.server, spread(t.sizes.fanout_watchers, 120, t.sizes.per_ip), rcvbuf=UNREAD_RCVBUF)
    writer = setup_session(t)
    event_bytes = REPLY_HEADER_BYTES + 12 + len(st.long_path.encode())
    changes = math.ceil(2 * b.hard / event_bytes)
    writer_done = threading.Event()

    def write() -> list[tuple[int, int]]:
        frames = [req_frame(i + 1, SET_DATA, set_data_body(st.long_path, b"v")) for i in range(changes)]
        fan = req_frame(changes + 1, MULTI, multi_body((CREATE, create_body(p)) for p in st.watched[:1000]))
        try:
            return pipeline(writer, [*frames, fan], t.deadline(max(t.sizes.hold_s, PIPELINE_TIMEOUT_S)))
        finally:
            writer_done.set()

    def holder_reads() -> int:
        """Read events until the writer is done and 0.5 s passed without one (bounded)."""
        events = 0
        quiet_until = 0.0
        end = t.deadline(ATTACK_TIMEOUT_S / 2)
        while time.monotonic() < end:
            if st.holder.read_frame(t.deadline(0.1)) is not None:
                events += 1
                quiet_until = 0.0
            elif writer_done.is_set():
                quiet_until = quiet_until or time.monotonic() + 0.5
                if time.monotonic() >= quiet_until:
                    break
        return events

    try:
        for w in watchers:
            w.sock.sendall(req_frame(1, ADD_WATCH, add_watch_body(st.long_path)))
            if w.read_replies(1, t.deadline(10)) != [(1, OK)]:
                raise RuntimeError(f"{t.kind}: addWatch refused")
        results = in_threads([write, holder_reads], ATTACK_TIMEOUT_S)
        hold(1.0)  # the peak is owed output that stays: keep it in place for the sampler
        closed = closed_count(watchers)
    finally:
        close_all(watchers)
        writer.close()
    acked = len(results[0]) if isinstance(results[0], list) else 0
    owed = min(acked, changes) * event_bytes
    bound = Bound().connections(len(watchers) + 2)
    bound.add("unrefusable output (hard limit + one event)", len(watchers), b.unrefusable_output(event_bytes))
    bound.add("writer (queue + output)", 1, b.reading_client(changes, event_bytes, REPLY_HEADER_BYTES + STAT_BYTES))
    bound.add("holder's events (output)", 1, b.unread_output(event_bytes))
    return Outcome(f"{len(st.watched)} watches: {st.bytes_per_watch:.0f} B/watch; {acked} changes owe each of "
                   f"{len(watchers)} watchers {owed / MIB:.0f} MiB; {results[1]} events to the holder; "
                   f"watchers closed {closed}/{len(watchers)}", bound)


def cleanup_watches(st: WatchState) -> None:
    st.holder.close()


def prepare_m(t: Target) -> str:
    path = f"{t.root}/m"
    create(t, path)
    return path


def multi_flood(t: Target, path: str) -> Outcome:
    """Connections pipelining multis of thousands of setData ops; every other one ends with a check
    that fails, so it is rolled back after all its ops were prepared."""
    s = t.sizes
    op = (SET_DATA, set_data_body(path, b"m" * 100))

    def multi(xid: int) -> bytes:
        ops = [op] * s.multi_ops
        if xid % 2:
            ops[-1] = (CHECK, u_str(path) + i32(10**9))
        return req_frame(xid, MULTI, multi_body(ops))

    frames = [multi(x + 1) for x in range(s.multis_per_conn)]
    reply = REPLY_HEADER_BYTES + s.multi_ops * (12 + STAT_BYTES)
    answered, bound = pipelining_clients(t, 130, [frames] * s.multi_conns, reply, writes=True)
    return Outcome(f"{s.multi_conns}x{len(frames)} multis of {s.multi_ops} ops ({len(frames[0]) / MIB:.2f} MiB "
                   f"each), {answered} answered", bound)


def multiread_oversized(t: Target, path: str) -> Outcome:
    """multiRead of getData on the 1 MB znode, its reply larger than the hard limit: zkfast closes
    the connection instead of building it (zkfast.limits: the hard limit is the largest reply)."""
    n = t.sizes.multiread_ops
    a = setup_session(t)
    try:
        a.sock.sendall(req_frame(1, MULTI_READ, multi_body((GET_DATA, path_watch(path)) for _ in range(n))))
        replies = a.read_replies(1, t.deadline(max(t.sizes.hold_s, PIPELINE_TIMEOUT_S)))
        closed = a.server_closed() or not replies
    finally:
        a.close()
    reply = n * (BIG_DATA_BYTES + STAT_BYTES + 12)
    answered = f"answered ({reply / MIB:.0f} MiB)" if replies else "closed the connection, no reply"
    bound = Bound().connections(1).add("largest reply (hard limit)", 1, t.budget.hard)
    too_big = reply > t.budget.hard
    return Outcome(f"multiRead {n}x getData 1MB: {answered}", bound,
                   {"a reply above the hard limit is refused by closing": closed or not too_big})


def max_frames(t: Target, path: str) -> Outcome:
    """Connections pipelining setData frames of exactly jute.maxbuffer bytes."""
    s = t.sizes
    frames = [frame_of_length(t.budget.max_frame, i + 1, path) for i in range(s.max_frames_per_conn)]
    answered, bound = pipelining_clients(t, 140, [frames] * s.max_frame_conns, REPLY_HEADER_BYTES + STAT_BYTES,
                                         writes=True)
    return Outcome(f"{s.max_frame_conns}x{len(frames)} setData frames of {t.budget.max_frame} B, "
                   f"{answered} answered", bound)


def prepare_max_frames(t: Target) -> str:
    path = f"{t.root}/f"
    # the znode starts as big as it will be: the attack replaces its data, never grows the tree
    create(t, path, b"f" * (t.budget.max_frame - 1024))
    return path


def prepare_wide(t: Target) -> str:
    path = f"{t.root}/wide"
    create(t, path)
    n = t.sizes.wide_children
    # multis of 5000 creates: a twentieth of the requests, so Apache builds the tree in a second
    names = [f"{path}/c{i:07d}" for i in range(n)]
    setup_pipeline(t, [req_frame(i + 1, MULTI, multi_body((CREATE, create_body(p)) for p in names[at:at + 5000]))
                       for i, at in enumerate(range(0, n, 5000))], f"{n} children")
    return path


def wide_unread(t: Target, path: str) -> Outcome:
    s = t.sizes
    one = req_frame(1, GET_CHILDREN, path_watch(path))
    reply = REPLY_HEADER_BYTES + 4 + s.wide_children * (4 + 8)
    attackers, bound, sent = unread_attack(t, spread(s.wide_attackers, 150, s.per_ip), one * s.wide_pipelined,
                                           s.wide_pipelined, len(one) - 4, reply)
    closed = closed_count(attackers)
    close_all(attackers)
    return Outcome(f"{s.wide_attackers}x{s.wide_pipelined} getChildren of {s.wide_children} children "
                   f"({reply / MIB:.1f} MiB each), sent {sent // len(one)}; closed {closed}/{s.wide_attackers}",
                   bound)


def prepare_deep(t: Target) -> str:
    levels = [t.root + "/d" * (i + 1) for i in range(t.sizes.deep_levels)]
    setup_pipeline(t, [req_frame(i + 1, CREATE, create_body(p)) for i, p in enumerate(levels)],
                   f"{len(levels)} levels")
    return levels[-1]


def deep_ops(t: Target, deepest: str) -> Outcome:
    """Reading clients pipelining exists/getData/getChildren on the deepest path, and one creating and
    deleting a child at the bottom."""
    s = t.sizes
    kinds = (EXISTS, GET_DATA, GET_CHILDREN)
    frames = [req_frame(i + 1, kinds[i % 3], path_watch(deepest)) for i in range(s.deep_ops)]
    churn = [req_frame(i + 1, CREATE if i % 2 == 0 else DELETE,
                       create_body(deepest + "/x") if i % 2 == 0 else u_str(deepest + "/x") + i32(-1))
             for i in range(min(s.deep_ops, 2000))]
    answered, bound = pipelining_clients(t, 160, [frames, frames, churn], REPLY_HEADER_BYTES + 4 + STAT_BYTES)
    return Outcome(f"{len(deepest)}-byte path, {s.deep_levels} levels: {answered} ops answered", bound)


def auth_flood(t: Target, _: Any) -> Outcome:
    """addauth digest with wrong passwords (1000 distinct, repeated) pipelined on one session;
    sessions that addauth an unknown scheme, and sessions sending bad SASL tokens, one after
    another. What each server answers is printed."""
    s = t.sizes
    digests = [auth_packet("digest", f"abuse:wrong-{i % 1000}".encode()) for i in range(s.auth_digests)]

    def one_shot(ip: str, packet: bytes, xid: int) -> tuple[int | None, bool]:
        """(the server's err, whether it closed the connection)."""
        try:
            a = Attacker(t.server.host, t.server.port, ip)
        except OSError:
            return None, True
        try:
            if not a.handshake(timeout_ms=2 * servers.TICK_TIME_MS):
                return None, True
            a.sock.sendall(packet)
            replies = a.read_replies(1, t.deadline(2.0))
            err = replies[0][1] if replies and replies[0][0] == xid else None
            gone = a.read_frame(t.deadline(0.2)) is None and a.server_closed()
            return err, gone
        finally:
            a.close()

    def loop(ip: str, packet: bytes, xid: int) -> tuple[set[int | None], int, int]:
        errs: set[int | None] = set()
        closed = n = 0
        end = t.deadline()
        while n < s.auth_reconnects and time.monotonic() < end:
            err, gone = one_shot(ip, packet, xid)
            errs.add(err)
            closed += gone
            n += 1
        return errs, closed, n

    digest_conn = setup_session(t)
    try:
        results = in_threads([
            lambda: pipeline(digest_conn, digests, t.deadline()),
            lambda: loop("127.0.0.60", auth_packet("nosuchscheme", b"x"), AUTH_XID),
            lambda: loop("127.0.0.61", sasl_frame(1, b"not a DIGEST-MD5 response"), 1),
        ], ATTACK_TIMEOUT_S)
    finally:
        digest_conn.close()
    digest_replies = results[0] if isinstance(results[0], list) else []
    ok = sum(err == OK for _, err in digest_replies)

    def show(r: object) -> str:
        if not isinstance(r, tuple):
            return "?"
        errs, closed, n = r
        return f"err {','.join(str(e) for e in sorted(errs, key=str))}, closed {closed}/{n}"

    bound = Bound().connections(3).add("pipelining client (queue + output)", 1,
                        t.budget.reading_client(len(digests), len(digests[0]) - 4, REPLY_HEADER_BYTES))
    bound.add("one-shot clients (queue + output)", 2, t.budget.reading_client(1, 64, REPLY_HEADER_BYTES + 64))
    return Outcome(f"digest: {ok}/{len(digests)} accepted; bad scheme: {show(results[1])}; "
                   f"bad SASL: {show(results[2])}", bound)


def tls_half_open(t: Target, _: Any) -> Outcome:
    """TCP connections to secureClientPort that never finish the TLS handshake (half silent, half
    sending half a ClientHello), from more addresses than maxCnxns allows. zkfast must count them
    against maxCnxns as Apache does, close them within 2 x nio.sessionlessCnxnTimeout (they are
    sessionless), and then serve a real TLS client from the same address."""
    assert t.secure_port is not None
    s = t.sizes
    ips = source_ips(50, s.tls_ips)
    hello = client_hello()
    t0 = time.monotonic()
    attackers: list[Attacker] = []
    for ip in ips:
        for _ in range(s.tls_per_ip):
            try:
                attackers.append(Attacker(t.server.host, t.secure_port, ip))
            except OSError:
                pass
    for i, a in enumerate(attackers):
        if i % 2:
            a.send_until(hello[:len(hello) // 2], t0 + 1.0)
    hold(ADMISSION_RETRY_S * 5)  # connections over a limit are closed at once
    n = len(attackers)
    kept = n - closed_count(attackers)
    window = 2 * t.sessionless_s + ADMISSION_RETRY_S
    end = t0 + window
    while time.monotonic() < end and closed_count(attackers) < n:
        time.sleep(ADMISSION_RETRY_S)
    closed = closed_count(attackers)
    close_all(attackers)
    admission = wait_admitted(t.server.host, t.secure_port, ips[0], time.monotonic() + window,
                              ADMISSION_RETRY_S, client_tls_context())
    after = f"{admission.admitted_after_s:.1f}s" if admission.admitted_after_s is not None else "never"
    # at most maxCnxns (when set) and MAX_PENDING_TLS_HANDSHAKES may wait in their handshake at once
    allowed = min(int(t.server.cfg["maxCnxns"]) or n, t.budget.max_pending_tls)
    checks = {f"half-open TLS connections closed within 2 x nio.sessionlessCnxnTimeout ({closed}/{n})": closed == n,
              "a real TLS client got a session afterwards": admission.admitted_after_s is not None,
              f"at most {allowed} half-open TLS connections kept (maxCnxns, MAX_PENDING_TLS_HANDSHAKES): {kept}":
                  kept <= allowed}
    return Outcome(f"{n} half-open TLS connections from {len(ips)} addresses: {kept} kept, {closed}/{n} closed "
                   f"within {window:.1f}s; a TLS client then got a session after {after}",
                   Bound().connections(min(kept, allowed)), checks)


def prepare_admin(t: Target) -> WatchState:
    holder, paths, per_watch = prepare_watches(t, t.sizes.admin_watches)
    return WatchState(holder, "", paths, per_watch)


ADMIN_COMMANDS = ("wchp", "dump", "cons", "mntr", "wchc", "wchs", "stat")
ADMIN_ANSWER_GRACE_S = 5.0  # an answer still arriving this long after the loop ended is unfinished


def four_letter_answer(t: Target, ip: str, cmd: str, deadline: float) -> tuple[int, bool]:
    """Ask cmd from ip and read the whole answer: (bytes read, whether it ended before the deadline)."""
    got = 0
    try:
        a = Attacker(t.server.host, t.server.port, ip)
    except OSError:
        return 0, False
    try:
        a.sock.sendall(cmd.encode())
        while True:
            a.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = a.sock.recv(1 << 20)
            if not chunk:
                return got, True
            got += len(chunk)
    except OSError:  # the deadline passed (TimeoutError), or the server reset
        return got, False
    finally:
        a.close()


def admin_loops(t: Target, st: WatchState) -> Outcome:
    """Operators looping over the four-letter words that walk every watch or session, reading the
    answers (each operator starting at a different word); and four-letter clients that ask for
    wchp and never read (4 KB receive buffers)."""
    s = t.sizes
    end = t.deadline()
    largest: dict[str, int] = {}

    def operator(i: int, ip: str) -> tuple[int, int]:
        done = unfinished = 0
        while time.monotonic() < end:
            cmd = ADMIN_COMMANDS[(i + done + unfinished) % len(ADMIN_COMMANDS)]
            got, complete = four_letter_answer(t, ip, cmd, end + ADMIN_ANSWER_GRACE_S)
            if complete:
                done += 1
                largest[cmd] = max(largest.get(cmd, 0), got)
            else:
                unfinished += 1
        return done, unfinished

    unread = [Attacker(t.server.host, t.server.port, ip, rcvbuf=UNREAD_RCVBUF)
              for ip in spread(s.admin_unread, 170, s.per_ip)]
    try:
        for a in unread:
            a.sock.sendall(b"wchp")
        results = in_threads([lambda i=i, ip=ip: operator(i, ip) for i, ip in enumerate(source_ips(180, s.admin_readers))],
                             ATTACK_TIMEOUT_S)
        closed = closed_count(unread)
    finally:
        close_all(unread)
    done = sum(r[0] for r in results if isinstance(r, tuple))
    unfinished = sum(r[1] for r in results if isinstance(r, tuple))
    biggest = max(largest.items(), key=lambda kv: kv[1], default=("-", 0))
    bound = Bound().connections(s.admin_readers + s.admin_unread)
    bound.add("four-letter answer (soft limit + slice)", s.admin_readers + s.admin_unread, t.budget.answer_stream())
    return Outcome(f"{len(st.watched)} watches; {s.admin_readers} operators: {done} answers read, {unfinished} "
                   f"unfinished {ADMIN_ANSWER_GRACE_S:.0f}s after the loop (largest {biggest[0]} "
                   f"{biggest[1] / MIB:.1f} MiB); {closed}/{len(unread)} unread wchp closed", bound)


# The cases that leave the server bigger or busier run on a fresh pair each (servers.py says why);
# the others share one. auth-flood comes last: it may leave a server busy for minutes.
CASES: tuple[Case, ...] = (
    Case("idle", "the probe alone", idle, pair="shared"),
    Case("slowloris", "maxClientCnxns+5 sockets that never send a ConnectRequest",
         lambda t, _: slowloris(t, half_frame=False), pair="shared"),
    Case("slowloris-half", "maxClientCnxns sockets that send half a maximum-size ConnectRequest",
         lambda t, _: slowloris(t, half_frame=True), pair="shared"),
    Case("flood-1-ip", "connections with sessions from one address until refused",
         lambda t, _: flood(t, ["127.0.0.32"], t.sizes.flood_attempts), pair="shared"),
    Case("flood-n-ips", "connections with sessions from several addresses, past maxCnxns",
         lambda t, _: flood(t, source_ips(40, t.sizes.flood_ips), servers.MAX_CLIENT_CNXNS), pair="shared"),
    Case("deep-tree", "a path 1000 levels deep: pipelined reads and create/delete at the bottom",
         deep_ops, prepare_deep, pair="shared"),
    Case("unread-1MB", "never-reading clients (4 KB rcvbuf) pipeline getData of a 1 MB znode (CI: 5 x 100)",
         unread_big, prepare_big),
    Case("unread-small-1", "one never-reading client pipelines getData of a 100 B znode (CI: 100k)",
         unread_small(lambda s: 1, lambda s: s.small_pipelined), prepare_small),
    Case("unread-small-n", "never-reading clients pipeline getData of a 100 B znode (CI: 10 x 20k)",
         unread_small(lambda s: s.small_conns, lambda s: s.small_pipelined_each), prepare_small),
    Case("watch-fanout", "watches on one session (CI: 100k), changes fanned out to never-reading watchers",
         watch_fanout, prepare_fanout, cleanup_watches),
    Case("multi", "pipelined multis of 5000 setData ops, half rolled back", multi_flood, prepare_m),
    Case("multiread-big", "multiRead of getData of a 1 MB znode, its reply above the hard limit (CI: 40 ops)",
         multiread_oversized, prepare_big),
    Case("max-frames", "pipelined setData frames of exactly jute.maxbuffer bytes", max_frames, prepare_max_frames),
    Case("wide-tree", "never-reading clients pipeline getChildren of a wide node (CI: 100k children)",
         wide_unread, prepare_wide),
    Case("admin-loops", "wchp/dump/cons/mntr/... in a loop (CI: 100k watches); unread wchp answers",
         admin_loops, prepare_admin, cleanup_watches),
    Case("tls-half-open", "connections to secureClientPort that never finish the TLS handshake",
         tls_half_open, pair="tls"),
    Case("auth-flood", "addauth digest with wrong passwords; unknown schemes; bad SASL tokens", auth_flood),
)
