"""Fuzzy snapshots into LMDB.

Layout: `<dataDir>/version-2/zkfast-snap.<hex zxid>/` holds one LMDB environment (data.mdb) with
four databases:
  meta      format version, start zxid, counts, and `complete` — written last, in its own
            transaction, after everything else is synced; a snapshot without it is ignored
  chunks    8-byte big-endian sequence number → a run of node records in Apache's snapshot layout
            (ustring path, buffer data, long aclRef, StatPersisted) + Adler32 of the run (4 bytes)
  acls      8-byte id → vector<ACL>
  sessions  8-byte session id → int timeout (ms)
The directory is written as `zkfast-snap.<zxid>.tmp` and renamed once complete.

The walk is fuzzy, as Apache's: it starts at the tree's last applied zxid Z and serialises
CHUNK_NODES nodes per turn of the event loop, between request batches, while writes go on; a
thread writes the chunks to LMDB. Recovery replays every logged txn after Z; txns carry absolute
results, so replaying one the walk already saw changes nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import queue
import shutil
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lmdb

from zkfast._datatree import DIGEST_VERSION, DataTree, digest_enabled, load_chunk, serialize_chunk
from zkfast._jute import Reader, WriteBuffer, adler32_of, encode_acl_list
from zkfast.storage.txnlog import fsync_dir, zxid_of_name

log = logging.getLogger(__name__)

SNAP_PREFIX = "zkfast-snap."
TMP_SUFFIX = ".tmp"
FORMAT_VERSION = 1
CHUNK_NODES = 2000
# chunks serialised but not yet in LMDB: past it the walk waits (a bound on memory)
MAX_QUEUED_CHUNKS = 64
MIN_MAP_BYTES = 64 * 1024 * 1024
SYNC_EVERY_BYTES = 1024 * 1024
DBS = (b"meta", b"chunks", b"acls", b"sessions")


def snap_name(zxid: int) -> str:
    return f"{SNAP_PREFIX}{zxid:x}"


def snapshot_dirs(snap_dir: Path) -> list[tuple[int, Path]]:
    """(start zxid, dir) of every finished-looking snapshot directory, newest first."""
    out = []
    if not snap_dir.is_dir():
        return out
    for entry in os.scandir(snap_dir):
        if entry.name.endswith(TMP_SUFFIX) or not entry.is_dir():
            continue
        z = zxid_of_name(entry.name, SNAP_PREFIX)
        if z is not None:
            out.append((z, Path(entry.path)))
    out.sort(reverse=True)
    return out


def _key(n: int) -> bytes:
    return struct.pack(">q", n)


_libc = ctypes.CDLL(None, use_errno=True)
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) over the whole file: the kernel starts writing its
    dirty pages and returns; durability still comes from the fsync at the end."""
    if _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), _SYNC_FILE_RANGE_WRITE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def map_size_for(estimate_bytes: int) -> int:
    """LMDB's map is address space, not memory: twice the estimate, rounded up to 64 MiB."""
    want = max(MIN_MAP_BYTES, 2 * estimate_bytes + MIN_MAP_BYTES)
    return (want + MIN_MAP_BYTES - 1) // MIN_MAP_BYTES * MIN_MAP_BYTES


def _open_env(path: Path, map_size: int, readonly: bool) -> lmdb.Environment:
    # no lock file: a snapshot is written by one thread and read by nobody else until it is renamed
    # into place, and LMDB's lock file is a shared mapping that a full disk turns into SIGBUS
    return lmdb.open(str(path), map_size=map_size, max_dbs=len(DBS), subdir=True, readonly=readonly,
                     lock=False, sync=False, metasync=False, writemap=False, readahead=True,
                     meminit=False)


_DONE = object()


@runtime_checkable  # so that a test can tell whether the server's sessions still fit
class TimedSession(Protocol):
    @property
    def timeout_ms(self) -> int: ...


class SessionTable(Protocol):
    @property
    def sessions(self) -> Mapping[int, TimedSession]: ...


class SnapshotSource(Protocol):
    """The live state a snapshot walks. Read again at every slice, not kept: a TRUNC or a SNAP from
    the leader swaps the tree under a running snapshot."""

    @property
    def tree(self) -> DataTree: ...

    @property
    def sessions(self) -> SessionTable: ...


@dataclass
class SnapshotStats:
    zxid: int = 0
    nodes: int = 0
    chunks: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    # the tree's digest when the walk ended, with that zxid (Apache's ZxidDigest trailer): replay
    # over this fuzzy snapshot reaches that tree at that zxid, and compares digests from there on
    digest: list[int] | None = None


class SnapshotWriter:
    """One fuzzy snapshot in progress."""

    def __init__(self, source: SnapshotSource, snap_dir: Path,
                 on_done: Callable[[SnapshotStats | None, BaseException | None], None]) -> None:
        self.source = source
        self.snap_dir = snap_dir
        self.on_done = on_done
        self.stats = SnapshotStats()
        self.stack: list[bytes] = [b"/"]
        self.acl_map: dict[int, Any] = {}
        self.acl_out: list[tuple[int, list]] = []
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=MAX_QUEUED_CHUNKS)
        self.loop = asyncio.get_running_loop()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.env: lmdb.Environment | None = None
        self.tmp_path: Path | None = None
        self.seq = 0

    def start(self) -> None:
        tree = self.source.tree
        self.stats.zxid = tree.last_processed_zxid
        sessions = [(sid, s.timeout_ms) for sid, s in self.source.sessions.sessions.items()]
        self.snap_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_path = self.snap_dir / (snap_name(self.stats.zxid) + TMP_SUFFIX)
        if self.tmp_path.exists():
            shutil.rmtree(self.tmp_path)
        estimate = tree.data_bytes + tree.node_count() * 160
        self.env = _open_env(self.tmp_path, map_size_for(estimate), readonly=False)
        log.info("snapshotting: 0x%x to %s", self.stats.zxid, self.tmp_path.name[: -len(TMP_SUFFIX)])
        self.thread = threading.Thread(target=self._write_loop, args=(sessions,), daemon=True,
                                       name="zkfast-snapshot")
        self.thread.start()
        self.loop.call_soon(self._step)

    # -- on the event loop: a chunk per turn

    def _step(self) -> None:
        if self.error is not None:
            return
        if self.queue.full():
            self.loop.call_later(0.001, self._step)  # LMDB is behind: let it catch up
            return
        out = WriteBuffer(256 * 1024)
        n = serialize_chunk(self.source.tree, self.stack, CHUNK_NODES, out, self.acl_map, self.acl_out)
        if n:
            self.stats.nodes += n
            self.queue.put_nowait((self.seq, out.take()))
            self.seq += 1
        if self.stack:
            self.loop.call_soon(self._step)
        else:
            tree = self.source.tree
            if digest_enabled():
                self.stats.digest = [tree.last_processed_zxid, DIGEST_VERSION, tree.tree_digest]
            self.queue.put((_DONE, list(self.acl_out)))

    # -- on the snapshot thread

    def _write_loop(self, sessions: list[tuple[int, int]]) -> None:
        env = self.env
        assert env is not None and self.tmp_path is not None
        data_fd = -1
        try:
            dbs = {name: env.open_db(name) for name in DBS}
            data_fd = os.open(self.tmp_path / "data.mdb", os.O_RDONLY)
            unsynced = 0
            while True:
                item = self.queue.get()
                if item[0] is _DONE:
                    acls = item[1]
                    break
                seq, payload = item
                value = payload + struct.pack(">I", adler32_of(payload))
                self._put(dbs[b"chunks"], _key(seq), value)
                self.stats.chunks += 1
                self.stats.bytes += len(value)
                unsynced += len(value)
                if unsynced >= SYNC_EVERY_BYTES:
                    # writeback started as we go, without a device cache flush: one big write at the
                    # end would queue ahead of the txn log's fdatasync on the same disk, and a
                    # flush every MB would make each of its fdatasyncs wait for ours
                    start_writeback(data_fd)
                    unsynced = 0
            with env.begin(write=True) as txn:
                for snap_id, acl in acls:
                    txn.put(_key(snap_id), encode_acl_list(acl), db=dbs[b"acls"])
                for sid, timeout in sessions:
                    txn.put(_key(sid), struct.pack(">i", timeout), db=dbs[b"sessions"])
                meta = {"format": FORMAT_VERSION, "zxid": self.stats.zxid, "nodes": self.stats.nodes,
                        "chunks": self.stats.chunks, "acls": len(acls), "sessions": len(sessions),
                        "created_ms": int(time.time() * 1000), "digest": self.stats.digest}
                txn.put(b"info", json.dumps(meta).encode(), db=dbs[b"meta"])
            os.close(data_fd)
            data_fd = -1
            env.sync(True)
            # the completion marker goes last, in its own synced transaction
            with env.begin(write=True) as txn:
                txn.put(b"complete", b"1", db=dbs[b"meta"])
            env.sync(True)
            env.close()
            self.env = None
            final = self.snap_dir / snap_name(self.stats.zxid)
            if final.exists():
                shutil.rmtree(final)
            os.rename(self.tmp_path, final)
            fsync_dir(self.snap_dir)
            self.stats.seconds = time.monotonic() - self.stats.started
        except BaseException as e:  # noqa: BLE001 - reported to the loop
            self.error = e
            try:
                if data_fd >= 0:
                    os.close(data_fd)
                if self.env is not None:
                    self.env.close()
                if self.tmp_path is not None:
                    shutil.rmtree(self.tmp_path, ignore_errors=True)
            except OSError:
                pass
            self.loop.call_soon_threadsafe(self.on_done, None, e)
            return
        self.loop.call_soon_threadsafe(self.on_done, self.stats, None)

    def _put(self, db: Any, key: bytes, value: bytes) -> None:
        env = self.env
        assert env is not None
        while True:
            try:
                with env.begin(write=True) as txn:
                    txn.put(key, value, db=db)
                return
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)


class SnapshotError(Exception):
    pass


@dataclass
class LoadedSnapshot:
    path: Path
    zxid: int
    nodes: int
    sessions: dict[int, int]
    orphans: int
    digest: list[int] | None = None  # SnapshotStats.digest, if it was written with digests on


def read_snapshot_meta(path: Path) -> dict[str, Any]:
    env = _open_env(path, MIN_MAP_BYTES, readonly=True)
    try:
        meta_db = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            if txn.get(b"complete", db=meta_db) != b"1":
                raise SnapshotError(f"{path.name}: no completion marker")
            info = txn.get(b"info", db=meta_db)
        if info is None:
            raise SnapshotError(f"{path.name}: no info record")
        return dict(json.loads(info))
    finally:
        env.close()


def load_snapshot(path: Path, tree: Any, progress: Callable[[int, int], None] | None = None) -> LoadedSnapshot:
    """Load a complete snapshot into an empty tree; SnapshotError if it is incomplete or damaged."""
    try:
        env = _open_env(path, MIN_MAP_BYTES, readonly=True)
    except lmdb.Error as e:
        raise SnapshotError(f"{path.name}: {e}") from e
    try:
        try:
            dbs = {name: env.open_db(name, create=False) for name in DBS}
        except lmdb.Error as e:
            raise SnapshotError(f"{path.name}: {e}") from e
        with env.begin(buffers=False) as txn:
            if txn.get(b"complete", db=dbs[b"meta"]) != b"1":
                raise SnapshotError(f"{path.name}: no completion marker (an interrupted snapshot)")
            info = json.loads(txn.get(b"info", db=dbs[b"meta"]) or b"{}")
            if info.get("format") != FORMAT_VERSION:
                raise SnapshotError(f"{path.name}: unknown format {info.get('format')}")
            acls: dict[int, list] = {}
            for k, v in txn.cursor(db=dbs[b"acls"]):
                acls[struct.unpack(">q", k)[0]] = Reader(v).read_acl_list()
            sessions = {struct.unpack(">q", k)[0]: struct.unpack(">i", v)[0]
                        for k, v in txn.cursor(db=dbs[b"sessions"])}
            loaded = orphans = chunks = 0
            expected_chunks = int(info.get("chunks", -1))
            for k, v in txn.cursor(db=dbs[b"chunks"]):
                seq = struct.unpack(">q", k)[0]
                if seq != chunks:
                    raise SnapshotError(f"{path.name}: chunk {chunks} missing")
                payload, crc = v[:-4], struct.unpack(">I", v[-4:])[0]
                if adler32_of(payload) != crc:
                    raise SnapshotError(f"{path.name}: chunk {seq} fails its checksum")
                try:
                    n, o = load_chunk(tree, payload, acls)
                except ValueError as e:
                    raise SnapshotError(f"{path.name}: chunk {seq}: {e}") from e
                loaded += n
                orphans += o
                chunks += 1
                if progress is not None:
                    progress(loaded, int(info.get("nodes", 0)))
            if chunks != expected_chunks:
                raise SnapshotError(f"{path.name}: {chunks} chunks, the meta record says {expected_chunks}")
        return LoadedSnapshot(path, int(info["zxid"]), loaded, sessions, orphans, info.get("digest"))
    finally:
        env.close()
