"""Snapshots written by a forked child (zkfast/storage/snapshot.py): the tree as it was at the fork,
whatever the server does next; a child's failure reported and nothing left behind; the child dies
with the server, so a restart after kill -9 never finds it still writing."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from zkfast._datatree import DataTree
from zkfast._jute import OP_CREATE, Txn

from zkfast.storage import snapshot
from zkfast.storage.snapshot import SnapshotError, SnapshotWriter, load_snapshot, snapshot_dirs

OPEN = [(31, "world", "anyone")]
READ_ONLY = [(1, "world", "anyone")]
SESSION = 5


def create(tree: DataTree, zxid: int, path: bytes, acl: list[Any] = OPEN, owner: int = 0) -> None:
    t = Txn(owner, 1, zxid, 1000 + zxid, OP_CREATE)
    t.path, t.data, t.acl, t.parent_cversion, t.ephemeral = path, b"v%d" % zxid, acl, -1, bool(owner)
    assert tree.apply(t) == 0, path
    tree.last_processed_zxid = zxid


def build(n: int) -> DataTree:
    tree = DataTree()
    create(tree, 1, b"/app")
    for i in range(n):  # two ACLs and some ephemerals, so runs of records change ACL and owner
        create(tree, i + 2, b"/app/n%d" % i, READ_ONLY if i % 7 == 0 else OPEN, SESSION if i % 5 == 0 else 0)
    return tree


def source(tree: DataTree) -> Any:
    return SimpleNamespace(tree=tree, sessions=SimpleNamespace(sessions={SESSION: SimpleNamespace(timeout_ms=4000)}))


async def snapshot_then(tree: DataTree, snap_dir: Path, meanwhile: int = 0) -> tuple[Any, BaseException | None]:
    done: asyncio.Future[tuple[Any, BaseException | None]] = asyncio.get_running_loop().create_future()
    writer = SnapshotWriter(source(tree), snap_dir, lambda stats, err: done.set_result((stats, err)))
    writer.start()
    for i in range(meanwhile):  # the server goes on changing the tree while the child writes
        create(tree, 100_000 + i, b"/app/late%d" % i)
    return await asyncio.wait_for(done, 120)


def test_a_snapshot_is_the_tree_as_it_was_at_the_fork(tmp_path: Path) -> None:
    tree = build(5000)
    count, digest, zxid = tree.node_count(), tree.tree_digest, tree.last_processed_zxid
    paths = (b"/app", b"/app/n0", b"/app/n1", b"/app/n4999")
    before = [tree.node_info(p) for p in paths]  # /app's children change after the fork
    stats, err = asyncio.run(snapshot_then(tree, tmp_path, meanwhile=300))
    assert err is None and stats.nodes == count and stats.digest[0] == zxid and stats.digest[2] == digest
    [(snap_zxid, path)] = snapshot_dirs(tmp_path)
    fresh = DataTree()
    loaded = load_snapshot(path, fresh)
    assert snap_zxid == loaded.zxid == zxid and loaded.sessions == {SESSION: 4000} and loaded.orphans == 0
    assert fresh.node_count() == count and fresh.tree_digest == digest and fresh.get_data(b"/app/late0") is None
    assert [fresh.node_info(p) for p in paths] == before
    assert fresh.acl_count() == tree.acl_count()
    assert sorted(fresh.sessions_with_ephemerals()) == [SESSION]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failing_child_is_reported_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(tree: Any, sessions: Any, stats: Any, tmp_path: Path, *rest: Any) -> dict[str, int]:
        tmp_path.mkdir()
        (tmp_path / "data.mdb").write_bytes(b"half a snapshot")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot, "write_snapshot", disk_full)  # the child runs the patched module
    stats, err = asyncio.run(snapshot_then(build(10), tmp_path))
    assert stats is None and isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_killed_child_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "write_snapshot", lambda *a: os.kill(os.getpid(), signal.SIGKILL))
    stats, err = asyncio.run(snapshot_then(build(10), tmp_path))
    assert stats is None and isinstance(err, SnapshotError) and "killed by signal 9" in str(err)


def test_an_aborted_snapshot_ends_at_once_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop aborts a snapshot in progress instead of waiting for it (a child starved of I/O would
    hold the stop for as long)."""
    def stuck(tree: Any, sessions: Any, stats: Any, tmp_path: Path, *rest: Any) -> dict[str, int]:
        tmp_path.mkdir()
        (tmp_path / "data.mdb").write_bytes(b"a part")
        time.sleep(600)
        raise AssertionError("not aborted")

    monkeypatch.setattr(snapshot, "write_snapshot", stuck)

    async def abort_it() -> tuple[Any, BaseException | None]:
        done: asyncio.Future[tuple[Any, BaseException | None]] = asyncio.get_running_loop().create_future()
        writer = SnapshotWriter(source(build(10)), tmp_path, lambda stats, err: done.set_result((stats, err)))
        writer.start()
        await asyncio.sleep(0.5)
        writer.abort()
        return await asyncio.wait_for(done, 10)

    t0 = time.monotonic()
    stats, err = asyncio.run(abort_it())
    assert time.monotonic() - t0 < 10
    assert stats is None and isinstance(err, SnapshotError) and "killed by signal 9" in str(err)
    assert list(tmp_path.iterdir()) == []


def stop_during_snapshot(tmp_path: Path, writes_for_s: float, wait_ms: int) -> tuple[Any, float]:
    """A store whose snapshot's child writes for `writes_for_s` (a real snapshot after that), stopped
    0.2 s into it: (the store, the seconds the stop took)."""
    from zkfast.storage.store import Store

    real = snapshot.write_snapshot

    def slow(*args: Any) -> dict[str, int]:
        time.sleep(writes_for_s)
        return real(*args)

    owner = source(build(10))
    owner.on_commit_failed = lambda *a: None
    store = Store(tmp_path / "snap", tmp_path / "log")

    async def run() -> float:
        store.recover(DataTree)
        store.attach(owner)
        try:
            assert store.take_snapshot()
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            await asyncio.wait_for(store.finish_snapshot(wait_ms), 30)
            return time.monotonic() - t0
        finally:
            store.close()

    snapshot.write_snapshot = slow  # inherited by the forked child
    try:
        return store, asyncio.run(run())
    finally:
        snapshot.write_snapshot = real


def test_a_stop_lets_a_snapshot_finish_within_its_bound(tmp_path: Path) -> None:
    store, took_s = stop_during_snapshot(tmp_path, writes_for_s=0.5, wait_ms=5_000)
    assert store.snapshots_taken == 1 and not store.snapshot_aborted, "the snapshot was not waited for"
    assert took_s < 5
    assert [z for z, _ in snapshot_dirs(tmp_path / "snap")] == [store.last_snapshot.zxid]


def test_a_stop_aborts_a_snapshot_past_its_bound_without_an_error_line(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The abort (after SNAPSHOT_STOP_WAIT_MS, here 300 ms) is no failure: no ERROR line, which
    operators grep for."""
    with caplog.at_level("INFO", logger="zkfast.storage.store"):
        store, took_s = stop_during_snapshot(tmp_path, writes_for_s=600, wait_ms=300)
    assert store.snapshots_taken == 0 and store.snapshot_aborted
    assert 0.25 < took_s < 10
    assert snapshot_dirs(tmp_path / "snap") == [] and list((tmp_path / "snap").iterdir()) == []
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "zkfast.storage.store"]
    assert any(level == "INFO" and "snapshot aborted" in msg for level, msg in lines), lines
    assert not any(level == "ERROR" for level, _ in lines), lines


SERVER = textwrap.dedent("""
    import asyncio, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import test_snapshot_fork as t
    from zkfast.storage import snapshot

    def stuck(*args):
        Path({pid_file!r}).write_text(str(os.getpid()))
        time.sleep(120)

    snapshot.write_snapshot = stuck

    async def main():
        snapshot.SnapshotWriter(t.source(t.build(10)), Path({snap_dir!r}), lambda *a: None).start()
        await asyncio.sleep(120)

    asyncio.run(main())
""")


def test_the_child_dies_with_the_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = SERVER.format(tests=str(Path(__file__).parent), pid_file=str(pid_file), snap_dir=str(tmp_path / "snap"))
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert server.poll() is None and time.monotonic() < deadline, "no snapshot child started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        server.kill()  # kill -9
        server.wait()
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline, f"snapshot child {child} outlived its server"
            time.sleep(0.05)
    finally:
        server.kill()
        server.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie is dead, waiting for its reaper
    except FileNotFoundError:
        return False
