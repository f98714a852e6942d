#!/usr/bin/env python3
"""Do an operator's admin commands stall the clients? zkfast and Apache ZooKeeper 3.8 side by side:

    python bench/admin_stall.py            # 1M watches, 10k sessions, 3 rounds (about 3 minutes)
    python bench/admin_stall.py --watches 100000 --sessions 1000 --rounds 1

Each server in turn (the same zoo.cfg: 4lw whitelist *, the AdminServer on a free port,
maxClientCnxns=0; zkfast also serves Prometheus metrics) gets `--sessions` sessions, each holding one ephemeral znode and `--watches`/`--sessions` exists-watches
on paths that `--watchers-per-path` sessions share (set up through the raw protocol, pipelined; the
sessions stay connected and ping). A probe client (its own process, one request at a time) then calls
exists() continuously while, each round, it first runs alone for `--idle` seconds and then an
operator runs every admin command once, one after the other, reading each answer as fast as it
comes: every four-letter word on the client port, every AdminServer command over HTTP, and, on
zkfast, the Prometheus scrape (Debian's Apache ZooKeeper lacks the Prometheus provider's jars).
A first round warms both servers up (Apache's JIT) and is left out of the totals.

Printed: per round and phase the probe's worst request latency (the stall) and p99 on each server,
with the ratio zkfast/Apache; then per command the answer's size, how long it took, and the probe's
worst latency while it ran. --json writes the figures too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import socket
import struct
import sys
import tempfile
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase, and test_admin's Apache with Jetty)
import uvloop
from compare import common_cfg, fmt, ratio
from loadgen import (
    OP_EXISTS,
    Conn,
    Histogram,
    PipeJob,
    SyncClient,
    make_encoder,
    open_session,
)
from test_admin import ApacheAdminProcess, admin_available
from testbase.process import ServerProcess, ZkfastProcess, free_port
from zkfast._jute import WriteBuffer

from zkfast.net.admin import COMMANDS
from zkfast.net.fourletter import KNOWN
from zkfast.net.metrics import PROMETHEUS_PROVIDER

ROOT = "/adminstall"
WATCHED = ROOT + "/w"  # the watched paths do not exist: exists() leaves a data watch all the same
EPHEMERALS = ROOT + "/e"
SESSION_TIMEOUT_MS = 30_000
PING_INTERVAL_S = 5.0
OPEN_CONCURRENCY = 256  # sessions being opened at once
COMMAND_TIMEOUT_S = 600.0
OP_PING = 11
OP_CREATE = 1
TRACE_MASK = 306  # stmk sets the mask it already has
KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheAdminProcess}


# ------------------------------------------------------------------------------------ the sessions

def ephemeral_encoder(parent: str = EPHEMERALS) -> Any:
    """Session i's ephemeral znode parent/<i>, one create frame."""
    prefix = parent.encode() + b"/"

    def enc(wb: WriteBuffer, xid: int, i: int) -> None:
        s = wb.frame_start()
        wb.write_int(xid)
        wb.write_int(OP_CREATE)
        wb.write_ustring(prefix + b"%08d" % i)
        wb.write_buffer(b"")
        wb.write_acl_list([(31, "world", "anyone")])
        wb.write_int(1)  # EPHEMERAL
        wb.frame_end(s)

    return enc


@dataclass
class Population:
    sessions: int
    watches: int
    watchers_per_path: int

    @property
    def per_session(self) -> int:
        return self.watches // self.sessions

    @property
    def paths(self) -> int:
        return max(1, self.watches // self.watchers_per_path)

    def watched(self, session: int) -> range:
        """The paths session `session` watches: a block that every `blocks`-th session shares."""
        blocks = max(1, self.paths // max(1, self.per_session))
        start = (session % blocks) * self.per_session
        return range(start, start + self.per_session)


async def ping_forever(conns: list[Conn], interval_s: float = PING_INTERVAL_S, ticks: int = 20) -> None:
    """Keep the sessions alive, their pings spread over the interval in `ticks` bursts."""
    frame = struct.pack(">iii", 8, -2, OP_PING)
    slot = 0
    while True:
        await asyncio.sleep(interval_s / ticks)
        for conn in conns[slot::ticks]:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(frame)
        slot = (slot + 1) % ticks


async def _hold(host: str, port: int, pop: Population, pipe: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    watch = make_encoder("watch_register", WATCHED, b"")
    ephemeral = ephemeral_encoder()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    conns: list[Conn] = []
    pinging = asyncio.ensure_future(ping_forever(conns))

    async def one(i: int) -> None:
        async with gate:
            conn = await open_session(loop, host, port, SESSION_TIMEOUT_MS)
            conns.append(conn)
            for keys, enc in ((range(i, i + 1), ephemeral), (pop.watched(i), watch)):
                job = PipeJob(conn, keys, enc, len(keys), array("q"), Counter())
                job.start()
                await job.done

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(pop.sessions)))
    pipe.send(("ready", time.monotonic() - t0))
    while not pipe.poll():
        await asyncio.sleep(0.2)
    pinging.cancel()
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort()


def run_holder(hold: Coroutine[Any, Any, None], pipe: multiprocessing.connection.Connection) -> None:
    """Run a holder process's coroutine on uvloop; what makes it fail goes to the coordinator."""
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(hold)
    except BaseException as e:  # noqa: BLE001 - reported to the coordinator
        pipe.send(("error", repr(e)))
    finally:
        loop.close()


def holder_main(host: str, port: int, pop: Population, pipe: multiprocessing.connection.Connection) -> None:
    """A process holding the sessions and their watches until told to stop."""
    run_holder(_hold(host, port, pop, pipe), pipe)


# ------------------------------------------------------------------------------------ the probe

def probe_main(host: str, port: int, interval_s: float, pipe: multiprocessing.connection.Connection) -> None:
    """exists("/") one request at a time until told to stop; sends (send times, latencies) in ns."""
    client = SyncClient(host, port, SESSION_TIMEOUT_MS)

    def build(wb: WriteBuffer) -> None:
        wb.write_ustring(b"/")
        wb.write_bool(False)

    sent = array("q")
    lat = array("q")
    pipe.send(("ready",))
    while not pipe.poll():
        t0 = time.perf_counter_ns()
        client.request(OP_EXISTS, build)
        t1 = time.perf_counter_ns()
        sent.append(t0)
        lat.append(t1 - t0)
        if interval_s:
            time.sleep(interval_s)
    client.close()
    pipe.send((sent.tobytes(), lat.tobytes()))


# ------------------------------------------------------------------------------------ the operator

@dataclass
class Command:
    name: str  # "4lw wchp", "http watches_by_path", "http /metrics"
    port: int
    request: bytes


def commands(kind: str, client_port: int, admin_port: int, metrics_port: int | None) -> list[Command]:
    out = []
    for word in KNOWN:
        request = word.encode() + (struct.pack(">q", TRACE_MASK) if word == "stmk" else b"")
        out.append(Command(f"4lw {word}", client_port, request))
    for cmd in COMMANDS:
        target = cmd.primary + (f"?traceMask={TRACE_MASK}" if cmd.primary == "set_trace_mask" else "")
        out.append(Command(f"http {cmd.primary}", admin_port,
                           f"GET /commands/{target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()))
    if metrics_port is not None:
        out.append(Command("http /metrics", metrics_port,
                           b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    return out


@dataclass
class Ran:
    name: str
    start_ns: int
    end_ns: int
    size: int


def run_command(cmd: Command) -> Ran:
    """Send the request and read the answer until the server closes, as fast as it comes."""
    t0 = time.perf_counter_ns()
    size = 0
    with socket.create_connection(("127.0.0.1", cmd.port), timeout=COMMAND_TIMEOUT_S) as s:
        s.sendall(cmd.request)
        buf = bytearray(1 << 20)
        while n := s.recv_into(buf):
            size += n
    return Ran(cmd.name, t0, time.perf_counter_ns(), size)


# ------------------------------------------------------------------------------------ one server

@dataclass
class Window:
    round: str  # "warm-up", "1", ...
    phase: str  # "idle", "operator"
    start_ns: int
    end_ns: int


@dataclass
class ServerRun:
    kind: str
    setup_s: float = 0.0
    total_watches: int = 0
    windows: list[Window] = field(default_factory=list)
    ran: list[tuple[str, Ran]] = field(default_factory=list)  # (round, command)
    sent: array = field(default_factory=lambda: array("q"))
    lat: array = field(default_factory=lambda: array("q"))

    def latencies(self, start_ns: int, end_ns: int) -> list[int]:
        """The latencies of the probe requests in flight at some point of [start, end] (one at a
        time: those sent within it, and the one sent last before it if it was still waiting)."""
        lo = max(0, bisect_left(self.sent, start_ns) - 1)
        hi = bisect_right(self.sent, end_ns)
        return [lat for t, lat in zip(self.sent[lo:hi], self.lat[lo:hi], strict=True) if t + lat >= start_ns]


def server_cfg(kind: str, admin_port: int, metrics_port: int) -> dict[str, str]:
    cfg = {**common_cfg(), "admin.enableServer": "true", "admin.serverPort": str(admin_port),
           "admin.serverAddress": "127.0.0.1", "4lw.commands.whitelist": "*"}
    if kind == "zkfast":
        cfg.update({"metricsProvider.className": PROMETHEUS_PROVIDER, "metricsProvider.httpPort": str(metrics_port),
                    "metricsProvider.httpHost": "127.0.0.1"})
    return cfg


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_server(kind: str, args: argparse.Namespace, workdir: Path) -> ServerRun:
    pop = Population(args.sessions, args.watches, args.watchers_per_path)
    admin_port, metrics_port = free_port(), free_port()
    srv = KINDS[kind](server_cfg(kind, admin_port, metrics_port), workdir=workdir / kind)
    srv.start(timeout_s=120)
    run = ServerRun(kind)
    ctx = multiprocessing.get_context("spawn")
    holder_pipe, holder_end = ctx.Pipe()
    probe_pipe, probe_end = ctx.Pipe()
    holder = ctx.Process(target=holder_main, args=(srv.host, srv.port, pop, holder_end), daemon=True)
    probe = ctx.Process(target=probe_main, args=(srv.host, srv.port, args.probe_interval_ms / 1000, probe_end),
                        daemon=True)
    try:
        setup = SyncClient(srv.host, srv.port)
        for path in (ROOT, EPHEMERALS):
            setup.create(path)
        setup.close()
        log(f"{kind}: {pop.sessions:,} sessions, {pop.sessions * pop.per_session:,} watches ...")
        holder.start()
        msg = holder_pipe.recv()
        if msg[0] != "ready":
            raise RuntimeError(f"{kind}: setting up the sessions failed: {msg[1]}")
        run.setup_s = msg[1]
        wchs = srv.four_letter("wchs")
        run.total_watches = int(wchs.rsplit(":", 1)[1])
        log(f"{kind}: set up in {run.setup_s:.1f} s: {wchs.strip()}")
        probe.start()
        assert probe_pipe.recv() == ("ready",)
        ops = commands(kind, srv.port, admin_port, metrics_port if kind == "zkfast" else None)
        for r in ["warm-up", *map(str, range(1, args.rounds + 1))]:
            t0 = time.perf_counter_ns()
            time.sleep(args.idle)
            t1 = time.perf_counter_ns()
            run.windows.append(Window(r, "idle", t0, t1))
            for cmd in ops:
                run.ran.append((r, run_command(cmd)))
            run.windows.append(Window(r, "operator", t1, time.perf_counter_ns()))
            log(f"{kind}: round {r}: operator loop {(time.perf_counter_ns() - t1) / 1e9:.1f} s")
        probe_pipe.send("stop")
        sent, lat = probe_pipe.recv()
        run.sent.frombytes(sent)
        run.lat.frombytes(lat)
        holder_pipe.send("stop")
        holder.join(30)
        probe.join(30)
    finally:
        for p in (holder, probe):
            if p.is_alive():
                p.kill()
        srv.stop()
        srv.cleanup()
    return run


# ------------------------------------------------------------------------------------ the report

def stall_figures(lat: list[int]) -> dict[str, float | None]:
    if not lat:
        return {"worst_ms": None, "p99_ms": None, "requests": 0}
    h = Histogram.of(lat)
    return {"worst_ms": max(lat) / 1e6, "p99_ms": h.percentile(99) / 1e6, "requests": len(lat)}


def summarize(run: ServerRun) -> dict[str, Any]:
    phases: dict[str, dict[str, Any]] = {}
    for w in run.windows:
        phases[f"{w.round} {w.phase}"] = stall_figures(run.latencies(w.start_ns, w.end_ns))
    measured = [w for w in run.windows if w.round != "warm-up"]
    for phase in ("idle", "operator"):
        lat: list[int] = []
        for w in measured:
            if w.phase == phase:
                lat.extend(run.latencies(w.start_ns, w.end_ns))
        phases[f"all {phase}"] = stall_figures(lat)
    per_command: dict[str, dict[str, Any]] = {}
    for r, ran in run.ran:
        if r == "warm-up":
            continue
        worst = max(run.latencies(ran.start_ns, ran.end_ns), default=0) / 1e6
        c = per_command.setdefault(ran.name, {"bytes": ran.size, "seconds": 0.0, "probe_worst_ms": 0.0})
        c["seconds"] = max(c["seconds"], (ran.end_ns - ran.start_ns) / 1e9)
        c["probe_worst_ms"] = max(c["probe_worst_ms"], worst)
    return {"setup_s": run.setup_s, "total_watches": run.total_watches, "phases": phases, "commands": per_command}


def print_report(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    kinds = list(doc["servers"])
    a, z = ("apache", "zkfast")
    both = a in kinds and z in kinds
    pop = Population(args.sessions, args.watches, args.watchers_per_path)
    print(f"admin commands vs a probe client: {pop.sessions:,} sessions, {pop.sessions * pop.per_session:,} "
          f"watches on {pop.paths:,} paths, an ephemeral per session; {args.rounds} rounds after a warm-up")
    for k in kinds:
        s = doc["servers"][k]
        print(f"  {k}: set up in {s['setup_s']:.1f} s, wchs counts {s['total_watches']:,} watches")
    head = f"{'round / phase':<20}" + "".join(f"{k + ' worst':>15}{k + ' p99':>13}" for k in kinds)
    print("\nprobe exists() latency, ms\n" + head + (f"{'worst z/A':>11}{'p99 z/A':>10}" if both else ""))
    for phase in doc["servers"][kinds[0]]["phases"]:
        row = f"{phase:<20}"
        for k in kinds:
            f = doc["servers"][k]["phases"].get(phase, {})
            row += f"{fmt(f.get('worst_ms'), 'ms'):>15}{fmt(f.get('p99_ms'), 'ms'):>13}"
        if both:
            fa, fz = doc["servers"][a]["phases"].get(phase, {}), doc["servers"][z]["phases"].get(phase, {})
            row += f"{ratio(fz.get('worst_ms'), fa.get('worst_ms')):>11}{ratio(fz.get('p99_ms'), fa.get('p99_ms')):>10}"
        print(row)
    print("\nper command (the longest of the rounds): answer bytes, seconds, probe's worst ms while it ran")
    print(f"{'command':<36}" + "".join(f"{k + ' bytes':>16}{'s':>8}{'worst':>10}" for k in kinds))
    names = list(dict.fromkeys(n for k in kinds for n in doc["servers"][k]["commands"]))
    for name in names:
        row = f"{name:<36}"
        for k in kinds:
            c = doc["servers"][k]["commands"].get(name)
            row += (f"{c['bytes']:>16,}{c['seconds']:>8.2f}{fmt(c['probe_worst_ms'], 'ms'):>10}" if c
                    else f"{'-':>16}{'-':>8}{'-':>10}")
        print(row)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="apache,zkfast", help="comma-separated: zkfast, apache")
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--watches", type=int, default=1_000_000, help="over all sessions")
    ap.add_argument("--watchers-per-path", type=int, default=10, help="sessions sharing each watched path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=2.0, help="seconds the probe runs alone each round")
    ap.add_argument("--probe-interval-ms", type=float, default=0.0, help="pause between probe requests")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    kinds = args.servers.split(",")
    if not set(kinds) <= set(KINDS):
        ap.error(f"--servers: pick from {', '.join(KINDS)}")
    if "apache" in kinds and not admin_available():
        ap.error("Apache ZooKeeper 3.8 with Jetty is not installed (apt-get install zookeeper)")
    if args.sessions < 1 or args.watches < args.sessions:
        ap.error("--watches must be at least --sessions (>= 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    doc: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json) if args.json else None},
                           "servers": {}}
    with tempfile.TemporaryDirectory(prefix="admin-stall-") as tmp:
        for kind in args.servers.split(","):
            doc["servers"][kind] = summarize(run_server(kind, args, Path(tmp)))
    print_report(args, doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=asdict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
