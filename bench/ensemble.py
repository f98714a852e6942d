#!/usr/bin/env python3
"""A 3-node zkfast ensemble and a 3-node Apache ZooKeeper 3.8 ensemble side by side, in one command:

    python bench/ensemble.py            # the full run (about 12 minutes on 2 cores)
    python bench/ensemble.py --quick    # about 2 minutes, small counts

Both kinds are started the same way (testbase.ensemble.Ensemble: one process per member on
127.0.0.2, .3, ..., its own dataDir, myid and zoo.cfg) with the same zoo.cfg settings: those of
compare.py (fsync on, 4lw whitelist *, admin server off, maxClientCnxns=0) and tickTime=2000,
initLimit=10, syncLimit=5. The load is bench/loadgen.py's, its connections spread over the members
(connection k of all generator processes on member k mod n, followers first, then the leader, then
observers; so the 1x1 shape talks to a follower, as 2 clients in 3 do). `--via leader` or `--via
follower` sends every connection of the writes and reads to the leader, or to one follower, instead.

  writes    create and setData, in the shapes lat (1 connection x depth 1) and thr (P processes x C
            connections x depth D, default 2 x 8 x 16)
  reads     getData with 0, 1 and 2 observers (a fresh ensemble of 3 voters + k observers each),
            reads spread over all members, observers included
  failover  under a light write load (one writer per member, a setData every 1/rate s, each
            reconnecting at once to the next member when its connection breaks, reattaching its
            session), `kill -9` of the leader; measured from the kill: until a survivor's `srvr`
            says `Mode: leader`, until the first write sent after the kill is acknowledged, and
            until every writer has had one acknowledged; then the killed member is restarted

Every measurement is first run once untimed on each ensemble (JIT warm-up; --no-warmup skips it),
then in --rounds rounds alternating the two kinds; the tables show medians and zkfast / apache
ratios. Results: tables on stdout; JSON and a PNG plot in bench/results/ (timestamped); progress on
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase)
import uvloop
from compare import (
    NCPU,
    PassRunner,
    Shapes,
    Start,
    Store,
    Where,
    add_output_args,
    add_shape_args,
    all_rounds,
    common_cfg,
    fmt,
    load_table,
    log_problems,
    median,
    meta_of,
    print_noisy,
    problems_of,
    ratio,
    report_again,
    running,
    save_results,
    summaries,
)
from loadgen import (
    ROOT,
    Conn,
    SessionRefused,
    SyncClient,
    key_path,
    make_encoder,
    open_session,
    setup_tree,
)
from testbase.ensemble import Ensemble
from testbase.process import apache_available

HERE = Path(__file__).resolve().parent
KINDS = ("zkfast", "apache")
PARTS = ("writes", "reads", "failover")
VOTERS = 3
WRITE_PHASES = ("create", "set")
VIA = ("spread", "leader", "follower")
VIA_NOTES = {"spread": "connections spread over the members, followers first (1x1: a follower)",
             "leader": "every connection to the leader", "follower": "every connection to one follower"}
FAILOVER_PARENT = ROOT + "/f"
STEADY_ACKS = 5             # acknowledged writes per writer before the kill
RETRY_PAUSE_S = 0.02        # after a failed connection attempt, before the next member
LEADER_POLL_S = 0.01
FAILOVER_METRICS = (("leader_s", "new leader serving (srvr: Mode: leader)"),
                    ("first_write_s", "first write acknowledged"),
                    ("all_writers_s", "every writer acknowledged again"))
TWO_CORES_NOTE = ("on {ncpu} cores an observer adds processes but no CPU: the members share the same "
                  "cores, so more observers show what they cost here, not the read capacity they add "
                  "on machines of their own")


def read_row(k: int) -> str:
    return f"get, {k} obs"


# ------------------------------------------------------------------------------------ settings

@dataclass
class Settings(Shapes):
    servers: list[str]
    parts: list[str]
    modes: list[str]
    read_modes: list[str]
    rounds: int
    warmup: bool
    duration_s: float
    lat_keys: int
    thr_keys: int
    read_keys: int
    conns: int
    depth: int
    procs: int
    data_size: int
    observers: list[int]
    failover_rounds: int
    writers: int
    write_rate: float
    session_timeout_ms: int
    failover_timeout_s: float
    tick_ms: int
    init_limit: int
    sync_limit: int
    out_dir: Path
    work_dir: Path | None
    plot: bool
    keep: bool
    via: str = "spread"  # a default: results files from before --via existed read back as spread

    def cfg(self) -> dict[str, str]:
        return {**common_cfg(), "tickTime": str(self.tick_ms), "initLimit": str(self.init_limit),
                "syncLimit": str(self.sync_limit)}

    def reads(self) -> Settings:
        """The same with the read shapes as the modes (for load_table)."""
        return dataclasses.replace(self, modes=self.read_modes)


def csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv: Sequence[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts and short phases (about 2 minutes)")
    ap.add_argument("--servers", default="zkfast,apache", help="which kinds, in order (default %(default)s)")
    ap.add_argument("--parts", default=",".join(PARTS), help="what to measure (default %(default)s)")
    ap.add_argument("--modes", default="lat,thr", help="write shapes: lat (1x1), thr (PxCxD) (default %(default)s)")
    ap.add_argument("--read-modes", default="thr", help="read shapes (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per measurement (default 3)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up passes")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per timed phase but create (default 2, quick 0.5)")
    add_shape_args(ap)
    ap.add_argument("--via", default="spread", choices=VIA,
                    help="where the load's connections go: spread over the members, all to the leader, "
                         "or all to one follower (default %(default)s)")
    ap.add_argument("--read-keys", type=int, default=None, help="znodes the reads cycle over (default 10000)")
    ap.add_argument("--observers", default="0,1,2", help="observer counts for the reads (default %(default)s)")
    ap.add_argument("--failover-rounds", type=int, default=None, help="leader kills per kind (default 5, quick 2)")
    ap.add_argument("--writers", type=int, default=VOTERS,
                    help="writers during the failover, writer w starting on member w+1 (default %(default)s)")
    ap.add_argument("--write-rate", type=float, default=50.0,
                    help="setData per second per writer during the failover (default %(default)s)")
    ap.add_argument("--session-timeout", type=int, default=10000,
                    help="the writers' session timeout, ms; as the Java client, a connection attempt "
                         "times out after timeout/members, a reply after 2/3 of it (default %(default)s)")
    ap.add_argument("--failover-timeout", type=float, default=60.0,
                    help="seconds to wait for the ensemble to write again (default %(default)s)")
    ap.add_argument("--tick", type=int, default=2000, help="tickTime, ms (default %(default)s)")
    ap.add_argument("--init-limit", type=int, default=10, help="initLimit, ticks (default %(default)s)")
    ap.add_argument("--sync-limit", type=int, default=5, help="syncLimit, ticks (default %(default)s)")
    add_output_args(ap, "the members' dataDirs")
    a = ap.parse_args(argv)

    def pick(v: Any, full: Any, quick: Any) -> Any:
        return v if v is not None else (quick if a.quick else full)

    servers = csv(a.servers)
    for s in servers:
        if s not in KINDS:
            ap.error(f"unknown server kind {s!r}; known: {','.join(KINDS)}")
    if "apache" in servers and not apache_available():
        ap.error("Apache ZooKeeper is not installed (apt-get install zookeeper)")
    parts = csv(a.parts)
    for p in parts:
        if p not in PARTS:
            ap.error(f"unknown part {p!r}; known: {','.join(PARTS)}")
    modes, read_modes = csv(a.modes), csv(a.read_modes)
    for m in modes + read_modes:
        if m not in ("lat", "thr"):
            ap.error(f"unknown mode {m!r}; known: lat,thr")
    try:
        observers = sorted({int(k) for k in csv(a.observers)})
    except ValueError:
        ap.error("--observers takes counts, e.g. 0,1,2")
    if any(k < 0 for k in observers):
        ap.error("--observers takes counts >= 0")
    return Settings(
        servers=servers, parts=parts, modes=modes, read_modes=read_modes, rounds=max(1, pick(a.rounds, 3, 3)),
        warmup=not a.no_warmup, duration_s=pick(a.duration, 2.0, 0.5), lat_keys=pick(a.lat_keys, 1000, 100),
        thr_keys=pick(a.thr_keys, 40000, 4000), read_keys=pick(a.read_keys, 10000, 2000), conns=a.conns,
        depth=a.depth, via=a.via, procs=a.procs, data_size=a.data_size, observers=observers,
        failover_rounds=max(1, pick(a.failover_rounds, 5, 2)), writers=max(1, a.writers),
        write_rate=a.write_rate, session_timeout_ms=a.session_timeout, failover_timeout_s=a.failover_timeout,
        tick_ms=a.tick, init_limit=a.init_limit, sync_limit=a.sync_limit, out_dir=a.out, work_dir=a.workdir,
        plot=not a.no_plot, keep=a.keep)


def count_steps(s: Settings) -> int:
    passes = s.rounds + (1 if s.warmup else 0)
    steps = 0
    if "writes" in s.parts:
        steps += len(WRITE_PHASES) * len(s.modes) * len(s.servers) * passes
    if "reads" in s.parts:
        steps += len(s.read_modes) * len(s.servers) * passes * len(s.observers)
    if "failover" in s.parts:
        steps += s.failover_rounds * len(s.servers)
    return steps


# ------------------------------------------------------------------------------------ failover

@dataclass
class Writer:
    """One client writing setData on its own znode at a steady rate, over the ensemble's members
    from member `index` on: on a broken connection (or a reply or connection attempt timing out,
    as the Java client's timeouts) it tries the next member at once, reattaching its session."""

    index: int
    acks: list[tuple[float, float]] = field(default_factory=list)  # (sent, acknowledged), perf_counter
    kill_t: float | None = None          # writes sent from then on count for first_after
    first_after: float | None = None     # when the first of them was acknowledged
    connects: int = 0
    connect_failures: int = 0
    losses: int = 0                      # connection broken with a request outstanding
    timeouts: int = 0                    # no reply within the read timeout
    expired: int = 0                     # session refused on reattaching
    errors: Counter[int] = field(default_factory=Counter)
    servers: list[int] = field(default_factory=list)  # the members it was connected to, in order

    async def run(self, endpoints: Sequence[tuple[str, int]], s: Settings, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        enc = make_encoder("set", FAILOVER_PARENT, b"w" * s.data_size)
        connect_timeout = s.session_timeout_ms / 1000 / len(endpoints)
        read_timeout = s.session_timeout_ms / 1000 * 2 / 3
        period = 1.0 / s.write_rate
        at = self.index
        conn: Conn | None = None
        session: tuple[int, bytes] | None = None
        next_t = time.perf_counter()
        try:
            while not stop.is_set():
                if conn is None:
                    host, port = endpoints[at % len(endpoints)]
                    try:
                        conn = await asyncio.wait_for(
                            open_session(loop, host, port, s.session_timeout_ms, session=session,
                                         handshake_timeout_s=connect_timeout), connect_timeout)
                    except SessionRefused:
                        self.expired += 1
                        session = None
                        continue
                    except (OSError, TimeoutError):  # ConnectionError is an OSError
                        self.connect_failures += 1
                        at += 1
                        await asyncio.sleep(RETRY_PAUSE_S)
                        continue
                    session = (conn.session_id, conn.passwd)
                    self.connects += 1
                    self.servers.append(at % len(endpoints) + 1)
                if conn.lost.done():  # broken while it waited for its next slot
                    self.losses += 1
                    conn = None
                    at += 1
                    continue
                sent = time.perf_counter()
                try:
                    err = await conn.call(lambda wb, xid: enc(wb, xid, self.index), read_timeout)
                except (OSError, TimeoutError) as e:
                    if isinstance(e, TimeoutError):
                        self.timeouts += 1
                    else:
                        self.losses += 1
                    if conn.transport is not None:
                        conn.transport.close()
                    conn = None
                    at += 1
                    continue
                now = time.perf_counter()
                if err:
                    self.errors[err] += 1
                else:
                    self.acks.append((sent, now))
                    if self.kill_t is not None and self.first_after is None and sent >= self.kill_t:
                        self.first_after = now
                next_t += period
                pause = next_t - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                else:
                    next_t = time.perf_counter()
        finally:
            if conn is not None:
                await conn.close_session(2.0)

    def longest_gap_s(self) -> float:
        """The longest time between two acknowledgements."""
        times = [a for _, a in self.acks]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def report(self) -> dict[str, Any]:
        return {"index": self.index, "acks": len(self.acks), "connects": self.connects,
                "connect_failures": self.connect_failures, "losses": self.losses, "timeouts": self.timeouts,
                "expired": self.expired, "errors": dict(self.errors), "servers": self.servers,
                "first_after_s": self.first_after - self.kill_t
                if self.first_after is not None and self.kill_t is not None else None,
                "longest_gap_s": self.longest_gap_s()}


async def first_leader(ens: Ensemble, candidates: list[int]) -> tuple[int, float]:
    """(member, perf_counter) of the first candidate whose `srvr` says Mode: leader."""
    async def poll(i: int) -> tuple[int, float]:
        while True:
            if await asyncio.to_thread(ens.mode, i) == "leader":
                return i, time.perf_counter()
            await asyncio.sleep(LEADER_POLL_S)

    tasks = [asyncio.create_task(poll(i)) for i in candidates]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return min((t.result() for t in done), key=lambda r: r[1])
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def kill_leader_under_load(ens: Ensemble, s: Settings, leader: int) -> dict[str, Any]:
    endpoints = ens.endpoints()
    writers = [Writer(w) for w in range(s.writers)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(endpoints, s, stop)) for w in writers]
    out: dict[str, Any] = {"killed": leader}
    try:
        deadline = time.perf_counter() + 30
        while any(len(w.acks) < STEADY_ACKS for w in writers):
            if time.perf_counter() > deadline or any(t.done() for t in tasks):
                raise RuntimeError("writers not writing before the kill: "
                                   + json.dumps([w.report() for w in writers]))
            await asyncio.sleep(0.01)
        survivors = [i for i in ens.ids if i != leader and i not in ens.observer_ids]
        t_kill = time.perf_counter()
        for w in writers:
            w.kill_t = t_kill
        ens.kill9(leader)
        try:
            new_leader, t_leader = await asyncio.wait_for(first_leader(ens, survivors), s.failover_timeout_s)
            out["new_leader"] = new_leader
            out["leader_s"] = t_leader - t_kill
        except TimeoutError:
            out["new_leader"] = None
        deadline = t_kill + s.failover_timeout_s
        while any(w.first_after is None for w in writers) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        firsts = [w.first_after for w in writers]
        known = [f for f in firsts if f is not None]
        out["first_write_s"] = min(known) - t_kill if known else None
        out["all_writers_s"] = max(known) - t_kill if len(known) == len(firsts) else None
        await asyncio.sleep(0.2)  # a few more writes after the last writer is back
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    out["writers"] = [w.report() for w in writers]
    return out


def failover_round(ens: Ensemble, s: Settings) -> dict[str, Any]:
    """Kill -9 the leader under a light write load, measure, restart the killed member."""
    leader = ens.wait_leader(timeout_s=60)
    host, port = ens.endpoints([leader])[0]
    setup_tree(host, port, (FAILOVER_PARENT,))
    c = SyncClient(host, port)
    try:
        for w in range(s.writers):
            c.create(key_path(FAILOVER_PARENT, w).decode())
    finally:
        c.close()
    loop = uvloop.new_event_loop()
    try:
        out = loop.run_until_complete(kill_leader_under_load(ens, s, leader))
    finally:
        loop.close()
    t0 = time.monotonic()
    ens.restart(leader, timeout_s=120)
    out["restart_s"] = time.monotonic() - t0
    ens.wait_leader(timeout_s=60)
    return out


def failover_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    med: dict[str, Any] = {k: median([r.get(k) for r in rounds]) for k, _ in FAILOVER_METRICS}
    med["rounds"] = len(rounds)
    med["timed_out"] = sum(1 for r in rounds if r.get("all_writers_s") is None)
    med["connect_failures"] = sum(w["connect_failures"] for r in rounds for w in r["writers"])
    med["reply_timeouts"] = sum(w["timeouts"] for r in rounds for w in r["writers"])
    med["sessions_expired"] = sum(w["expired"] for r in rounds for w in r["writers"])
    errors: Counter[str] = Counter()
    for r in rounds:
        for w in r["writers"]:
            errors.update({str(k): v for k, v in w["errors"].items()})
    med["errors"] = dict(errors)
    return med


# ------------------------------------------------------------------------------------ the run

@dataclass
class Run(PassRunner[Settings]):
    writes: Store = field(default_factory=dict)
    reads: Store = field(default_factory=dict)
    failover: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def sections(self) -> None:
        """One pair of ensembles per observer count: 3 voters for the writes, the reads without
        observers and the failover; 3 + k for the reads with k observers."""
        counts = set(self.s.observers) if "reads" in self.s.parts else set()
        if "writes" in self.s.parts or "failover" in self.s.parts:
            counts.add(0)
        for k in sorted(counts):
            ensembles = self.start_ensembles(k)
            try:
                if not ensembles:
                    continue
                if k == 0 and "writes" in self.s.parts:
                    self.run_writes(ensembles)
                if "reads" in self.s.parts and k in self.s.observers:
                    self.run_reads(ensembles, k)
                if k == 0 and "failover" in self.s.parts:
                    self.run_failover(ensembles)
            finally:
                for kind, ens in ensembles.items():
                    for i in ens.ids:
                        ens.stop(i)
                        self.logs.setdefault(kind, []).extend(
                            f"server{i}{' (observer)' if i in ens.observer_ids else ''}, {k} observers: {line}"
                            for line in log_problems(ens.members[i]))
                    ens.cleanup()

    def start_ensembles(self, observers: int) -> dict[str, Ensemble]:
        out: dict[str, Ensemble] = {}
        for kind in self.s.servers:
            self.progress.show(f"starting {kind} ensemble, {VOTERS} voters + {observers} observers")
            ens = Ensemble(kind, VOTERS, observers, tick_ms=self.s.tick_ms, init_limit=self.s.init_limit,
                           sync_limit=self.s.sync_limit, cfg=self.s.cfg(),
                           workdir=self.base / f"{kind}-{observers}obs")
            try:
                ens.start(timeout_s=120)
                ens.wait_leader(timeout_s=60)
                ens.wait_serving(timeout_s=60)
            except Exception as e:  # noqa: BLE001 - recorded; the run goes on
                self.problems.append(f"{kind} ensemble with {observers} observers did not start: "
                                     f"{type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
                for i in ens.ids:
                    self.logs.setdefault(kind, []).extend(
                        f"server{i}, start-up: {line}" for line in log_problems(ens.members[i]))
                ens.cleanup()
                continue
            out[kind] = ens
        return out

    def roles(self, ens: Ensemble) -> list[int]:
        """The members: followers first, then the leader, then the observers."""
        leader = ens.wait_leader(timeout_s=60)
        voters = [i for i in ens.ids if i not in ens.observer_ids]
        return [i for i in voters if i != leader] + [leader] + sorted(ens.observer_ids)

    def where(self, ens: Ensemble) -> Where:
        """With --via spread connection k on member k mod n of roles(); else all on the leader, or
        all on the first follower. The CPU is summed over every member either way."""
        order = self.roles(ens)
        if self.s.via == "leader":
            order = [order[VOTERS - 1]]
        elif self.s.via == "follower":
            order = order[:1]
        eps = ens.endpoints(order)
        return Where(eps[0][0], eps[0][1], tuple(ens.pids()), tuple(eps))

    def check(self, kind: str, ens: Ensemble, before: list[int] | None, what: str) -> None:
        """After a pass: every member still running, in the same role as `before`. A member that
        exited is restarted (the run goes on) and reported with its log's tail."""
        for i in ens.ids:
            m = ens.members[i]
            if m.proc is None or m.proc.poll() is not None:
                rc = m.proc.returncode if m.proc is not None else None
                self.problems.append(f"{kind} server{i} exited ({rc}) during {what}; log tail:\n"
                                     + m.log_tail(1500))
                try:
                    ens.restart(i, timeout_s=120)
                except Exception as e:  # noqa: BLE001 - recorded
                    self.problems.append(f"{kind} server{i} did not restart: {type(e).__name__}: {e}")
        try:
            after = self.roles(ens)
        except TimeoutError as e:
            self.problems.append(f"{kind} no leader after {what}: {e}")
            return
        if before is not None and after != before:
            self.problems.append(f"{kind} roles changed during {what}: members (followers, leader, "
                                 f"observers) {before} -> {after}")

    def passes(self, ensembles: dict[str, Ensemble], modes: list[str], phases: list[str],
               store: Store, row: Callable[[str], str] = str, keys: int | None = None) -> None:
        """A warm-up pass per ensemble and shape, then the rounds, alternating the kinds."""
        plan = [("warm-up", False)] if self.s.warmup else []
        plan += [(f"round {r + 1}/{self.s.rounds}", True) for r in range(self.s.rounds)]
        for r, (what, record) in enumerate(plan):
            order = list(ensembles.items())
            if r % 2:
                order.reverse()
            for kind, ens in order:
                for mode in modes:
                    m = self.s.mode(mode)
                    if keys is not None:
                        m = dataclasses.replace(m, keys=keys)
                    roles = self.roles(ens)
                    where = self.where(ens)
                    label = f"{what} {phases[-1] if len(phases) == 1 else 'writes'}"
                    res = self.load_pass(kind, where, m, phases, label)
                    self.check(kind, ens, roles, label)
                    if res is not None and record:
                        self.record(store, kind, mode, what, res, row)

    def run_writes(self, ensembles: dict[str, Ensemble]) -> None:
        self.passes(ensembles, self.s.modes, list(WRITE_PHASES), self.writes)

    def run_reads(self, ensembles: dict[str, Ensemble], k: int) -> None:
        self.passes(ensembles, self.s.read_modes, ["get"], self.reads, row=lambda ph: read_row(k),
                    keys=self.s.read_keys)

    def run_failover(self, ensembles: dict[str, Ensemble]) -> None:
        for r in range(self.s.failover_rounds):
            order = list(ensembles.items())
            if r % 2:
                order.reverse()
            for kind, ens in order:
                label = f"failover {r + 1}/{self.s.failover_rounds} {kind}"
                self.progress.show(label)
                try:
                    res = failover_round(ens, self.s)
                except Exception as e:  # noqa: BLE001 - recorded; the run goes on
                    self.problems.append(f"{kind} {label}: {type(e).__name__}: {e}")
                    traceback.print_exc(file=sys.stderr)
                    self.check(kind, ens, None, label)
                    continue
                finally:
                    self.progress.step(label)
                self.failover.setdefault(kind, []).append(res)
                if res.get("all_writers_s") is None:
                    self.problems.append(f"{kind} {label}: writes did not resume on every writer within "
                                         f"{self.s.failover_timeout_s:g} s: {json.dumps(res)}")
                for w in res["writers"]:
                    if w["errors"] or w["expired"] or w["timeouts"]:
                        self.problems.append(f"{kind} {label} writer {w['index']}: errors {w['errors']}, "
                                             f"sessions expired {w['expired']}, reply timeouts {w['timeouts']}")


# ------------------------------------------------------------------------------------ report

def failover_table(s: Settings, fo: dict[str, Any]) -> str:
    kinds = [k for k in s.servers if k in fo]
    pair = len(kinds) == 2
    head = f"{'failover after kill -9 of the leader, s':<44}" + "".join(f"{k:>10}" for k in kinds)
    head += f"{'ratio':>9}" if pair else ""
    head += "   each round"
    lines = [head, "-" * len(head)]
    for key, label in FAILOVER_METRICS:
        vals = {k: fo[k]["median"].get(key) for k in kinds}
        line = f"{label:<44}" + "".join(f"{fmt(vals[k], 's'):>10}" for k in kinds)
        if pair:
            line += f"{ratio(vals[kinds[0]], vals[kinds[1]]):>9}"
        line += "   " + " | ".join(
            f"{k}: " + " ".join(fmt(r.get(key), "s") for r in fo[k]["rounds"]) for k in kinds)
        lines.append(line)
    for key, label in (("connect_failures", "failed connection attempts (all rounds)"),
                       ("reply_timeouts", "reply timeouts (all rounds)"),
                       ("sessions_expired", "sessions expired on reattach (all rounds)")):
        lines.append(f"{label:<44}" + "".join(f"{fo[k]['median'].get(key, 0):>10}" for k in kinds))
    return "\n".join(lines)


def print_report(s: Settings, doc: dict[str, Any]) -> None:
    print(f"{VOTERS}-node ensembles on {NCPU} cores, {s.servers[0]} vs "
          f"{s.servers[1] if len(s.servers) > 1 else '-'}: median of {s.rounds} rounds"
          + (" after a warm-up pass" if s.warmup else "") + f"; ratio = {s.servers[0]} / "
          + (s.servers[1] if len(s.servers) > 1 else "-"))
    print(f"tickTime={s.tick_ms} initLimit={s.init_limit} syncLimit={s.sync_limit}, fsync on; phases "
          f"{s.duration_s:g} s each (create: {s.lat_keys} / {s.thr_keys} znodes of {s.data_size} B); "
          + VIA_NOTES[s.via])
    print("srv CPU-us/op: utime+stime of all members over the phase / ops; gen CPU: generator share of the "
          "machine; bg CPU: everything else busy meanwhile")
    if doc["writes"]:
        print()
        print("writes")
        print(load_table(s, doc["writes"], WRITE_PHASES))
    if doc["reads"]:
        print()
        print(f"reads, over all members (observers included), {s.read_keys} znodes")
        print(load_table(s.reads(), doc["reads"], [read_row(k) for k in s.observers]))
        print("note: " + TWO_CORES_NOTE.format(ncpu=NCPU))
    if doc["failover"]:
        print()
        print(f"failover: {s.writers} writers x {s.write_rate:g} setData/s, median of {s.failover_rounds} "
              "rounds (each writer: the first write sent after the kill that is acknowledged)")
        print(failover_table(s, doc["failover"]))
    print_noisy({**doc["writes"], **{f"{m} reads": v for m, v in doc["reads"].items()}}, doc)
    if doc["problems"]:
        print()
        print("problems:")
        for p in doc["problems"]:
            print(f"  {p}")


def plot(s: Settings, doc: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"zkfast": "#1f77b4", "apache": "#d62728"}
    kinds = s.servers
    width = 0.8 / max(1, len(kinds))
    panels: list[tuple[str, list[str], list[dict[str, Any]]]] = []
    for key, title in (("ops_per_s", "writes, ops/s"), ("p99_ms", "writes, p99 ms")):
        labels, rows = [], []
        for mode in s.modes:
            for ph in WRITE_PHASES:
                row = doc["writes"].get(mode, {}).get(ph)
                if row:
                    labels.append(f"{ph} {s.shape(mode)}")
                    rows.append({k: row.get(k, {}).get(key) for k in kinds})
        panels.append((title, labels, rows))
    for mode in s.read_modes:
        labels, rows = [], []
        for k in s.observers:
            row = doc["reads"].get(mode, {}).get(read_row(k))
            if row:
                labels.append(f"{k} observers")
                rows.append({kind: row.get(kind, {}).get("ops_per_s") for kind in kinds})
        panels.append((f"getData ops/s, {s.shape(mode)}, over all members", labels, rows))
    labels = [label for _, label in FAILOVER_METRICS]
    panels.append(("failover after kill -9 of the leader, s (median)", labels,
                   [{k: doc["failover"].get(k, {}).get("median", {}).get(key) for k in kinds}
                    for key, _ in FAILOVER_METRICS]))
    panels = [p for p in panels if p[1]]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, labels, rows) in zip(axes[0], panels, strict=False):
        for i, kind in enumerate(kinds):
            ax.bar([x + i * width for x in range(len(labels))], [r.get(kind) or 0.0 for r in rows], width,
                   label=kind, color=colors.get(kind))
        ax.set_xticks([x + width * (len(kinds) - 1) / 2 for x in range(len(labels))])
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{VOTERS}-node ensembles, zkfast vs Apache ZooKeeper 3.8 — median of {s.rounds} rounds, "
                 f"{NCPU} cores", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_plot(s: Settings, doc: dict[str, Any], png_path: Path) -> None:
    try:
        plot(s, doc, png_path)
        print(f"plot:    {png_path}")
    except ImportError:
        print("plot:    skipped (pip install matplotlib)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    again = report_again(argv, "ensemble.py", Settings, print_report, write_plot)
    if again is not None:
        return again
    s = parse_args(argv)
    start = Start()
    with running(s, Run, count_steps(s), "zkbench-ensemble-", say_kept=True) as run:
        run.sections()
    elapsed = time.monotonic() - start.t

    doc = {
        "meta": meta_of(s, start, elapsed, dict.fromkeys(s.modes + s.read_modes), s.cfg(),
                        note=TWO_CORES_NOTE.format(ncpu=NCPU)),
        "writes": summaries(run.writes),
        "reads": summaries(run.reads),
        "failover": {kind: {"median": failover_summary(rounds), "rounds": rounds}
                     for kind, rounds in run.failover.items()},
        "rounds": {"writes": all_rounds(run.writes), "reads": all_rounds(run.reads)},
        "problems": problems_of(run),
    }
    save_results(s, doc, "ensemble", print_report, write_plot, elapsed)
    return 1 if run.problems and not (run.writes or run.reads or run.failover) else 0


if __name__ == "__main__":
    sys.exit(main())
