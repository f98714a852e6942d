"""Snapshots into LMDB, written by a forked child process.

Layout: `<dataDir>/version-2/zkfast-snap.<hex zxid>/` holds one LMDB environment (data.mdb) with
four databases:
  meta      format version, start zxid, counts, and `complete` — written last, in its own
            transaction, after everything else is synced; a snapshot without it is ignored
  chunks    8-byte big-endian sequence number → a run of node records in Apache's snapshot layout
            (ustring path, buffer data, long aclRef, StatPersisted) + Adler32 of the run (4 bytes)
  acls      8-byte id → vector<ACL>
  sessions  8-byte session id → int timeout (ms)
The directory is written as `zkfast-snap.<zxid>.tmp` and renamed once complete.

The server forks at the tree's last applied zxid Z; the child writes the tree as it was then
(copy-on-write) while the parent goes on serving. A snapshot is still read as a fuzzy one is:
recovery replays every logged txn after Z, and txns carry absolute results, so replaying one that
an Apache snapshot's walk (or an older zkfast one's) already saw changes nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import logging
import os
import platform
import shutil
import signal
import struct
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

import lmdb

from zkfast._datatree import DIGEST_VERSION, DataTree, digest_enabled, load_chunk, serialize_chunk
from zkfast._jute import Reader, WriteBuffer, adler32_of, encode_acl_list
from zkfast.limits import SNAPSHOT_NICE_INCREMENT, SNAPSHOT_WRITEBACK_BYTES
from zkfast.storage.txnlog import fsync_dir, zxid_of_name

log = logging.getLogger(__name__)

SNAP_PREFIX = "zkfast-snap."
TMP_SUFFIX = ".tmp"
FORMAT_VERSION = 1
CHUNK_NODES = 2000  # node records per LMDB record
MIN_NODE_RECORD_BYTES = 4 + 4 + 8 + 60  # path and data lengths, ACL reference, StatPersisted
MIN_MAP_BYTES = 64 * 1024 * 1024
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
_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4


def write_back(fd: int) -> None:
    """sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER) over the whole file: its dirty pages are
    written and waited for, with no device cache flush; durability still comes from the fsync at
    the end."""
    flags = _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER
    if _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), flags) != 0:
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


@runtime_checkable  # so that a test can tell whether the server's sessions still fit
class TimedSession(Protocol):
    @property
    def timeout_ms(self) -> int: ...


class SessionTable(Protocol):
    @property
    def sessions(self) -> Mapping[int, TimedSession]: ...


class SnapshotSource(Protocol):
    """The live state a snapshot writes: the child has it as it was at the fork, whatever the
    server does with it next (a TRUNC or a SNAP from the leader swaps the tree)."""

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
    fork_ms: float = 0.0  # the server's one pause for it: copying its page tables
    # the tree's digest at the fork, with its zxid (Apache's ZxidDigest trailer): replay over the
    # snapshot compares digests from that zxid on
    digest: list[int] | None = None


class SnapshotWriter:
    """One snapshot in progress, written by a child process.

    The server forks; the child has the tree as it was at the fork (copy-on-write pages, nothing
    copied up front), writes it out and exits, while the parent goes on serving. Nothing of the
    snapshot runs on the event loop or holds the server's GIL: a walk on the loop, even in slices,
    put its CPU between every request and its reply, and a writer thread in the server competed
    with the loop and the txn log's thread for the GIL. The child runs at a lower CPU priority
    (SNAPSHOT_NICE_INCREMENT) and I/O priority (best effort, level 7), and waits for its own writeback every
    SNAPSHOT_WRITEBACK_BYTES, so the txn log's fdatasync never queues behind more than that of it.
    """

    def __init__(self, source: SnapshotSource, snap_dir: Path,
                 on_done: Callable[[SnapshotStats | None, BaseException | None], None]) -> None:
        self.source = source
        self.snap_dir = snap_dir
        self.on_done = on_done
        self.stats = SnapshotStats()
        self.loop = asyncio.get_running_loop()
        self.thread: threading.Thread | None = None
        self.tmp_path: Path | None = None
        self.pid = 0

    def start(self) -> None:
        tree = self.source.tree
        self.stats.zxid = tree.last_processed_zxid
        if digest_enabled():
            # the child writes the tree as it is now: its digest is exact at this zxid
            self.stats.digest = [tree.last_processed_zxid, DIGEST_VERSION, tree.tree_digest]
        sessions = [(sid, s.timeout_ms) for sid, s in self.source.sessions.sessions.items()]
        self.snap_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_path = self.snap_dir / (snap_name(self.stats.zxid) + TMP_SUFFIX)
        if self.tmp_path.exists():
            shutil.rmtree(self.tmp_path)
        map_size = map_size_for(tree.data_bytes + tree.node_count() * 160)
        log.info("snapshotting: 0x%x to %s", self.stats.zxid, self.tmp_path.name[: -len(TMP_SUFFIX)])
        parent = os.getpid()
        r, w = os.pipe()
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of forking a threaded process: the child takes no lock that a
                # thread of the server may hold (no logging, no queues, no event loop), and exits
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:  # pragma: no cover - the child; coverage does not follow it
            _child_main(tree, sessions, self.stats, self.tmp_path, self.snap_dir, map_size, parent, w)
        self.stats.fork_ms = (time.perf_counter() - t0) * 1000
        os.close(w)
        self.pid = pid
        self.thread = threading.Thread(target=self._wait_child, args=(r,), daemon=True, name="zkfast-snapshot")
        self.thread.start()

    def abort(self) -> None:
        """Kill the child: the snapshot ends as failed (its temporary directory removed) unless it
        was complete already. The log holds everything a snapshot would."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _wait_child(self, r: int) -> None:
        """On a thread of the parent: the child's report, then its exit status."""
        report = bytearray()
        try:
            while chunk := os.read(r, 65536):
                report += chunk
        finally:
            os.close(r)
        _, status = os.waitpid(self.pid, 0)
        try:
            result = json.loads(report) if report else {}
        except ValueError:
            result = {}
        error: BaseException | None = None
        if os.waitstatus_to_exitcode(status) != 0 or "error" in result:
            error = _child_error(status, result)
            if self.tmp_path is not None:
                shutil.rmtree(self.tmp_path, ignore_errors=True)
            self.loop.call_soon_threadsafe(self.on_done, None, error)
            return
        self.stats.nodes = int(result["nodes"])
        self.stats.chunks = int(result["chunks"])
        self.stats.bytes = int(result["bytes"])
        self.stats.seconds = time.monotonic() - self.stats.started
        self.loop.call_soon_threadsafe(self.on_done, self.stats, None)


def _child_error(status: int, result: dict[str, Any]) -> BaseException:
    if "error" in result:
        err = result.get("errno")
        return OSError(err, result["error"]) if err else SnapshotError(result["error"])
    code = os.waitstatus_to_exitcode(status)
    what = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
    return SnapshotError(f"the snapshot process {what}")


# Linux: prctl(PR_SET_PDEATHSIG), ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_BE << 13 | 7). Not the idle
# class: idle I/O is served only once the disk has been idle a while, and the log's fsyncs keep it busy, so a
# snapshot could be starved for as long as the writes go on
_PR_SET_PDEATHSIG = 1
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}.get(platform.machine())
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_BEST_EFFORT = 2
_IOPRIO_LOWEST_LEVEL = 7
_IOPRIO_CLASS_SHIFT = 13


def _child_main(tree: DataTree, sessions: list[tuple[int, int]], stats: SnapshotStats, tmp_path: Path,
                snap_dir: Path, map_size: int, parent: int, report_fd: int) -> NoReturn:  # pragma: no cover
    """The forked child: write the snapshot, report on `report_fd`, and exit without ever returning
    into the server's code (its event loop, its threads' locks and its sockets are the parent's)."""
    code = 1
    try:
        gc.disable()  # a collection would touch every object, copying the parent's pages for nothing
        # die with the server: after a kill -9 a restart must not find this one still writing
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's loop
        except ValueError:
            pass  # forked from a thread that is not Python's main one: it installed no handlers
        # the parent's sockets and files: a connection the server closes must close now, not when
        # this child exits
        os.closerange(3, report_fd)
        os.closerange(report_fd + 1, os.sysconf("SC_OPEN_MAX"))
        os.nice(SNAPSHOT_NICE_INCREMENT)
        if _IOPRIO_SET is not None:
            _libc.syscall(_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0,
                          _IOPRIO_CLASS_BEST_EFFORT << _IOPRIO_CLASS_SHIFT | _IOPRIO_LOWEST_LEVEL)
        result = write_snapshot(tree, sessions, stats, tmp_path, snap_dir, map_size)
        code = 0
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        result = {"error": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)}
    try:
        os.write(report_fd, json.dumps(result).encode())
    finally:
        os._exit(code)


def write_snapshot(tree: DataTree, sessions: list[tuple[int, int]], stats: SnapshotStats, tmp_path: Path,
                   snap_dir: Path, map_size: int) -> dict[str, int]:
    """Write the whole tree into a new LMDB environment at tmp_path, sync it, mark it complete and
    rename it into place: {nodes, chunks, bytes}. The tree must not change meanwhile (the child's
    copy never does)."""
    env = _open_env(tmp_path, map_size, readonly=False)
    out = {"nodes": 0, "chunks": 0, "bytes": 0}
    try:
        dbs = {name: env.open_db(name) for name in DBS}
        data_fd = os.open(tmp_path / "data.mdb", os.O_RDONLY)
        try:
            stack: list[Any] = [b"/"]
            acl_map: dict[int, Any] = {}
            acls: list[tuple[int, list]] = []
            unsynced = 0
            while stack:
                buf = WriteBuffer(256 * 1024)
                n = serialize_chunk(tree, stack, CHUNK_NODES, buf, acl_map, acls)
                if not n:
                    continue
                payload = buf.take()
                value = payload + struct.pack(">I", adler32_of(payload))
                _put(env, dbs[b"chunks"], _key(out["chunks"]), value)
                out["nodes"] += n
                out["chunks"] += 1
                out["bytes"] += len(value)
                unsynced += len(value)
                if unsynced >= SNAPSHOT_WRITEBACK_BYTES:
                    # written back and waited for, a little at a time without a device cache
                    # flush: the txn log's fdatasync on the same disk queues behind at most this
                    # much of ours, and never waits for a flush of our making
                    write_back(data_fd)
                    unsynced = 0
        finally:
            os.close(data_fd)
        with env.begin(write=True) as txn:
            for snap_id, acl in acls:
                txn.put(_key(snap_id), encode_acl_list(acl), db=dbs[b"acls"])
            for sid, timeout in sessions:
                txn.put(_key(sid), struct.pack(">i", timeout), db=dbs[b"sessions"])
            meta = {"format": FORMAT_VERSION, "zxid": stats.zxid, "nodes": out["nodes"], "chunks": out["chunks"],
                    "acls": len(acls), "sessions": len(sessions), "created_ms": int(time.time() * 1000),
                    "digest": stats.digest}
            txn.put(b"info", json.dumps(meta).encode(), db=dbs[b"meta"])
        env.sync(True)
        # the completion marker goes last, in its own synced transaction
        with env.begin(write=True) as txn:
            txn.put(b"complete", b"1", db=dbs[b"meta"])
        env.sync(True)
    except BaseException:
        env.close()
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    env.close()
    final = snap_dir / snap_name(stats.zxid)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp_path, final)
    fsync_dir(snap_dir)
    return out


def _put(env: lmdb.Environment, db: Any, key: bytes, value: bytes) -> None:
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
            # the index sized once; by the file too, so that a damaged count cannot ask for more
            tree.reserve(min(int(info.get("nodes", 0)), (path / "data.mdb").stat().st_size // MIN_NODE_RECORD_BYTES))
            # the chunks are read in place from the map (buffers valid until the cursor moves on):
            # copying them out was a fifth of a 1M-znode start-up
            with env.begin(buffers=True) as chunk_txn:
                for k, v in chunk_txn.cursor(db=dbs[b"chunks"]):
                    seq = struct.unpack(">q", k)[0]
                    if seq != chunks:
                        raise SnapshotError(f"{path.name}: chunk {chunks} missing")
                    if len(v) < 4:
                        raise SnapshotError(f"{path.name}: chunk {seq} is shorter than its checksum")
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
