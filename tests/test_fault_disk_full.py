"""A full disk under write load: dataDir and dataLogDir on a small tmpfs that a filler file fills.

While the disk is full, writes that cannot be made durable must not be applied or acknowledged and
must consume no zxid; their clients get SYSTEMERROR (-1; kazoo raises SystemErrorException). Reads
go on. Once the filler is deleted, writes succeed again without a restart. Then kill -9, restart,
and the recovered tree is checked against what the clients saw (tests/fault/workload.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault.harness import FaultServer, is_root, require, tmp_dir
from fault.workload import (
    OP_CREATE,
    SYSTEMERROR,
    ClientLoad,
    ConnectionLost,
    LoadRun,
    RawConn,
    create_body,
    run_until,
    start_loads,
    verify,
)
from kazoo.client import KazooClient
from kazoo.exceptions import SystemErrorException

SEED = 424242
TMPFS_SIZE = "64m"
BADVERSION = -103


def _mount_tmpfs(where: Path, size: str) -> str | None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"mount -t tmpfs failed: {r.stderr.strip() or r.returncode}"
    return None


def _umount(where: Path) -> None:
    if os.path.ismount(where):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    require(is_root(), "tmpfs disk-full test")
    with tmp_dir("zkfault-full-") as d:
        mnt = d / "disk"
        problem = _mount_tmpfs(mnt, TMPFS_SIZE)
        try:
            require(problem, "tmpfs disk-full test")
            yield mnt
        finally:
            _umount(mnt)


def fill(path: Path) -> int:
    """Write `path` until the filesystem is full, to the last byte it takes; the bytes written."""
    total = 0
    chunk = 1 << 20
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while chunk >= 1:
            try:
                total += os.write(fd, b"\xa5" * chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return total


def _counts(run: LoadRun) -> dict[str, int]:
    return run.counts


def _errors(run: LoadRun) -> dict[int, int]:
    out: dict[int, int] = {}
    for ld in run.loads:
        for code, n in ld.errors.items():
            out[code] = out.get(code, 0) + n
    return out


def _kazoo_write_fails(zk: KazooClient) -> str | None:
    """None if a kazoo create fails with SystemErrorException, else what happened."""
    try:
        zk.create_async("/kazoo-during-full-disk", b"x").get(timeout=15)
    except SystemErrorException:
        return None
    except Exception as e:  # noqa: BLE001 - reported
        return f"kazoo create raised {type(e).__name__}: {e}"
    return "kazoo create succeeded on a full disk"


@pytest.mark.parametrize("layout", ["dataDir and dataLogDir full", "only dataLogDir full"])
def test_full_disk_refuses_writes_without_losing_or_applying_them(small_disk: Path, layout: str) -> None:
    rng = random.Random(f"{SEED}{layout}")
    filler = small_disk / "filler"
    notes: dict[str, object] = {"layout": layout}
    with tmp_dir("zkfault-full-work-") as work:
        data_dir = small_disk / "data" if layout.startswith("dataDir") else work / "data"
        # no snapshot while the disk is full: test_snapshot_on_a_full_data_dir_fails_alone shows what
        # one does there
        srv = FaultServer(workdir=work, data_dir=data_dir, data_log_dir=small_disk / "log",
                          cfg={"preAllocSize": "64", "snapCount": "1000000"})
        try:
            srv.start()
            # its session is made now: a createSession cannot be logged on a full disk either
            zk = KazooClient(hosts=srv.address, timeout=10)
            zk.start(timeout=10)

            async def scenario() -> tuple[LoadRun, list[str]]:
                run = await start_loads(srv.host, srv.port, "full", 3, rng, 200000)
                reader = RawConn(srv.host, srv.port)
                assert await reader.connect(30000)
                problems: list[str] = []

                async def fault(stop: asyncio.Event) -> None:
                    loop = asyncio.get_running_loop()
                    await asyncio.sleep(0.3)
                    ok_before = _counts(run)["ok"]
                    notes["filled"] = await loop.run_in_executor(None, fill, filler)
                    # writes fail once the log's preallocated room is used up
                    t0 = loop.time()
                    while _errors(run).get(SYSTEMERROR, 0) < 50 and loop.time() - t0 < 10:
                        await asyncio.sleep(0.01)
                    if _errors(run).get(SYSTEMERROR, 0) == 0:
                        problems.append("no SYSTEMERROR within 10 s of filling the disk")
                    ok_at_full = _counts(run)["ok"]
                    notes["acked before full"] = ok_at_full - ok_before
                    await asyncio.sleep(0.5)
                    # writes that still find room (what is left of the log's preallocation, space a failed
                    # snapshot gives back) may succeed: the checks below are on each answer, not a count
                    notes["acked while full"] = _counts(run)["ok"] - ok_at_full
                    # reads go on
                    for ld in run.loads:
                        try:
                            got = await reader.get(f"{ld.base}/reg")
                        except (ConnectionLost, TimeoutError) as e:
                            problems.append(f"read of {ld.base}/reg on a full disk: {e} (session "
                                            f"0x{reader.session_id:x})\n{srv.log_since_start()[-3000:]}")
                            break
                        if got is None:
                            problems.append(f"read of {ld.base}/reg failed on a full disk")
                    why = await loop.run_in_executor(None, _kazoo_write_fails, zk)
                    if why is not None:
                        problems.append(why)
                    errs_full = _errors(run).get(SYSTEMERROR, 0)
                    notes["SYSTEMERRORs while full"] = errs_full
                    os.unlink(filler)
                    ok_freed = _counts(run)["ok"]
                    t1 = loop.time()
                    while _counts(run)["ok"] < ok_freed + 500 and loop.time() - t1 < 10:
                        await asyncio.sleep(0.01)
                    notes["resumed after s"] = round(loop.time() - t1, 3)
                    if _counts(run)["ok"] < ok_freed + 500:
                        problems.append("writes did not resume within 10 s of freeing space")
                    await asyncio.sleep(0.3)
                    stop.set()

                await run_until(run, fault, window=16)
                await reader.close_session()
                return run, problems

            try:
                run, problems = asyncio.run(asyncio.wait_for(scenario(), 120))
            finally:
                zk.stop()
                zk.close()
            assert srv.proc is not None and srv.proc.poll() is None, (
                f"the server died (exit {srv.proc.poll() if srv.proc else None}):\n{srv.log_tail()}")
            assert not problems, problems
            counts, errors = run.counts, _errors(run)
            notes.update(counts=counts, errors=errors)
            assert counts["pending"] == 0, f"the load stopped cleanly, yet {counts['pending']} have no answer"
            unexpected = {c: n for c, n in errors.items() if c not in (SYSTEMERROR, BADVERSION)}
            assert not unexpected, f"errors other than SYSTEMERROR: {unexpected}"
            bad_versions = [op for ld in run.loads for op in ld.ops if op.err == BADVERSION and op.kind != "set"]
            assert not bad_versions, "BADVERSION is only expected for sets chained on a failed set"
            contiguity = _zxid_holes(run.loads)
            # the live tree first (a write applied but never logged would vanish at the restart)
            live = asyncio.run(verify(srv.host, srv.port, [run], check_sessions=False))
            assert not live, "live server, before the restart:\n" + "\n".join(live[:30])
            srv.kill9()
            if contiguity:
                holes = _explain_holes(run.loads, small_disk / "log" / "version-2")
                pytest.fail(f"failed writes consumed zxids: {contiguity[:5]}\n{holes}")
            srv.start()
            found = asyncio.run(verify(srv.host, srv.port, [run]))
            st = os.statvfs(small_disk)
            assert not found, ("\n".join(found[:30]) + f"\nfree on the disk: {st.f_bavail * st.f_frsize} bytes; "
                               f"files: {_listing(small_disk)}\nserver log:\n{srv.log_since_start()[-3000:]}")
        finally:
            srv.kill9()
    print("disk full:", notes)


def _explain_holes(loads: list[ClientLoad], log_dir: Path) -> str:
    """What the txn log holds at the zxids no acknowledged write had, and who asked for them."""
    from zkfast.storage.txnlog import log_files, scan_log

    acked = {op.zxid for ld in loads for op in ld.ops
             if op.status == "ok" or (op.status == "err" and op.err != SYSTEMERROR)}
    lo, hi = min(acked), max(acked)
    lines = []
    for _, path in log_files(log_dir):
        for txn in scan_log(path).txns:
            if lo <= txn.zxid <= hi and txn.zxid not in acked:
                lines.append(f"0x{txn.zxid:x}: type {txn.type} session 0x{txn.session_id:x} cxid {txn.cxid} "
                             f"path {txn.path!r}")
    by_session = {ld.conn.session_id: ld for ld in loads}
    for i, line in enumerate(list(lines)):
        sid = int(line.split("session 0x")[1].split()[0], 16)
        cxid = int(line.split("cxid ")[1].split()[0])
        ld = by_session.get(sid)
        ops = [op for op in ld.ops if op.xid == cxid] if ld is not None else []
        if ops:
            op = ops[0]
            lines[i] += f" <- client {ld.index} {op.kind} {op.path} answered {op.status} {op.err}"  # type: ignore[union-attr]
    return "\n".join(lines[:40]) or "no txn in the log at those zxids"


def _listing(root: Path) -> list[tuple[str, int]]:
    return [(str(p.relative_to(root)), p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()]


def _zxid_holes(loads: list[ClientLoad]) -> list[str]:
    """The writes of the run were the only txns: their zxids must have no holes. A write that failed
    validation (BADVERSION) is logged as an error txn and has a zxid, as in Apache ZooKeeper; one that
    failed with SYSTEMERROR must not."""
    zxids = sorted(op.zxid for ld in loads for op in ld.ops
                   if op.status == "ok" or (op.status == "err" and op.err != SYSTEMERROR))
    holes = []
    for a, b in zip(zxids, zxids[1:], strict=False):
        if b != a + 1:
            holes.append(f"0x{a:x} -> 0x{b:x}")
    return holes


def test_snapshot_on_a_full_data_dir_fails_alone(small_disk: Path) -> None:
    """dataDir full, dataLogDir elsewhere with room: the log rolls and a snapshot starts (snapCount=100).
    Writes must go on being acknowledged; the snapshot fails and says so; the server lives."""
    with tmp_dir("zkfault-full-snap-") as work:
        srv = FaultServer(workdir=work, data_dir=small_disk / "data", data_log_dir=work / "log",
                          cfg={"snapCount": "100"})
        try:
            srv.start()
            fill(small_disk / "filler")

            async def writes() -> str:
                conn = RawConn(srv.host, srv.port)
                assert await conn.connect(30000)
                try:
                    for i in range(300):
                        r = await conn.call(OP_CREATE, create_body(f"/full-snap-{i}", b"x"))
                        if r.err != 0:
                            return f"create {i} failed with {r.err} although the log has room"
                except ConnectionLost as e:
                    return f"connection lost after {i} creates: {e}"
                finally:
                    conn.abort()
                return ""

            problem = asyncio.run(writes())
            rc = srv.proc.poll() if srv.proc is not None else None
            assert rc is None, f"the server died with exit {rc} (-7 = SIGBUS) during a snapshot:\n{srv.log_tail()}"
            assert not problem, problem
            assert "snapshot failed" in srv.log_since_start(), srv.log_tail()
        finally:
            srv.kill9()
