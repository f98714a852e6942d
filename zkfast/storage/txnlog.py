"""The txn log in Apache ZooKeeper's format (its FileTxnLog.java and Util.java):
`version-2/log.<hex zxid>`.

Writing is done by one thread with group commit: it takes every batch queued since its last flush,
writes them with one `write`, fdatasyncs once, and hands the last durable zxid back to the event
loop. Files are preallocated with fallocate, so a full disk shows up as an error before a write,
never as a hole in the middle of an entry.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zkfast._jute import (
    ENTRY_END,
    ENTRY_OK,
    ENTRY_TORN,
    LOG_FILE_HEADER_BYTES,
    LOG_MAGIC,
    LOG_VERSION,
    Txn,
    decode_txn,
    find_whole_entry,
    read_log_entry,
)

log = logging.getLogger(__name__)

LOG_PREFIX = "log."
# group-commit batches queued but not yet written; past it, the loop waits for the writer
MAX_QUEUED_BATCH_BYTES = 256 * 1024 * 1024
PREALLOC_MARGIN_BYTES = 4096


def log_name(zxid: int) -> str:
    return f"{LOG_PREFIX}{zxid:x}"


def zxid_of_name(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    tail = name[len(prefix):]
    try:
        return int(tail, 16)
    except ValueError:
        return None


def file_header() -> bytes:
    return struct.pack(">iiq", LOG_MAGIC, LOG_VERSION, 0)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def log_files(log_dir: Path) -> list[tuple[int, Path]]:
    """(start zxid, path) of every log file, oldest first."""
    out = []
    if not log_dir.is_dir():
        return out
    for entry in os.scandir(log_dir):
        z = zxid_of_name(entry.name, LOG_PREFIX)
        if z is not None and entry.is_file():
            out.append((z, Path(entry.path)))
    out.sort()
    return out


def logs_needed(files: list[tuple[int, Path]], snap_zxid: int) -> list[tuple[int, Path]]:
    """The files recovery reads after a snapshot at snap_zxid (Apache's FileTxnLog.getLogFiles)."""
    start = 0
    for z, _ in files:
        if z > snap_zxid:
            break
        start = max(start, z)
    return [(z, p) for z, p in files if z >= start]


class LogCorruption(Exception):
    """A damaged entry with whole entries after it: not a torn tail, so data would be lost."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset


@dataclass
class LogScan:
    """What reading one log file found."""

    path: Path
    txns: list[Txn]
    end_offset: int          # just past the last whole entry
    torn: str | None = None  # why the tail after end_offset was cut, if it was
    offsets: list[int] = field(default_factory=list)  # where each txn's entry starts


def scan_log(path: Path, from_zxid: int = 0, truncate_at: int | None = None) -> LogScan:
    """Read a log file's entries with zxid > from_zxid.

    A torn tail (an entry cut short, without its 'B', or with a bad checksum and nothing whole after
    it) ends the scan; a bad entry followed by a whole one raises LogCorruption naming the offset.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < LOG_FILE_HEADER_BYTES:
            return LogScan(path, [], 0, "file shorter than its header")
        # preallocated logs are mostly zeros: map the file instead of reading it all
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _scan(path, memoryview(mm), from_zxid, truncate_at)


def _scan(path: Path, data: memoryview, from_zxid: int, truncate_at: int | None) -> LogScan:
    magic, version, _ = struct.unpack(">iiq", bytes(data[:LOG_FILE_HEADER_BYTES]))
    try:
        return _scan_entries(path, data, from_zxid, truncate_at, magic, version)
    finally:
        data.release()


def _scan_entries(path: Path, data: memoryview, from_zxid: int, truncate_at: int | None, magic: int,
                  version: int) -> LogScan:
    if magic != LOG_MAGIC:
        raise LogCorruption(path, 0, f"not a txn log (magic 0x{magic & 0xFFFFFFFF:x})")
    if version != LOG_VERSION:
        raise LogCorruption(path, 4, f"unsupported txn log version {version}")
    if truncate_at is not None:
        data = data[:truncate_at]
    offset = LOG_FILE_HEADER_BYTES
    txns: list[Txn] = []
    offsets: list[int] = []
    while True:
        status, nxt, payload = read_log_entry(data, offset)
        if status == ENTRY_END:
            return LogScan(path, txns, offset, None, offsets)
        if status == ENTRY_OK:
            txn = decode_txn(payload)
            if txn.zxid > from_zxid:
                txns.append(txn)
                offsets.append(offset)
            offset = nxt
            continue
        reason = "entry cut short" if status == ENTRY_TORN else "checksum mismatch"
        last = txns[-1].zxid if txns else from_zxid
        # any whole entry further on, wherever the damaged length field points, means data after
        # the damage: stop rather than cut it away
        if find_whole_entry(data, offset + 1, last) != -1:
            raise LogCorruption(path, offset, f"{reason}, with whole entries after it")
        return LogScan(path, txns, offset, reason, offsets)


def cut_tail(path: Path, end_offset: int) -> None:
    """Zero everything after end_offset (keeping the file's size) and fsync; what is cut (up to the
    zero padding) is kept first in `<log>.cut-<offset>` for an operator to look at."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(end_offset)
        tail = f.read(min(size - end_offset, 64 * 1024 * 1024)).rstrip(b"\0")
        if tail:
            keep = path.with_name(f"{path.name}.cut-{end_offset}")
            with open(keep, "wb") as k:
                k.write(tail)
                k.flush()
                os.fsync(k.fileno())
        f.seek(end_offset)
        remaining = size - end_offset
        zeros = bytes(min(remaining, 1 << 20))
        while remaining > 0:
            n = min(remaining, len(zeros))
            f.write(zeros[:n])
            remaining -= n
        f.flush()
        os.fsync(f.fileno())


def iter_log_txns(path: Path) -> Iterator[tuple[int, Txn]]:
    """(offset, txn) of every whole entry of a log file (inspection tools)."""
    scan = scan_log(path)
    yield from zip(scan.offsets, scan.txns, strict=True)


# ----------------------------------------------------------------------------------------------


@dataclass
class Batch:
    data: bytes
    first_zxid: int
    last_zxid: int
    count: int
    generation: int = 0
    created: float = field(default_factory=time.perf_counter)  # when the loop handed it over


class LogWriter:
    """The one thread that writes and syncs the log."""

    def __init__(self, log_dir: Path, *, prealloc_bytes: int, force_sync: bool, snap_count: int,
                 snap_size_limit_bytes: int, on_durable: Callable[[int, int], None],
                 on_error: Callable[[BaseException, list[Batch]], None],
                 on_roll: Callable[[], None], fsync_warning_ms: int = 1000) -> None:
        self.log_dir = log_dir
        self.prealloc_bytes = max(prealloc_bytes, 0)
        self.force_sync = force_sync
        self.snap_count = max(snap_count, 2)
        self.snap_size_limit_bytes = snap_size_limit_bytes
        self.on_durable = on_durable
        self.on_error = on_error
        self.on_roll = on_roll
        self.fsync_warning_ms = fsync_warning_ms
        self._cond = threading.Condition()
        self._queue: deque[Batch] = deque()
        self._queued_bytes = 0
        self._stop = False
        self._accepted_generation = 0  # -1 while halted after a failure
        self._roll_requested = False
        self._fd: int | None = None
        self._path: Path | None = None
        self._pos = 0
        self._allocated = 0
        self._count_since_roll = 0
        self._bytes_since_roll = 0
        self._rand_roll = 0
        self._rand_size = 0
        self._reset_snapshot_stats()
        self._thread = threading.Thread(target=self._run, name="zkfast-txnlog", daemon=True)
        # figures for mntr
        self.fsync_count = 0
        self.fsync_total_ms = 0.0
        self.fsync_max_ms = 0.0
        self.fsync_min_ms = 0.0
        self.fsync_threshold_exceed_count = 0
        # called on this thread after each write+sync: (txns made durable, seconds since the oldest
        # batch among them was handed over); the metrics endpoint sets it
        self.on_batch: Callable[[int, float], None] | None = None
        self.batch_count = 0
        self.batch_txns_total = 0
        self.failed = False

    def start(self) -> None:
        self._thread.start()

    def _reset_snapshot_stats(self) -> None:
        # Apache's SyncRequestProcessor: randomised so the servers of an ensemble snapshot apart
        self._rand_roll = random.randrange(self.snap_count // 2) if self.snap_count >= 2 else 0
        half = self.snap_size_limit_bytes // 2
        self._rand_size = random.randrange(half) if half > 0 else 0

    def submit(self, batch: Batch) -> None:
        with self._cond:
            while self._queued_bytes > MAX_QUEUED_BATCH_BYTES and not self._stop:
                self._cond.wait(0.1)  # back-pressure: the disk is slower than the clients
            self._queue.append(batch)
            self._queued_bytes += len(batch.data)
            self._cond.notify_all()

    def accept(self, generation: int) -> None:
        """After a failure the loop has failed every txn it had sent; batches of this generation
        are new txns and may be written."""
        with self._cond:
            self._accepted_generation = generation
            self._cond.notify_all()

    def roll(self) -> None:
        """The next batch goes into a new file."""
        with self._cond:
            self._roll_requested = True

    def close(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._close_file()

    # -- the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue and self._stop:
                    return
                gen = self._accepted_generation
                # batches sent before the loop heard of a failure belong to txns it fails
                batches = [b for b in self._queue if b.generation == gen]
                self._queue.clear()
                self._queued_bytes = 0
                roll = self._roll_requested
                self._roll_requested = False
                self._cond.notify_all()
            if not batches:
                continue
            try:
                self._write(batches, roll)
            except BaseException as e:  # noqa: BLE001 - any failure must reach the loop
                self.failed = True
                log.error("txn log write failed: %s", e)
                with self._cond:
                    self._accepted_generation = -1  # halt until the loop has failed its txns
                    self._queue.clear()
                    self._queued_bytes = 0
                self.on_error(e, batches)
                continue
            self.failed = False
            self._acknowledge(batches)
            if self._should_roll():
                self._reset_snapshot_stats()
                with self._cond:
                    self._roll_requested = True
                self.on_roll()

    def _should_roll(self) -> bool:
        if self._count_since_roll > self.snap_count // 2 + self._rand_roll:
            return True
        limit = self.snap_size_limit_bytes
        return limit > 0 and self._bytes_since_roll > limit // 2 + self._rand_size

    def _open(self, first_zxid: int) -> None:
        self._close_file()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / log_name(first_zxid)
        log.info("creating new log file: %s", path.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            header = file_header()
            os.write(fd, header)
            self._pos = len(header)
            self._allocated = self._pos
            self._preallocate(fd, self._pos + 1)
            os.fsync(fd)
            fsync_dir(self.log_dir)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd = fd
        self._path = path
        self._count_since_roll = 0
        self._bytes_since_roll = 0

    def _preallocate(self, fd: int, need_end: int) -> None:
        if need_end + PREALLOC_MARGIN_BYTES <= self._allocated:
            return
        if self.prealloc_bytes <= 0:
            return
        new_size = self._allocated
        while need_end + PREALLOC_MARGIN_BYTES > new_size:
            new_size += self.prealloc_bytes
        # fallocate reserves real blocks: ENOSPC shows up here, never mid-entry
        os.posix_fallocate(fd, self._allocated, new_size - self._allocated)
        self._allocated = new_size

    def _write(self, batches: list[Batch], roll: bool) -> None:
        if self._fd is None or roll:
            self._open(batches[0].first_zxid)
        fd = self._fd
        assert fd is not None
        data = batches[0].data if len(batches) == 1 else b"".join(b.data for b in batches)
        self._preallocate(fd, self._pos + len(data))
        self._append(fd, data)
        self._sync(fd, len(data))
        self._pos += len(data)
        n = sum(b.count for b in batches)
        self._count_since_roll += n
        self._bytes_since_roll += len(data)
        self.batch_count += 1
        self.batch_txns_total += n
        on_batch = self.on_batch
        if on_batch is not None:
            on_batch(n, time.perf_counter() - batches[0].created)

    def _acknowledge(self, batches: list[Batch]) -> None:
        """The batches are written (and synced, with forceSync): their txns may be answered."""
        self.on_durable(batches[-1].last_zxid, sum(b.count for b in batches))

    def _append(self, fd: int, data: bytes) -> None:
        """Write `data` at the end of the current file, or leave no partial entry behind."""
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.pwrite(fd, view[written:], self._pos + written)
        except OSError:
            # a torn entry in the middle of the file would stop recovery: zero what was written
            if written:
                try:
                    os.pwrite(fd, bytes(written), self._pos)
                except OSError:
                    pass
            raise

    def _sync(self, fd: int, length: int) -> None:
        """Make the `length` bytes just appended durable (with forceSync), timing it for mntr."""
        if not self.force_sync:
            return
        t0 = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as e:
            # the page cache can no longer be trusted to match the disk: never acknowledge,
            # take the entries back as well as we can, and stop writing for good
            try:
                os.pwrite(fd, bytes(length), self._pos)
                os.fdatasync(fd)
            except OSError:
                pass
            raise FsyncFailed(str(e)) from e
        self._record_fsync((time.perf_counter() - t0) * 1000)

    def _record_fsync(self, ms: float) -> None:
        self.fsync_count += 1
        self.fsync_total_ms += ms
        self.fsync_min_ms = ms if self.fsync_count == 1 else min(self.fsync_min_ms, ms)
        self.fsync_max_ms = max(self.fsync_max_ms, ms)
        if ms > self.fsync_warning_ms:
            self.fsync_threshold_exceed_count += 1
            log.warning("fsync-ing the write ahead log in %s took %dms which will adversely effect "
                        "operation latency. File size is %d bytes. See the ZooKeeper troubleshooting "
                        "guide", threading.current_thread().name, ms, self._allocated)

    def _close_file(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def current_file(self) -> Path | None:
        return self._path


class FsyncFailed(OSError):
    """fdatasync of the log failed: nothing after the last good sync can be trusted."""


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
