#!/usr/bin/env python3
"""zkfast and Apache ZooKeeper 3.8 (Debian's package) side by side, in one command:

    python bench/compare.py            # the full run (about 10 minutes on 2 cores)
    python bench/compare.py --quick    # about a minute, small counts

Both servers get identical zoo.cfg settings (fsync on, 4lw whitelist *, admin server off,
maxClientCnxns=0 so the generator is not refused) and dataDirs in one temporary directory, so on the
same filesystem. The same load (bench/loadgen.py: raw protocol, multiprocess, uvloop) runs on
each, in two shapes:

  lat  1 connection x depth 1: latency
  thr  N connections x depth D in P generator processes (default 8 x 16 x 2): throughput

Every phase (create, set, get, exists, getChildren, multi, watch, delete, session) is first run
once on each server untimed (warming Apache's JVM), then in `--rounds` rounds alternating the
servers; the table shows the median of the rounds. Per phase: ops/s, p50/p99 latency, the server's
CPU-µs per op (utime+stime of its process from /proc, over the phase) and the generator's CPU share
of the machine (near 100 % means the generator, not the server, was the limit).

Then, one server at a time, a big tree: `--znodes` znodes of 100 bytes are created (RSS per znode
= VmRSS after minus VmRSS when empty), the server is restarted `--rounds` times with snapCount so
large that no snapshot happens and `--rounds` times with a small `--snap-count` (start-up time =
process start until `srvr` answers `Mode:`; RSS per znode again), and each time setData runs
in both shapes on the big tree, giving p99 without and during snapshots.

Results: a table on stdout; JSON and a PNG plot in bench/results/ (timestamped); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase)
from loadgen import (
    NCPU,
    PHASES,
    LoadGen,
    Mode,
    PhaseResult,
    Spec,
    proc_rss_bytes,
    run_pass,
    setup_tree,
)
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available

HERE = Path(__file__).resolve().parent
BIG_PARENT = "/zkbench/m"
BIG_TREE_PHASES = ("memory", "startup", "snapshot")
ALL_PHASES = (*PHASES, *BIG_TREE_PHASES)
SERVER_KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}
NO_SNAP_COUNT = 100_000_000
METRICS = ("ops_per_s", "p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_op", "server_cpu_share",
           "gen_cpu_share", "other_cpu_share")
NOISY_OTHER_SHARE = 0.10


# ------------------------------------------------------------------------------------ settings

class Shapes:
    """The two load shapes (lat = 1x1, thr = PxCxD) of a benchmark's settings (a dataclass with
    these fields); also what load_table and the helpers of main() (running, save_results) need."""

    servers: list[str]
    modes: list[str]
    duration_s: float
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

    def mode(self, name: str) -> Mode:
        if name == "lat":
            return Mode("lat", 1, 1, 1, self.lat_keys, self.duration_s, self.data_size)
        return Mode("thr", self.conns, self.depth, self.procs, self.thr_keys, self.duration_s, self.data_size)

    def shape(self, name: str) -> str:
        m = self.mode(name)
        return f"{m.procs}x{m.conns}x{m.depth}" if m.procs > 1 else f"{m.conns}x{m.depth}"


@dataclass
class Settings(Shapes):
    servers: list[str]
    phases: list[str]
    modes: list[str]
    rounds: int
    warmup: bool
    duration_s: float
    lat_keys: int
    thr_keys: int
    conns: int
    depth: int
    procs: int
    data_size: int
    znodes: int
    snap_count: int
    snap_duration_s: float
    snap_warmup_s: float
    out_dir: Path
    work_dir: Path | None
    plot: bool
    keep: bool


def add_shape_args(ap: argparse.ArgumentParser) -> None:
    """The load shapes' options, the same in every benchmark of bench/."""
    ap.add_argument("--lat-keys", type=int, default=None, help="znodes created in the 1x1 shape (default 1000)")
    ap.add_argument("--thr-keys", type=int, default=None, help="znodes created in the NxD shape (default 40000)")
    ap.add_argument("--conns", type=int, default=8, help="connections per generator process (default %(default)s)")
    ap.add_argument("--depth", type=int, default=16, help="pipeline depth per connection (default %(default)s)")
    ap.add_argument("--procs", type=int, default=2, help="generator processes (default %(default)s)")
    ap.add_argument("--data-size", type=int, default=100, help="bytes per znode (default %(default)s)")


def add_output_args(ap: argparse.ArgumentParser, data_dirs: str) -> None:
    """Where results and servers' files go, the same in every benchmark of bench/."""
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where JSON and PNG go")
    ap.add_argument("--workdir", type=Path, default=None,
                    help=f"parent of the temporary directory holding {data_dirs} (default: system temp)")
    ap.add_argument("--no-plot", action="store_true", help="no PNG")
    ap.add_argument("--keep", action="store_true", help="keep the dataDirs and server logs")
    ap.add_argument("--report", metavar="RESULTS.json",
                    help="no run: print the tables of a results file again and redraw its PNG "
                         "(must be the only option)")


def parse_args(argv: Sequence[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Phases: " + ",".join(ALL_PHASES),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts and short phases (about a minute)")
    ap.add_argument("--servers", default="zkfast,apache", help="which servers, in order (default %(default)s)")
    ap.add_argument("--phases", default=",".join(ALL_PHASES),
                    help="comma-separated subset of the phases (default: all)")
    ap.add_argument("--modes", default="lat,thr", help="load shapes: lat (1x1), thr (NxD) (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per measurement (default 3)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per timed phase but create/delete (default 2, quick 0.25)")
    add_shape_args(ap)
    ap.add_argument("--znodes", type=int, default=None, help="znodes in the big tree (default 1000000)")
    ap.add_argument("--snap-count", type=int, default=None,
                    help="snapCount while measuring p99 during snapshots (default 2000, quick 200)")
    ap.add_argument("--snap-duration", type=float, default=None,
                    help="seconds of setData per shape on the big tree (default 2, quick 0.3)")
    add_output_args(ap, "both dataDirs")
    a = ap.parse_args(argv)

    def pick(v: Any, full: Any, quick: Any) -> Any:
        return v if v is not None else (quick if a.quick else full)

    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVER_KINDS:
            ap.error(f"unknown server {s!r}; known: {','.join(SERVER_KINDS)}")
    if "apache" in servers and not apache_available():
        ap.error("Apache ZooKeeper is not installed (apt-get install zookeeper)")
    phases = [p.strip() for p in a.phases.split(",") if p.strip()]
    for p in phases:
        if p not in ALL_PHASES:
            ap.error(f"unknown phase {p!r}; known: {','.join(ALL_PHASES)}")
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("lat", "thr"):
            ap.error(f"unknown mode {m!r}; known: lat,thr")
    return Settings(
        servers=servers, phases=phases, modes=modes, rounds=max(1, pick(a.rounds, 3, 3)),
        warmup=not a.no_warmup, duration_s=pick(a.duration, 2.0, 0.25),
        lat_keys=pick(a.lat_keys, 1000, 100), thr_keys=pick(a.thr_keys, 40000, 2000), conns=a.conns,
        depth=a.depth, procs=a.procs, data_size=a.data_size, znodes=pick(a.znodes, 1_000_000, 20000),
        snap_count=pick(a.snap_count, 2000, 200), snap_duration_s=pick(a.snap_duration, 2.0, 0.3),
        snap_warmup_s=0.2 if a.quick else 1.0, out_dir=a.out, work_dir=a.workdir, plot=not a.no_plot,
        keep=a.keep)


# ------------------------------------------------------------------------------------ progress

class Progress:
    """A one-line progress bar on stderr (one line per step when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.done = 0
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.label = ""

    def show(self, label: str) -> None:
        self.label = label
        frac = min(1.0, self.done / self.total)
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        el = time.monotonic() - self.t0
        eta = f" eta {el / frac - el:4.0f}s" if frac > 0.02 else ""
        line = f"[{bar}] {frac:4.0%} {el:5.0f}s{eta}  {label}"
        if self.tty:
            sys.stderr.write("\r" + line[:140].ljust(140))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def step(self, label: str, n: int = 1) -> None:
        self.done += n
        self.show(label)

    def finish(self) -> None:
        self.done = self.total
        self.show("done")
        if self.tty:
            sys.stderr.write("\n")


# ------------------------------------------------------------------------------------ servers

def common_cfg() -> dict[str, str]:
    """What both servers get besides dataDir/clientPort (ServerProcess adds 4lw whitelist *,
    admin.enableServer=false)."""
    return {"tickTime": "2000", "forceSync": "yes", "maxClientCnxns": "0", "snapCount": "100000",
            "autopurge.purgeInterval": "0"}


def start_server(kind: str, workdir: Path, cfg: dict[str, str]) -> tuple[ServerProcess, float]:
    """Start a server; (process, seconds from process start until srvr answers Mode:)."""
    workdir.mkdir(parents=True, exist_ok=True)
    srv = SERVER_KINDS[kind](cfg, workdir=workdir)
    t0 = time.monotonic()
    srv.start(timeout_s=600)
    return srv, time.monotonic() - t0


def server_pid(srv: ServerProcess) -> int:
    assert srv.proc is not None
    return srv.proc.pid


def snapshot_count(srv: ServerProcess) -> int:
    d = srv.data_dir / "version-2"
    if not d.is_dir():
        return 0
    return sum(1 for e in os.scandir(d)
               if (e.name.startswith("snapshot.") or e.name.startswith("zkfast-snap."))
               and not e.name.endswith(".tmp"))


def log_problems(srv: ServerProcess, limit: int = 12) -> list[str]:
    """WARN/ERROR lines and tracebacks from a server's log, minus what a benchmark causes by design
    (clients closing sockets, standalone-mode notices)."""
    benign = ("EndOfStreamException", "Unable to read additional data", "standalone mode",
              "maxCnxns is not configured", "Unexpected exception", "Error closing a command socket",
              "too busy to snap", "Too busy to snap", "unknown key", "Invalid configuration, only one server")
    out: list[str] = []
    try:
        text = srv.log_path.read_text("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        if any(w in line for w in (" WARN ", " ERROR ", "WARNING", "Traceback", "CRITICAL")):
            if not any(b in line for b in benign):
                out.append(line.strip()[:300])
    return out[:limit]


# ------------------------------------------------------------------------------------ the load

def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(rounds: list[PhaseResult]) -> dict[str, Any]:
    med = {m: median([getattr(r, m) for r in rounds]) for m in METRICS}
    errors: dict[str, int] = {}
    for r in rounds:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    med["errors"] = errors
    med["missing_events"] = sum(r.missing_events for r in rounds)
    return med


# rounds of phase results: store[mode][phase][server kind]
Store = dict[str, dict[str, dict[str, list[PhaseResult]]]]


@dataclass(frozen=True)
class Where:
    """Where a pass's load goes: the tree is set up through host:port; the connections go there,
    or with `targets` spread over those servers; the server CPU is summed over `pids`."""

    host: str
    port: int
    pids: tuple[int, ...]
    targets: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, srv: ServerProcess) -> Where:
        return cls(srv.host, srv.port, (server_pid(srv),))


S = TypeVar("S", bound=Shapes)


@dataclass
class PassRunner(Generic[S]):
    """Load passes with progress; a failed pass is a problem (the run goes on with a new
    generator). The base of a benchmark's run: the fields every run has (its own results are
    fields with defaults in the subclass, so Run(s, progress, base, lg) builds either)."""

    s: S
    progress: Progress
    base: Path
    lg: LoadGen
    problems: list[str] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)

    def restart_lg(self) -> None:
        try:
            self.lg.close()
        except Exception:  # noqa: BLE001 - replaced anyway
            pass
        self.lg = LoadGen(self.s.procs)

    def load_pass(self, kind: str, where: Where, mode: Mode, phases: list[str],
                  what: str) -> dict[str, PhaseResult] | None:
        """run_pass with progress; None (and a problem) if it failed."""
        label = f"{what} {kind} {mode.name}"
        self.progress.show(label)

        def on_phase(ph: str, res: PhaseResult | None) -> None:
            self.progress.step(f"{label} {ph}")

        try:
            return run_pass(self.lg, where.host, where.port, phases, mode, where.pids, on_phase, where.targets)
        except Exception as e:  # noqa: BLE001 - recorded; the run goes on
            self.problems.append(f"{kind} {mode.name} {what}: {type(e).__name__}: {e}")
            self.progress.step(f"{label} failed", 0)
            traceback.print_exc(file=sys.stderr)
            self.restart_lg()
            return None

    def record(self, store: Store, kind: str, mode: str, what: str, res: dict[str, PhaseResult],
               row: Callable[[str], str] = str) -> None:
        """Keep a pass's results as store[mode][row(phase)][kind]; errors are problems."""
        for ph, r in res.items():
            store.setdefault(mode, {}).setdefault(row(ph), {}).setdefault(kind, []).append(r)
            if r.errors or r.missing_events:
                self.problems.append(f"{kind} {mode} {what} {row(ph)}: errors {r.errors} "
                                     f"missing events {r.missing_events}")


@dataclass
class Run(PassRunner[Settings]):
    load: Store = field(default_factory=dict)
    big: dict[str, dict[str, Any]] = field(default_factory=dict)

    def load_phases(self) -> list[str]:
        return [p for p in self.s.phases if p in PHASES]

    # -- part 1: every phase, both shapes, rounds alternating the servers
    def run_load(self) -> None:
        phases = self.load_phases()
        if not phases:
            return
        servers: dict[str, ServerProcess] = {}
        try:
            for kind in self.s.servers:
                self.progress.show(f"starting {kind}")
                servers[kind], _ = start_server(kind, self.base / f"{kind}-load", common_cfg())
            if self.s.warmup:
                for kind, srv in servers.items():
                    for mode in self.s.modes:
                        self.one_pass(kind, srv, mode, phases, "warm-up", record=False)
            for r in range(self.s.rounds):
                order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
                for kind, srv in order:
                    for mode in self.s.modes:
                        self.one_pass(kind, srv, mode, phases, f"round {r + 1}/{self.s.rounds}", record=True)
        finally:
            for kind, srv in servers.items():
                srv.stop()
                self.logs.setdefault(kind, []).extend(log_problems(srv))

    def one_pass(self, kind: str, srv: ServerProcess, mode: str, phases: list[str], what: str,
                 record: bool) -> None:
        res = self.load_pass(kind, Where.of(srv), self.s.mode(mode), phases, what)
        if res is not None and record:
            self.record(self.load, kind, mode, what, res)

    # -- part 2: the big tree
    def run_big_tree(self) -> None:
        if not any(p in self.s.phases for p in BIG_TREE_PHASES):
            return
        for kind in self.s.servers:
            try:
                self.big[kind] = self.big_tree(kind)
            except Exception as e:  # noqa: BLE001 - recorded; the run goes on
                self.problems.append(f"{kind} big tree: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
                self.restart_lg()

    def big_tree(self, kind: str) -> dict[str, Any]:
        s = self.s
        out: dict[str, Any] = {"znodes": s.znodes, "data_size": s.data_size}
        work = self.base / f"{kind}-big"
        thr = s.mode("thr")
        self.progress.show(f"{kind} big tree: start")
        srv, startup = start_server(kind, work, common_cfg())
        try:
            time.sleep(0.5)
            out["startup_empty_s"] = startup
            out["rss_empty"] = proc_rss_bytes(server_pid(srv))
            setup_tree(srv.host, srv.port, (BIG_PARENT,))
            self.progress.show(f"{kind} big tree: creating {s.znodes} znodes")
            res = self.lg.run(Spec(srv.host, srv.port, "create", s.znodes, 0.0, thr.conns, thr.depth,
                                   thr.procs, s.data_size, BIG_PARENT), server_pid(srv))
            out["create"] = res.as_dict()
            out["rss_created"] = proc_rss_bytes(server_pid(srv))
            if res.errors:
                self.problems.append(f"{kind} big tree create: errors {res.errors}")
        finally:
            srv.stop()
            self.logs.setdefault(kind, []).extend(log_problems(srv))
        out["rss_per_znode_created"] = (out["rss_created"] - out["rss_empty"]) / s.znodes
        self.progress.step(f"{kind} big tree: created", create_weight(s))
        variants = [("no_snapshot", NO_SNAP_COUNT)]
        if "snapshot" in s.phases:
            variants.append(("snapshot", s.snap_count))
        out["startup_s"] = []
        out["rss_restart"] = []
        out["set"] = {v: {m: [] for m in s.modes} for v, _ in variants}
        out["snapshots_during"] = {v: {m: [] for m in s.modes} for v, _ in variants}
        for r in range(s.rounds):
            for variant, snap_count in variants:
                self.restart_round(kind, work, variant, snap_count, r, out)
        out["startup_s_median"] = median(out["startup_s"])
        out["rss_restart_median"] = median(out["rss_restart"])
        out["rss_per_znode_restart"] = (out["rss_restart_median"] - out["rss_empty"]) / s.znodes
        return out

    def restart_round(self, kind: str, work: Path, variant: str, snap_count: int, r: int,
                      out: dict[str, Any]) -> None:
        s = self.s
        cfg = common_cfg()
        cfg["snapCount"] = str(snap_count)
        self.progress.show(f"{kind} big tree: restart {r + 1}/{s.rounds} ({variant})")
        srv, startup = start_server(kind, work, cfg)
        try:
            out["startup_s"].append(startup)
            out["rss_restart"].append(proc_rss_bytes(server_pid(srv)))
            if "snapshot" not in s.phases:
                return
            thr = s.mode("thr")
            # warm up (JIT, caches) untimed, then setData on the big tree in each shape
            self.lg.run(Spec(srv.host, srv.port, "set", s.znodes, s.snap_warmup_s, thr.conns, thr.depth,
                             thr.procs, s.data_size, BIG_PARENT))
            for mode in s.modes:
                m = s.mode(mode)
                before = snapshot_count(srv)
                res = self.lg.run(Spec(srv.host, srv.port, "set", s.znodes, s.snap_duration_s, m.conns,
                                       m.depth, m.procs, s.data_size, BIG_PARENT), server_pid(srv))
                out["set"][variant][mode].append(res.as_dict())
                out["snapshots_during"][variant][mode].append(snapshot_count(srv) - before)
                if res.errors:
                    self.problems.append(f"{kind} big tree set {variant} {mode}: errors {res.errors}")
        finally:
            srv.stop()
            self.logs.setdefault(kind, []).extend(log_problems(srv))
            self.progress.step(f"{kind} big tree: restart {r + 1} ({variant}) done", restart_weight(s))


def count_steps(s: Settings) -> int:
    n_load = len([p for p in s.phases if p in PHASES])
    steps = n_load * len(s.modes) * len(s.servers) * (s.rounds + (1 if s.warmup else 0))
    if any(p in s.phases for p in BIG_TREE_PHASES):
        restarts = s.rounds * (2 if "snapshot" in s.phases else 1)
        steps += len(s.servers) * (create_weight(s) + restarts * restart_weight(s))
    return steps


# progress weights, in load phases' worth of time
def create_weight(s: Settings) -> int:
    return max(1, s.znodes // 100_000)


def restart_weight(s: Settings) -> int:
    return 2 + (len(s.modes) if "snapshot" in s.phases else 0)


# ------------------------------------------------------------------------------------ report

def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ops":
        return f"{v:,.0f}"
    if unit == "ms":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit == "us":
        return f"{v:.1f}"
    if unit == "pct":
        return f"{v:.0%}"
    if unit == "s":
        return f"{v:.2f}"
    if unit == "B":
        return f"{v:,.0f}"
    if unit == "MB":
        return f"{v / 1e6:,.0f}"
    return f"{v:g}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


class SideBySide:
    """A markdown table: one column per server (headed `names`, of `kinds`), then zkfast / apache."""

    def __init__(self, kinds: Sequence[str], names: Sequence[str] | None = None) -> None:
        self.kinds = list(kinds)
        self.lines = ["| | " + " | ".join(names or kinds) + " | zkfast / apache |",
                      "|---|" + "---|" * (len(self.kinds) + 1)]

    def row(self, name: str, values: Sequence[float | None], unit: str, fmt: str = ",.1f") -> None:
        cells = [("-" if v is None else f"{v:{fmt}}{unit}") for v in values]
        z = values[self.kinds.index("zkfast")] if "zkfast" in self.kinds else None
        a = values[self.kinds.index("apache")] if "apache" in self.kinds else None
        self.lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio(z, a)} |")

    def text(self) -> str:
        return "\n".join(self.lines)


def load_table(s: Shapes, summary: dict[str, dict[str, dict[str, dict[str, Any]]]],
               phases: Sequence[str] = PHASES) -> str:
    """One row per shape and phase (in the order of `phases`) found in summary[mode][phase][server]."""
    a, b = (s.servers + [""])[:2]
    pair = len(s.servers) == 2
    groups = [("ops/s", "ops_per_s", "ops"), ("p50 ms", "p50_ms", "ms"), ("p99 ms", "p99_ms", "ms"),
              ("srv CPU-us/op", "server_cpu_us_per_op", "us")]
    cols = []
    head1 = f"{'shape':<8}{'phase':<12}"
    head2 = f"{'':<8}{'':<12}"
    for title, _, _ in groups:
        w = 30 if pair else 10
        head1 += "| " + title.center(w)
        head2 += "| " + (f"{a:>9} {b:>9} {'ratio':>8} " if pair else f"{a:>9} ")
        cols.append(w)
    head1 += "| gen CPU       | bg" if pair else "| gen CPU| bg"
    head2 += "| " + (f"{a[:6]:>6} {b[:6]:>6}" if pair else f"{a[:6]:>6}") + " | CPU"
    lines = [head1, head2, "-" * len(head2)]
    for mode in s.modes:
        for ph in phases:
            row = summary.get(mode, {}).get(ph)
            if not row:
                continue
            line = f"{s.shape(mode):<8}{ph:<12}"
            for _, key, unit in groups:
                va = row.get(a, {}).get(key)
                vb = row.get(b, {}).get(key) if pair else None
                if pair:
                    line += f"| {fmt(va, unit):>9} {fmt(vb, unit):>9} {ratio(va, vb):>8} "
                else:
                    line += f"| {fmt(va, unit):>9} "
            ga = row.get(a, {}).get("gen_cpu_share")
            gb = row.get(b, {}).get("gen_cpu_share") if pair else None
            line += "| " + (f"{fmt(ga, 'pct'):>6} {fmt(gb, 'pct'):>6}" if pair else f"{fmt(ga, 'pct'):>6}")
            bg = [v for v in (row.get(k, {}).get("other_cpu_share") for k in s.servers) if v is not None]
            line += f" | {fmt(max(bg) if bg else None, 'pct'):>3}"
            lines.append(line)
    return "\n".join(lines)


def big_rows(s: Settings, big: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, float | None]]]:
    rows: list[tuple[str, str, dict[str, float | None]]] = []

    def add(label: str, unit: str, get: Callable[[dict[str, Any]], float | None]) -> None:
        vals: dict[str, float | None] = {}
        for kind, d in big.items():
            try:
                vals[kind] = get(d)
            except (KeyError, TypeError, IndexError, statistics.StatisticsError):
                vals[kind] = None
        rows.append((label, unit, vals))

    n = f"{s.znodes:,}"
    add(f"create {n} znodes (ops/s, {s.shape('thr')})", "ops", lambda d: d["create"]["ops_per_s"])
    add("RSS empty (MB)", "MB", lambda d: d["rss_empty"])
    add(f"RSS with {n} znodes, after create (MB)", "MB", lambda d: d["rss_created"])
    add("RSS per znode, after create (bytes)", "B", lambda d: d["rss_per_znode_created"])
    add(f"RSS with {n} znodes, after restart (MB)", "MB", lambda d: d["rss_restart_median"])
    add("RSS per znode, after restart (bytes)", "B", lambda d: d["rss_per_znode_restart"])
    add(f"start-up with {n} znodes (s)", "s", lambda d: d["startup_s_median"])
    for variant, title in (("no_snapshot", "no snapshot"), ("snapshot", f"snapCount={s.snap_count}")):
        for mode in s.modes:
            for key, unit, what in (("p99_ms", "ms", "p99 ms"), ("max_ms", "ms", "max ms"),
                                    ("ops_per_s", "ops", "ops/s")):
                add(f"set {s.shape(mode)} {what}, {title}", unit,
                    lambda d, v=variant, m=mode, k=key: median([r[k] for r in d["set"][v][m]]))
            add(f"  snapshots finished during it ({s.shape(mode)}, {title})", "n",
                lambda d, v=variant, m=mode: median(d["snapshots_during"][v][m]))
    return [r for r in rows if any(v is not None for v in r[2].values())]


def big_table(s: Settings, big: dict[str, dict[str, Any]]) -> str:
    if not big:
        return ""
    kinds = [k for k in s.servers if k in big]
    pair = len(kinds) == 2
    head = f"{'big tree':<52}" + "".join(f"{k:>12}" for k in kinds) + (f"{'ratio':>9}" if pair else "")
    lines = [head, "-" * len(head)]
    for label, unit, vals in big_rows(s, big):
        line = f"{label:<52}" + "".join(f"{fmt(vals.get(k), unit):>12}" for k in kinds)
        if pair:
            line += f"{ratio(vals.get(kinds[0]), vals.get(kinds[1])):>9}"
        lines.append(line)
    return "\n".join(lines)


def plot(s: Settings, summary: dict[str, Any], big: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    kinds = s.servers
    colors = {"zkfast": "#1f77b4", "apache": "#d62728"}
    panels: list[tuple[str, str, str]] = []
    for mode in s.modes:
        panels.append((mode, "ops_per_s", f"ops/s, {s.shape(mode)}"))
        panels.append((mode, "p99_ms", f"p99 ms, {s.shape(mode)}"))
    panels.append(("thr" if "thr" in s.modes else s.modes[0], "server_cpu_us_per_op", "server CPU-us per op"))
    extra = 1 if big else 0
    ncols = 3 if len(panels) + extra <= 6 else 4
    nrows = (len(panels) + extra + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.2 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    width = 0.8 / max(1, len(kinds))
    for ax, (mode, key, title) in zip(flat, panels, strict=False):
        phases = [p for p in PHASES if p in summary.get(mode, {})]
        for i, kind in enumerate(kinds):
            vals = [summary[mode][p].get(kind, {}).get(key) or 0.0 for p in phases]
            ax.bar([x + i * width for x in range(len(phases))], vals, width, label=kind,
                   color=colors.get(kind))
        ax.set_xticks([x + width * (len(kinds) - 1) / 2 for x in range(len(phases))])
        ax.set_xticklabels(phases, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key in ("ops_per_s", "server_cpu_us_per_op"):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    if big:
        ax = flat[len(panels)]
        rows = [r for r in big_rows(s, big) if r[1] != "n"]
        first = kinds[0]
        others = [k for k in kinds[1:] if k in big]
        if others:
            # zkfast / apache per metric, log scale: the table has the absolute values
            ref = others[0]
            labels = [label for label, _, vals in rows if vals.get(first) and vals.get(ref)]
            ratios = [vals[first] / vals[ref] for _, _, vals in rows  # type: ignore[operator]
                      if vals.get(first) and vals.get(ref)]
            ax.barh(range(len(ratios)), ratios, color=colors.get(first))
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_title(f"big tree ({s.znodes:,} znodes): {first} / {ref}", fontsize=10)
        else:
            labels = [label for label, _, vals in rows if vals.get(first)]
            ax.barh(range(len(labels)), [vals[first] for _, _, vals in rows if vals.get(first)],
                    color=colors.get(first))
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"big tree ({s.znodes:,} znodes): {first}", fontsize=10)
    for ax in flat[len(panels) + extra:]:
        ax.set_visible(False)
    fig.suptitle(f"zkfast vs Apache ZooKeeper 3.8 — median of {s.rounds} rounds, {NCPU} cores", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(NCPU)}
    try:
        from zkfast.version import ZKFAST_VERSION
        out["zkfast"] = str(ZKFAST_VERSION)
    except ImportError:
        pass
    try:
        out["git"] = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        r = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        out["java"] = (r.stderr or r.stdout).splitlines()[0] if (r.stderr or r.stdout) else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ------------------------------------------------------------------------------------ main

def print_report(s: Settings, doc: dict[str, Any]) -> None:
    """The tables (and notes) for a results document, as printed at the end of a run."""
    summary = doc["load"]
    big = doc["big_tree"]
    print(f"zkfast vs Apache ZooKeeper 3.8 on {NCPU} cores: median of {s.rounds} rounds"
          + (" after a warm-up pass" if s.warmup else "") + f"; ratio = {s.servers[0]} / "
          + (s.servers[1] if len(s.servers) > 1 else "-"))
    print(f"fsync on; phases {s.duration_s:g} s each (create/delete: {s.lat_keys} / {s.thr_keys} znodes "
          f"of {s.data_size} B); shapes: {', '.join(f'{m} = {s.shape(m)} (procs x conns x depth)' for m in s.modes)}")
    print("srv CPU-us/op: server utime+stime over the phase / ops; gen CPU: generator share of the machine; "
          "bg CPU: everything else busy meanwhile (other processes), the larger of the two servers'")
    if summary:
        print()
        print(load_table(s, summary))
    if big:
        print()
        print(big_table(s, big))
    print_noisy(summary, doc)
    if doc["problems"]:
        print()
        print("problems:")
        for p in doc["problems"]:
            print(f"  {p}")


def print_noisy(summary: dict[str, Any], doc: dict[str, Any]) -> None:
    """A note naming the phases during which other processes took much of the machine."""
    noisy = sorted({f"{m}/{ph}" for m, phs in summary.items() for ph, per in phs.items()
                    for v in per.values() if (v.get("other_cpu_share") or 0) > NOISY_OTHER_SHARE})
    if noisy:
        print(f"\nnote: other processes used over {NOISY_OTHER_SHARE:.0%} of the machine during "
              f"{', '.join(noisy)}: those figures are disturbed "
              f"(load average at start {doc['meta'].get('loadavg_start')})")


def write_plot(s: Settings, doc: dict[str, Any], png_path: Path) -> None:
    if not (doc["load"] or doc["big_tree"]):
        return
    try:
        plot(s, doc["load"], doc["big_tree"], png_path)
        print(f"plot:    {png_path}")
    except ImportError:
        print("plot:    skipped (pip install matplotlib)")


# The rest is shared with ensemble.py, whose main() has the same frame around other parts.

def settings_of(doc: dict[str, Any], settings_cls: Callable[..., S]) -> S:
    """A results document's settings, as the run had them (JSON keeps paths as strings)."""
    raw = dict(doc["meta"]["settings"])
    raw["out_dir"] = Path(raw["out_dir"])
    raw["work_dir"] = Path(raw["work_dir"]) if raw.get("work_dir") not in (None, "None") else None
    return settings_cls(**raw)


def report_again(argv: Sequence[str], script: str, settings_cls: Callable[..., S],
                 print_report: Callable[[S, dict[str, Any]], None],
                 write_plot: Callable[[S, dict[str, Any], Path], None]) -> int | None:
    """`SCRIPT --report RESULTS.json`: an earlier run's tables again and its PNG redrawn, with the
    exit code; None when argv asks for a run instead. Nothing else may come with --report, as
    the settings are the file's."""
    if "--report" not in argv:
        return None
    if len(argv) != 2:
        print(f"usage: {script} --report RESULTS.json  (the tables again, and the PNG redrawn)")
        return 2
    path = Path(argv[1])
    doc = json.loads(path.read_text())
    s = settings_of(doc, settings_cls)
    print_report(s, doc)
    if s.plot:
        write_plot(s, doc, path.with_suffix(".png"))
    return 0


@dataclass(frozen=True)
class Start:
    """When a run began, and how busy the machine was then (for its file name and "meta")."""

    t: float = field(default_factory=time.monotonic)
    load: str = field(default_factory=loadavg)
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))


R = TypeVar("R", bound=PassRunner[Any])


@contextmanager
def running(s: S, make_run: Callable[[S, Progress, Path, LoadGen], R], steps: int, tmp_prefix: str,
            say_kept: bool = False) -> Iterator[R]:
    """A run with its temporary directory, progress line and load generator, all three closed
    however it ends (the directory removed unless --keep; where it is said only if say_kept)."""
    base = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=s.work_dir))
    progress = Progress(steps)
    progress.show("starting the load generator")
    run = make_run(s, progress, base, LoadGen(s.procs))
    try:
        yield run
    finally:
        run.lg.close()  # run.lg, not the one made above: a failed pass replaces it
        progress.finish()
        if not s.keep:
            shutil.rmtree(base, ignore_errors=True)
        elif say_kept:
            print(f"dataDirs and server logs kept in {base}", file=sys.stderr)


def summaries(store: Store) -> dict[str, Any]:
    """store[mode][row][kind], the rounds, as their medians (summarize)."""
    return {mode: {row: {kind: summarize(rounds) for kind, rounds in per.items()}
                   for row, per in rows.items()} for mode, rows in store.items()}


def all_rounds(store: Store) -> dict[str, Any]:
    """store[mode][row][kind], each round as it was (for the JSON)."""
    return {mode: {row: {kind: [r.as_dict() for r in rs] for kind, rs in per.items()}
                   for row, per in rows.items()} for mode, rows in store.items()}


def problems_of(run: PassRunner[Any]) -> list[str]:
    """The run's problems, then the servers' log lines worth a look (each once)."""
    problems = list(run.problems)
    for kind, lines in run.logs.items():
        for line in dict.fromkeys(lines):
            problems.append(f"{kind} log: {line}")
    return problems


def meta_of(s: Shapes, start: Start, elapsed: float, modes: Iterable[str], config: dict[str, str],
            **extra: Any) -> dict[str, Any]:
    """A results document's "meta": enough to tell the runs apart and (settings) to --report it."""
    return {"timestamp": start.stamp, "elapsed_s": elapsed, "versions": versions(),
            "loadavg_start": start.load, "loadavg_end": loadavg(),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(s).items()},
            "shapes": {m: vars(s.mode(m)) for m in modes}, "config": config, **extra}


def save_results(s: S, doc: dict[str, Any], prefix: str, print_report: Callable[[S, dict[str, Any]], None],
                 write_plot: Callable[[S, dict[str, Any], Path], None], elapsed: float) -> None:
    """The end of a run: the tables, then the JSON (and PNG) in s.out_dir named PREFIX-TIMESTAMP."""
    # through JSON once, so that --report on the file prints exactly this
    doc = json.loads(json.dumps(doc, default=str))
    print_report(s, doc)
    s.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = s.out_dir / f"{prefix}-{doc['meta']['timestamp']}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    print()
    print(f"results: {json_path}")
    if s.plot:
        write_plot(s, doc, json_path.with_suffix(".png"))
    print(f"took {elapsed:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    again = report_again(argv, "compare.py", Settings, print_report, write_plot)
    if again is not None:
        return again
    s = parse_args(argv)
    start = Start()
    with running(s, Run, count_steps(s), "zkbench-") as run:
        run.run_load()
        run.run_big_tree()
    elapsed = time.monotonic() - start.t

    summary = summaries(run.load)
    doc = {
        "meta": meta_of(s, start, elapsed, s.modes, common_cfg()),
        "load": summary,
        "load_rounds": all_rounds(run.load),
        "big_tree": run.big,
        "problems": problems_of(run),
    }
    save_results(s, doc, "compare", print_report, write_plot, elapsed)
    return 1 if run.problems and not (summary or run.big) else 0


if __name__ == "__main__":
    sys.exit(main())
