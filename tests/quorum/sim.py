"""A deterministic simulator for the ensemble: N servers running zkfast's own quorum driver
(zkfast.quorum.driver, the code zkfast.quorum.peer runs over sockets and files) and real
ZooKeeperServers, over in-memory ports (tests/quorum/simports.py), with simulated clients
(tests/quorum/simclient.py).

Everything comes from one `random.Random(seed)` and a simulated clock (ms), so a seed replays exactly:
- election notifications are datagrams: lost, delayed, reordered and duplicated;
- Zab connections are ordered streams (TCP-like), read in pieces split anywhere; a connection breaks
  (a fault, a partition, a crash, a leader dropping a learner), what is in flight is lost and both
  ends are told;
- partitions split the nodes in two groups that cannot reach each other (datagrams dropped,
  connections broken and refused); clients are on neither side;
- crash/restart: a node loses everything not durable; its txn log is kept up to the last completed
  fsync, sometimes with a torn tail (some of the unsynced entries made it to disk), and it restarts
  from its disk (acceptedEpoch, currentEpoch, the active membership, its snapshot and log, replayed
  into a real DataTree by zkfast's recovery code);
- clients (a few per seed) connect to any server, create a session (a real createSession), write
  (creates, through the leader or forwarded by a learner), read, ping, and when a connection breaks
  reconnect elsewhere with their session: a learner revalidates it with the leader, which then owns it
  there. A write is "acknowledged" when its client gets a successful reply. The leader expires the
  sessions of clients gone longer than their timeout (learners report the others in their PINGs);
- dynamic reconfiguration (a share of the seeds, `Params.reconfig_every`): now and then a client asks
  for a new membership among the node ids (a voter removed or made an observer, a node added back, an
  observer made a voter, or a whole new member list; always >= 2 voters) with a real reconfig request,
  which the leader's driver checks (one at a time, a synced quorum of the new voters) and proposes.

What each server applies is recorded (the History of its tree: every txn applied, and for a tree
rebuilt from disk or received in a SNAP the txns it was built from), and checked as the run goes and
at its end (`CHECKS`):
- one-leader-per-epoch: at most one leader role is ever established for an epoch;
- zxid-conflict: a zxid always carries the same txn, in every log;
- prefix: every serving replica's state is a prefix of one global committed sequence (digests equal
  at the same position: same txns, same order);
- order: a replica applies, and logs, zxids strictly increasing;
- acked-lost: after the run heals and settles every replica holds every acknowledged write;
- liveness: once the faults stop, a leader is established, every node serves and converges, a new
  write commits everywhere, and every client can write again, within a bound derived from
  tickTime/initLimit/syncLimit and the session timeouts;
- digest: the converged replicas hold equal trees (every znode's data, stat and ACL);
- session-zxid: a session never sees a zxid older than one it saw, across servers (a single system
  image);
- session-moved: a write sent where its session is (the connection its client established it on
  last) is never refused with SESSIONMOVED, which is only for a connection the client left;
- replies: each reply answers its own request (a create's names its path; a write's zxid is its
  txn's).
With reconfiguration "every node" is every member of the membership in force (the settled leader's,
which must be that of the committed sequence): a node removed need not serve nor converge, though its
state must still be a prefix of the committed sequence.

Long runs (prints each failing seed with its violation, then a summary):

    python -m tests.quorum.sim --seeds 100000 [--nodes 3|5] [--observers N] [--start S] [--jobs J]
                               [--bug NAME] [--check KIND] [--reconfig auto|on|off] [--verbose]

`--bug` plants one of the bugs of tests/quorum/planted.py (in a core or in the driver), `--check`
limits the checks to some kinds, `--reconfig` turns reconfiguration on or off for every seed instead
of the seeded share (`auto`), `--verbose` prints the event trace (with the driver's log) of each
failing seed.

Scripted scenarios (a chain of faults too unlikely for random seeds, e.g. ZOOKEEPER-3911): pass
`script=`, a generator function of the Sim that does things (`partition`, `stall_disk`, `crash`,
`restart`, `client`, `write`, `reconfig`) and yields a condition to wait for before its next step
(`settled`, `session` and `write_at_new_leader` are such steps, for `yield from`).
There are then no random faults nor clients but the script's; when the script ends the run heals,
settles and is checked as usual.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import logging
import random
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from zkfast._jute import OP_ERROR, OP_RECONFIG, Code, Txn, decode_txn

from zkfast.quorum import zab
from zkfast.quorum.driver import Settings
from zkfast.quorum.membership import Membership
from zkfast.quorum.replica import Replica
from zkfast.quorum.wire import ServerState

from . import planted
from .simclient import Op, SimClient
from .simports import (
    INIT_LIMIT,
    MAX_SESSION_TIMEOUT_MS,
    SYNC_LIMIT,
    TICK_MS,
    DiskState,
    Groups,
    History,
    Pipe,
    Proc,
    SimServer,
    host_of,
    membership_of,
    spec_text,
)

# the driver's and the cores' warnings belong to the trace, not to stderr
logging.getLogger("zkfast").addHandler(logging.NullHandler())

QUIET_MS = 2 * SYNC_LIMIT * TICK_MS  # once converged, how long the ensemble must stay so (idle but for pings)

CHECKS = ("one-leader-per-epoch", "zxid-conflict", "prefix", "order", "acked-lost", "liveness", "digest",
          "session-zxid", "session-moved", "replies")
ALWAYS = ("exception", "contract", "script")  # a core or the driver raised or stopped, the simulator was
# asked something impossible, or a scripted step's condition never came
SCRIPT_POLL_MS = 1        # how often a scripted step's condition is tested
SCRIPT_WAIT_MS = 30_000   # how long a scripted step may wait for its condition
RECONFIG_SHARE = 0.3      # the share of (unscripted) seeds whose clients ask for reconfigs
MAX_OUTSTANDING = 3       # requests a client has in flight at most

Members = tuple[frozenset[int], frozenset[int]]  # (voters, observers)


class Violation(Exception):
    def __init__(self, kind: str, message: str, seed: int, now: int, trace: list[str] | None = None) -> None:
        super().__init__(f"seed {seed} t={now}ms {kind}: {message}")
        self.kind = kind
        self.message = message
        self.seed = seed
        self.now = now
        self.trace = trace or []


class Node:
    """A server: its disk, and its process while it runs."""

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.disk = DiskState()
        self.proc: Proc | None = None
        self.inc = 0  # incarnation: bumped at each start


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
    clients: int = 3
    session_ms: int = MAX_SESSION_TIMEOUT_MS  # what the clients ask for
    reconfig_every: int = 0  # mean ms between reconfig requests (0: none); drawn apart from the rest

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
            clients=rng.choice([2, 3, 4]),
            session_ms=rng.choice([1000, MAX_SESSION_TIMEOUT_MS]),
        )


# a scripted scenario: steps run between the conditions it yields (see the module's docstring)
Script = Callable[["Sim"], Iterator[Callable[[], bool]]]
Step = Generator[Callable[[], bool], None, Any]


class TraceHandler(logging.Handler):
    """The driver's and the cores' log lines, in the trace of the run that is being traced."""

    def __init__(self, sim: Sim) -> None:
        super().__init__(logging.DEBUG)
        self.sim = sim

    def emit(self, record: logging.LogRecord) -> None:
        who = f"n{self.sim.running}" if self.sim.running is not None else "--"
        self.sim.log(f"{who} [{record.name.rsplit('.', 1)[-1]}] {record.getMessage()}")


class Sim:
    def __init__(self, seed: int, nodes: int = 3, observers: int = 0, checks: Iterable[str] = CHECKS,
                 trace: bool = False, params: Params | None = None, script: Script | None = None,
                 reconfig: bool | None = None, read_only: bool = False, groups: Groups | None = None) -> None:
        """`reconfig`: None lets the seed decide (RECONFIG_SHARE of the unscripted seeds), True/False
        forces it (False keeps a given `params.reconfig_every` off too). `read_only`: the servers run
        with readonlymode.enabled, and clients accept read-only servers. `groups`: hierarchical
        quorums of these groups of voters (weights 1); no reconfigs then (the simulator's are
        incremental, which Apache refuses with groups)."""
        self.seed = seed
        self.script = script
        self.steps: Iterator[Callable[[], bool]] | None = None
        self.waiting: Callable[[], bool] | None = None
        self.waiting_since = 0
        self.rng = random.Random(seed)
        self.p = params or Params.draw(self.rng)
        # every reconfig decision draws from this one, never from self.rng
        self.crng = random.Random(f"reconfig {seed}")
        share = self.crng.random()
        if reconfig is False or groups is not None:
            self.p.reconfig_every = 0
        elif params is None and (reconfig or (reconfig is None and script is None and share < RECONFIG_SHARE)):
            self.p.reconfig_every = self.crng.choice([150, 400, 1000])
        elif reconfig and not self.p.reconfig_every:
            self.p.reconfig_every = 400
        self.read_only = read_only
        self.checks = set(checks) | set(ALWAYS)
        self.tracing = trace
        self.trace: deque[str] | None = deque(maxlen=4000) if trace else None
        ids = list(range(1, nodes + observers + 1))
        self.voters = frozenset(ids[:nodes])        # the static membership (the config file's)
        self.observers = frozenset(ids[nodes:])
        self.static = membership_of(self.voters, self.observers, groups=groups)
        self.settings = Settings(tick_ms=TICK_MS, init_limit=INIT_LIMIT, sync_limit=SYNC_LIMIT,
                                 reconfig_enabled=bool(self.p.reconfig_every) or script is not None,
                                 read_only_mode_enabled=read_only)
        self.ids = ids
        self.nodes = {sid: Node(sid) for sid in ids}
        self.by_host = {host_of(sid): self.nodes[sid] for sid in ids}
        self.now = 0
        self.seq = 0
        self.events: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.pipes: set[Pipe] = set()
        self.running: int | None = None       # the node whose event runs (for the trace)
        self.group: dict[int, int] | None = None  # partition: sid → side
        self.partition_id = 0
        self.healed = False
        self.deadline: int | None = None
        self.bound = 0
        self.done = False
        self.clients: list[SimClient] = []
        self.probe: SimClient | None = None
        self.settle_step: Iterator[Callable[[], bool]] | None = None
        self.settle_roles: tuple[tuple[int, int, int], ...] | None = None
        self.settle_waiting: Callable[[], bool] | None = None
        # global observations
        self.committed = History()                   # the one committed sequence
        self.committed_members: Members = (self.voters, self.observers)
        self.seen: dict[int, bytes] = {}              # zxid → txn, across every log
        self.leaders: dict[int, tuple[int, int, int]] = {}  # epoch → (sid, incarnation, era) established
        self.acked: dict[int, Op] = {}                # acknowledged writes by zxid
        self.inflight: dict[tuple[int, int], Op] = {}  # writes sent, by (session, xid)
        self.holders: dict[int, SimClient] = {}       # session → the client that established it last
        self.wseq = 0
        self.stats = {"crashes": 0, "partitions": 0, "breaks": 0, "writes": 0, "leaders": 0, "snaps": 0,
                      "truncs": 0, "reconfigs": 0, "activations": 0, "no-synced-quorum": 0, "moves": 0,
                      "session-moved": 0, "expired": 0, "forwarded": 0, "reads": 0}

    # -- the ports' host

    def rand(self, lo: int, hi: int) -> int:
        return lo + int(self.rng.random() * (hi - lo + 1))  # randint's share of the run, for a fraction

    def chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

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

    def proc_at(self, host: str) -> Proc | None:
        node = self.by_host.get(host)
        return node.proc if node is not None else None

    def proc_of(self, sid: int) -> Proc | None:
        return self.nodes[sid].proc

    def observe(self, proc: Proc) -> None:
        """After each event of a process: what it became (a new membership, an established leader,
        a server serving)."""
        driver = proc.driver
        if driver.membership.version > proc.version:
            if proc.version:
                self.stats["activations"] += 1
                m = driver.membership
                self.log(f"n{proc.sid} activates 0x{m.version:x}: voters {sorted(m.voters)} observers "
                         f"{sorted(m.observers)}")
            proc.version = driver.membership.version
        era, r = driver.era, driver.replica
        if era is None or era.closed or r is None or not era.server.serving or proc.served is era:
            return
        proc.served = era
        server = era.server
        assert isinstance(server, SimServer)
        history = server.tree.history
        if r.leader is not None:
            epoch = r.leader.epoch
            assert epoch is not None
            me = (proc.sid, self.nodes[proc.sid].inc, proc.eras)
            prev = self.leaders.setdefault(epoch, me)
            if prev != me:
                self.fail("one-leader-per-epoch", f"epoch {epoch}: n{prev[0]} and n{proc.sid} both established")
            self.stats["leaders"] += 1
            self.log(f"n{proc.sid} established leader of epoch {epoch}, tree 0x{history.last:x}")
        elif r.learner is not None:
            self.log(f"n{proc.sid} serving as a learner of n{r.leader_id}, tree 0x{history.last:x}")
        else:
            self.log(f"n{proc.sid} serving read-only clients, tree 0x{history.last:x}")
            return  # its tree may hold txns it only logged: Apache's read-only servers too
        self._check_prefix(proc.sid, history)

    def logged(self, proc: Proc, txn: Txn, data: bytes, last: int) -> None:
        if txn.zxid <= last:
            self.fail("order", f"n{proc.sid} logs 0x{txn.zxid:x} after 0x{last:x}")
        was = self.seen.setdefault(txn.zxid, data)
        if was != data:
            self.fail("zxid-conflict", f"zxid 0x{txn.zxid:x} logged as {decode_txn(was)!r} and as {txn!r} "
                                       f"(n{proc.sid})")
        op = self.inflight.get((txn.session_id, txn.cxid))
        if op is None or op.logged is not None:
            return
        op.logged = txn.zxid  # the first log is the leader's, as it prepares the txn
        if txn.type == OP_ERROR and txn.err == Code.SESSIONMOVED:
            self.stats["session-moved"] += 1
            c = op.client
            if self.holders.get(op.session_id) is c and op.xid in c.ops:
                self.fail("session-moved", f"{c.name}'s {op.kind} xid {op.xid} on n{op.sid}, where it has session "
                                           f"0x{op.session_id:x}, refused with SESSIONMOVED")

    def applied(self, proc: Proc, server: SimServer, txn: Txn) -> None:
        history = server.tree.history
        if txn.zxid <= history.last:
            self.fail("order", f"n{proc.sid} applies 0x{txn.zxid:x} after 0x{history.last:x}")
        history.append(txn.zxid, txn.to_bytes())
        r = proc.driver.replica
        if server.serving and r is not None and (r.leader is not None or r.learner is not None):
            self._check_prefix(proc.sid, history)

    def crash_point(self, proc: Proc, weight: float) -> None:
        """At a moment that matters (an epoch written, a TRUNC, an ACK sent), maybe crash before the
        pending fsyncs finish."""
        if self.chance(self.p.crash_point * weight):
            self.at(self.now + self.rand(0, self.p.fsync_max), self._crash_point, proc)

    def failed(self, proc: Proc) -> None:
        self.fail("exception", f"n{proc.sid}'s driver stopped: {proc.driver.failed}")

    # -- the clients' host

    def reconnect_to(self, client: SimClient) -> int:
        return self.ids[self.rand(0, len(self.ids) - 1)]

    def established(self, client: SimClient) -> None:
        self.holders[client.session_id] = client

    def sent(self, op: Op) -> None:
        if op.kind in ("create", "reconfig"):
            self.inflight[(op.session_id, op.xid)] = op

    def replied(self, op: Op) -> None:
        self.inflight.pop((op.session_id, op.xid), None)
        if op.lost or op.err is None:
            return
        if op.kind == "get":
            self.stats["reads"] += 1
            return
        if op.kind == "reconfig":
            if op.err == Code.NEWCONFIGNOQUORUM:
                self.stats["no-synced-quorum"] += 1
        if not op.acked or op.kind == "sync":
            return
        assert op.zxid is not None
        if op.logged is not None and op.zxid != op.logged:
            self.fail("replies", f"{op.client.name}'s {op.kind} xid {op.xid} answered with zxid 0x{op.zxid:x}, "
                                 f"its txn's is 0x{op.logged:x}")
        if op.kind == "create" and op.value != op.path:
            self.fail("replies", f"{op.client.name}'s create of {op.path!r} answered with {op.value!r}")
        self.acked[op.zxid] = op
        self.log(f"{op.client.name} acked {op.kind} {op.path.decode()} at 0x{op.zxid:x}")

    def session_zxid(self, client: SimClient, zxid: int) -> None:
        if zxid < client.last_zxid:
            self.fail("session-zxid", f"{client.name} (session 0x{client.session_id:x}) saw zxid 0x{zxid:x} from "
                                      f"n{client.sid} after 0x{client.last_zxid:x}")

    # -- the run

    def run(self) -> Violation | None:
        saved = zab.COMMITTED_LOG_MAX
        zab.COMMITTED_LOG_MAX = self.p.commit_log_max
        handler = None
        if self.tracing:
            handler = TraceHandler(self)
            logging.getLogger("zkfast").addHandler(handler)
            logging.getLogger("zkfast").setLevel(logging.DEBUG)
        try:
            for node in self.nodes.values():
                self.at(self.rng.randint(0, 50), self._restart, node)
            if self.script is None:
                for _ in range(self.p.clients):
                    self.at(self.rng.randint(50, 300), self.client()._reconnect)
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
                self.running = None
            if not self.done:
                raise Violation("contract", "the run ran out of events", self.seed, self.now)
            self.stats["moves"] = sum(c.moves for c in self.clients)
            self.stats["expired"] = sum(c.expired for c in self.clients)
            return None
        except Violation as v:
            return v
        except Exception:  # a core, the driver, a server (or the harness) raised: report it with the seed
            return Violation("exception", traceback.format_exc(), self.seed, self.now, list(self.trace or []))
        finally:
            zab.COMMITTED_LOG_MAX = saved
            if handler is not None:
                logging.getLogger("zkfast").removeHandler(handler)
                logging.getLogger("zkfast").setLevel(logging.NOTSET)

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
        for pipe in sorted(self.pipes, key=lambda p: p.name):
            if pipe.crosses(self.reachable):
                pipe.cut("partition")

    def unpartition(self) -> None:
        self._unpartition(self.partition_id)

    def stall_disk(self, sid: int, stalled: bool = True) -> None:
        """A slow disk: while stalled, the node's fsyncs stay in flight (a crash loses what they held)."""
        self.nodes[sid].disk.stalled = stalled
        self.log(f"n{sid} disk {'stalls' if stalled else 'resumes'}")

    def crash(self, sid: int) -> None:
        self._crash(self.nodes[sid])

    def restart(self, sid: int) -> None:
        self._restart(self.nodes[sid])

    def client(self, read_only: bool | None = None, auto: bool | None = None, timeout_ms: int | None = None
               ) -> SimClient:
        """A new client (not connected); in scripts it reconnects only when told."""
        c = SimClient(self, len(self.clients) + 1, timeout_ms or self.p.session_ms, len(self.nodes),
                      read_only=self.read_only if read_only is None else read_only,
                      auto=self.script is None if auto is None else auto)
        self.clients.append(c)
        return c

    def session(self, sid: int, client: SimClient | None = None) -> Step:
        """A script's steps: `client` (a new one if None) connects to n<sid> until it has a session
        there; the client."""
        c = client or self.client()

        def there() -> bool:
            if c.conn is None and not c.connect(sid):
                return False
            return c.established and c.sid == sid

        if c.conn is not None and c.sid != sid:
            c.disconnect()
        yield there
        return c

    def write(self, client: SimClient, now: bool = True) -> Op:
        """A create of a new znode; `now`: the server reads it at once."""
        self.wseq += 1
        self.stats["writes"] += 1
        path = f"/w{self.wseq}".encode()
        op = client.create(path, f"w{self.wseq}@{client.name}".encode(), now=now)
        proc = self.nodes[op.sid].proc
        if proc is not None and proc.driver.replica is not None and proc.driver.replica.learner is not None:
            self.stats["forwarded"] += 1
        self.log(f"{client.name} creates {path.decode()} at n{op.sid}" +
                 (f": 0x{op.logged:x}" if op.logged is not None else ""))
        return op

    def reconfig(self, client: SimClient, members: Members, now: bool = True) -> Op:
        """A reconfig request for this membership, whatever the checks of the leader will say of it."""
        voters, observers = members
        current = self._members_now()
        joining, leaving, whole = self._reconfig_request(current, members)
        self.stats["reconfigs"] += 1
        op = client.reconfig(joining, leaving, whole, now=now)
        self.log(f"{client.name} asks n{op.sid} for voters {sorted(voters)} observers {sorted(observers)}" +
                 (f": 0x{op.logged:x}" if op.logged is not None else ""))
        return op

    def settled(self, writes: int = 3) -> Step:
        """A script's first steps: a leader establishes, every node serves, a client gets a session
        there and a few writes commit everywhere; (the leader's sid, that client)."""
        yield lambda: self.established_leader() is not None and all(self.serving(sid) for sid in self.nodes)
        lid = self.established_leader()
        assert lid is not None
        c = yield from self.session(lid)
        last = [self.write(c) for _ in range(writes)][-1]
        yield lambda: last.acked and all((h := self.history(sid)) is not None and h.last >= (last.zxid or 0)
                                         for sid in self.nodes)
        return lid, c

    def write_at_new_leader(self, old: int) -> Step:
        """A script's steps: a leader other than n<old> establishes, a client gets a session there
        and writes; the write, answered."""
        yield lambda: self.established_leader() not in (None, old)
        new = self.established_leader()
        assert new is not None
        c = yield from self.session(new)
        w = self.write(c)
        yield lambda: w.done
        return w

    def established_leader(self) -> int | None:
        """The sid of a node that serves as an established leader, if one does."""
        for sid in self.ids:
            r = self.replica(sid)
            if r is not None and r.leader is not None and self.serving(sid):
                return sid
        return None

    def replica(self, sid: int) -> Replica | None:
        """n<sid>'s replica, while it runs."""
        proc = self.nodes[sid].proc
        return proc.driver.replica if proc is not None else None

    def serving(self, sid: int) -> bool:
        proc = self.nodes[sid].proc
        return proc is not None and self._serving(proc)

    def history(self, sid: int) -> History | None:
        """What n<sid>'s current server has applied (None while it is down or between eras)."""
        proc = self.nodes[sid].proc
        era = proc.driver.era if proc is not None else None
        if era is None or era.closed:
            return None
        server = era.server
        assert isinstance(server, SimServer)
        return server.tree.history

    @staticmethod
    def _serving(proc: Proc) -> bool:
        era = proc.driver.era
        return era is not None and not era.closed and era.server.serving

    # -- starting and crashing

    def _restart(self, node: Node) -> None:
        if node.proc is not None:
            return
        node.inc += 1
        d = node.disk
        self.log(f"n{node.sid} starts: epochs {d.epochs.get('acceptedEpoch')}/{d.epochs.get('currentEpoch')} "
                 f"last 0x{d.last_zxid():x}")
        node.proc = Proc(self, node.sid, d, self.static, self.settings)
        self.running = node.sid
        node.proc.start()

    def _crash(self, node: Node) -> None:
        proc = node.proc
        if proc is None:
            return
        self.stats["crashes"] += 1
        d = node.disk
        before, durable = len(d.log), d.durable_len
        proc.crash()
        node.proc = None
        keep = d.crash(self)
        self.log(f"n{node.sid} CRASH: keeps {keep} of {before} log entries ({durable} durable)")

    def _crash_point(self, proc: Proc) -> None:
        node = self.nodes[proc.sid]
        if not self.healed and node.proc is proc:
            if self.rng.random() < 0.5:
                self._power_cut()
                return
            self._crash(node)
            self.at(self.now + self.rng.randint(20, 1500), self._restart_if_chaos, node)

    def _power_cut(self) -> None:
        """Every node goes down at once (correlated crashes), and they come back in a random order."""
        self.log("POWER CUT")
        for node in self.nodes.values():
            if node.proc is not None:
                self._crash(node)
                self.at(self.now + self.rng.randint(20, 1500), self._restart_if_chaos, node)

    def _restart_if_chaos(self, node: Node) -> None:
        if not self.healed:
            self._restart(node)

    # -- faults

    def _fault(self) -> None:
        if self.healed:
            return
        self.at(self.now + self.rng.randint(1, 2 * self.p.fault_every), self._fault)
        kind = self.rng.choice(["crash", "crash", "power", "partition", "partition", "break", "break"])
        # half the crashes and partitions aim at a leader: that is where the protocol does most
        leaders = [n.sid for n in self.nodes.values() if n.proc is not None and n.proc.driver.replica is not None
                   and n.proc.driver.replica.leader is not None]
        target = self.rng.choice(leaders) if leaders and self.rng.random() < 0.5 else None
        if kind == "power":
            self._power_cut()
        elif kind == "crash":
            live = [n for n in self.nodes.values() if n.proc is not None]
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
            pipes = sorted(self.pipes, key=lambda p: p.name)
            if pipes:
                self.stats["breaks"] += 1
                self.rng.choice(pipes).cut("connection reset")

    def _unpartition(self, pid: int) -> None:
        if pid == self.partition_id and self.group is not None:
            self.log("partition heals")
            self.group = None

    # -- clients

    def _client(self) -> None:
        """Now and then a client with a session writes (or reads what it wrote)."""
        if self.healed:
            return
        self.at(self.now + self.rng.randint(1, 2 * self.p.write_every), self._client)
        ready = [c for c in self.clients if c.established and len(c.ops) < MAX_OUTSTANDING]
        if not ready:
            return
        c = self.rng.choice(ready)
        if self.rng.random() < 0.2 and self.wseq:
            c.get(f"/w{self.rng.randint(1, self.wseq)}".encode())
        else:
            self.write(c, now=False)

    # -- reconfiguration

    def _reconfig(self) -> None:
        """Now and then a client asks for a new membership (the leader's driver decides whether it
        may go through: one reconfig at a time, a synced quorum of the new voters)."""
        if self.healed:
            return
        self.at(self.now + self.crng.randint(1, 2 * self.p.reconfig_every), self._reconfig)
        ready = [c for c in self.clients if c.established and len(c.ops) < MAX_OUTSTANDING]
        if not ready:
            return
        m = self._new_membership(*self._members_now())
        if m is not None:
            self.reconfig(self.crng.choice(ready), m, now=False)

    def _members_now(self) -> Members:
        """The established leader's membership, else the committed one."""
        lid = self.established_leader()
        if lid is not None:
            proc = self.nodes[lid].proc
            assert proc is not None
            return proc.driver.membership.voters, proc.driver.membership.observers
        return self.committed_members

    def _reconfig_request(self, current: Members, new: Members) -> tuple[str | None, str | None, str | None]:
        """(joining, leaving, new members) as zkCli's reconfig -add/-remove/-members would send them:
        incremental for one change, the whole list for several."""
        voters, observers = new
        old = current[0] | current[1]
        gone = sorted(old - (voters | observers))
        changed = sorted(s for s in voters | observers if s not in old or (s in voters) != (s in current[0]))
        if len(gone) + len(changed) > 1:
            return None, None, ",".join(f"server.{s}={spec_text(s, s in observers)}" for s in sorted(voters | observers))
        if gone:
            return None, str(gone[0]), None
        return f"server.{changed[0]}={spec_text(changed[0], changed[0] in observers)}", None, None

    def _new_membership(self, voters: frozenset[int], observers: frozenset[int]) -> Members | None:
        """One change (a voter removed or made an observer, an observer made a voter or removed, a
        removed node back as either), or now and then a whole new member list (Apache's non-incremental
        reconfig: several changes at once). Always >= 2 voters."""
        ids = sorted(self.nodes)
        options: list[Members] = []
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
            if node.proc is None:
                self.at(self.now + self.rng.randint(1, 50), self._restart, node)
        self.bound = self.liveness_bound()
        self.deadline = self.now + self.bound
        self.at(self.now + 50, self._settle)

    def liveness_bound(self) -> int:
        """How long after healing the ensemble may take to serve again, converge, and let every
        client write.

        A stale role notices its peers are gone within initLimit+syncLimit ticks (a leader waits up to
        initLimit ticks for a quorum); a lost notification is only resent at the election's next
        timeout (what it waits now, doubling from 200 ms); then discovery + sync must finish within
        initLimit ticks, and one more election round may be needed when the first one's leader is
        refused (a follower ahead of it). A client may need a read timeout (2/3 of its session's) to
        leave a connection that went silent, and a session timeout to learn its session is gone."""
        backoff = 0
        for node in self.nodes.values():
            r = node.proc.driver.replica if node.proc is not None else None
            if r is not None and r.state == ServerState.LOOKING:
                backoff = max(backoff, r.election.next_timeout_at - self.now)
        role = (INIT_LIMIT + SYNC_LIMIT) * TICK_MS
        # with reconfigs, one more round: a learner that learns it is a voter (when it syncs) looks again
        extra = role + 2 * INIT_LIMIT * TICK_MS if self.p.reconfig_every else 0
        clients = 2 * MAX_SESSION_TIMEOUT_MS
        return backoff + 2 * role + 2 * INIT_LIMIT * TICK_MS + QUIET_MS + 2000 + extra + clients

    def _settle(self) -> None:
        """Converged = one established leader, every other member serving as its learner, equal
        states. Then a write must commit everywhere; then, after a quiet spell longer than syncLimit
        (only pings), the same leader must still hold and a second write commit everywhere; then
        every client must get a write acknowledged wherever it reconnects."""
        assert self.deadline is not None
        if self.now > self.deadline:
            self.fail("liveness", f"not converged {self.bound} ms after healing: {self._describe()}")
            self.done = True
            return
        leader = self._converged()
        if leader is not None:
            # no member changed role since (a node removed may come and go: the leader refuses it)
            roles = tuple((n.sid, n.inc, n.proc.eras if n.proc else 0) for n in self._members(leader))
            if self.settle_step is None or roles != self.settle_roles:
                self.settle_roles, self.settle_step, self.settle_waiting = roles, self._probes(leader), None
            assert self.settle_step is not None
            while self.settle_waiting is None or self.settle_waiting():
                try:
                    self.settle_waiting = next(self.settle_step)
                except StopIteration:
                    self._final_checks(leader)
                    self.done = True
                    return
        self.at(self.now + 50, self._settle)

    def _probes(self, leader: Proc) -> Iterator[Callable[[], bool]]:
        members = self._members(leader)
        if self.probe is None:
            self.probe = self.client(auto=False, read_only=False, timeout_ms=MAX_SESSION_TIMEOUT_MS)
        probe = yield from self.session(leader.sid, self.probe)
        for round_ in (1, 2):
            w = self.write(probe)
            yield lambda w=w: w.done
            if not w.acked:
                raise Violation("liveness", f"the probe write failed: {w}", self.seed, self.now)
            yield lambda w=w: all((h := self.history(n.sid)) is not None and h.last >= (w.zxid or 0) for n in members)
            if round_ == 1:
                quiet = self.now + QUIET_MS
                yield lambda quiet=quiet: self.now >= quiet
        # every client can write again, wherever it is (a moved session must not be refused)
        last: dict[SimClient, Op] = {}

        def written() -> bool:
            for c in self.clients:
                if c is self.probe:
                    continue
                op = last.get(c)
                if op is not None and op.acked:
                    continue
                if c.conn is None and not c.auto:
                    c.connect(self.reconnect_to(c))
                if c.established and (op is None or op.done):
                    last[c] = self.write(c, now=False)
                return False
            return True

        yield written

    def _members(self, leader: Proc) -> list[Node]:
        """The nodes of the membership in force: the leader's."""
        r = leader.driver.replica
        assert r is not None
        return [n for n in self.nodes.values() if n.sid in r.voters or n.sid in r.observers]

    def _converged(self) -> Proc | None:
        leaders = [n.proc for n in self.nodes.values() if n.proc is not None and n.proc.driver.replica is not None
                   and n.proc.driver.replica.leader is not None]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        r = leader.driver.replica
        assert r is not None
        if (r.voters, r.observers) != self.committed_members:
            return None  # the leader's membership must be the committed one
        nodes = self._members(leader)
        if self.nodes[leader.sid] not in nodes:
            return None
        histories = []
        for n in nodes:
            proc = n.proc
            if proc is None or not self._serving(proc):
                return None
            nr = proc.driver.replica
            assert nr is not None
            if nr.reloading or (nr.voters, nr.observers) != (r.voters, r.observers):
                return None  # every member follows the same membership
            if proc is not leader and (nr.learner is None or nr.leader_id != leader.sid):
                return None
            histories.append(self.history(n.sid))
        first = histories[0]
        assert first is not None
        if any(h is None or len(h) != len(first) or h.digests[-1:] != first.digests[-1:] for h in histories):
            return None
        return leader

    def _describe(self) -> str:
        out = []
        for n in self.nodes.values():
            proc = n.proc
            r = proc.driver.replica if proc is not None else None
            if proc is None or r is None:
                out.append(f"n{n.sid}: down")
                continue
            core = r.leader or r.learner
            phase = getattr(core, "phase", None) if r.learner else ("established" if r.leader and
                                                                      r.leader.established else "discovery")
            h = self.history(n.sid)
            out.append(f"n{n.sid}: {r.state.name}{' reloading' if r.reloading else ''} {phase or ''} "
                       f"serving={self._serving(proc)} tree=0x{h.last if h else 0:x} epochs="
                       f"{n.disk.epochs.get('acceptedEpoch')}/{n.disk.epochs.get('currentEpoch')}" +
                       (f" voters={sorted(r.voters)} observers={sorted(r.observers)}" if self.p.reconfig_every else ""))
        for c in self.clients:
            out.append(f"{c.name}: {f'n{c.sid}' if c.sid else 'unconnected'} session=0x{c.session_id:x}"
                       f"{' established' if c.established else ''} ops={len(c.ops)}")
        return "; ".join(out)

    def _check_prefix(self, sid: int, h: History) -> None:
        g = self.committed
        k = min(len(h), len(g))
        if k and h.digests[k - 1] != g.digests[k - 1]:
            i = next(i for i in range(k) if h.zxids[i] != g.zxids[i] or h.datas[i] != g.datas[i])
            self.fail("prefix", f"n{sid}'s state differs from the committed sequence at #{i}: "
                                f"0x{h.zxids[i]:x} {decode_txn(h.datas[i])!r} vs committed 0x{g.zxids[i]:x} "
                                f"{decode_txn(g.datas[i])!r}")
            return
        for i in range(len(g), len(h)):
            g.zxids.append(h.zxids[i])
            g.datas.append(h.datas[i])
            g.digests.append(h.digests[i])
            txn = decode_txn(h.datas[i])
            if txn.type == OP_RECONFIG:
                m = Membership.parse(txn.data)
                self.committed_members = (m.voters, m.observers)

    def _final_checks(self, leader: Proc) -> None:
        members = self._members(leader)
        digests: dict[int, bytes] = {}
        for n in members:
            # not a node removed: refused by the leader, it never syncs, and its tree (rebuilt from its
            # log) may keep txns never committed that no TRUNC takes out
            h = self.history(n.sid)
            assert h is not None
            self._check_prefix(n.sid, h)
            have = dict(zip(h.zxids, h.datas, strict=True))
            lost = [z for z in self.acked if have.get(z) != self.seen[z]]
            if lost:
                self.fail("acked-lost", f"n{n.sid} lacks {len(lost)} acknowledged writes, first 0x{min(lost):x}")
            proc = n.proc
            assert proc is not None and proc.server is not None
            digests[n.sid] = tree_digest(proc.server.tree)
            for z, op in self.acked.items():
                if op.kind == "create" and not op.ephemeral and proc.server.tree.get_data(op.path) != op.data:
                    self.fail("acked-lost", f"n{n.sid}'s tree lacks {op.path!r} of 0x{z:x}")
        if len(set(digests.values())) > 1:
            self.fail("digest", f"the members' trees differ: {({s: d.hex() for s, d in digests.items()})}")


def tree_digest(tree: Any) -> bytes:
    """Every znode's path, data, stat and ACL but /zookeeper/config's (each member writes its own
    mtime there)."""
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(tree.walk()):
        if path == b"/zookeeper/config":
            continue
        data, stat, acl = tree.node_info(path)
        h.update(repr((path, data, stat, acl)).encode())
    return h.digest()


def run_seed(seed: int, nodes: int = 3, observers: int = 0, checks: Iterable[str] = CHECKS,
             trace: bool = False, reconfig: bool | None = None, groups: Groups | None = None) -> Violation | None:
    return Sim(seed, nodes, observers, checks, trace, reconfig=reconfig, groups=groups).run()


WorkItem = tuple[int, int, int, tuple[str, ...], tuple[str, ...], bool, bool | None, Groups | None]


def _worker(args: WorkItem) -> tuple[int, str | None, str]:
    seed, nodes, observers, checks, bugs, trace, reconfig, groups = args
    with planted.plant(*bugs):
        v = run_seed(seed, nodes, observers, checks, trace, reconfig, groups)
    if v is None:
        return seed, None, ""
    return seed, f"{v}", "\n".join(v.trace[-600:])


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
                    help=f"clients ask for reconfigs in every seed (on), none (off), or {RECONFIG_SHARE * 100:.0f}%% "
                         "of them (auto)")
    ap.add_argument("--groups", help="hierarchical quorums: groups of voters, e.g. 1,2,3/4,5,6 (weights 1)")
    ap.add_argument("--verbose", action="store_true", help="print the event trace of failing seeds")
    ap.add_argument("--max-failures", type=int, default=20, help="stop after this many failing seeds")
    args = ap.parse_args(argv)
    checks = tuple(args.check or CHECKS)
    reconfig = {"auto": None, "on": True, "off": False}[args.reconfig]
    groups = tuple(tuple(int(sid) for sid in g.split(",")) for g in args.groups.split("/")) if args.groups else None
    work: list[WorkItem] = [(s, args.nodes, args.observers, checks, tuple(args.bug), args.verbose, reconfig, groups)
                            for s in range(args.start, args.start + args.seeds)]
    started = time.monotonic()
    failures = 0
    done = 0
    if args.jobs > 1:
        import multiprocessing
        pool = multiprocessing.Pool(args.jobs)
        results: Iterable[tuple[int, str | None, str]] = pool.imap(_worker, work, chunksize=8)
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
            if done % 500 == 0:
                print(f"... {done} seeds, {failures} failing, {time.monotonic() - started:.0f}s", file=sys.stderr,
                      flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    print(f"{done} seeds from {args.start}, {failures} failing, {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
