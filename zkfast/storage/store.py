"""A standalone server's disk: txn log, snapshots, recovery and purge, behind one object."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import lmdb

from zkfast.limits import SNAPSHOT_STOP_WAIT_MS
from zkfast.storage.durable import DurableCommit
from zkfast.storage.recovery import Recovered, recover
from zkfast.storage.snapshot import SnapshotSource, SnapshotStats, SnapshotWriter, snapshot_dirs
from zkfast.storage.txnlog import fsync_dir, log_files, logs_needed

if TYPE_CHECKING:
    from zkfast.config import ServerConfig

log = logging.getLogger(__name__)


@runtime_checkable  # so that a test can tell whether the server still fits
class StoreOwner(SnapshotSource, Protocol):
    """The server whose state the store makes durable, as the store sees it: what to snapshot, and
    whom to tell when the txn log cannot take a batch."""

    def on_commit_failed(self, exc: BaseException, first_zxid: int, permanent: bool) -> None: ...


class Store:
    """dataDir/version-2 (snapshots) and dataLogDir/version-2 (txn logs) of one server."""

    def __init__(self, snap_dir: Path, log_dir: Path, *, prealloc_kb: int = 65536, force_sync: bool = True,
                 snap_count: int = 100000, snap_size_limit_kb: int = 4194304, fsync_warning_ms: int = 1000,
                 snap_retain_count: int = 3) -> None:
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.snap_retain_count = max(3, snap_retain_count)
        self.owner: StoreOwner | None = None
        self.snapshot: SnapshotWriter | None = None
        self.snapshot_aborted = False  # by a stop: its end is not a failure
        self.snapshots_taken = 0
        self.last_snapshot: SnapshotStats | None = None
        self.commit = DurableCommit(log_dir, prealloc_bytes=prealloc_kb * 1024, force_sync=force_sync,
                                    snap_count=snap_count, snap_size_limit_bytes=snap_size_limit_kb * 1024,
                                    fsync_warning_ms=fsync_warning_ms, on_failure=self._failed,
                                    on_roll=self.take_snapshot)
        self.snapshot_done_callbacks: list[Callable[[SnapshotStats | None], None]] = []

    @classmethod
    def from_config(cls, config: ServerConfig) -> Store:
        return cls(config.data_dir / "version-2", config.data_log_dir / "version-2",
                   prealloc_kb=config.pre_alloc_size_kb, force_sync=config.force_sync,
                   snap_count=config.snap_count, snap_size_limit_kb=config.snap_size_limit_kb,
                   fsync_warning_ms=config.fsync_warning_threshold_ms,
                   snap_retain_count=config.autopurge_snap_retain_count)

    def recover(self, new_tree: Callable[[], Any], truncate_log_at: tuple[str, int] | None = None,
                progress: Callable[[str], None] | None = None) -> Recovered:
        for d in (self.snap_dir, self.log_dir):
            if not d.is_dir():
                d.mkdir(parents=True, exist_ok=True)
                fsync_dir(d.parent)  # the new version-2 directory survives a crash
        for entry in os.scandir(self.snap_dir):
            if entry.name.endswith(".tmp") and entry.is_dir():
                log.info("removing interrupted snapshot %s", entry.name)
                shutil.rmtree(entry.path, ignore_errors=True)
        return recover(self.snap_dir, self.log_dir, new_tree, truncate_log_at, progress)

    def attach(self, owner: StoreOwner) -> None:
        self.owner = owner

    def _failed(self, exc: BaseException, first_zxid: int, permanent: bool) -> None:
        if self.owner is not None:
            self.owner.on_commit_failed(exc, first_zxid, permanent)

    # -- snapshots

    def take_snapshot(self, roll: bool = False) -> bool:
        """Start a fuzzy snapshot unless one is running. The log thread rolls the log itself when
        it asks for a snapshot; `roll` asks for a roll here too (a snapshot on demand)."""
        if self.owner is None:
            return False
        if self.snapshot is not None:
            log.warning("too busy to snap, skipping")
            return False
        if roll:
            self.commit.roll()
        self.snapshot = SnapshotWriter(self.owner, self.snap_dir, self._snapshot_done)
        try:
            self.snapshot.start()
        except (OSError, lmdb.Error) as e:
            # e.g. a full dataDir: the snapshot fails alone, the log and the clients go on
            self.snapshot = None
            log.error("snapshot failed: %s", e)
            return False
        return True

    def _snapshot_done(self, stats: SnapshotStats | None, error: BaseException | None) -> None:
        self.snapshot = None
        if error is not None and self.snapshot_aborted:
            log.info("snapshot aborted: the server is stopping (the txn log holds everything it would)")
        elif error is not None:
            log.error("snapshot failed: %s", error)
        else:
            assert stats is not None
            self.snapshots_taken += 1
            self.last_snapshot = stats
            log.info("snapshot 0x%x taken in %.0f ms: %d znodes, %d bytes (fork %.1f ms)", stats.zxid,
                     stats.seconds * 1000, stats.nodes, stats.bytes, stats.fork_ms)
        for cb in list(self.snapshot_done_callbacks):
            cb(stats)

    def abort_snapshot(self) -> None:
        """Stop a snapshot in progress (shutting down): it is only an economy of replay, and its
        child, at a low priority, may wait long for a busy disk."""
        if self.snapshot is not None:
            self.snapshot_aborted = True
            self.snapshot.abort()

    async def finish_snapshot(self, wait_ms: int = SNAPSHOT_STOP_WAIT_MS) -> None:
        """At a stop: a snapshot in progress may finish within wait_ms, then it is aborted."""
        deadline = time.monotonic() + wait_ms / 1000
        while self.snapshot is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.abort_snapshot()
        await self.wait_snapshot()

    async def wait_snapshot(self) -> None:
        while self.snapshot is not None:
            await asyncio.sleep(0.01)

    # -- purge (autopurge.*, zkfast cleanup)

    def purge(self, retain: int | None = None) -> list[Path]:
        """Remove snapshots beyond the newest `retain` and the logs none of those needs."""
        return purge_dirs(self.snap_dir, self.log_dir, retain or self.snap_retain_count)

    def close(self) -> None:
        self.commit.close()


def purge_dirs(snap_dir: Path, log_dir: Path, retain: int) -> list[Path]:
    """Apache's PurgeTxnLog, for zkfast's snapshot directories and Apache-format logs."""
    retain = max(3, retain)
    snaps = snapshot_dirs(snap_dir)
    if len(snaps) <= retain:
        return []
    kept = snaps[:retain]
    oldest_kept_zxid = kept[-1][0]
    removed: list[Path] = []
    for _, path in snaps[retain:]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    files = log_files(log_dir)
    needed = {p for _, p in logs_needed(files, oldest_kept_zxid)}
    for z, path in files:
        if path not in needed and z < oldest_kept_zxid:
            path.unlink(missing_ok=True)
            removed.append(path)
    for path in removed:
        log.info("purged %s", path.name)
    return removed
