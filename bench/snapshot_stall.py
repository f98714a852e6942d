#!/usr/bin/env python3
"""Does a snapshot stall the writes? zkfast and Apache ZooKeeper 3.8 side by side:

    python bench/snapshot_stall.py                     # 1M znodes, 3 rounds (about 5 minutes)
    python bench/snapshot_stall.py --znodes 200000 --rounds 1

Each server (zoo.cfg as bench/compare.py's: tickTime 2000, fsync on, maxClientCnxns=0) first gets a
tree of `--znodes` znodes of `--data-size` bytes (created pipelined, then the server is stopped).
Then, `--rounds` times, alternating the servers, each is started twice on that tree:

  no snapshot   snapCount so large that none starts (zkfast's start-up snapshot is waited out)
  snapshots     snapCount = `--snap-count`: the writes themselves start a snapshot of the whole
                tree every snapCount/2 + rand(snapCount/2) txns, so (a 1M-znode snapshot taking
                longer than that) they run back to back, each next one as soon as the last ends

and, after `--warmup` seconds of pipelined setData (JIT, caches, and the first snapshots), one
connection at depth 1 calls setData on the tree's znodes in turn for `--duration` seconds: p50,
p99 and the worst latency, ops/s, the snapshots finished meanwhile and the share of the window they
were running (the servers' own "taken in N ms" lines). Both runs of a server are on the same disk
as the other server's files (one temporary directory).

Printed: medians of the rounds per server, zkfast/Apache ratios, and each server's p99 during
snapshots over its p99 without. `--set KEY=VALUE` adds zoo.cfg keys to both (e.g. forceSync=no, to
tell a stall on the disk from a stall of the server's CPU); `--baseline DIR` runs the zkfast of another
checkout too, as a third server in the same rounds (before and after a change, in one run). JSON goes
to bench/results/.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase)
from compare import (
    NCPU,
    NO_SNAP_COUNT,
    SERVER_KINDS,
    PassRunner,
    Shapes,
    Start,
    add_output_args,
    common_cfg,
    fmt,
    log_problems,
    median,
    meta_of,
    problems_of,
    ratio,
    report_again,
    running,
    save_results,
    server_pid,
    snapshot_count,
    start_server,
)
from loadgen import Spec, setup_tree
from testbase.process import ServerProcess, ZkfastProcess, apache_available

TREE_PARENT = "/zkbench/s"
VARIANTS = (("no_snapshot", "no snapshot"), ("snapshots", "snapshots back to back"))
METRICS = (("p50_ms", "ms", "p50 ms"), ("p99_ms", "ms", "p99 ms"), ("max_ms", "ms", "max ms"),
           ("ops_per_s", "ops", "ops/s"))
# zkfast: "snapshot 0x1f taken in 812 ms: ..."; Apache (ZooKeeperServer): "Snapshot taken in 812 ms"
TAKEN = re.compile(rb"[Ss]napshot (?:0x[0-9a-f]+ )?taken in (\d+) ms")
QUIET_TIMEOUT_S = 600.0
BASELINE = "zkfast-base"


@dataclass
class Settings(Shapes):
    servers: list[str]
    modes: list[str]
    rounds: int
    znodes: int
    snap_count: int
    duration_s: float
    warmup_s: float
    extra_cfg: dict[str, str]
    baseline: str | None
    lat_keys: int
    thr_keys: int
    conns: int
    depth: int
    procs: int
    data_size: int
    out_dir: Path
    work_dir: Path | None
    plot: bool
    keep: bool

    def cfg(self, snap_count: int) -> dict[str, str]:
        return {**common_cfg(), "snapCount": str(snap_count), **self.extra_cfg}


def parse_args(argv: Sequence[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="zkfast,apache", help="which servers (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per server and variant (default %(default)s)")
    ap.add_argument("--znodes", type=int, default=1_000_000, help="znodes in the tree (default %(default)s)")
    ap.add_argument("--data-size", type=int, default=100, help="bytes per znode (default %(default)s)")
    ap.add_argument("--snap-count", type=int, default=1000,
                    help="snapCount while snapshots run (default %(default)s)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of 1x1 setData per window "
                    "(default %(default)s)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of pipelined setData before each window "
                    "(default %(default)s)")
    ap.add_argument("--conns", type=int, default=8, help="connections per generator process while creating "
                    "and warming up (default %(default)s)")
    ap.add_argument("--depth", type=int, default=16, help="their pipeline depth (default %(default)s)")
    ap.add_argument("--procs", type=int, default=2, help="generator processes (default %(default)s)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a zoo.cfg key for both servers (repeatable)")
    ap.add_argument("--baseline", metavar="DIR", default=None,
                    help=f"also run the zkfast of another checkout (PYTHONPATH=DIR, compiled) as {BASELINE!r}, "
                         "in the same rounds: before and after a change in one run")
    add_output_args(ap, "both dataDirs")
    a = ap.parse_args(argv)
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVER_KINDS:
            ap.error(f"unknown server {s!r}; known: zkfast,apache")
    if "apache" in servers and not apache_available():
        ap.error("Apache ZooKeeper is not installed (apt-get install zookeeper)")
    extra: dict[str, str] = {}
    for kv in a.set:
        key, eq, value = kv.partition("=")
        if not eq or not key:
            ap.error(f"--set {kv!r}: expected KEY=VALUE")
        extra[key.strip()] = value.strip()
    if a.baseline:
        servers.append(BASELINE)
    return Settings(servers=servers, modes=["lat"], rounds=max(1, a.rounds), znodes=a.znodes,
                    snap_count=a.snap_count, duration_s=a.duration, warmup_s=a.warmup, extra_cfg=extra,
                    baseline=a.baseline,
                    lat_keys=a.znodes, thr_keys=a.znodes, conns=a.conns, depth=a.depth, procs=a.procs,
                    data_size=a.data_size, out_dir=a.out, work_dir=a.workdir, plot=not a.no_plot, keep=a.keep)


# ------------------------------------------------------------------------------------ the run

def snapshot_in_progress(srv: ServerProcess) -> bool:
    """zkfast writes a snapshot as zkfast-snap.<zxid>.tmp and renames it once complete (Apache's
    start-up snapshot is taken before it serves, so there is nothing to wait for)."""
    d = srv.data_dir / "version-2"
    return d.is_dir() and any(e.name.endswith(".tmp") for e in os.scandir(d))


def log_size(srv: ServerProcess) -> int:
    try:
        return srv.log_path.stat().st_size
    except OSError:
        return 0


def snapshot_ms_since(srv: ServerProcess, offset: int) -> list[int]:
    """The durations of the snapshots the server's log says it finished after `offset`."""
    try:
        with open(srv.log_path, "rb") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return []
    return [int(m.group(1)) for m in TAKEN.finditer(text)]


@dataclass
class Run(PassRunner[Settings]):
    # results[kind]: {"create": PhaseResult dict, "rounds": {variant: [window, ...]}}
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def work(self, kind: str) -> Path:
        return self.base / kind

    def start(self, kind: str, snap_count: int) -> tuple[ServerProcess, float]:
        if kind != BASELINE:
            return start_server(kind, self.work(kind), self.s.cfg(snap_count))
        self.work(kind).mkdir(parents=True, exist_ok=True)
        srv = ZkfastProcess(self.s.cfg(snap_count), workdir=self.work(kind), env={"PYTHONPATH": self.s.baseline or ""})
        t0 = time.monotonic()
        srv.start(timeout_s=600)
        return srv, time.monotonic() - t0

    def build(self, kind: str) -> None:
        s = self.s
        thr = s.mode("thr")
        self.progress.show(f"{kind}: creating {s.znodes:,} znodes")
        srv, _ = self.start(kind, NO_SNAP_COUNT)
        try:
            setup_tree(srv.host, srv.port, (TREE_PARENT,))
            res = self.lg.run(Spec(srv.host, srv.port, "create", s.znodes, 0.0, thr.conns, thr.depth, thr.procs,
                                   s.data_size, TREE_PARENT), server_pid(srv))
            if res.errors:
                self.problems.append(f"{kind} create: errors {res.errors}")
            self.results[kind] = {"create": res.as_dict(), "rounds": {v: [] for v, _ in VARIANTS}}
        finally:
            srv.stop()
            self.logs.setdefault(kind, []).extend(log_problems(srv))
        self.progress.step(f"{kind}: created", create_weight(s))

    def window(self, kind: str, variant: str) -> None:
        s = self.s
        snap_count = NO_SNAP_COUNT if variant == "no_snapshot" else s.snap_count
        self.progress.show(f"{kind}: {variant}")
        srv, startup_s = self.start(kind, snap_count)
        try:
            wait_quiet(srv)
            os.sync()  # no dirty pages of earlier work left to share the disk with the window
            thr = s.mode("thr")
            if s.warmup_s > 0:
                self.lg.run(Spec(srv.host, srv.port, "set", s.znodes, s.warmup_s, thr.conns, thr.depth, thr.procs,
                                 s.data_size, TREE_PARENT))
            before, offset = snapshot_count(srv), log_size(srv)
            res = self.lg.run(Spec(srv.host, srv.port, "set", s.znodes, s.duration_s, 1, 1, 1, s.data_size,
                                   TREE_PARENT), server_pid(srv))
            taken = snapshot_ms_since(srv, offset)
            if res.errors:
                self.problems.append(f"{kind} {variant}: errors {res.errors}")
            self.results[kind]["rounds"][variant].append({
                **res.as_dict(), "startup_s": startup_s, "snapshots": snapshot_count(srv) - before,
                "snapshot_ms": taken,
                # a snapshot that ends just after the window is missed, one that began before it
                # counted whole: about even over a window of several snapshots
                "snapshot_share": min(1.0, sum(taken) / 1000 / res.elapsed_s) if res.elapsed_s else None})
        finally:
            srv.stop()
            self.logs.setdefault(kind, []).extend(log_problems(srv))
            self.progress.step(f"{kind}: {variant} done", window_weight(s))

    def run_all(self) -> None:
        for kind in self.s.servers:
            try:
                self.build(kind)
            except Exception as e:  # noqa: BLE001 - recorded; the run goes on with the other server
                self.problems.append(f"{kind} create: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
                self.restart_lg()
        kinds = [k for k in self.s.servers if k in self.results]
        for r in range(self.s.rounds):
            for kind in kinds if r % 2 == 0 else list(reversed(kinds)):
                for variant, _ in VARIANTS:
                    try:
                        self.window(kind, variant)
                    except Exception as e:  # noqa: BLE001 - recorded; the run goes on
                        self.problems.append(f"{kind} {variant} round {r + 1}: {type(e).__name__}: {e}")
                        traceback.print_exc(file=sys.stderr)
                        self.restart_lg()


def wait_quiet(srv: ServerProcess) -> None:
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    while snapshot_in_progress(srv):
        if time.monotonic() > deadline:
            raise TimeoutError(f"a snapshot still running {QUIET_TIMEOUT_S:.0f} s after start-up")
        time.sleep(0.05)


# progress weights, in seconds of the run
def create_weight(s: Settings) -> int:
    return max(1, s.znodes // 50_000)


def window_weight(s: Settings) -> int:
    return max(1, int(s.duration_s + s.warmup_s + s.znodes / 300_000))


def count_steps(s: Settings) -> int:
    return len(s.servers) * (create_weight(s) + s.rounds * len(VARIANTS) * window_weight(s))


# ------------------------------------------------------------------------------------ report

def summary_of(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """summary[kind][variant][metric]: medians of the rounds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, res in doc["servers"].items():
        for variant, _ in VARIANTS:
            rounds = res["rounds"][variant]
            keys = [k for k, _, _ in METRICS] + ["snapshots", "snapshot_share", "other_cpu_share"]
            out.setdefault(kind, {})[variant] = {k: median([r.get(k) for r in rounds]) for k in keys}
    return out


def rows_of(s: Settings, doc: dict[str, Any]) -> list[tuple[str, str, dict[str, float | None]]]:
    summary = summary_of(doc)
    rows: list[tuple[str, str, dict[str, float | None]]] = []
    for variant, title in VARIANTS:
        for key, unit, what in METRICS:
            rows.append((f"set 1x1 {what}, {title}", unit,
                         {k: summary[k][variant][key] for k in summary}))
    rows.append(("  snapshots finished per window", "n", {k: summary[k]["snapshots"]["snapshots"] for k in summary}))
    rows.append(("  share of the window a snapshot ran", "pct",
                 {k: summary[k]["snapshots"]["snapshot_share"] for k in summary}))
    for variant, title in VARIANTS:
        rows.append((f"  other processes' CPU, {title}", "pct",
                     {k: summary[k][variant]["other_cpu_share"] for k in summary}))
    for key, _, what in METRICS[:3]:
        vals: dict[str, float | None] = {}
        for k in summary:
            during, without = summary[k]["snapshots"][key], summary[k]["no_snapshot"][key]
            vals[k] = during / without if during is not None and without else None
        rows.append((f"{what} during snapshots / without", "x", vals))
    return rows


def print_report(s: Settings, doc: dict[str, Any]) -> None:
    kinds = [k for k in s.servers if k in doc["servers"]]
    pair = len(kinds) >= 2
    print(f"snapshot stall on {NCPU} cores: setData, 1 connection at depth 1, {s.duration_s:g} s windows, "
          f"on {s.znodes:,} znodes of {s.data_size} B; snapshots by snapCount={s.snap_count}; "
          f"median of {s.rounds} rounds" + (f"; ratio = {kinds[0]} / {kinds[1]}" if pair else ""))
    if s.extra_cfg:
        print("zoo.cfg additions: " + ", ".join(f"{k}={v}" for k, v in s.extra_cfg.items()))
    head = f"{'':<44}" + "".join(f"{k:>12}" for k in kinds) + (f"{'ratio':>9}" if pair else "")
    lines = [head, "-" * len(head)]
    for label, unit, vals in rows_of(s, doc):
        line = f"{label:<44}" + "".join(f"{fmt_x(vals.get(k), unit):>12}" for k in kinds)
        if pair and unit != "x":
            line += f"{ratio(vals.get(kinds[0]), vals.get(kinds[1])):>9}"
        lines.append(line)
    print("\n".join(lines))
    print("\np99 ms per round (no snapshot / snapshots):")
    for k in kinds:
        per = doc["servers"][k]["rounds"]
        pairs = zip(per["no_snapshot"], per["snapshots"], strict=False)
        print(f"  {k:<12}" + "  ".join(f"{a['p99_ms']:.2f} / {b['p99_ms']:.2f}" for a, b in pairs))
    if doc["problems"]:
        print("\nproblems:")
        for p in doc["problems"]:
            print(f"  {p}")


def fmt_x(v: float | None, unit: str) -> str:
    if unit == "x":
        return "-" if v is None else f"{v:.2f}x"
    return fmt(v, unit)


def write_plot(s: Settings, doc: dict[str, Any], png_path: Path) -> None:
    """No plot: the table is the result (--no-plot is accepted for the options every bench has)."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    again = report_again(argv, "snapshot_stall.py", Settings, print_report, write_plot)
    if again is not None:
        return again
    s = parse_args(argv)
    start = Start()
    with running(s, Run, count_steps(s), "zkbench-snapstall-", say_kept=True) as run:
        run.run_all()
    elapsed = time.monotonic() - start.t
    doc = {"meta": meta_of(s, start, elapsed, [], s.cfg(s.snap_count)), "servers": run.results,
           "problems": problems_of(run)}
    if run.results:
        doc["summary"] = summary_of(doc)
    save_results(s, doc, "snapshot-stall", print_report, write_plot, elapsed)
    return 0 if run.results else 1


if __name__ == "__main__":
    sys.exit(main())
