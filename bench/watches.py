#!/usr/bin/env python3
"""Millions of watches on one server, zkfast and Apache ZooKeeper 3.8 in the same run:

    python bench/watches.py                    # 1,000 sessions x 10,000 paths = 10M watches
    python bench/watches.py --sessions 100 --paths 1000 --fan 1000 --rounds 3

Each server in turn (zoo.cfg as bench/compare.py's) gets `--paths` znodes under /watches/p and
`--sessions` raw-protocol sessions, held by `--processes` holder processes (each from its own
127.0.0.x source address, pinging every 5 s). Phases:

  register  every session registers a watch on every path, pipelined: a data watch (exists) on
            half of them and a child watch (getChildren) on the other half, alternating, so each
            path has both kinds from half of the sessions; with --recursive each session adds a
            persistent recursive watch (addWatch) on /watches too. Timed from the first request to
            the last reply.
  fan-out   `--fan` more sessions each set an exists-watch on /fan; a client changes /fan; timed
            from sending setData until the last watcher has its NodeDataChanged (p50 and last),
            `--rounds` times (the watches are set again each round).
  close     every holder drops its connections: the watches go with them (timed until `wchs`
            shows no watched path).

Printed per server: RSS growth per watch (VmRSS after registering minus VmRSS with the sessions
open, /proc); for Apache also its live heap per watch (the Total of `jcmd PID GC.class_histogram`,
which runs a full GC first); the time to register them all; the fan-out times (medians); the
RSS given back when the sessions close. Then the zkfast / Apache ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import re
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase)
import uvloop
from admin_stall import ping_forever, run_holder
from compare import SideBySide, common_cfg
from loadgen import (
    OP_EXISTS,
    OP_GET_CHILDREN,
    OP_SET_DATA,
    Conn,
    PipeJob,
    SyncClient,
    make_encoder,
    open_session,
    proc_rss_bytes,
)
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess
from zkfast._jute import WriteBuffer

ROOT = "/watches"
PATHS = ROOT + "/p"
FAN = "/fan"
OP_ADD_WATCH = 106
PERSISTENT_RECURSIVE = 1
EVENT_NODE_DATA_CHANGED = 3
SESSION_TIMEOUT_MS = 30_000
OPEN_CONCURRENCY = 128  # sessions being opened at once per holder
REGISTER_DEPTH = 64  # requests outstanding per session while registering
FIRST_SOURCE_HOST = 10  # holders connect from 127.0.0.10, .11, ...
KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def path_of(i: int) -> bytes:
    return b"%s/%08d" % (PATHS.encode(), i)


def watch_encoder(session: int) -> Callable[[WriteBuffer, int, int], None]:
    """Key i: a data watch (exists) or a child watch (getChildren) on path i, alternating by session."""

    def enc(wb: WriteBuffer, xid: int, i: int) -> None:
        s = wb.frame_start()
        wb.write_int(xid)
        wb.write_int(OP_EXISTS if (i + session) % 2 == 0 else OP_GET_CHILDREN)
        wb.write_ustring(path_of(i))
        wb.write_bool(True)
        wb.frame_end(s)

    return enc


def add_watch_encoder(path: bytes) -> Callable[[WriteBuffer, int, int], None]:
    def enc(wb: WriteBuffer, xid: int, i: int) -> None:
        s = wb.frame_start()
        wb.write_int(xid)
        wb.write_int(OP_ADD_WATCH)
        wb.write_ustring(path)
        wb.write_int(PERSISTENT_RECURSIVE)
        wb.frame_end(s)

    return enc


def exists_watch(wb: WriteBuffer, xid: int, i: int) -> None:
    s = wb.frame_start()
    wb.write_int(xid)
    wb.write_int(OP_EXISTS)
    wb.write_ustring(FAN.encode())
    wb.write_bool(True)
    wb.frame_end(s)


async def run_jobs(conns: list[Conn], jobs: Callable[[int, Conn], PipeJob]) -> Counter[int]:
    """One PipeJob per connection, all at once; the error codes they got."""
    errors: Counter[int] = Counter()
    started = []
    for i, conn in enumerate(conns):
        job = jobs(i, conn)
        job.errors = errors
        job.start()
        started.append(job.done)
    await asyncio.gather(*started)
    return errors


# ------------------------------------------------------------------------------------ the holders

@dataclass
class Share:
    """What one holder process holds."""

    first_session: int
    sessions: int
    fan_sessions: int
    paths: int
    recursive: bool
    source_ip: str


async def _hold(host: str, port: int, share: Share, pipe: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    fan_events: list[int] = []

    def on_fan_event(path: bytes, typ: int, now: int) -> None:
        if typ == EVENT_NODE_DATA_CHANGED and path == FAN.encode():
            fan_events.append(now)

    async def open_many(n: int, on_event: Any = None) -> list[Conn]:
        async def one() -> Conn:
            async with gate:
                return await open_session(loop, host, port, SESSION_TIMEOUT_MS, on_event=on_event,
                                          source_ip=share.source_ip)
        return list(await asyncio.gather(*(one() for _ in range(n))))

    conns = await open_many(share.sessions)
    fans = await open_many(share.fan_sessions, on_fan_event)
    pinging = asyncio.ensure_future(ping_forever(conns + fans))
    pipe.send(("open",))
    lat = array("q")
    while True:
        while not pipe.poll():
            await asyncio.sleep(0.01)
        cmd = pipe.recv()
        if cmd[0] == "register":
            t0 = time.perf_counter_ns()
            errors = await run_jobs(conns, lambda i, c: PipeJob(
                c, range(share.paths), watch_encoder(share.first_session + i), REGISTER_DEPTH, lat, Counter()))
            if share.recursive:
                errors += await run_jobs(conns, lambda i, c: PipeJob(
                    c, range(1), add_watch_encoder(ROOT.encode()), 1, lat, Counter()))
            del lat[:]
            pipe.send(("registered", t0, time.perf_counter_ns(), dict(errors)))
        elif cmd[0] == "arm":
            fan_events.clear()
            errors = await run_jobs(fans, lambda i, c: PipeJob(c, range(1), exists_watch, 1, lat, Counter()))
            del lat[:]
            pipe.send(("armed", dict(errors)))
        elif cmd[0] == "collect":
            deadline = time.monotonic() + 120
            while len(fan_events) < len(fans) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            pipe.send(("events", array("q", fan_events).tobytes(), len(fans)))
        elif cmd[0] == "close":
            pinging.cancel()
            for conn in conns + fans:
                if conn.transport is not None:
                    conn.transport.abort()
            pipe.send(("closed",))
            return


def holder_main(host: str, port: int, share: Share, pipe: multiprocessing.connection.Connection) -> None:
    run_holder(_hold(host, port, share, pipe), pipe)


# ------------------------------------------------------------------------------------ one server

@dataclass
class ServerRun:
    kind: str
    watches: int
    rss_sessions_bytes: int = 0
    rss_watches_bytes: int = 0
    rss_closed_bytes: int = 0
    heap_sessions_bytes: int | None = None  # Apache: live heap after a full GC
    heap_watches_bytes: int | None = None
    heap_closed_bytes: int | None = None
    register_s: float = 0.0
    forget_s: float = 0.0  # from dropping the connections until wchs shows no watched path
    fan_p50_ms: list[float] = field(default_factory=list)
    fan_last_ms: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)

    @property
    def rss_per_watch_bytes(self) -> float:
        return (self.rss_watches_bytes - self.rss_sessions_bytes) / self.watches

    @property
    def heap_per_watch_bytes(self) -> float | None:
        if self.heap_watches_bytes is None or self.heap_sessions_bytes is None:
            return None
        return (self.heap_watches_bytes - self.heap_sessions_bytes) / self.watches

    @property
    def returned_fraction(self) -> float:
        grown = self.rss_watches_bytes - self.rss_sessions_bytes
        return (self.rss_watches_bytes - self.rss_closed_bytes) / grown if grown > 0 else 0.0


def live_heap_bytes(pid: int) -> int:
    """The JVM's live objects: `jcmd GC.class_histogram` runs a full GC and totals what is left."""
    out = subprocess.run(["jcmd", str(pid), "GC.class_histogram"], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    for line in reversed(out.splitlines()):
        if line.startswith("Total"):
            return int(line.split()[2])
    raise RuntimeError(f"jcmd printed no Total: {out[-500:]}")


def watched_paths(srv: ServerProcess) -> int | None:
    """The paths `wchs` says are watched; None while the server is too busy to answer."""
    try:
        text = srv.four_letter("wchs")
    except (TimeoutError, OSError):
        return None
    m = re.search(r"watching (\d+) paths", text)
    if m is None:
        raise RuntimeError(f"wchs answered {text!r}")
    return int(m.group(1))


def settled_rss(pid: int, settle_s: float) -> int:
    time.sleep(settle_s)
    return proc_rss_bytes(pid)


async def create_paths(host: str, port: int, paths: int) -> None:
    loop = asyncio.get_running_loop()
    conn = await open_session(loop, host, port, SESSION_TIMEOUT_MS)
    errors = await run_jobs([conn], lambda i, c: PipeJob(c, range(paths), make_encoder("create", PATHS, b"x"),
                                                        128, array("q"), Counter()))
    if errors:
        raise RuntimeError(f"creating the paths: errors {dict(errors)}")
    await conn.close_session()


def part(k: int, parts: int, n: int) -> tuple[int, int]:
    """Part k of n things split into `parts`: (first, count)."""
    return k * n // parts, (k + 1) * n // parts - k * n // parts


def expect(pipes: list[multiprocessing.connection.Connection], tag: str) -> list[tuple[Any, ...]]:
    out = []
    for here in pipes:
        msg = here.recv()
        if msg[0] != tag:
            raise RuntimeError(f"a holder answered {msg[0]}: {msg[1:]}")
        out.append(msg)
    return out


def run_server(kind: str, args: argparse.Namespace, workdir: Path) -> ServerRun:
    srv = KINDS[kind](common_cfg(), workdir=workdir / kind)
    srv.start(timeout_s=120)
    pid = srv.pid
    assert pid is not None
    total = args.sessions * args.paths + (args.sessions if args.recursive else 0)
    run = ServerRun(kind, total)
    ctx = multiprocessing.get_context("spawn")
    holders: list[multiprocessing.process.BaseProcess] = []
    pipes: list[multiprocessing.connection.Connection] = []
    try:
        setup = SyncClient(srv.host, srv.port)
        for path in (ROOT, PATHS, FAN):
            setup.create(path)
        setup.close()  # it would not ping through the long registration
        uvloop.run(create_paths(srv.host, srv.port, args.paths))
        for k in range(args.processes):
            first, count = part(k, args.processes, args.sessions)
            share = Share(first, count, part(k, args.processes, args.fan)[1], args.paths, args.recursive,
                          f"127.0.0.{FIRST_SOURCE_HOST + k}")
            here, there = ctx.Pipe()
            h = ctx.Process(target=holder_main, args=(srv.host, srv.port, share, there), daemon=True)
            h.start()
            holders.append(h)
            pipes.append(here)
        expect(pipes, "open")
        log(f"{kind}: {args.sessions:,} + {args.fan:,} sessions open")
        run.rss_sessions_bytes = settled_rss(pid, args.settle_s)
        if kind == "apache":
            run.heap_sessions_bytes = live_heap_bytes(pid)
        for here in pipes:
            here.send(("register",))
        done = expect(pipes, "registered")
        run.register_s = (max(m[2] for m in done) - min(m[1] for m in done)) / 1e9
        for m in done:
            for err, n in m[3].items():
                run.errors[err] = run.errors.get(err, 0) + n
        log(f"{kind}: {total:,} watches registered in {run.register_s:.1f} s; errors {run.errors}")
        run.rss_watches_bytes = settled_rss(pid, args.settle_s)
        if kind == "apache":
            run.heap_watches_bytes = live_heap_bytes(pid)
        for r in range(args.rounds):
            for here in pipes:
                here.send(("arm",))
            expect(pipes, "armed")
            setup = SyncClient(srv.host, srv.port)
            t0 = time.perf_counter_ns()
            setup.request(OP_SET_DATA, lambda wb, r=r: (wb.write_ustring(FAN.encode()),
                                                         wb.write_buffer(b"%d" % r), wb.write_int(-1)))
            setup.close()
            for here in pipes:
                here.send(("collect",))
            events = array("q")
            expected = 0
            for m in expect(pipes, "events"):
                events.frombytes(m[1])
                expected += m[2]
            if len(events) < expected:
                raise RuntimeError(f"{kind}: fan-out round {r}: {len(events)} of {expected} events arrived")
            ms = sorted((t - t0) / 1e6 for t in events)
            run.fan_p50_ms.append(ms[len(ms) // 2] if ms else 0.0)
            run.fan_last_ms.append(ms[-1] if ms else 0.0)
            log(f"{kind}: fan-out round {r}: {len(ms):,} events, p50 {run.fan_p50_ms[-1]:.1f} ms, "
                f"last {run.fan_last_ms[-1]:.1f} ms")
        for here in pipes:
            here.send(("close",))
        expect(pipes, "closed")
        t_close = time.perf_counter_ns()
        deadline = time.monotonic() + 300
        while watched_paths(srv) != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: the closed sessions' watches stayed")
            time.sleep(0.05)
        run.forget_s = (time.perf_counter_ns() - t_close) / 1e9
        run.rss_closed_bytes = settled_rss(pid, args.settle_s)
        if kind == "apache":
            run.heap_closed_bytes = live_heap_bytes(pid)
    finally:
        for h in holders:
            h.join(5)
            if h.is_alive():
                h.kill()
        srv.stop()
        srv.cleanup()
    return run


# ------------------------------------------------------------------------------------ the report

def report(runs: list[ServerRun], args: argparse.Namespace) -> str:
    mib = 1024 * 1024
    table = SideBySide([r.kind for r in runs])
    row = table.row
    row("RSS per watch", [r.rss_per_watch_bytes for r in runs], " B")
    row("live heap per watch (after full GC)", [r.heap_per_watch_bytes for r in runs], " B")
    row("RSS for the watches", [(r.rss_watches_bytes - r.rss_sessions_bytes) / mib for r in runs], " MiB")
    row("register them all", [r.register_s for r in runs], " s")
    row("fan-out p50", [median(r.fan_p50_ms) if r.fan_p50_ms else None for r in runs], " ms")
    row("fan-out last watcher", [median(r.fan_last_ms) if r.fan_last_ms else None for r in runs], " ms")
    row("close all: until no watch is left", [r.forget_s for r in runs], " s")
    row("RSS given back on close", [100 * r.returned_fraction for r in runs], " %")
    row("live heap left after close, over before",
        [None if r.heap_closed_bytes is None or r.heap_sessions_bytes is None
         else (r.heap_closed_bytes - r.heap_sessions_bytes) / mib for r in runs], " MiB")
    return (f"{args.sessions:,} sessions x {args.paths:,} paths"
            f"{' + one recursive watch each' if args.recursive else ''} = {runs[0].watches:,} watches; "
            f"fan-out to {args.fan:,} watchers, {args.rounds} rounds (medians)\n\n" + table.text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=1_000)
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--fan", type=int, default=10_000, help="sessions watching /fan")
    ap.add_argument("--rounds", type=int, default=3, help="fan-out rounds")
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--settle-s", type=float, default=2.0, help="wait before reading RSS")
    ap.add_argument("--no-recursive", dest="recursive", action="store_false")
    ap.add_argument("--kinds", default="zkfast,apache")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="zkfast-watches-") as tmp:
        for kind in args.kinds.split(","):
            runs.append(run_server(kind, args, Path(tmp)))
    print(report(runs, args))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "rss_per_watch_bytes": r.rss_per_watch_bytes,
                                          "heap_per_watch_bytes": r.heap_per_watch_bytes} for r in runs],
                                        indent=1))
    for r in runs:
        if r.errors:
            log(f"{r.kind}: requests failed: {r.errors}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
