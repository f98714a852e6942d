"""The quorum driver's ports (zkfast.quorum.driver) in memory, for the simulator (tests/quorum/sim.py).

zkfast.quorum.peer implements the same ports over asyncio sockets and files; here every one of them
runs on the simulator's clock and draws its randomness from the seed:

- `MemDisk` (DiskPort): epochs, the active membership, snapshots and a txn log (`MemLog`, the era's
  CommitLog) whose fsyncs complete after a seeded delay. What survives a crash is what was fsynced,
  sometimes with a torn tail (`DiskState.crash`). Recovery decodes the newest snapshot (Apache's tree
  stream, zkfast.storage.apache) and replays every logged txn after it with zkfast's own replay code
  (zkfast.storage.recovery), as `FileDisk` does from files; truncation and snapshot installs follow
  `FileDisk` step by step (the store closed first, snapshots past the cut set aside, the older logs
  superseded by an installed snapshot).
- `SimNet` (NetPort): election notifications are datagrams (lost, delayed, duplicated, reordered);
  learner-leader links are zkfast.quorum.transport's own `PacketConnection`s over `Pipe`s, ordered
  byte streams that a fault, a partition or a crash cuts (what is in flight is lost) and whose bytes
  arrive in reads split at random points. A SNAP's tree travels as the bytes of Apache's tree stream.
- `SimClock` (Scheduler) and `SimTasks` (ServingTasks: a leader's session expiry on simulated time;
  no container manager, the simulated clients make no containers).
- `SimServer`, the server port: a real ZooKeeperServer whose session clock is the simulated one and
  whose applied txns the simulator records (`SimTree.history`) for its checks.

A `Proc` is one run of a node's server process: the production driver (or a planted subclass of it)
over these ports. A crash ends it: its pending events die with it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from zkfast._datatree import DataTree
from zkfast._jute import Txn, decode_txn

from zkfast.config import ServerSpec
from zkfast.quorum.driver import DiskError, Era, QuorumDriver, Recovered, Settings
from zkfast.quorum.membership import Membership
from zkfast.quorum.peer import (
    LEADER_CONNECT_FIRST_RETRY_S,
    LEADER_CONNECT_MAX_RETRY_S,
    QUORUM_PACKET_SLACK_BYTES,
    TIMER_MS,
)
from zkfast.quorum.transport import PacketConnection
from zkfast.quorum.wire import PacketType, QuorumPacket
from zkfast.server.zkserver import ZooKeeperServer
from zkfast.storage.apache import decode_tree_stream, encode_tree_stream
from zkfast.storage.recovery import TAIL_TXNS, _contiguous, _kill_dead_sessions, apply_recovered

from .planted import driver_class

TICK_MS = 100
INIT_LIMIT = 10
SYNC_LIMIT = 5
MIN_SESSION_TIMEOUT_MS = 2 * TICK_MS   # Apache's defaults: 2 and 20 ticks
MAX_SESSION_TIMEOUT_MS = 20 * TICK_MS
MAX_FRAME_BYTES = 1024 * 1024
QUORUM_PORT = 2888
ELECTION_PORT = 3888
CLIENT_PORT = 2181
# session ids come from the wall clock: a fixed start keeps them the same from run to run
WALL_START_MS = 1_700_000_000_000
FIRST_RETRY_MS = int(LEADER_CONNECT_FIRST_RETRY_S * 1000)
MAX_RETRY_MS = int(LEADER_CONNECT_MAX_RETRY_S * 1000)


def host_of(sid: int) -> str:
    return f"10.0.0.{sid}"


def spec_text(sid: int, observer: bool) -> str:
    """A member as a reconfig names it: `server.N=` value, Apache's syntax (no real sockets behind)."""
    role = "observer" if observer else "participant"
    return f"{host_of(sid)}:{QUORUM_PORT}:{ELECTION_PORT}:{role};{host_of(sid)}:{CLIENT_PORT}"


Groups = tuple[tuple[int, ...], ...]  # hierarchical quorums: group.1, group.2, ... (every weight 1)


def membership_of(voters: frozenset[int], observers: frozenset[int], version: int = 0,
                  groups: Groups | None = None) -> Membership:
    lines = [f"server.{sid}={spec_text(sid, sid in observers)}" for sid in sorted(voters | observers)]
    lines += [f"group.{gid}={':'.join(map(str, members))}" for gid, members in enumerate(groups or (), 1)]
    return Membership.parse("\n".join([*lines, f"version={version:x}"]).encode())


# ------------------------------------------------------------------------------------------------ the host


class Host(Protocol):
    """What the ports need of the simulator."""

    now: int
    p: Any  # sim.Params: delays, losses, the torn-tail share
    pipes: set[Pipe]  # the open ones
    stats: dict[str, int]
    running: int | None  # the node whose event runs

    def rand(self, lo: int, hi: int) -> int: ...
    def chance(self, p: float) -> bool: ...
    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None: ...
    def log(self, msg: str) -> None: ...
    def reachable(self, a: int, b: int) -> bool: ...
    def proc_at(self, host: str) -> Proc | None: ...
    def observe(self, proc: Proc) -> None: ...
    def logged(self, proc: Proc, txn: Txn, data: bytes, last: int) -> None: ...
    def applied(self, proc: Proc, server: SimServer, txn: Txn) -> None: ...
    def crash_point(self, proc: Proc, weight: float) -> None: ...
    def failed(self, proc: Proc) -> None: ...


# ------------------------------------------------------------------------------------------------ state


def _digest(prev: bytes, zxid: int, data: bytes) -> bytes:
    return hashlib.blake2b(prev + zxid.to_bytes(8, "big") + data, digest_size=8).digest()


class History:
    """The txns a tree was built from, in order, with a rolling digest after each: two trees with the
    same last digest hold the same txns in the same order."""

    __slots__ = ("zxids", "datas", "digests")

    def __init__(self) -> None:
        self.zxids: list[int] = []
        self.datas: list[bytes] = []
        self.digests: list[bytes] = []

    def copy(self) -> History:
        h = History()
        h.zxids, h.datas, h.digests = list(self.zxids), list(self.datas), list(self.digests)
        return h

    def __len__(self) -> int:
        return len(self.zxids)

    @property
    def last(self) -> int:
        return self.zxids[-1] if self.zxids else 0

    def append(self, zxid: int, data: bytes) -> None:
        self.digests.append(_digest(self.digests[-1] if self.digests else b"", zxid, data))
        self.zxids.append(zxid)
        self.datas.append(data)


class SimTree(DataTree):
    """A DataTree that carries the History of its content."""

    history: History


def new_tree() -> SimTree:
    tree = SimTree(skip_acl=True)
    tree.history = History()
    return tree


@dataclass
class Snapshot:
    zxid: int
    stream: bytes     # Apache's tree stream (sessions, ACLs, nodes), as a snapshot file holds it
    history: History  # the simulator's record of the txns behind it


@dataclass
class DiskState:
    """A node's disk: what outlives its processes."""

    epochs: dict[str, int] = field(default_factory=dict)
    membership: bytes | None = None
    snapshots: list[Snapshot] = field(default_factory=list)   # oldest first
    log: list[tuple[int, bytes]] = field(default_factory=list)  # (zxid, txn bytes), zxids increasing
    durable_len: int = 0  # log[:durable_len] survives a crash
    generation: int = 0   # bumped when the log is cut: fsyncs of the log before no longer count
    stalled: bool = False  # scripted: fsyncs do not complete while set

    def last_zxid(self) -> int:
        if self.log:
            return self.log[-1][0]
        return self.snapshots[-1].zxid if self.snapshots else 0

    def durable(self) -> list[tuple[int, bytes]]:
        return self.log[:self.durable_len]

    def crash(self, host: Host) -> int:
        """Lose what is not durable (sometimes a torn tail of it reached the disk); how much is kept."""
        keep = self.durable_len
        unsynced = len(self.log) - keep
        if unsynced and host.chance(host.p.torn):
            keep += host.rand(0, unsynced)
        del self.log[keep:]
        self.durable_len = keep
        self.generation += 1
        return keep

    def cut_after(self, zxid: int) -> int:
        """zkfast.storage.quorumdisk.truncate_after: every logged txn after zxid goes, and every
        snapshot past it; how many txns went."""
        keep = sum(1 for z, _ in self.log if z <= zxid)
        dropped = len(self.log) - keep
        del self.log[keep:]
        self.durable_len = min(self.durable_len, keep)
        self.snapshots = [s for s in self.snapshots if s.zxid <= zxid]
        self.generation += 1
        return dropped


# ------------------------------------------------------------------------------------------------ disk


class MemLog:
    """An era's txn log (CommitLog): written at each flush, durable once a seeded fsync completes;
    one fsync at a time covers everything written before it started (group commit)."""

    def __init__(self, disk: MemDisk) -> None:
        self.disk = disk
        self.state = disk.state
        self.on_failure: Callable[[BaseException, int, bool], None] | None = None
        self.on_commit: Callable[[int], None] | None = None
        self.batch: list[tuple[int, bytes]] = []
        self.syncing = False
        self.again = False
        self.closed = False

    def start(self, on_commit: Callable[[int], None]) -> None:
        self.on_commit = on_commit

    def append(self, txn: Txn) -> None:
        assert not self.closed, "a closed log takes no txn"
        data = txn.to_bytes()
        last = self.batch[-1][0] if self.batch else self.state.last_zxid()
        self.disk.proc.host.logged(self.disk.proc, txn, data, last)
        self.batch.append((txn.zxid, data))

    def flush(self) -> None:
        if not self.batch:
            return
        self.state.log.extend(self.batch)
        self.batch = []
        self._sync()

    def _sync(self) -> None:
        if self.syncing:
            self.again = True
            return
        self.syncing, self.again = True, False
        proc = self.disk.proc
        proc.at(proc.host.now + proc.host.rand(1, proc.host.p.fsync_max), self._synced, len(self.state.log),
                self.state.generation)

    def _synced(self, n: int, generation: int) -> None:
        if self.closed:
            return  # closing made everything durable
        proc = self.disk.proc
        st = self.state
        if st.stalled:  # still in flight: done once the disk resumes, or lost by a crash
            proc.at(proc.host.now + proc.host.p.fsync_max, self._synced, n, generation)
            return
        self.syncing = False
        if generation == st.generation:
            st.durable_len = max(st.durable_len, min(n, len(st.log)))
        if st.durable_len and self.on_commit is not None:
            self.on_commit(st.log[st.durable_len - 1][0])
        if (self.again or generation != st.generation) and len(st.log) > st.durable_len and not self.closed:
            self._sync()

    def close(self) -> None:
        """As the log writer's close: what was written and queued is fsynced before it returns."""
        if self.closed:
            return
        self.flush()
        self.state.durable_len = len(self.state.log)
        self.closed = True
        self.on_commit = None

    def metrics(self) -> list[tuple[str, object]]:
        return []


class MemStore:
    """An era's store (EraStore): its log; snapshots are the disk's."""

    def __init__(self, disk: MemDisk) -> None:
        self.commit = MemLog(disk)
        self.owner: Any = None

    def attach(self, server: ZooKeeperServer) -> None:
        self.owner = server

    def close(self) -> None:
        self.commit.close()


class MemDisk:
    """DiskPort over a DiskState, doing what zkfast.quorum.peer.FileDisk does with files."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.state = proc.node_disk

    def recover(self) -> Recovered:
        recovered = self._reopen()
        if not recovered.had_snapshot:
            # as Apache's loadData: a snapshot to start from, so logs of later epochs never lack a base
            self._write_snapshot(recovered.tree, recovered.sessions)
        return recovered

    def _reopen(self) -> Recovered:
        st = self.state
        tree = new_tree()
        sessions: dict[int, int] = {}
        last = 0
        snap = st.snapshots[-1] if st.snapshots else None
        if snap is not None:
            sessions, _, _ = decode_tree_stream(snap.stream, 0, tree)
            tree.history = snap.history.copy()
            last = snap.zxid
        tail: deque[tuple[int, bytes]] = deque(maxlen=TAIL_TXNS)
        for zxid, data in st.log:
            if zxid <= last:
                continue
            if not _contiguous(last, zxid):
                raise DiskError(f"txn log gap: zxid 0x{zxid:x} follows 0x{last:x}")
            apply_recovered(tree, sessions, decode_txn(data))
            tree.history.append(zxid, data)
            tail.append((zxid, data))
            last = zxid
        tree.last_processed_zxid = last
        _kill_dead_sessions(tree, sessions, last)
        return Recovered(MemStore(self), tree, sessions, last, list(tail), snap is not None)

    def _write_snapshot(self, tree: SimTree, sessions: dict[int, int]) -> None:
        self.state.snapshots.append(Snapshot(tree.last_processed_zxid, encode_tree_stream(tree, sessions),
                                             tree.history.copy()))

    def truncate(self, store: Any, zxid: int) -> Recovered:
        store.close()
        dropped = self.state.cut_after(zxid)
        self.proc.host.stats["truncs"] += 1
        self.proc.host.log(f"n{self.proc.sid} TRUNC to 0x{zxid:x}: {dropped} txn(s) dropped")
        self.proc.host.crash_point(self.proc, 1.0)
        return self._reopen()

    def install_snapshot(self, store: Any, zxid: int, tree: DataTree, sessions: dict[int, int]) -> Recovered:
        store.close()
        assert isinstance(tree, SimTree)
        self._write_snapshot(tree, sessions)
        self.state.cut_after(zxid)
        self.state.log.clear()  # the older logs are superseded by the snapshot
        self.state.durable_len = 0
        self.proc.host.stats["snaps"] += 1
        self.proc.host.log(f"n{self.proc.sid} SNAP installed at 0x{zxid:x} ({len(tree.history)} txns)")
        return self._reopen()

    def read_epoch(self, name: str) -> int | None:
        return self.state.epochs.get(name)

    def write_epoch(self, name: str, epoch: int) -> None:
        self.state.epochs[name] = epoch
        self.proc.host.crash_point(self.proc, 1.0)

    def read_membership(self) -> bytes | None:
        return self.state.membership

    def write_membership(self, text: bytes) -> None:
        self.state.membership = text


# ------------------------------------------------------------------------------------------------ network


class End:
    """One side of a Pipe: the protocol that gets its bytes, and the process it runs in (None: a
    client, which the simulator never crashes)."""

    def __init__(self, host: Host, proc: Proc | None, protocol: Any, sid: int | None) -> None:
        self.host = host
        self.proc = proc
        self.protocol = protocol
        self.sid = sid          # the node's id, for partitions; None for a client
        self.last = 0           # when the last bytes towards this end arrive
        self.lost = False       # connection_lost was delivered
        self.shut = False       # this end closed the connection

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        if self.proc is not None:
            self.proc.at(t, fn, *args)
        else:
            self.host.at(t, fn, *args)

    @property
    def alive(self) -> bool:
        return self.proc is None or self.proc.alive


class Pipe:
    """A TCP connection: two ordered byte streams. A close by one end reaches the other after what it
    sent; a cut (fault, partition, crash) loses what is in flight and tells both ends at once."""

    def __init__(self, host: Host, name: str, a: End, b: End, delay: int, pipes: set[Pipe]) -> None:
        self.host = host
        self.name = name
        self.ends = (a, b)
        self.delay = delay
        self.pipes = pipes
        self.cut_reason: str | None = None
        self.histories: deque[History] = deque()  # SNAP trees in flight: the records behind them
        pipes.add(self)

    def other(self, end: End) -> End:
        return self.ends[1] if end is self.ends[0] else self.ends[0]

    def send(self, frm: End, data: bytes) -> None:
        to = self.other(frm)
        if self.cut_reason is not None or frm.shut or to.shut or not data:
            return
        host = self.host
        t = to.last = max(host.now + host.rand(1, self.delay), to.last)
        cuts = sorted({host.rand(1, len(data) - 1) for _ in range(host.rand(1, 2))}) \
            if len(data) > 1 and host.chance(0.3) else []
        start = 0
        for cut in [*cuts, len(data)]:  # one read per piece: TCP splits what it carries anywhere
            to.at(t, self._deliver, to, data[start:cut])
            start = cut

    def _deliver(self, to: End, piece: bytes) -> None:
        if self.cut_reason is None and not to.lost:
            to.protocol.data_received(piece)

    def shutdown(self, frm: End) -> None:
        if frm.shut or self.cut_reason is not None:
            return
        frm.shut = True
        frm.at(self.host.now, self._lost, frm)
        to = self.other(frm)
        t = to.last = max(self.host.now + 1, to.last)
        to.at(t, self._lost, to)

    def cut(self, reason: str) -> None:
        if self.cut_reason is not None:
            return
        self.cut_reason = reason
        self.pipes.discard(self)
        self.host.log(f"{self.name} breaks: {reason}")
        for end in self.ends:
            if not end.lost and end.alive:
                end.at(self.host.now, self._lost, end)

    def _lost(self, end: End) -> None:
        if end.lost:
            return
        end.lost = True
        if all(e.lost or not e.alive for e in self.ends):
            self.pipes.discard(self)
        end.protocol.connection_lost(None)

    def crosses(self, reachable: Callable[[int, int], bool]) -> bool:
        a, b = self.ends
        return a.sid is not None and b.sid is not None and not reachable(a.sid, b.sid)

    def touches(self, proc: Proc) -> bool:
        return any(e.proc is proc for e in self.ends)


class SimTransport:
    """What a protocol sees of its pipe (the asyncio transport methods PacketConnection and the fake
    client connection use)."""

    def __init__(self, pipe: Pipe, end: End, peername: tuple[str, int]) -> None:
        self.pipe = pipe
        self.end = end
        self.peername = peername

    def write(self, data: bytes | memoryview) -> None:
        self.pipe.send(self.end, bytes(data))

    def close(self) -> None:
        self.pipe.shutdown(self.end)

    def abort(self) -> None:
        self.pipe.cut("aborted")

    def get_write_buffer_size(self) -> int:
        return 0  # the pipe takes everything at once

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass  # what was sent arrives: the receiver's queue and throttle show it

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peername if name == "peername" else default


def connect(host: Host, name: str, a: End, b: End, delay: int, pipes: set[Pipe],
            addresses: tuple[tuple[str, int], tuple[str, int]]) -> Pipe:
    """A pipe between a and b, each protocol made aware of its transport (connection_made)."""
    pipe = Pipe(host, name, a, b, delay, pipes)
    for end, peer in ((a, addresses[1]), (b, addresses[0])):
        end.protocol.connection_made(SimTransport(pipe, end, peer))
    return pipe


class SimLink(PacketConnection):
    """zkfast.quorum.transport's Zab connection, over a Pipe: the simulator also hears of the ACKs
    it sends (a moment to crash at) and of the txns behind a SNAP tree it streams."""

    pipe: Pipe
    proc: Proc

    def send(self, p: QuorumPacket) -> None:
        super().send(p)
        if p.type == PacketType.ACK and self.transport is not None:
            # NEWLEADER's ACK matters most (ZOOKEEPER-1282, -3911)
            self.proc.host.crash_point(self.proc, 1.0 if p.zxid & 0xFFFFFFFF == 0 else 0.1)

    def send_snapshot(self, tree: DataTree, sessions: dict[int, int]) -> None:
        assert isinstance(tree, SimTree)
        self.pipe.histories.append(tree.history.copy())
        super().send_snapshot(tree, sessions)


class SimNet:
    """NetPort: election datagrams and Zab links between the simulated nodes."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.peers: dict[int, tuple[str, int]] = {}
        self.listening: Era | None = None

    def notify(self, sid: int, payload: bytes) -> None:
        proc, host = self.proc, self.proc.host
        if sid == proc.sid:
            proc.at(host.now, proc.driver.on_notification, sid, payload)  # looped back, never sent
            return
        addr = self.peers.get(sid)
        if addr is None or not host.reachable(proc.sid, sid) or host.chance(host.p.elect_loss):
            return
        to = host.proc_at(addr[0])
        if to is None:
            return
        for _ in range(2 if host.chance(host.p.elect_dup) else 1):
            host.at(host.now + host.rand(1, host.p.elect_delay), self._arrive, to, payload)

    def _arrive(self, to: Proc, payload: bytes) -> None:
        if to.alive and self.proc.host.reachable(self.proc.sid, to.sid):
            to.at(to.host.now, to.driver.on_notification, self.proc.sid, payload)

    def set_election_peers(self, peers: dict[int, tuple[str, int]]) -> None:
        self.peers = dict(peers)

    def listen_for_learners(self, era: Era) -> None:
        self.listening = era

    def stop_listening(self) -> None:
        self.listening = None

    def connect_to_leader(self, era: Era, leader_id: int, spec: ServerSpec) -> None:
        host = self.proc.host
        self.proc.at(host.now + host.rand(1, host.p.conn_delay), self._follow, era, leader_id, spec, FIRST_RETRY_MS)

    def _follow(self, era: Era, leader_id: int, spec: ServerSpec, retry_ms: int) -> None:
        """As SocketNet._follow: try until connected or the era ends, then tell the driver."""
        if era.closed:
            return
        proc, host = self.proc, self.proc.host
        leader = host.proc_at(spec.host)
        if leader is None or leader.net.listening is None or not host.reachable(proc.sid, leader.sid):
            proc.at(host.now + retry_ms, self._follow, era, leader_id, spec, min(2 * retry_ms, MAX_RETRY_MS))
            return
        max_bytes = MAX_FRAME_BYTES + QUORUM_PACKET_SLACK_BYTES
        ld = leader.driver
        theirs = SimLink(ld.on_learner_packet, ld.on_learner_lost, learner_side=False, max_packet_bytes=max_bytes,
                         on_drained=ld.on_learner_read)
        driver = proc.driver
        ours = SimLink(driver.on_leader_packet, driver.on_leader_lost, learner_side=True,
                       max_packet_bytes=max_bytes, on_drained=driver.on_leader_read,
                       on_snapshot=driver.on_leader_snapshot, load_snapshot=lambda data: self._load(pipe, data))
        pipe = connect(host, f"n{proc.sid}->n{leader.sid}", End(host, proc, ours, proc.sid),
                       End(host, leader, theirs, leader.sid), host.p.conn_delay, host.pipes,
                       ((host_of(proc.sid), 40000 + proc.sid), (spec.host, spec.quorum_port)))
        for link, owner in ((ours, proc), (theirs, leader)):
            link.pipe, link.proc = pipe, owner
        host.log(f"n{proc.sid} connected to n{leader.sid}")
        driver.on_leader_connected(era, ours)

    def _load(self, pipe: Pipe, data: bytes) -> tuple[Any, int]:
        """The tree stream after a SNAP packet, loaded as SocketNet._load_stream does."""
        tree = new_tree()
        sessions, _, end = decode_tree_stream(data, 0, tree)
        tree.history = pipe.histories.popleft()
        return (tree, sessions), end


# ------------------------------------------------------------------------------------------------ clock


class Timer:
    """What `later` hands back (Cancel)."""

    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimClock:
    """Scheduler on the simulated clock; what a process scheduled dies with it."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def now_ms(self) -> int:
        return self.proc.host.now

    def soon(self, fn: Callable[[], None]) -> None:
        self.proc.at(self.proc.host.now, fn)

    def later(self, delay_ms: int, fn: Callable[[], None]) -> Timer:
        timer = Timer()
        self.proc.at(self.proc.host.now + delay_ms, self._fire, timer, fn)
        return timer

    @staticmethod
    def _fire(timer: Timer, fn: Callable[[], None]) -> None:
        if not timer.cancelled:
            fn()


class SimTasks:
    """ServingTasks: a serving leader expires sessions (zkfast.server.main.expire_sessions_loop, on
    simulated time); the simulated clients make no containers, so no container manager runs."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def start(self, server: ZooKeeperServer) -> list[Timer]:
        timer = Timer()
        self._next(timer, server)
        return [timer]

    def _next(self, timer: Timer, server: ZooKeeperServer, more: bool = False) -> None:
        self.proc.clock.later(1 if more else max(server.sessions.wait_ms(), 1), lambda: self._expire(timer, server))

    def _expire(self, timer: Timer, server: ZooKeeperServer) -> None:
        if not timer.cancelled:
            self._next(timer, server, server.expire_sessions())


# ------------------------------------------------------------------------------------------------ server


class SimServer(ZooKeeperServer):
    """The server port: a real ZooKeeperServer whose session tracker runs on the simulated clock and
    whose applied txns the simulator sees (before they are applied: their bytes as logged)."""

    def __init__(self, proc: Proc, reconfig_enabled: bool) -> None:
        host = proc.host
        super().__init__(tick_time_ms=TICK_MS, min_session_timeout_ms=MIN_SESSION_TIMEOUT_MS,
                         max_session_timeout_ms=MAX_SESSION_TIMEOUT_MS, server_id=proc.sid, skip_acl=True,
                         reconfig_enabled=reconfig_enabled, clock_ms=lambda: host.now,
                         wall_ms=lambda: WALL_START_MS + host.now)
        self.proc = proc

    def apply(self, txn: Txn) -> None:
        self.proc.host.applied(self.proc, self, txn)
        super().apply(txn)


# ------------------------------------------------------------------------------------------------ a process


class Proc:
    """One run of a node's server process: the driver over the in-memory ports."""

    def __init__(self, host: Host, sid: int, disk: DiskState, static: Membership, settings: Settings) -> None:
        self.host = host
        self.sid = sid
        self.node_disk = disk
        self.alive = True
        self.eras = 0          # how many eras (roles) this process has had
        self.server: SimServer | None = None  # the current era's: clients connect to it
        # the simulator's notes: the era it saw serving, the membership version it saw
        self.served: Era | None = None
        self.version = 0
        self.clock = SimClock(self)
        self.net = SimNet(self)
        me = static.servers[sid]
        self.driver: QuorumDriver = driver_class()(
            sid, me, static, settings, build_server=lambda: SimServer(self, settings.reconfig_enabled),
            disk=MemDisk(self), net=self.net, clock=self.clock, serving_tasks=SimTasks(self), on_era=self._on_era)
        self.driver.on_failed = lambda: host.failed(self)
        self.net.set_election_peers(self.driver.election_peers())  # as QuorumPeer does at start

    def _on_era(self, server: ZooKeeperServer) -> None:
        assert isinstance(server, SimServer)
        self.server = server
        self.eras += 1

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self.host.at(t, self.run, fn, *args)

    def run(self, fn: Callable[..., None], *args: Any) -> None:
        """An event of this process, if it still runs; the simulator looks at it afterwards."""
        if self.alive:
            self.host.running = self.sid
            fn(*args)
            self.host.observe(self)

    def start(self) -> None:
        self.driver.prepare()
        self.driver.start()
        self.host.observe(self)
        self.at(self.host.now + self.host.rand(1, TIMER_MS), self._tick)

    def _tick(self) -> None:
        self.driver.tick()
        self.at(self.host.now + TIMER_MS, self._tick)

    def crash(self) -> None:
        self.alive = False
        for pipe in sorted((p for p in self.host.pipes if p.touches(self)), key=lambda p: p.name):
            pipe.cut(f"n{self.sid} crashed")

