"""kill -9 and machine crashes of a zkfast server under pipelined write load, then recovery checks.

Each iteration: 4 raw-socket clients pipeline creates, version-chained setData, deletes, multis and
sequential creates (tests/fault/workload.py); then the server goes down at one of these moments
(seeded; snapCount=400, so a snapshot starts every 200..400 txns):
  random    a random time into the load
  snapshot  just after a snapshot has started (the log says "snapshotting:")
  purge     just after a concurrent `zkfast cleanup -n 3` (as zkCleanup.sh) has removed its first file
  ack       (kill -9) just as an acknowledgement reaches a client
  fsync     (machine crash) as the txn log's next fsync starts (crashfs arm-fsync)
  partial   (machine crash) the same, with a random half of the unsynced pages of the batch written
            back anyway, and entries bigger than a page
kill -9 leaves the page cache alone; a "machine crash" has dataDir on crashfs (tests/fault/crashfs.py):
the power goes (unsynced writes dropped, no fsync returns from then on), the server (and cleanup) are
killed, and the filesystem is mounted again. The server restarts on the same dataDir and the recovered
tree is checked against what the clients saw (`workload.verify`): acknowledged writes present with data,
version and zxid; no half-applied or phantom write; per-session order and reply zxids (also on
reconnecting each session with its last zxid); sequential names. At the end every subtree verified
after an earlier crash is compared with what it was then (later crashes must not change it).

The planted-bug tests show the checkers fail when they should: a server started through
tests/fault/planted_server.py with ack-before-write is caught by the kill -9 campaign, with
ack-before-fsync by the machine-crash campaign.

Seed: ZKFAST_FAULT_SEED (default fixed); every failure message names the seed and iteration.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fault.crashfs import CrashFs, fuse_problem, mounted_crashfs
from fault.harness import FaultServer, is_root, require, tmp_dir
from fault.workload import LoadRun, compare_dumps, run_until, snapshot_of, start_loads, verify

SEED = int(os.environ.get("ZKFAST_FAULT_SEED", "8675309"))
CLIENTS = 4
MAX_OPS = 2500          # per client per iteration
SNAP_COUNT = "400"      # snapshots every 200..400 txns: many per iteration


@dataclass
class Campaign:
    iterations: int = 0
    violations: list[str] = field(default_factory=list)
    acked: int = 0
    pending: int = 0
    killed_in_snapshot: int = 0
    killed_in_purge: int = 0
    at_fsync: int = 0
    refused: int = 0
    purged: int = 0
    modes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.iterations} crashes ({', '.join(self.modes)}), {self.acked} acknowledged writes, "
                f"{self.pending} with unknown outcome, killed mid-snapshot {self.killed_in_snapshot}x, "
                f"mid-purge {self.killed_in_purge}x ({self.purged} snapshots/logs gone at those kills), at a log fsync "
                f"{self.at_fsync}x, start-up refused {self.refused}x, {self.seconds:.1f}s")


def _cleanup_cmd(srv: FaultServer) -> list[str]:
    return [sys.executable, "-m", "zkfast", "cleanup", "-n", "3", str(srv.cfg_path)]


def crash_campaign(srv: FaultServer, rng: random.Random, iterations: int, fs: CrashFs | None = None,
                   modes: tuple[str, ...] = ("random", "snapshot", "purge"), stop_at_first: bool = False,
                   time_cap_s: float = 60.0) -> Campaign:
    """Load, kill (and crash the disk if fs), restart, verify; `iterations` times or until time_cap_s."""
    camp = Campaign()
    t_start = time.monotonic()
    baseline: dict[str, tuple[bytes, object]] = {}
    verified_roots: list[str] = []
    if fs is not None:
        srv.on_stuck = fs.thaw
    srv.start()
    for it in range(iterations):
        if time.monotonic() - t_start > time_cap_s:
            break
        mode = modes[it % len(modes)]
        tag = f"i{it}"
        where = f"seed {SEED}, iteration {it} ({mode}{', machine crash' if fs else ''})"
        delay = rng.uniform(0.1, 0.9)
        cleaner: list[subprocess.Popen[bytes]] = []
        state: dict[str, int | bool] = {"in_snapshot": False, "in_purge": False, "at_fsync": False}

        async def fault(stop: asyncio.Event, run: LoadRun, delay: float = delay, mode: str = mode,
                        cleaner: list[subprocess.Popen[bytes]] = cleaner,
                        state: dict[str, int | bool] = state) -> None:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            if mode == "snapshot":
                started0, _ = srv.snapshot_lines()
                # kill right after a snapshot starts (they start every 200..400 txns)
                while loop.time() - t0 < 3.0:
                    started, finished = srv.snapshot_lines()
                    if started > started0 and started > finished:
                        await asyncio.sleep(rng.uniform(0, 0.01))
                        break
                    await asyncio.sleep(0.002)
            elif mode == "purge":
                await asyncio.sleep(delay / 2)
                with open(srv.workdir / "cleanup.log", "ab") as out:
                    cleaner.append(subprocess.Popen(_cleanup_cmd(srv), stdout=out, stderr=subprocess.STDOUT,
                                                    start_new_session=True))
                # kill as soon as it has removed something (it is a separate process, as zkCleanup.sh
                # is, and takes most of its time starting up)
                v2 = srv.data_dir / "version-2"
                n0 = len(os.listdir(v2))
                while loop.time() - t0 < 4.0 and cleaner[0].poll() is None:
                    if len(os.listdir(v2)) < n0:
                        break
                    await asyncio.sleep(0.0005)
                state["in_purge"] = cleaner[0].poll() is None
                state["purged"] = n0 - len(os.listdir(v2))
            elif mode in ("fsync", "partial") and fs is not None:
                await asyncio.sleep(delay)
                before = fs.crashes()
                # the power goes as the txn log's next fsync starts; "partial": a random half of the
                # batch's pages reached the disk anyway (write-back in no particular order)
                fs.arm_fsync("/log.", rng.randrange(1 << 30) if mode == "partial" else None)
                while fs.crashes() == before and loop.time() - t0 < 5.0:
                    await asyncio.sleep(0.001)
                state["at_fsync"] = fs.crashes() > before
                # the server runs on until it is killed: whatever it acknowledges now must be durable
                # already (no fsync returns after the crash), so give it the time to answer
                await run.next_ack(0.05)
            elif mode == "ack":
                # kill -9 just as an acknowledgement arrives: the txns behind it must be on disk
                await asyncio.sleep(delay)
                await run.next_ack(3.0)
            else:
                await asyncio.sleep(delay)
            started, finished = srv.snapshot_lines()
            state["in_snapshot"] = started > finished
            if fs is not None and not state.get("at_fsync"):
                # the power goes: unsynced writes dropped, no fsync returns from now on (the clients
                # keep sending meanwhile: the crash lands while the server is busy)
                await loop.run_in_executor(None, fs.crash)
                await run.next_ack(0.02)  # what it answers now must be durable already
            procs = [p for p in (srv.proc, *cleaner) if p is not None]
            for p in procs:
                if p.poll() is None:
                    p.kill()  # the purge dies too
            if fs is not None:
                fs.thaw()  # lets the killed processes leave their FUSE calls (with EIO)
            for p in procs:
                p.wait()
            srv.kill9()

        async def load(tag: str = tag, mode: str = mode) -> LoadRun:
            # "partial": entries bigger than a page, so that a page missing from the middle of the
            # last batch can leave whole entries after it
            pad = 5000 if mode == "partial" else 0
            run = await start_loads(srv.host, srv.port, tag, CLIENTS, rng, MAX_OPS // 4 if pad else MAX_OPS, pad=pad)
            await run_until(run, lambda stop: fault(stop, run))
            return run

        run = asyncio.run(load())
        camp.killed_in_snapshot += state["in_snapshot"]
        camp.killed_in_purge += state["in_purge"]
        camp.at_fsync += state.get("at_fsync", False)
        camp.purged += int(state.get("purged", 0))
        if fs is not None:
            fs.reboot()
        try:
            srv.start()
        except (RuntimeError, TimeoutError) as e:
            # known (test_fault_log_damage.py::test_zeroed_page_in_the_tail_is_a_torn_tail): a hole in
            # the never-synced last batch stops start-up; the operator accepts the loss it names, and
            # then nothing acknowledged may be missing
            m = re.search(r"--truncate-log-at (\S+:\d+)", srv.log_since_start())
            if mode != "partial" or m is None:
                camp.violations.append(f"{where}: the server did not come back: {e}")
                break
            camp.refused += 1
            srv.extra_args = ("--truncate-log-at", m.group(1))
            try:
                srv.start()
            finally:
                srv.extra_args = ()
        found = asyncio.run(verify(srv.host, srv.port, [run]))
        camp.iterations += 1
        camp.modes.append(mode)
        counts = run.counts
        camp.acked += counts["ok"]
        camp.pending += counts["pending"]
        camp.violations += [f"{where}: {v}" for v in found]
        if counts["ok"] == 0:
            camp.violations.append(f"{where}: no write was acknowledged before the kill (load did not run?)")
        roots = [f"/w/{tag}"]
        baseline.update(asyncio.run(snapshot_of(srv.host, srv.port, roots)))
        verified_roots += roots
        if camp.violations and stop_at_first:
            break
    # nothing verified after an earlier crash may change or vanish in a later one
    if verified_roots and not (camp.violations and stop_at_first):
        final = asyncio.run(snapshot_of(srv.host, srv.port, verified_roots))
        camp.violations += compare_dumps(baseline, final, f"seed {SEED}, after all crashes")  # type: ignore[arg-type]
    camp.seconds = time.monotonic() - t_start
    return camp


def _report(camp: Campaign) -> str:
    head = "\n".join(camp.violations[:30])
    return f"{camp.summary()}\n{head}"


# ---------------------------------------------------------------------------------------------------


def test_kill9_under_load_loses_no_acknowledged_write() -> None:
    rng = random.Random(SEED)
    with tmp_dir("zkfault-kill9-") as d:
        srv = FaultServer(workdir=d, cfg={"snapCount": SNAP_COUNT})
        try:
            camp = crash_campaign(srv, rng, iterations=12, time_cap_s=50,
                                  modes=("random", "snapshot", "purge", "ack"))
        finally:
            srv.kill9()
    print(camp.summary())
    assert not camp.violations, _report(camp)
    assert camp.iterations >= 3, camp.summary()
    assert camp.killed_in_snapshot >= 1, f"no kill landed inside a snapshot: {camp.summary()}"


@pytest.fixture
def crashfs() -> Iterator[CrashFs]:
    require(is_root() or fuse_problem(), "crashfs (FUSE)")
    with mounted_crashfs() as fs:
        yield fs


def test_machine_crash_under_load_loses_no_acknowledged_write(crashfs: CrashFs) -> None:
    rng = random.Random(SEED + 1)
    with tmp_dir("zkfault-crash-") as d:
        srv = FaultServer(workdir=d, data_dir=crashfs.mountpoint / "data", cfg={"snapCount": SNAP_COUNT})
        try:
            camp = crash_campaign(srv, rng, iterations=10, fs=crashfs, time_cap_s=60,
                                  modes=("fsync", "random", "snapshot", "purge", "partial"))
        finally:
            srv.kill9()
        dropped = crashfs.log_path.read_text().count("crash #")
    print(camp.summary(), f"crashfs crashes: {dropped}")
    assert not camp.violations, _report(camp)
    assert camp.iterations >= 3, camp.summary()
    assert dropped == camp.iterations
    assert camp.at_fsync >= 1, f"no crash landed at a txn log fsync: {camp.summary()}"


def test_kill9_checker_catches_planted_ack_before_write() -> None:
    rng = random.Random(SEED + 2)
    with tmp_dir("zkfault-plant-w-") as d:
        srv = FaultServer(workdir=d, cfg={"snapCount": SNAP_COUNT}, planted_bug="ack-before-write")
        try:
            camp = crash_campaign(srv, rng, iterations=8, modes=("ack",), stop_at_first=True, time_cap_s=40)
        finally:
            srv.kill9()
    print(camp.summary(), "\n", "\n".join(camp.violations[:5]))
    assert any("lost" in v or "went back" in v or "refused" in v for v in camp.violations), (
        f"the kill -9 checkers missed the planted ack-before-write bug: {camp.summary()}")


def test_machine_crash_checker_catches_planted_ack_before_fsync(crashfs: CrashFs) -> None:
    rng = random.Random(SEED + 3)
    with tmp_dir("zkfault-plant-f-") as d:
        srv = FaultServer(workdir=d, data_dir=crashfs.mountpoint / "data", cfg={"snapCount": SNAP_COUNT},
                          planted_bug="ack-before-fsync")
        try:
            camp = crash_campaign(srv, rng, iterations=4, fs=crashfs, modes=("fsync",), stop_at_first=True,
                                  time_cap_s=30)
        finally:
            srv.kill9()
    print(camp.summary(), "\n", "\n".join(camp.violations[:5]))
    assert any("lost" in v or "went back" in v or "refused" in v for v in camp.violations), (
        f"the machine-crash checkers missed the planted ack-before-fsync bug: {camp.summary()}")


def test_crashfs_loses_exactly_what_was_not_synced(crashfs: CrashFs) -> None:
    """crashfs itself: what survives a crash and what does not (files, directories, fallocate, LMDB)."""
    import lmdb

    m = crashfs.mountpoint
    (m / "d").mkdir()
    fd = os.open(m / "d" / "synced", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"durable")
    os.posix_fallocate(fd, 0, 1 << 20)  # reaches crashfs's fallocate: the size grows, no bytes written
    assert os.fstat(fd).st_size == 1 << 20
    os.fsync(fd)
    os.pwrite(fd, b"DUR", 0)  # not synced: lost
    os.close(fd)
    dfd = os.open(m / "d", os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)  # makes d/ and d/synced durable
    os.close(dfd)
    (m / "d" / "unsynced").write_bytes(b"gone")  # data never synced (the name is, by the fsync of / below)
    fd = os.open(m / "d" / "data-only", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x")
    os.fsync(fd)  # data synced, the name in d/ is not
    os.close(fd)
    os.rename(m / "d" / "synced", m / "d" / "renamed")  # not durable without fsync(d)
    env = lmdb.open(str(m / "lmdb"), map_size=1 << 24, subdir=True, sync=False, metasync=False)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.sync(True)
    with env.begin(write=True) as txn:
        txn.put(b"k2", b"not synced")
    env.close()
    for d in (m / "lmdb", m):  # lmdb/'s entries, then every namespace change before the fsync of /
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
    (m / "d" / "late").write_bytes(b"late")  # name and data never synced

    crashfs.crash()
    crashfs.thaw()
    crashfs.reboot()
    assert sorted(os.listdir(m / "d")) == ["data-only", "renamed", "unsynced"]
    assert (m / "d" / "unsynced").read_bytes() == b""
    assert (m / "d" / "renamed").read_bytes()[:8] == b"durable\0"
    assert (m / "d" / "renamed").stat().st_size == 1 << 20
    assert (m / "d" / "data-only").read_bytes() == b"x"
    env = lmdb.open(str(m / "lmdb"), subdir=True, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"k") == b"v" and txn.get(b"k2") is None
    env.close()
