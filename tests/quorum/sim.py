"""A deterministic simulator for the ensemble: N `Replica`s (zkfast.quorum.replica) over a seeded network.

Everything comes from one `random.Random(seed)` and a simulated clock (ms), so a seed replays exactly:
- election notifications are datagrams: lost, delayed, reordered and duplicated;
- Zab connections are ordered streams (TCP-like); a connection breaks (a fault, a partition, a crash,
  a leader dropping a learner), what is in flight is lost and both ends are told;
- partitions split the nodes in two groups that cannot reach each other (datagrams dropped,
  connections broken and refused);
- crash/restart: a node loses everything not durable; its txn log is kept up to the last completed
  fsync, sometimes with a torn tail (some of the unsynced entries made it to disk), and it restarts
  from its disk (acceptedEpoch, currentEpoch, snapshot, log);
- each replica has an in-memory disk (epochs written durably at once, a txn log whose fsyncs complete
  after a simulated delay, then `Replica.on_durable`, an optional snapshot) and a state machine: the
  list of applied (zxid, data) with a rolling digest;
- clients write at whichever node is an established leader (`serve` seen); a write is
  "acknowledged" once the leader applied it (`commit_upto`);
- dynamic reconfiguration (a share of the seeds, `Params.reconfig_every`): the established leader now
  and then proposes a new membership among the node ids (a voter removed or made an observer, a node
  added back, an observer made a voter; always >= 2 voters), only when no reconfig is in progress and
  the leader with its serving followers make a quorum of the new voters (zkfast.quorum.peer's checks).
  The txn carries the membership (`RECONFIG` prefix). As zkfast.quorum.peer, a node activates one
  (durably) when it applies the committed txn (learners), on `Actions.activate` (the leader), when
  it starts serving a history that holds a newer one, or when an election notification carries a
  newer one (each node's notifications carry the membership it activated); starting or reloading it
  takes the one it last activated (the static membership if none), never one it only logged.

Invariants, checked as the run goes and at its end (`CHECKS`):
- one-leader-per-epoch: at most one leader role is ever established for an epoch;
- zxid-conflict: a zxid always carries the same txn, in every log;
- prefix: every serving replica's state is a prefix of one global committed sequence (digests equal
  at the same position: same txns, same order);
- order: a replica applies, and logs, zxids strictly increasing;
- acked-lost: after the run heals and settles every replica holds every acknowledged write;
- liveness: once the faults stop, a leader is established, every node serves and converges, and a
  new write commits everywhere, within a bound derived from tickTime/initLimit/syncLimit.
With reconfiguration "every node" of the last two is every member of the membership in force (the
settled leader's, which must be that of the committed sequence): a node removed need not serve nor
converge, though its state must still be a prefix of the committed sequence.

The driver contract this harness follows (what zkfast.quorum.peer must do too): Actions are done in
the order truncate_to, snapshot, persist (+ fsync when `sync`), epochs, apply, commit_upto, serve,
send, notify, drop, connect_leader, reload; truncation and snapshot installs are durable at once; a
reload first makes the txn log durable (Apache's SyncRequestProcessor flushes when the role ends),
then rebuilds the tree from snapshot + every logged txn.

Long runs (prints each failing seed with its violation, then a summary):

    python -m tests.quorum.sim --seeds 100000 [--nodes 3|5] [--observers N] [--start S] [--jobs J]
                               [--bug NAME] [--check KIND] [--reconfig auto|on|off] [--verbose]

`--bug` plants one of the bugs of tests/quorum/planted.py (in a core, or in this driver), `--check`
limits the checks to some kinds, `--reconfig` turns reconfiguration on or off for every seed instead
of the seeded share (`auto`), `--verbose` prints the event trace of each failing seed.

Scripted scenarios (a chain of faults too unlikely for random seeds, e.g. ZOOKEEPER-3911): pass
`script=`, a generator function of the Sim that does things (`partition`, `stall_disk`, `crash`,
`restart`, `write`) and yields a condition to wait for before its next step. There are then no random
faults nor client writes; when the script ends the run heals, settles and is checked as usual.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import logging
import pickle
import random
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zkfast.quorum import zab
from zkfast.quorum.replica import Disk, Replica
from zkfast.quorum.wire import Notification, PacketType, QuorumPacket, ServerState
from zkfast.quorum.zab import Actions

from . import planted

TICK_MS = 100
INIT_LIMIT = 10
SYNC_LIMIT = 5
DRIVER_TICK_MS = 25  # how often the driver calls Replica.on_tick
QUIET_MS = 2 * SYNC_LIMIT * TICK_MS  # once converged, how long the ensemble must stay so (idle)

# the replica's "leaving ROLE: why" warnings belong to the trace, not to stderr
logging.getLogger("zkfast.quorum").addHandler(logging.NullHandler())

CHECKS = ("one-leader-per-epoch", "zxid-conflict", "prefix", "order", "acked-lost", "liveness")
ALWAYS = ("exception", "contract", "script")  # a core raised, the driver was asked something impossible, or a
# scripted step's condition never came
SCRIPT_POLL_MS = 1        # how often a scripted step's condition is tested
SCRIPT_WAIT_MS = 30_000   # how long a scripted step may wait for its condition

# reconfiguration: a txn whose data starts with RECONFIG carries the membership it makes
RECONFIG = b"reconfig:"
RECONFIG_SHARE = 0.3   # the share of (unscripted) seeds whose leaders propose reconfigs
# where zkfast's reconfig departs from Apache's in a way this simulator found to hurt; none left (the
# simulator found LeaderCore.synced_quorum_of counting observers, which it no longer does)
QUIRKS: tuple[str, ...] = ()

Membership = tuple[frozenset[int], frozenset[int]]  # (voters, observers)


def encode_membership(m: Membership, tag: str) -> bytes:
    """A reconfig txn's data; `tag` keeps every txn's data distinct, as the writes' are."""
    return RECONFIG + f"{','.join(map(str, sorted(m[0])))}/{','.join(map(str, sorted(m[1])))}#{tag}".encode()


def parse_membership(data: bytes) -> Membership | None:
    if not data.startswith(RECONFIG):
        return None
    voters, observers = data[len(RECONFIG):].split(b"#", 1)[0].split(b"/")
    return (frozenset(int(x) for x in voters.split(b",") if x),
            frozenset(int(x) for x in observers.split(b",") if x))


def config_of(activated: tuple[int, Membership] | None) -> bytes:
    """What a node's notifications carry (the peer: /zookeeper/config's text): its activated
    membership and the zxid that made it; nothing for the static one."""
    if activated is None:
        return b""
    return f"{activated[0]}|".encode() + encode_membership(activated[1], "config")


def parse_config(data: bytes) -> tuple[int, Membership] | None:
    if not data:
        return None
    zxid, _, rest = data.partition(b"|")
    m = parse_membership(rest)
    return (int(zxid), m) if m is not None else None


def membership_of(entries: Iterable[tuple[int, bytes]], initial: Membership) -> Membership:
    """The newest membership a state (applied or recovered txns, in zxid order) holds."""
    found = initial
    for _, data in entries:
        m = parse_membership(data)
        if m is not None:
            found = m
    return found


class Violation(Exception):
    def __init__(self, kind: str, message: str, seed: int, now: int, trace: list[str] | None = None) -> None:
        super().__init__(f"seed {seed} t={now}ms {kind}: {message}")
        self.kind = kind
        self.message = message
        self.seed = seed
        self.now = now
        self.trace = trace or []


def _digest(prev: bytes, zxid: int, data: bytes) -> bytes:
    return hashlib.blake2b(prev + zxid.to_bytes(8, "big") + data, digest_size=8).digest()


class Tree:
    """A replica's state machine: the applied txns and a rolling digest after each."""

    __slots__ = ("entries", "digests")

    def __init__(self, entries: Iterable[tuple[int, bytes]] = ()) -> None:
        self.entries: list[tuple[int, bytes]] = []
        self.digests: list[bytes] = []
        for zxid, data in entries:
            self.append(zxid, data)

    @property
    def last(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    def append(self, zxid: int, data: bytes) -> None:
        self.digests.append(_digest(self.digests[-1] if self.digests else b"", zxid, data))
        self.entries.append((zxid, data))

    def upto(self, zxid: int) -> list[tuple[int, bytes]]:
        return [e for e in self.entries if e[0] <= zxid]


@dataclass
class SimDisk:
    accepted_epoch: int = 0
    current_epoch: int = 0
    snap_zxid: int = 0
    snap: list[tuple[int, bytes]] = field(default_factory=list)
    log: list[tuple[int, bytes]] = field(default_factory=list)  # only txns past the snapshot
    durable_len: int = 0  # log[:durable_len] survives a crash
    generation: int = 0   # bumped by truncation / snapshot install: older fsyncs no longer count
    activated: tuple[int, Membership] | None = None  # the last reconfig activated (zxid, membership):
    # durable at once, as the peer's dataDir/membership file

    def last_zxid(self) -> int:
        return self.log[-1][0] if self.log else self.snap_zxid


class Conn:
    """One learner→leader connection: two ordered directions."""

    __slots__ = ("cid", "learner", "leader", "open", "last_up", "last_down")

    def __init__(self, cid: int, learner: int, leader: int) -> None:
        self.cid = cid
        self.learner = learner
        self.leader = leader
        self.open = True
        self.last_up = 0    # delivery time of the last packet towards the leader
        self.last_down = 0  # ... towards the learner


class Node:
    def __init__(self, sid: int, observer: bool) -> None:
        self.sid = sid
        self.observer = observer
        self.disk = SimDisk()
        self.replica: Replica | None = None
        self.inc = 0                 # incarnation: bumped by a crash, stale events are ignored
        self.role_id = 0             # bumped on every role change
        self.tree = Tree()
        self.serving = False
        self.reloading = False
        self.conn: Conn | None = None                # learner side
        self.learner_conns: dict[int, Conn] = {}     # leader side, by learner sid
        self.connect_target: int | None = None
        self.pending: list[tuple[int, bytes]] = []   # leader: own proposals not applied yet
        self.next_zxid: int | None = None            # leader: the next zxid to assign
        self.fsync_inflight = False
        self.fsync_again = False
        self.stalled = False                          # scripted: fsyncs do not complete while set


@dataclass
class Params:
    """Per-seed knobs, drawn from the seed."""

    elect_loss: float
    elect_dup: float
    elect_delay: int
    conn_delay: int
    fsync_max: int
    chaos_ms: int
    fault_every: int
    write_every: int
    torn: float
    commit_log_max: int
    crash_point: float  # chance of a crash within an fsync delay of an epoch write, TRUNC or ACK
    reconfig_every: int = 0  # mean ms between the leader's reconfigs (0: none); drawn apart from the rest
    # (Sim's own Random), so the seeds without reconfig replay as they did before it existed

    @classmethod
    def draw(cls, rng: random.Random) -> Params:
        return cls(
            elect_loss=rng.choice([0.0, 0.05, 0.2, 0.4]),
            elect_dup=rng.choice([0.0, 0.05, 0.2]),
            elect_delay=rng.choice([2, 10, 40]),
            conn_delay=rng.choice([1, 5, 20]),
            fsync_max=rng.choice([2, 10, 40]),
            chaos_ms=rng.randint(1500, 4000),
            fault_every=rng.choice([150, 400, 1000]),
            write_every=rng.choice([10, 30, 100]),
            torn=rng.choice([0.0, 0.5]),
            commit_log_max=rng.choice([zab.COMMITTED_LOG_MAX, zab.COMMITTED_LOG_MAX, 3, 10]),
            crash_point=rng.choice([0.0, 0.05, 0.2]),
        )


# a scripted scenario: steps run between the conditions it yields (see the module's docstring)
Script = Callable[["Sim"], Iterator[Callable[[], bool]]]


class Sim:
    def __init__(self, seed: int, nodes: int = 3, observers: int = 0, checks: Iterable[str] = CHECKS,
                 trace: bool = False, params: Params | None = None, script: Script | None = None,
                 reconfig: bool | None = None, quirks: Iterable[str] = ()) -> None:
        """`reconfig`: None lets the seed decide (RECONFIG_SHARE of the unscripted seeds), True/False
        forces it (False keeps a given `params.reconfig_every` off too)."""
        self.seed = seed
        self.quirks = frozenset(quirks)
        self.script = script
        self.steps: Iterator[Callable[[], bool]] | None = None
        self.waiting: Callable[[], bool] | None = None
        self.waiting_since = 0
        self.rng = random.Random(seed)
        self.p = params or Params.draw(self.rng)
        # every reconfig decision draws from this one, never from self.rng: a seed without reconfig
        # replays exactly as before, one with it diverges only through the reconfigs' own effects
        self.crng = random.Random(f"reconfig {seed}")
        share = self.crng.random()
        if reconfig is False:
            self.p.reconfig_every = 0
        elif params is None and (reconfig or (reconfig is None and script is None and share < RECONFIG_SHARE)):
            self.p.reconfig_every = self.crng.choice([150, 400, 1000])
        elif reconfig and not self.p.reconfig_every:
            self.p.reconfig_every = 400
        self.checks = set(checks) | set(ALWAYS)
        self.trace: deque[str] | None = deque(maxlen=3000) if trace else None
        ids = list(range(1, nodes + observers + 1))
        self.voters = frozenset(ids[:nodes])        # the static membership (the config file's)
        self.observers = frozenset(ids[nodes:])
        self.nodes = {sid: Node(sid, sid in self.observers) for sid in ids}
        self.now = 0
        self.seq = 0
        self.events: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.group: dict[int, int] | None = None  # partition: sid → side
        self.partition_id = 0
        self.cids = 0
        self.healed = False
        self.deadline: int | None = None
        self.bound = 0
        self.done = False
        # global observations
        self.committed = Tree()                       # the one committed sequence
        self.seen: dict[int, bytes] = {}              # zxid → txn, across every log
        self.leaders: dict[int, tuple[int, int]] = {}  # epoch → (sid, role id) established
        self.acked: dict[int, bytes] = {}             # acknowledged writes
        self.probe: tuple[int, tuple[tuple[int, int, int], ...]] | None = None  # (zxid, every member's role)
        # of a settling write
        self.probe_round = 0
        self.quiet_until: int | None = None
        self.wseq = 0
        self.stats = {"crashes": 0, "partitions": 0, "breaks": 0, "writes": 0, "leaders": 0, "snaps": 0,
                      "truncs": 0, "reconfigs": 0, "activations": 0, "no-synced-quorum": 0}

    # -- plumbing

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, fn, args))

    def log(self, msg: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:>7} {msg}")

    def fail(self, kind: str, msg: str) -> None:
        if kind in self.checks:
            raise Violation(kind, msg, self.seed, self.now, list(self.trace or []))

    def reachable(self, a: int, b: int) -> bool:
        return self.group is None or self.group[a] == self.group[b]

    # -- the run

    def run(self) -> Violation | None:
        saved = zab.COMMITTED_LOG_MAX
        zab.COMMITTED_LOG_MAX = self.p.commit_log_max
        try:
            for node in self.nodes.values():
                self.at(self.rng.randint(0, 50), self._restart, node)
            if self.script is None:
                self.at(self.rng.randint(50, 300), self._client)
                self.at(self.rng.randint(100, self.p.fault_every * 2), self._fault)
                self.at(self.p.chaos_ms, self._heal)
                if self.p.reconfig_every:
                    self.at(self.crng.randint(100, 2 * self.p.reconfig_every), self._reconfig)
            else:
                self.steps = self.script(self)
                self.at(0, self._step)
            while self.events and not self.done:
                t, _, fn, args = heapq.heappop(self.events)
                self.now = t
                fn(*args)
            if not self.done:
                raise Violation("contract", "the run ran out of events", self.seed, self.now)
            return None
        except Violation as v:
            return v
        except Exception:  # a core (or the harness) raised: report it with the seed
            return Violation("exception", traceback.format_exc(), self.seed, self.now, list(self.trace or []))
        finally:
            zab.COMMITTED_LOG_MAX = saved

    # -- scripted scenarios

    def _step(self) -> None:
        """Run the script on while the condition it waits for holds; at its end, heal and settle."""
        assert self.steps is not None
        while self.waiting is None or self.waiting():
            try:
                self.waiting = next(self.steps)
            except StopIteration:
                self.log("script done")
                self._heal()
                return
            self.waiting_since = self.now
        if self.now - self.waiting_since > SCRIPT_WAIT_MS:
            self.fail("script", f"a step waited {SCRIPT_WAIT_MS} ms in vain: {self._describe()}")
            self.done = True
            return
        self.at(self.now + SCRIPT_POLL_MS, self._step)

    def partition(self, *sides: Iterable[int]) -> None:
        """Cut the network in these sides (the nodes named in none form one more side): datagrams
        between sides are dropped, connections across them break (losing what is in flight)."""
        group = {sid: i for i, side in enumerate(sides) for sid in side}
        self.group = {sid: group.get(sid, len(sides)) for sid in self.nodes}
        self.partition_id += 1
        self.stats["partitions"] += 1
        self.log("partition " + " | ".join(str(sorted(s for s in self.nodes if self.group[s] == g))
                                            for g in sorted(set(self.group.values()))))
        for conn in self._all_conns():
            if not self.reachable(conn.learner, conn.leader):
                self._break(conn, "partition")

    def unpartition(self) -> None:
        self._unpartition(self.partition_id)

    def stall_disk(self, sid: int, stalled: bool = True) -> None:
        """A slow disk: while stalled, the node's fsyncs stay in flight (a crash loses what they held)."""
        self.nodes[sid].stalled = stalled
        self.log(f"n{sid} disk {'stalls' if stalled else 'resumes'}")

    def crash(self, sid: int) -> None:
        self._crash(self.nodes[sid])

    def restart(self, sid: int) -> None:
        self._restart(self.nodes[sid])

    def write(self, sid: int) -> int:
        """A client write at n<sid>, an established leader: its zxid."""
        return self._write(self.nodes[sid])

    def reconfig(self, sid: int, membership: Membership) -> int:
        """A reconfig proposed at n<sid>, an established leader, whether or not the peer's checks
        (a synced quorum of the new voters) would let it through: its zxid."""
        return self._write(self.nodes[sid], membership)

    def established_leader(self) -> int | None:
        """The sid of a node that serves as an established leader, if one does."""
        return next((n.sid for n in self.nodes.values() if n.serving and n.next_zxid is not None), None)

    def _disk_view(self, node: Node) -> Disk:
        d = node.disk
        return Disk(d.accepted_epoch, d.current_epoch, d.last_zxid(), list(d.log[-zab.COMMITTED_LOG_MAX:]))

    def _log_reader(self, node: Node) -> Callable[[int], list[tuple[int, bytes]] | None]:
        def read(peer: int) -> list[tuple[int, bytes]] | None:
            # Apache's getProposalsFromTxnLog: from the txn with exactly the peer's zxid, else nothing
            log = node.disk.log
            for i, (z, _) in enumerate(log):
                if z == peer:
                    return list(log[i:])
                if z > peer:
                    break
            return None
        return read

    def _restart(self, node: Node) -> None:
        if node.replica is not None:
            return
        d = node.disk
        node.tree = Tree(d.snap + d.log)
        voters, observers = self._disk_membership(node)
        node.replica = Replica(node.sid, voters, observers, tick_ms=TICK_MS, init_limit=INIT_LIMIT,
                               sync_limit=SYNC_LIMIT, disk=self._disk_view(node),
                               log_reader=self._log_reader(node), config=config_of(d.activated))
        self.log(f"n{node.sid} starts: epochs {d.accepted_epoch}/{d.current_epoch} last 0x{d.last_zxid():x}")
        self.do(node, node.replica.start(self.now))
        self.at(self.now + self.rng.randint(1, DRIVER_TICK_MS), self._tick, node, node.inc)

    def _disk_membership(self, node: Node) -> Membership:
        """What a node starting or reloading adopts, as zkfast.quorum.peer does: the membership it last
        activated, else the static one. A newer reconfig its log holds may not be committed: it counts
        only once the node serves a history holding it (see `_activate`)."""
        return node.disk.activated[1] if node.disk.activated is not None else (self.voters, self.observers)

    def _activate(self, node: Node, zxid: int, m: Membership) -> Membership:
        """A committed reconfig becomes this node's membership, durably; its notifications say so."""
        if node.disk.activated is None or node.disk.activated[0] < zxid:
            node.disk.activated = (zxid, m)
            if node.replica is not None:
                node.replica.election.config = config_of(node.disk.activated)
        return m

    def _newest_reconfig(self, node: Node) -> tuple[int, Membership] | None:
        found = None
        for z, data in node.tree.entries:
            m = parse_membership(data)
            if m is not None:
                found = (z, m)
        return found

    def _tick(self, node: Node, inc: int) -> None:
        if node.inc != inc or node.replica is None:
            return
        self.do(node, node.replica.on_tick(self.now))
        self.at(self.now + DRIVER_TICK_MS, self._tick, node, inc)

    # -- performing Actions

    def do(self, node: Node, a: Actions) -> None:
        r = node.replica
        if r is None:
            return
        d = node.disk
        adopt: Membership | None = None  # a membership this node takes once the rest is done
        if a.truncate_to is not None:
            self.stats["truncs"] += 1
            z = a.truncate_to
            if z < d.snap_zxid:
                self.fail("contract", f"n{node.sid} asked to truncate to 0x{z:x}, below its snapshot 0x{d.snap_zxid:x}")
            d.log = [e for e in d.log if e[0] <= z]
            d.durable_len = min(d.durable_len, len(d.log))
            d.generation += 1
            node.tree = Tree(d.snap + d.log)
            adopt = self._disk_membership(node)  # the peer rebuilds its tree (and config) from disk
            self.log(f"n{node.sid} TRUNC to 0x{z:x}")
        if a.snapshot is not None:
            self.stats["snaps"] += 1
            z, stream = a.snapshot
            entries = pickle.loads(stream)
            d.snap_zxid, d.snap = z, entries
            d.log, d.durable_len = [], 0
            d.generation += 1
            node.tree = Tree(entries)
            adopt = self._disk_membership(node)  # a reconfig in the leader's tree is never applied here
            self.log(f"n{node.sid} SNAP installed at 0x{z:x} ({len(entries)} txns)")
        for z, data in a.persist:
            self._log_append(node, z, data)
        if a.sync:
            self._fsync(node)
        if a.write_accepted_epoch is not None:
            d.accepted_epoch = a.write_accepted_epoch
        if a.write_current_epoch is not None:
            d.current_epoch = a.write_current_epoch
            self._maybe_crash_point(node)
        if a.truncate_to is not None or a.write_accepted_epoch is not None:
            self._maybe_crash_point(node)
        for z, data in a.apply:
            self._apply(node, z, data)
            m = parse_membership(data)  # a learner applying a reconfig (the peer's OP_RECONFIG)
            if m is not None:
                adopt = self._activate(node, z, m)
        if a.commit_upto is not None:
            while node.pending and node.pending[0][0] <= a.commit_upto:
                z, data = node.pending.pop(0)
                self._apply(node, z, data)
                self.acked[z] = data
                m = parse_membership(data)
                if m is not None and planted.is_planted("reconfig-old-quorum") and r.leader is not None:
                    # planted: the core committed it as a plain txn (old voters' quorum); the driver
                    # switches the core's voters itself, as if the core had activated it
                    self.log(f"n{node.sid} activates 0x{z:x} (planted: old quorum only)")
                    r.leader.voters, r.leader.observers = m
                    adopt = self._activate(node, z, m)
        if a.activate is not None:
            m = parse_membership(self.seen[a.activate])  # the leader: its core switched at commit
            assert m is not None, "activate names a reconfig txn"
            adopt = self._activate(node, a.activate, m)
            self.stats["activations"] += 1
            self.log(f"n{node.sid} activates 0x{a.activate:x}: voters {sorted(adopt[0])} observers "
                     f"{sorted(adopt[1])}")
        if a.serve:
            newest = self._newest_reconfig(node)
            activated = node.disk.activated[0] if node.disk.activated is not None else 0
            if newest is not None and newest[0] > activated:
                # a reconfig of the history this node now serves: committed by the new epoch
                adopt = self._activate(node, *newest)
            node.serving = True
            if r.leader is not None:
                ep = r.leader.epoch
                assert ep is not None
                prev = self.leaders.get(ep)
                if prev is not None and prev != (node.sid, node.role_id):
                    self.fail("one-leader-per-epoch", f"epoch {ep}: n{prev[0]} and n{node.sid} both established")
                self.leaders[ep] = (node.sid, node.role_id)
                self.stats["leaders"] += 1
                node.next_zxid = r.first_zxid_of_epoch() + 1
                self.log(f"n{node.sid} established leader of epoch {ep}, tree 0x{node.tree.last:x}")
            else:
                self.log(f"n{node.sid} serving as a learner of n{r.leader_id}, tree 0x{node.tree.last:x}")
            self._check_prefix(node)
        for to, p in a.send:
            self._send(node, to, p)
            if p.type == PacketType.ACK:
                self._maybe_crash_point(node, 1.0 if p.zxid & 0xFFFFFFFF == 0 else 0.1)  # NEWLEADER's, or not
        for to, n in a.notify:
            self._notify_send(node.sid, to, n)
        for sid in a.drop:
            conn = node.learner_conns.pop(sid, None)
            if conn is not None:
                self._break(conn, "dropped by the leader")
        if a.role is not None:
            node.role_id += 1
            self.log(f"n{node.sid} role {a.role.name}" + (f" (leader n{r.leader_id})" if r.leader_id else ""))
        if a.connect_leader is not None:
            node.connect_target = a.connect_leader
            self.at(self.now + self.rng.randint(1, self.p.conn_delay), self._connect, node, node.inc, node.role_id,
                    a.connect_leader)
        if a.reload:
            self.log(f"n{node.sid} reload: {r.last_stop_reason}")
            node.serving = False
            node.reloading = True
            node.pending = []
            node.next_zxid = None
            node.connect_target = None
            if node.conn is not None:
                self._break(node.conn, "role ended")
            for conn in list(node.learner_conns.values()):
                self._break(conn, "role ended")
            self.at(self.now + self.rng.randint(1, 20), self._reloaded, node, node.inc)
        if adopt is not None:
            self._adopt(node, adopt)

    def _adopt(self, node: Node, m: Membership) -> None:
        """Replica.set_membership, once every other action of the same batch is done (what it asks,
        e.g. a learner made a voter leaving its role, comes after them)."""
        r = node.replica
        if r is None or (r.voters, r.observers) == m:
            return
        self.log(f"n{node.sid} adopts voters {sorted(m[0])} observers {sorted(m[1])}")
        self.do(node, r.set_membership(m[0], m[1], self.now))
        if r.leader is not None and node.sid not in m[0]:
            # a leader the driver switched itself (see do) stops as the core's own activation would
            self.do(node, r.stop("this server is no longer a voter of the configuration", self.now))

    def _reloaded(self, node: Node, inc: int) -> None:
        if node.inc != inc or node.replica is None:
            return
        d = node.disk
        d.durable_len = len(d.log)  # the role's shutdown flushed the log
        node.reloading = False
        node.tree = Tree(d.snap + d.log)
        self._adopt(node, self._disk_membership(node))  # no role now: only the election's voters change
        self.do(node, node.replica.on_reloaded(self._disk_view(node), self.now))

    def _log_append(self, node: Node, zxid: int, data: bytes) -> None:
        d = node.disk
        if zxid <= d.last_zxid():
            self.fail("order", f"n{node.sid} logs 0x{zxid:x} after 0x{d.last_zxid():x}")
        was = self.seen.setdefault(zxid, data)
        if was != data:
            self.fail("zxid-conflict", f"zxid 0x{zxid:x} logged as {was!r} and as {data!r} (n{node.sid})")
        d.log.append((zxid, data))

    def _apply(self, node: Node, zxid: int, data: bytes) -> None:
        if zxid <= node.tree.last:
            self.fail("order", f"n{node.sid} applies 0x{zxid:x} after 0x{node.tree.last:x}")
        node.tree.append(zxid, data)
        if node.serving:
            self._check_prefix(node)

    def _check_prefix(self, node: Node) -> None:
        t, g = node.tree, self.committed
        k = min(len(t.entries), len(g.entries))
        if k and t.digests[k - 1] != g.digests[k - 1]:
            i = next(i for i in range(k) if t.entries[i] != g.entries[i])
            self.fail("prefix", f"n{node.sid}'s state differs from the committed sequence at #{i}: "
                                f"{_fmt(t.entries[i])} vs committed {_fmt(g.entries[i])}")
            return
        for i in range(len(g.entries), len(t.entries)):
            g.entries.append(t.entries[i])
            g.digests.append(t.digests[i])

    def _fsync(self, node: Node) -> None:
        if node.fsync_inflight:
            node.fsync_again = True
            return
        node.fsync_inflight, node.fsync_again = True, False
        d = node.disk
        self.at(self.now + self.rng.randint(1, self.p.fsync_max), self._fsynced, node, node.inc, d.generation,
                len(d.log))

    def _fsynced(self, node: Node, inc: int, generation: int, n: int) -> None:
        if node.inc != inc or node.replica is None:
            return
        if node.stalled:  # still in flight: done once the disk resumes, or lost by a crash
            self.at(self.now + self.p.fsync_max, self._fsynced, node, inc, generation, n)
            return
        node.fsync_inflight = False
        d = node.disk
        if generation == d.generation:
            d.durable_len = max(d.durable_len, min(n, len(d.log)))
        again = node.fsync_again or generation != d.generation
        if d.durable_len:
            self.do(node, node.replica.on_durable(d.log[d.durable_len - 1][0], self.now))
        if again and len(d.log) > d.durable_len and node.replica is not None:
            self._fsync(node)

    # -- the election network (datagrams)

    def _notify_send(self, frm: int, to: int, n: Notification) -> None:
        if to == frm:
            self.at(self.now, self._notify_deliver, frm, to, n)  # the transport loops it back
            return
        if not self.reachable(frm, to) or self.nodes[to].replica is None:
            return
        if self.rng.random() < self.p.elect_loss:
            return
        copies = 2 if self.rng.random() < self.p.elect_dup else 1
        for _ in range(copies):
            self.at(self.now + self.rng.randint(1, self.p.elect_delay), self._notify_deliver, frm, to, n)

    def _notify_deliver(self, frm: int, to: int, n: Notification) -> None:
        node = self.nodes[to]
        if node.replica is None or not self.reachable(frm, to):
            return
        theirs = parse_config(n.config)
        mine = node.disk.activated[0] if node.disk.activated is not None else 0
        if theirs is not None and theirs[0] > mine:
            # the sender activated a reconfig we missed: the peer takes it (FastLeaderElection does)
            self.log(f"n{to} takes n{frm}'s membership of 0x{theirs[0]:x}")
            self._adopt(node, self._activate(node, *theirs))
            if node.replica is None:
                return
        self.do(node, node.replica.on_notification(frm, n, self.now))

    # -- Zab connections (ordered streams)

    def _connect(self, node: Node, inc: int, role_id: int, target: int) -> None:
        if node.inc != inc or node.role_id != role_id or node.connect_target != target or node.replica is None:
            return
        leader = self.nodes[target]
        if leader.replica is None or leader.replica.leader is None or not self.reachable(node.sid, target):
            # refused (nobody leading there yet): retry until the learner's own limit ends the role
            self.at(self.now + self.rng.randint(30, 100), self._connect, node, inc, role_id, target)
            return
        self.cids += 1
        conn = Conn(self.cids, node.sid, target)
        old = leader.learner_conns.get(node.sid)
        if old is not None:
            self._break(old, "replaced by a new connection")
        leader.learner_conns[node.sid] = conn
        node.conn = conn
        node.connect_target = None
        self.at(self.now + self.rng.randint(1, self.p.conn_delay), self._connected, node, conn)

    def _connected(self, node: Node, conn: Conn) -> None:
        if node.conn is conn and conn.open and node.replica is not None:
            self.log(f"n{node.sid} connected to n{conn.leader} (c{conn.cid})")
            self.do(node, node.replica.on_leader_connected(self.now))

    def _send(self, node: Node, to: int, p: QuorumPacket) -> None:
        conn = node.conn if to == 0 else node.learner_conns.get(to)
        if conn is None or not conn.open:
            return
        stream = None
        if p.type == PacketType.SNAP:
            if node.tree.last < p.zxid:
                self.fail("contract", f"n{node.sid} sends SNAP at 0x{p.zxid:x} but its tree ends at "
                                      f"0x{node.tree.last:x}")
            stream = pickle.dumps(node.tree.upto(p.zxid))
        t = self.now + self.rng.randint(1, self.p.conn_delay)
        if to == 0:
            t = conn.last_up = max(t, conn.last_up)
        else:
            t = conn.last_down = max(t, conn.last_down)
        self.at(t, self._deliver, conn, to == 0, p, stream)

    def _deliver(self, conn: Conn, up: bool, p: QuorumPacket, stream: bytes | None) -> None:
        if not conn.open:
            return
        if up:
            node = self.nodes[conn.leader]
            if node.replica is None or node.learner_conns.get(conn.learner) is not conn:
                return
            self.do(node, node.replica.on_learner_packet(conn.learner, p, self.now))
        else:
            node = self.nodes[conn.learner]
            if node.replica is None or node.conn is not conn:
                return
            if p.type not in (PacketType.PING, PacketType.PROPOSAL, PacketType.COMMIT):
                self.log(f"n{node.sid} <- {p.name()} 0x{p.zxid:x}")
            self.do(node, node.replica.on_leader_packet(p, self.now))
            if stream is not None and node.conn is conn and node.replica is not None:
                self.do(node, node.replica.on_snapshot(p.zxid, stream, self.now))

    def _break(self, conn: Conn, reason: str) -> None:
        if not conn.open:
            return
        conn.open = False
        learner, leader = self.nodes[conn.learner], self.nodes[conn.leader]
        self.log(f"c{conn.cid} n{conn.learner}->n{conn.leader} breaks: {reason}")
        if learner.conn is conn:
            learner.conn = None
            self.at(self.now, self._leader_lost, learner, learner.inc, learner.role_id, reason)
        if leader.learner_conns.get(conn.learner) is conn:
            del leader.learner_conns[conn.learner]
            self.at(self.now, self._learner_lost, leader, leader.inc, leader.role_id, conn.learner)

    def _leader_lost(self, node: Node, inc: int, role_id: int, reason: str) -> None:
        if node.inc == inc and node.role_id == role_id and node.replica is not None:
            self.do(node, node.replica.on_leader_lost(reason, self.now))

    def _learner_lost(self, node: Node, inc: int, role_id: int, sid: int) -> None:
        if node.inc == inc and node.role_id == role_id and node.replica is not None:
            self.do(node, node.replica.on_learner_lost(sid, self.now))

    def _all_conns(self) -> list[Conn]:
        out = {c.cid: c for n in self.nodes.values() for c in n.learner_conns.values() if c.open}
        out.update({n.conn.cid: n.conn for n in self.nodes.values() if n.conn is not None and n.conn.open})
        return [out[k] for k in sorted(out)]

    # -- faults

    def _fault(self) -> None:
        if self.healed:
            return
        self.at(self.now + self.rng.randint(1, 2 * self.p.fault_every), self._fault)
        kind = self.rng.choice(["crash", "crash", "power", "partition", "partition", "break", "break"])
        # half the crashes and partitions aim at a leader: that is where the protocol does most
        leaders = [n.sid for n in self.nodes.values() if n.replica is not None and n.replica.leader is not None]
        target = self.rng.choice(leaders) if leaders and self.rng.random() < 0.5 else None
        if kind == "power":
            self._power_cut()
        elif kind == "crash":
            live = [n for n in self.nodes.values() if n.replica is not None]
            if live:
                node = self.nodes[target] if target is not None else self.rng.choice(live)
                self._crash(node)
                self.at(self.now + self.rng.randint(20, 1500), self._restart_if_chaos, node)
        elif kind == "partition":
            ids = sorted(self.nodes)
            self.rng.shuffle(ids)
            cut = self.rng.randint(1, len(ids) - 1)
            self.partition(set(ids[:cut]) if target is None else {target})
            self.at(self.now + self.rng.randint(50, 2000), self._unpartition, self.partition_id)
        else:
            conns = self._all_conns()
            if conns:
                self.stats["breaks"] += 1
                self._break(self.rng.choice(conns), "connection reset")

    def _unpartition(self, pid: int) -> None:
        if pid == self.partition_id and self.group is not None:
            self.log("partition heals")
            self.group = None

    def _crash(self, node: Node) -> None:
        self.stats["crashes"] += 1
        d = node.disk
        keep = d.durable_len
        unsynced = len(d.log) - keep
        if unsynced and self.rng.random() < self.p.torn:
            keep += self.rng.randint(0, unsynced)  # a torn tail: some unsynced entries reached the disk
        self.log(f"n{node.sid} CRASH: keeps {keep} of {len(d.log)} log entries ({d.durable_len} durable)")
        node.inc += 1
        node.replica = None
        node.serving = node.reloading = False
        node.pending, node.next_zxid, node.connect_target = [], None, None
        node.fsync_inflight = node.fsync_again = False
        if node.conn is not None:
            self._break(node.conn, "peer crashed")
        for conn in list(node.learner_conns.values()):
            self._break(conn, "peer crashed")
        d.log = d.log[:keep]
        d.durable_len = len(d.log)
        d.generation += 1
        node.tree = Tree()

    def _maybe_crash_point(self, node: Node, weight: float = 1.0) -> None:
        """At a moment that matters (an epoch written, a TRUNC, an ACK sent), maybe crash before the
        pending fsyncs finish."""
        if self.p.crash_point and self.rng.random() < self.p.crash_point * weight:
            self.at(self.now + self.rng.randint(0, self.p.fsync_max), self._crash_point, node, node.inc)

    def _crash_point(self, node: Node, inc: int) -> None:
        if not self.healed and node.inc == inc and node.replica is not None:
            if self.rng.random() < 0.5:
                self._power_cut()
                return
            self._crash(node)
            self.at(self.now + self.rng.randint(20, 1500), self._restart_if_chaos, node)

    def _power_cut(self) -> None:
        """Every node goes down at once (correlated crashes), and they come back in a random order."""
        self.log("POWER CUT")
        for node in self.nodes.values():
            if node.replica is not None:
                self._crash(node)
                self.at(self.now + self.rng.randint(20, 1500), self._restart_if_chaos, node)

    def _restart_if_chaos(self, node: Node) -> None:
        if not self.healed:
            self._restart(node)

    # -- clients

    def _client(self) -> None:
        if self.healed:
            return
        self.at(self.now + self.rng.randint(1, 2 * self.p.write_every), self._client)
        leaders = [n for n in self.nodes.values() if n.next_zxid is not None and n.replica is not None]
        if leaders:
            self._write(self.rng.choice(leaders))

    def _write(self, node: Node, membership: Membership | None = None) -> int:
        """A client write, or with `membership` a reconfig that makes it, at an established leader."""
        assert node.next_zxid is not None and node.replica is not None
        z = node.next_zxid
        node.next_zxid += 1
        self.wseq += 1
        if membership is None:
            self.stats["writes"] += 1
            data = f"w{self.wseq}@n{node.sid}".encode()
        else:
            self.stats["reconfigs"] += 1
            data = encode_membership(membership, f"r{self.wseq}@n{node.sid}")
            self.log(f"n{node.sid} proposes reconfig 0x{z:x}: voters {sorted(membership[0])} observers "
                     f"{sorted(membership[1])}")
            if planted.is_planted("reconfig-old-quorum"):
                membership = None  # planted: the core sees a plain txn, committed by the old voters alone
        self._log_append(node, z, data)
        node.pending.append((z, data))
        self._fsync(node)
        self.do(node, node.replica.propose(z, data, self.now, membership))
        return z

    # -- reconfiguration

    def _reconfig(self) -> None:
        """Now and then the established leader proposes a new membership, under the peer's rules: one
        reconfig at a time, and only if it and its serving followers make a quorum of the new voters."""
        if self.healed:
            return
        self.at(self.now + self.crng.randint(1, 2 * self.p.reconfig_every), self._reconfig)
        leaders = [n for n in self.nodes.values()
                   if n.next_zxid is not None and n.replica is not None and n.replica.leader is not None]
        if not leaders:
            return
        node = self.crng.choice(leaders)  # normally one; two only while a deposed one has not noticed yet
        assert node.replica is not None and node.replica.leader is not None
        core = node.replica.leader
        # the sim's own look at its pipeline too: with the planted bug the core sees no reconfig
        if core.reconfig_in_progress() or any(parse_membership(data) for _, data in node.pending):
            return
        m = self._new_membership(core.voters, core.observers)
        if m is None:
            return
        if not core.synced_quorum_of(m[0]):
            self.stats["no-synced-quorum"] += 1  # the peer answers NEWCONFIGNOQUORUM
            return
        self._write(node, m)

    def _new_membership(self, voters: frozenset[int], observers: frozenset[int]) -> Membership | None:
        """One change (a voter removed or made an observer, an observer made a voter or removed, a
        removed node back as either), or now and then a whole new member list (Apache's non-incremental
        reconfig: several changes at once). Always >= 2 voters."""
        ids = sorted(self.nodes)
        options: list[Membership] = []
        if self.crng.random() < 0.25:
            vs = frozenset(self.crng.sample(ids, self.crng.randint(2, len(ids))))
            options.append((vs, frozenset(x for x in ids if x not in vs and self.crng.random() < 0.7)))
        else:
            if len(voters) > 2:
                for v in sorted(voters):
                    options += [(voters - {v}, observers), (voters - {v}, observers | {v})]
            for o in sorted(observers):
                options += [(voters | {o}, observers - {o}), (voters, observers - {o})]
            for x in ids:
                if x not in voters and x not in observers:
                    options += [(voters | {x}, observers), (voters, observers | {x})]
        options = [o for o in options if o != (voters, observers)]
        return self.crng.choice(options) if options else None

    # -- the end: heal, settle, check

    def _heal(self) -> None:
        self.healed = True
        self.group = None
        self.p.elect_loss = self.p.elect_dup = 0.0
        self.log("HEAL")
        for node in self.nodes.values():
            if node.replica is None:
                self.at(self.now + self.rng.randint(1, 50), self._restart, node)
        self.bound = self.liveness_bound()
        self.deadline = self.now + self.bound
        self.at(self.now + 50, self._settle)

    def liveness_bound(self) -> int:
        """How long after healing the ensemble may take to serve again and converge.

        A stale role notices its peers are gone within initLimit+syncLimit ticks (a leader waits up to
        initLimit ticks for a quorum); a lost notification is only resent at the election's next
        timeout (what it waits now, doubling from 200 ms); then discovery + sync must finish within
        initLimit ticks, and one more election round may be needed when the first one's leader is
        refused (a follower ahead of it)."""
        backoff = 0
        for node in self.nodes.values():
            r = node.replica
            if r is not None and r.state == ServerState.LOOKING:
                backoff = max(backoff, r.election.next_timeout_at - self.now)
        role = (INIT_LIMIT + SYNC_LIMIT) * TICK_MS
        # with reconfigs, one more round: a learner that learns it is a voter (when it syncs) looks again
        extra = role + 2 * INIT_LIMIT * TICK_MS if self.p.reconfig_every else 0
        return backoff + 2 * role + 2 * INIT_LIMIT * TICK_MS + QUIET_MS + 2000 + extra

    def _settle(self) -> None:
        """Converged = one established leader, every other node serving as its learner, equal states.
        Then a write must commit everywhere; then, after a quiet spell longer than syncLimit (only
        pings), the same leader must still hold and a second write commit everywhere."""
        assert self.deadline is not None
        leader = self._converged()
        if leader is not None:
            members = self._members(leader)
            # no member changed role since (a node removed may come and go: the leader refuses it)
            roles = tuple((n.sid, n.inc, n.role_id) for n in members)
            if self.probe is None or self.probe[1] != roles:
                self.probe = (self._write(leader), roles)
                self.probe_round, self.quiet_until = 1, None
            elif self.probe[0] in self.acked and all(n.tree.last >= self.probe[0] for n in members):
                if self.probe_round == 2:
                    self._final_checks(leader)
                    self.done = True
                    return
                if self.quiet_until is None:
                    self.quiet_until = self.now + QUIET_MS
                elif self.now >= self.quiet_until:
                    self.probe = (self._write(leader), roles)
                    self.probe_round = 2
        if self.now > self.deadline:
            self.fail("liveness", f"not converged {self.bound} ms after healing: {self._describe()}")
            self.done = True
            return
        self.at(self.now + 50, self._settle)

    def _members(self, leader: Node) -> list[Node]:
        """The nodes of the membership in force: the leader's."""
        assert leader.replica is not None
        r = leader.replica
        return [n for n in self.nodes.values() if n.sid in r.voters or n.sid in r.observers]

    def _converged(self) -> Node | None:
        leaders = [n for n in self.nodes.values() if n.replica is not None and n.replica.leader is not None]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        r = leader.replica
        assert r is not None
        if (r.voters, r.observers) != membership_of(self.committed.entries, (self.voters, self.observers)):
            return None  # the leader's membership must be the committed one
        nodes = self._members(leader)
        if leader not in nodes:
            return None
        if any(n.replica is None or n.reloading or not n.serving for n in nodes):
            return None
        if any(n.replica is not None and (n.replica.voters, n.replica.observers) != (r.voters, r.observers)
               for n in nodes):
            return None  # every member follows the same membership
        if any(n.replica is not None and n is not leader and (n.replica.learner is None or
                                                              n.replica.leader_id != leader.sid) for n in nodes):
            return None
        if any(len(n.tree.entries) != len(leader.tree.entries) or n.tree.digests[-1:] != leader.tree.digests[-1:]
               for n in nodes):
            return None
        return leader

    def _describe(self) -> str:
        out = []
        for n in self.nodes.values():
            r = n.replica
            if r is None:
                out.append(f"n{n.sid}: down")
                continue
            core = r.leader or r.learner
            phase = getattr(core, "phase", None) if r.learner else ("established" if r.leader and
                                                                      r.leader.established else "discovery")
            out.append(f"n{n.sid}: {r.state.name}{' reloading' if n.reloading else ''} {phase or ''} "
                       f"serving={n.serving} tree=0x{n.tree.last:x} epochs={n.disk.accepted_epoch}/"
                       f"{n.disk.current_epoch}" + (f" voters={sorted(r.voters)} observers={sorted(r.observers)}"
                                                    if self.p.reconfig_every else ""))
        return "; ".join(out)

    def _final_checks(self, leader: Node) -> None:
        members = self._members(leader)
        for n in members:
            # not a node removed: refused by the leader, it never syncs, and its tree (rebuilt from its
            # log) may keep txns never committed that no TRUNC takes out
            self._check_prefix(n)
            have = dict(n.tree.entries)
            lost = [z for z, data in self.acked.items() if have.get(z) != data]
            if lost:
                self.fail("acked-lost", f"n{n.sid} lacks {len(lost)} acknowledged writes, first 0x{min(lost):x}")


def _fmt(e: tuple[int, bytes]) -> str:
    return f"(0x{e[0]:x}, {e[1]!r})"


def run_seed(seed: int, nodes: int = 3, observers: int = 0, checks: Iterable[str] = CHECKS,
             trace: bool = False, reconfig: bool | None = None, quirks: Iterable[str] = ()) -> Violation | None:
    return Sim(seed, nodes, observers, checks, trace, reconfig=reconfig, quirks=quirks).run()


WorkItem = tuple[int, int, int, tuple[str, ...], tuple[str, ...], bool, bool | None, tuple[str, ...]]


def _worker(args: WorkItem) -> tuple[int, str | None, str]:
    seed, nodes, observers, checks, bugs, trace, reconfig, quirks = args
    with planted.plant(*bugs):
        v = run_seed(seed, nodes, observers, checks, trace, reconfig, quirks)
    if v is None:
        return seed, None, ""
    return seed, f"{v}", "\n".join(v.trace[-400:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.quorum.sim", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--nodes", type=int, default=3, help="voters (3 or 5)")
    ap.add_argument("--observers", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--bug", action="append", default=[], choices=sorted(planted.BUGS),
                    help="plant a bug (tests/quorum/planted.py)")
    ap.add_argument("--check", action="append", default=[], choices=CHECKS, help="only these checks")
    ap.add_argument("--reconfig", choices=("auto", "on", "off"), default="auto",
                    help=f"leaders propose reconfigs in every seed (on), none (off), or {RECONFIG_SHARE * 100:.0f}%% "
                         "of them (auto)")
    ap.add_argument("--quirk", action="append", default=[], choices=QUIRKS,
                    help="do as zkfast does where it departs from Apache (QUIRKS)")
    ap.add_argument("--verbose", action="store_true", help="print the event trace of failing seeds")
    ap.add_argument("--max-failures", type=int, default=20, help="stop after this many failing seeds")
    args = ap.parse_args(argv)
    checks = tuple(args.check or CHECKS)
    reconfig = {"auto": None, "on": True, "off": False}[args.reconfig]
    work: list[WorkItem] = [(s, args.nodes, args.observers, checks, tuple(args.bug), args.verbose, reconfig,
                             tuple(args.quirk)) for s in range(args.start, args.start + args.seeds)]
    started = time.monotonic()
    failures = 0
    done = 0
    if args.jobs > 1:
        import multiprocessing
        pool = multiprocessing.Pool(args.jobs)
        results: Iterable[tuple[int, str | None, str]] = pool.imap(_worker, work, chunksize=16)
    else:
        pool = None
        results = map(_worker, work)
    try:
        for _seed, failure, trace in results:
            done += 1
            if failure is not None:
                failures += 1
                print(f"FAIL {failure}", flush=True)
                if args.verbose:
                    print(trace)
                if failures >= args.max_failures:
                    break
            if done % 1000 == 0:
                print(f"... {done} seeds, {failures} failing, {time.monotonic() - started:.0f}s", file=sys.stderr,
                      flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    print(f"{done} seeds from {args.start}, {failures} failing, {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
