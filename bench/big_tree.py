#!/usr/bin/env python3
"""A very big tree on one server: create, kill -9, restart from the log, kill -9, restart from the
snapshot, serve; zkfast and Apache ZooKeeper 3.8 one after the other:

    python bench/big_tree.py                                 # 10,000,000 znodes of 100 bytes
    python bench/big_tree.py --znodes 100000 --apache-heaps 1g

Each server gets bench/compare.py's zoo.cfg with snapCount above the tree's size (no snapshot while
creating: dozens of multi-GB snapshots would pile up) and the default autopurge off; `--znodes`
znodes of `--data-size` bytes are created under /zkbench/m by the load generator (8 connections x
depth 16 x 2 processes). Then:

  kill -9, restart   the whole tree is replayed from the txn log; start-up ends with a snapshot
                     (Apache's loadData writes it before serving, zkfast in the background: the
                     bench waits until it is complete)
  kill -9, restart   the tree comes from that snapshot; the log after it is empty

Start-up = process start until `srvr` answers `Mode:`. After each start a client checks the tree is
there (the znode count in `mntr`, a getData of the last znode). Printed per server: create rate,
RSS per znode live and after the restart from the snapshot (VmRSS minus the empty server's), the
snapshot's size on disk, both start-up times. Apache runs once per heap in `--apache-heaps`
(-Xmx, with -XX:+ExitOnOutOfMemoryError), smallest first, until one completes; the ones that
failed are reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase)
from compare import BIG_PARENT, SideBySide, common_cfg, server_pid
from loadgen import OP_GET_DATA, LoadGen, Spec, SyncClient, key_path, proc_rss_bytes, setup_tree
from sessions import mntr_value
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess

KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}
CONNS, DEPTH, PROCS = 8, 16, 2
START_TIMEOUT_S = 3600


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


@dataclass
class Run:
    kind: str
    znodes: int
    heap: str | None = None
    completed: bool = False
    failure: str = ""
    rss_empty_bytes: int = 0
    create_ops_per_s: float = 0.0
    rss_created_bytes: int = 0
    startup_from_log_s: float = 0.0
    snapshot_bytes: int = 0
    snapshot_after_start_s: float = 0.0  # from serving until the start-up snapshot is complete
    startup_from_snapshot_s: float = 0.0
    rss_restarted_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def per_znode(self, rss: int) -> float:
        return (rss - self.rss_empty_bytes) / self.znodes


def snapshots(data_dir: Path) -> dict[str, Path]:
    """The finished snapshots: Apache's snapshot.<zxid> files, zkfast's zkfast-snap.<zxid> directories."""
    d = data_dir / "version-2"
    return {e.name: Path(e.path) for e in os.scandir(d)
            if e.name.startswith(("snapshot.", "zkfast-snap.")) and not e.name.endswith(".tmp")}


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def start(srv: ServerProcess) -> float:
    t0 = time.monotonic()
    srv.start(timeout_s=START_TIMEOUT_S)
    return time.monotonic() - t0


def check_tree(srv: ServerProcess, znodes: int) -> None:
    count = mntr_value(srv, "zk_znode_count")
    if count < znodes:
        raise RuntimeError(f"{srv.kind}: {count} znodes after the restart, {znodes} created")
    c = SyncClient(srv.host, srv.port)
    try:
        last = key_path(BIG_PARENT, znodes - 1)
        err = c.request(OP_GET_DATA, lambda wb: (wb.write_ustring(last), wb.write_bool(False)))
        if err:
            raise RuntimeError(f"{srv.kind}: getData({last.decode()}) failed with {err}")
    finally:
        c.close()


def run_server(kind: str, heap: str | None, args: argparse.Namespace, lg: LoadGen, workdir: Path) -> Run:
    run = Run(kind, args.znodes, heap)
    cfg = {**common_cfg(), "snapCount": str(2 * args.znodes + 100_000)}
    env = {"JAVA_TOOL_OPTIONS": f"-Xmx{heap} -XX:+ExitOnOutOfMemoryError"} if heap else None
    work = workdir / f"{kind}-{heap or 'default'}"
    srv = KINDS[kind](cfg, workdir=work, env=env)
    try:
        start(srv)
        time.sleep(0.5)
        run.rss_empty_bytes = proc_rss_bytes(server_pid(srv))
        setup_tree(srv.host, srv.port, (BIG_PARENT,))
        log(f"{kind} {heap or ''}: creating {args.znodes:,} znodes")
        res = lg.run(Spec(srv.host, srv.port, "create", args.znodes, 0.0, CONNS, DEPTH, PROCS, args.data_size,
                          BIG_PARENT), server_pid(srv))
        if res.errors:
            raise RuntimeError(f"create errors {res.errors}")
        run.create_ops_per_s = res.ops_per_s
        time.sleep(1)
        run.rss_created_bytes = proc_rss_bytes(server_pid(srv))
        log(f"{kind}: created at {res.ops_per_s:,.0f}/s, RSS {run.rss_created_bytes / 2**20:,.0f} MiB; kill -9")
        srv.kill()
        before = snapshots(srv.data_dir)  # the empty tree's, from the first start
        run.startup_from_log_s = start(srv)
        check_tree(srv, args.znodes)
        # Apache's start-up snapshot is written before it serves; zkfast's in the background after
        t0 = time.monotonic()
        while not (new := set(snapshots(srv.data_dir)) - set(before)):
            if time.monotonic() - t0 > START_TIMEOUT_S:
                raise RuntimeError("no snapshot after the start-up")
            time.sleep(0.2)
        run.snapshot_after_start_s = time.monotonic() - t0
        run.snapshot_bytes = size_bytes(snapshots(srv.data_dir)[new.pop()])
        log(f"{kind}: restarted from the log in {run.startup_from_log_s:.1f} s, snapshot "
            f"{run.snapshot_bytes / 2**20:,.0f} MiB; kill -9")
        srv.kill()
        run.startup_from_snapshot_s = start(srv)
        check_tree(srv, args.znodes)
        time.sleep(1)
        run.rss_restarted_bytes = proc_rss_bytes(server_pid(srv))
        log(f"{kind}: restarted from the snapshot in {run.startup_from_snapshot_s:.1f} s, "
            f"RSS {run.rss_restarted_bytes / 2**20:,.0f} MiB")
        run.completed = True
    except Exception as e:  # noqa: BLE001 - a heap too small is a result, not a crash of the bench
        run.failure = f"{type(e).__name__}: {e}"
        log(f"{kind} {heap or ''}: failed: {run.failure}")
    finally:
        srv.stop()
        srv.cleanup()
    return run


def report(runs: list[Run], args: argparse.Namespace) -> str:
    mib = 2**20
    done = [r for r in runs if r.completed]
    names = [f"{r.kind}" + (f" -Xmx{r.heap}" if r.heap else "") for r in done]
    table = SideBySide([r.kind for r in done], names)

    def row(name: str, value: Any, unit: str, fmt: str = ",.1f") -> None:
        table.row(name, [value(r) for r in done], unit, fmt)

    row("create", lambda r: r.create_ops_per_s, " /s", ",.0f")
    row("RSS per znode, live", lambda r: r.per_znode(r.rss_created_bytes), " B", ",.0f")
    row("RSS per znode, restarted", lambda r: r.per_znode(r.rss_restarted_bytes), " B", ",.0f")
    row("RSS restarted", lambda r: r.rss_restarted_bytes / mib, " MiB", ",.0f")
    row("snapshot on disk", lambda r: r.snapshot_bytes / mib, " MiB", ",.0f")
    row("start-up from the txn log", lambda r: r.startup_from_log_s, " s")
    row("start-up snapshot complete, after serving", lambda r: r.snapshot_after_start_s, " s")
    row("start-up from the snapshot", lambda r: r.startup_from_snapshot_s, " s")
    failed = [f"\n{r.kind}" + (f" -Xmx{r.heap}" if r.heap else "") + f" did not complete: {r.failure}"
              for r in runs if not r.completed]
    return f"{args.znodes:,} znodes of {args.data_size} bytes\n\n" + table.text() + "".join(failed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--znodes", type=int, default=10_000_000)
    ap.add_argument("--data-size", type=int, default=100)
    ap.add_argument("--kinds", default="zkfast,apache")
    ap.add_argument("--apache-heaps", default="4g,8g,16g", help="-Xmx values to try, smallest first")
    ap.add_argument("--workdir", type=Path, default=None, help="where the dataDirs go (default: a temp dir)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs: list[Run] = []
    lg = LoadGen(PROCS)
    try:
        with tempfile.TemporaryDirectory(prefix="zkfast-bigtree-", dir=args.workdir) as tmp:
            for kind in args.kinds.split(","):
                heaps: list[str | None] = list(args.apache_heaps.split(",")) if kind == "apache" else [None]
                for heap in heaps:
                    runs.append(run_server(kind, heap, args, lg, Path(tmp)))
                    if runs[-1].completed:
                        break
    finally:
        lg.close()
    print(report(runs, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0 if all(r.completed for r in runs if r.kind == "zkfast") else 1


if __name__ == "__main__":
    sys.exit(main())
