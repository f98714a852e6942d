"""The commit stage of a standalone server with a txn log: final = fsynced.

On the event loop, `append` encodes each txn's log entry into the current batch and `flush` hands
the batch to the log thread. The thread reports back with the last durable zxid (the pipeline then
applies and answers), or with a failure (the pipeline then fails every txn not yet durable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from zkfast._jute import Txn, WriteBuffer, append_log_entry
from zkfast.storage.txnlog import Batch, FsyncFailed, LogWriter

log = logging.getLogger(__name__)

CommitCallback = Callable[[int], None]
FailureCallback = Callable[[BaseException, int, bool], None]


class DurableCommit:
    """Group commit into the txn log."""

    def __init__(self, log_dir: Path, *, prealloc_bytes: int, force_sync: bool, snap_count: int,
                 snap_size_limit_bytes: int, fsync_warning_ms: int = 1000,
                 on_failure: FailureCallback | None = None, on_roll: Callable[[], None] | None = None) -> None:
        self.log_dir = log_dir
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_commit: CommitCallback | None = None
        self.on_failure = on_failure
        self.on_roll = on_roll
        self.batch = WriteBuffer(64 * 1024)
        self.first_zxid = 0
        self.last_zxid = 0
        self.count = 0
        self.last_appended = 0
        self.generation = 0
        self.writer = LogWriter(log_dir, prealloc_bytes=prealloc_bytes, force_sync=force_sync,
                                snap_count=snap_count, snap_size_limit_bytes=snap_size_limit_bytes,
                                on_durable=self._durable, on_error=self._error, on_roll=self._rolled,
                                fsync_warning_ms=fsync_warning_ms)
        if not force_sync:
            log.warning("forceSync=no: the txn log is not fsynced; acknowledged writes can be lost "
                        "if the machine crashes")

    def start(self, on_commit: CommitCallback) -> None:
        self.loop = asyncio.get_event_loop()
        self._on_commit = on_commit
        self.writer.start()

    def append(self, txn: Txn) -> None:
        assert txn.zxid > self.last_appended, "txns reach the log in zxid order"
        self.last_appended = txn.zxid
        if self.count == 0:
            self.first_zxid = txn.zxid
        append_log_entry(self.batch, txn)
        self.last_zxid = txn.zxid
        self.count += 1

    def flush(self) -> None:
        if self.count == 0:
            return
        batch = Batch(self.batch.take(), self.first_zxid, self.last_zxid, self.count, self.generation)
        self.count = 0
        self.writer.submit(batch)

    def rewind(self, zxid: int) -> None:
        """After a failure the pipeline failed every txn not yet durable: zxids after `zxid` are
        free again, and batches from now on are a new generation the log thread accepts."""
        self.last_appended = zxid
        self.batch.clear()
        self.count = 0
        self.generation += 1
        self.writer.accept(self.generation)

    def roll(self) -> None:
        self.writer.roll()

    def close(self) -> None:
        self.flush()
        self.writer.close()

    # -- from the log thread

    def _durable(self, zxid: int, n: int) -> None:
        loop = self.loop
        if loop is not None and self._on_commit is not None:
            loop.call_soon_threadsafe(self._on_commit, zxid)

    def _error(self, exc: BaseException, batches: list[Batch]) -> None:
        loop = self.loop
        if loop is not None and self.on_failure is not None:
            loop.call_soon_threadsafe(self.on_failure, exc, batches[0].first_zxid, isinstance(exc, FsyncFailed))

    def _rolled(self) -> None:
        loop = self.loop
        if loop is not None and self.on_roll is not None:
            loop.call_soon_threadsafe(self.on_roll)

    # -- figures for mntr

    def metrics(self) -> list[tuple[str, object]]:
        w = self.writer
        avg = w.fsync_total_ms / w.fsync_count if w.fsync_count else 0.0
        avg_batch = w.batch_txns_total / w.batch_count if w.batch_count else 0.0
        # Apache's fsynctime summary (AvgMinMaxCounter, ms), then zkfast's group commit figures
        return [("avg_fsynctime", round(avg, 4)), ("min_fsynctime", int(w.fsync_min_ms)),
                ("max_fsynctime", int(w.fsync_max_ms)), ("cnt_fsynctime", w.fsync_count),
                ("sum_fsynctime", int(w.fsync_total_ms)), ("zkfast_group_commit_batches", w.batch_count),
                ("zkfast_group_commit_avg_batch_txns", round(avg_batch, 4))]
