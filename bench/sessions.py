#!/usr/bin/env python3
"""As many client sessions as one server process may hold here, zkfast and Apache ZooKeeper 3.8 in
the same run:

    python bench/sessions.py                    # 19,000 sessions (the open-file limit is 20,000)
    python bench/sessions.py --sessions 2000 --steady 5

Each server in turn (zoo.cfg as bench/compare.py's: tickTime 2000, fsync on, maxClientCnxns=0) gets
`--sessions` raw-protocol sessions opened by `--processes` holder processes, each from its own
127.0.0.x source address; every session creates one ephemeral znode and then pings at a third of its
timeout (`--timeout-ms`), as the Java and C clients do when idle. A probe client (its own process,
one exists() at a time, `--probe-interval-ms` apart) runs throughout. Phases:

  open     the sessions are opened (and their ephemerals created)
  steady   `--steady` seconds of pings only: the server's CPU per second
  disconnect  every holder killed at once (SIGKILL): from the kill until the server has closed
           every one of their connections (the sessions stay until their timeout)
  expiry   from there until the last ephemeral is gone: every session expires at about the same
           moment and its closeSession deletes its znode

Printed per server: the server's RSS growth per session (VmRSS with the sessions open minus VmRSS
before, /proc), CPU milliseconds per second while only pings flow, the time to open and to expire
them all, the RSS left after expiry, and the probe's p50/p99/worst latency in each phase; then
zkfast/Apache ratios and RSS extrapolated to 100,000 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase)
from admin_stall import ephemeral_encoder, ping_forever, probe_main, run_holder
from compare import SideBySide, common_cfg
from loadgen import Conn, PipeJob, SyncClient, open_session, proc_cpu_seconds, proc_rss_bytes
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess

ROOT = "/sessions"
EPHEMERALS = ROOT + "/e"
OPEN_CONCURRENCY = 128  # sessions being opened at once per holder
FIRST_SOURCE_HOST = 10  # holders connect from 127.0.0.10, .11, ...
PING_BURSTS_PER_INTERVAL = 200
KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ the holders

async def _hold(host: str, port: int, first: int, count: int, timeout_ms: int, source_ip: str,
                pipe: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    ephemeral = ephemeral_encoder(EPHEMERALS)
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    conns: list[Conn] = []

    async def one(i: int) -> None:
        async with gate:
            conn = await open_session(loop, host, port, timeout_ms, source_ip=source_ip)
            conns.append(conn)
            job = PipeJob(conn, range(i, i + 1), ephemeral, 1, array("q"), {})  # type: ignore[arg-type]
            job.start()
            await job.done

    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    pipe.send(("ready",))
    # real clients ping whenever their own idle time runs out: spread finely, not in a few bursts
    await ping_forever(conns, timeout_ms / 3000, PING_BURSTS_PER_INTERVAL)


def holder_main(host: str, port: int, first: int, count: int, timeout_ms: int, source_ip: str,
                pipe: multiprocessing.connection.Connection) -> None:
    """Open sessions first..first+count from source_ip, then keep them alive until killed."""
    run_holder(_hold(host, port, first, count, timeout_ms, source_ip, pipe), pipe)


# ------------------------------------------------------------------------------------ one server

@dataclass
class Phase:
    name: str
    start_ns: int
    end_ns: int


@dataclass
class ServerRun:
    kind: str
    sessions: int
    open_s: float = 0.0
    rss_before_bytes: int = 0
    rss_open_bytes: int = 0
    rss_after_expiry_bytes: int = 0
    steady_cpu_ms_per_s: float = 0.0
    expiry_s: float = 0.0
    phases: list[Phase] = field(default_factory=list)
    sent: array = field(default_factory=lambda: array("q"))
    lat: array = field(default_factory=lambda: array("q"))

    @property
    def rss_per_session_bytes(self) -> float:
        return (self.rss_open_bytes - self.rss_before_bytes) / self.sessions

    def latencies_ms(self, phase: Phase) -> list[float]:
        """Latencies of the probe requests in flight during the phase."""
        lo = max(0, bisect_left(self.sent, phase.start_ns) - 1)
        hi = bisect_right(self.sent, phase.end_ns)
        return sorted(lat / 1e6 for t, lat in zip(self.sent[lo:hi], self.lat[lo:hi], strict=True)
                      if t + lat >= phase.start_ns)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def mntr_value(srv: ServerProcess, key: str) -> int:
    for line in srv.four_letter("mntr").splitlines():
        k, _, value = line.partition("\t")
        if k == key:
            return int(value)
    raise RuntimeError(f"mntr has no {key}")


def run_server(kind: str, args: argparse.Namespace, workdir: Path) -> ServerRun:
    cfg = {**common_cfg(), "maxSessionTimeout": str(max(args.timeout_ms, 40_000))}
    srv = KINDS[kind](cfg, workdir=workdir / kind)
    srv.start(timeout_s=120)
    pid = srv.pid
    assert pid is not None
    run = ServerRun(kind, args.sessions)
    ctx = multiprocessing.get_context("spawn")
    probe_pipe, probe_end = ctx.Pipe()
    probe = ctx.Process(target=probe_main, args=(srv.host, srv.port, args.probe_interval_ms / 1000, probe_end),
                        daemon=True)
    holders: list[multiprocessing.process.BaseProcess] = []
    pipes = []
    try:
        setup = SyncClient(srv.host, srv.port)
        for path in (ROOT, EPHEMERALS):
            setup.create(path)
        setup.close()
        time.sleep(1)
        run.rss_before_bytes = proc_rss_bytes(pid)
        probe.start()
        assert probe_pipe.recv() == ("ready",)
        per = -(-args.sessions // args.processes)
        t0 = time.perf_counter_ns()
        for k in range(args.processes):
            first = k * per
            count = min(per, args.sessions - first)
            here, there = ctx.Pipe()
            h = ctx.Process(target=holder_main, args=(srv.host, srv.port, first, count, args.timeout_ms,
                                                      f"127.0.0.{FIRST_SOURCE_HOST + k}", there), daemon=True)
            h.start()
            holders.append(h)
            pipes.append(here)
        for here in pipes:
            msg = here.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"{kind}: a holder failed: {msg[1]}")
        t1 = time.perf_counter_ns()
        run.open_s = (t1 - t0) / 1e9
        run.phases.append(Phase("open", t0, t1))
        log(f"{kind}: {args.sessions:,} sessions open in {run.open_s:.1f} s")
        time.sleep(2)  # the last creates' garbage collected, pings settled
        run.rss_open_bytes = proc_rss_bytes(pid)
        cpu0, t2 = proc_cpu_seconds(pid), time.perf_counter_ns()
        time.sleep(args.steady)
        cpu1, t3 = proc_cpu_seconds(pid), time.perf_counter_ns()
        run.steady_cpu_ms_per_s = (cpu1 - cpu0) * 1000 / ((t3 - t2) / 1e9)
        run.phases.append(Phase("steady", t2, t3))
        log(f"{kind}: steady {run.steady_cpu_ms_per_s:.1f} ms CPU per s; killing the holders")
        for h in holders:
            if h.pid is not None:
                os.kill(h.pid, signal.SIGKILL)
        t4 = time.perf_counter_ns()
        deadline = time.monotonic() + args.timeout_ms / 1000 * 3 + 120
        # the probe's connection and mntr's own are left
        while mntr_value(srv, "zk_num_alive_connections") > 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: the holders' connections stayed open")
            time.sleep(0.05)
        t5 = time.perf_counter_ns()
        run.phases.append(Phase("disconnect", t4, t5))
        while mntr_value(srv, "zk_ephemerals_count") > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: sessions did not expire")
            time.sleep(0.1)
        t6 = time.perf_counter_ns()
        run.expiry_s = (t6 - t4) / 1e9
        run.phases.append(Phase("expiry", t5, t6))
        log(f"{kind}: every session expired {run.expiry_s:.1f} s after the kill")
        time.sleep(2)
        run.rss_after_expiry_bytes = proc_rss_bytes(pid)
        probe_pipe.send("stop")
        sent, lat = probe_pipe.recv()
        run.sent.frombytes(sent)
        run.lat.frombytes(lat)
        probe.join(30)
    finally:
        for p in (probe, *holders):
            if p.is_alive():
                p.kill()
        srv.stop()
        srv.cleanup()
    return run


# ------------------------------------------------------------------------------------ the report

def report(runs: list[ServerRun], args: argparse.Namespace) -> str:
    mib = 1024 * 1024
    table = SideBySide([r.kind for r in runs])
    row = table.row
    row("RSS per session", [r.rss_per_session_bytes for r in runs], " B")
    row("RSS at 100,000 sessions (extrapolated)",
        [(r.rss_before_bytes + 100_000 * r.rss_per_session_bytes) / mib for r in runs], " MiB")
    row("open all sessions", [r.open_s for r in runs], " s")
    row("CPU while only pings flow", [r.steady_cpu_ms_per_s for r in runs], " ms/s")
    row("kill to last session expired", [r.expiry_s for r in runs], " s")
    row("RSS after expiry, over before", [(r.rss_after_expiry_bytes - r.rss_before_bytes) / mib for r in runs],
        " MiB")
    for name in ("open", "steady", "disconnect", "expiry"):
        for q, label in ((0.5, "p50"), (0.99, "p99"), (1.0, "worst")):
            vals = []
            for r in runs:
                ph = next(p for p in r.phases if p.name == name)
                vals.append(percentile(r.latencies_ms(ph), q))
            row(f"probe {label} during {name}", vals, " ms")
    return (f"{args.sessions:,} sessions, timeout {args.timeout_ms} ms, {args.processes} holder processes\n\n"
            + table.text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=19_000)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--timeout-ms", type=int, default=10_000)
    ap.add_argument("--steady", type=float, default=20.0, help="seconds of pings only")
    ap.add_argument("--probe-interval-ms", type=float, default=5.0)
    ap.add_argument("--kinds", default="zkfast,apache")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="zkfast-sessions-") as tmp:
        for kind in args.kinds.split(","):
            runs.append(run_server(kind, args, Path(tmp)))
    print(report(runs, args))
    if args.json:
        out: list[dict[str, Any]] = []
        for r in runs:
            d = asdict(r)
            d.pop("sent"), d.pop("lat")
            out.append(d)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
