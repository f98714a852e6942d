#!/usr/bin/env python3
"""crashfs: a FUSE passthrough filesystem that loses what a power cut loses.

    python tests/fault/crashfs.py BACKING MOUNTPOINT [--log FILE] [--debug]

Every write to a file is kept in memory (per file, in 4 KiB pages) until that file is fsync'ed or
fdatasync'ed; only then are its pages, its size and any truncation written through to the file under
BACKING and fsynced there. A *crash* is a power cut at that instant: every unsynced write is dropped
(as the page cache is), and the filesystem freezes: from then on no operation that changes anything
returns — an fsync in progress at the crash never returns success, whatever the process does — until
it is *thawed*, after which they all fail with EIO. Processes using the mount are meant to be killed
between the crash and the thaw (SIGKILL cannot end a process waiting on a FUSE request the daemon
holds, so the thaw is what lets them die), and the mount then unmounted and mounted again: the reboot,
which also clears the kernel's caches of the mount. Crash with SIGUSR1 or by writing `crash` to
MOUNTPOINT/.crashfs-control; thaw with SIGUSR2 or `thaw`; `sync` there flushes everything, as sync(1);
`crash-partial=SEED` is a crash in which a random half of the unsynced pages (of files still linked) reach
the disk first, as the kernel's write-back can leave them; `arm-fsync-partial=TEXT,SEED` the same at an
armed fsync. `arm-fsync=TEXT` crashes at the start of the next fsync of a file whose path contains TEXT and that has
written data to sync, not counting a new file's first fsync (the moment a write has reached the page
cache but not the disk).
Reads go on after a crash, from the durable state.

Directory entries follow a journaling filesystem's rule: create, mkdir, unlink, rmdir and rename take
effect at once but are only durable once a directory they touched is fsynced; that fsync makes durable
every namespace change up to and including the last one touching that directory (a journal commits in
order). A crash undoes the others, newest first. A file fsync makes its data durable, not its name:
POSIX asks for the directory fsync as well. Unlinked and replaced files wait under
BACKING/.crashfs-trash until their removal is durable.

fallocate: mode 0 extends the file (zeros; ENOSPC when the backing filesystem has no room for the
extension), FALLOC_FL_KEEP_SIZE is accepted and does nothing, other modes get EOPNOTSUPP (glibc's
posix_fallocate then falls back to writing). mmap works (the mount does not use direct_io): LMDB's
data.mdb (read through a shared mapping, written with pwrite) and its lock.mdb (a shared writable
mapping, written back by the kernel through write) run on it. Locks are handled by the kernel.

A clean unmount (fusermount -u, SIGTERM, SIGINT) flushes what is still unsynced, as umount does; after
a crash an unmount thaws what is blocked and flushes nothing. Leftovers in the trash from a crashfs process that was
itself killed count as removed.

This file is also imported by the tests for `CrashFs`, which starts the filesystem in its own process,
crashes it, mounts it again, and always unmounts it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import logging
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = 4096
ZERO_PAGE = bytes(PAGE)
CONTROL_NAME = ".crashfs-control"
TRASH_NAME = ".crashfs-trash"
FALLOC_FL_KEEP_SIZE = 0x01
MOUNT_TIMEOUT_S = 20.0
TRACE = os.environ.get("CRASHFS_TRACE") == "1"  # log every write/fsync with its times

log = logging.getLogger("crashfs")


# ---------------------------------------------------------------------------------------------------
# the in-memory state of one file


class FileState:
    """One file's page cache: dirty pages over the durable bytes of its backing file."""

    def __init__(self, path: str | None, fd: int) -> None:
        self.path = path            # visible path; None once unlinked or replaced
        self.fd = fd                # backing file (the descriptor follows renames)
        size = os.fstat(fd).st_size
        self.size = size            # logical size
        self.base_limit = size      # backing bytes past this read as zeros (a truncation not synced)
        self.synced_size = size
        self.dirty: dict[int, bytearray] = {}
        self.opens = 0
        self.dead = False           # dropped by a crash

    def is_dirty(self) -> bool:
        return bool(self.dirty) or self.size != self.synced_size or self.base_limit != self.synced_size

    def unsynced_bytes(self) -> int:
        return len(self.dirty) * PAGE + abs(self.size - self.synced_size)

    def _base(self, start: int, end: int) -> bytes:
        """Durable bytes [start, end), zero-filled past base_limit."""
        limit = self.base_limit
        if start >= limit:
            return bytes(end - start)
        got = os.pread(self.fd, min(end, limit) - start, start)
        if len(got) < end - start:
            got += bytes(end - start - len(got))
        return got

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        if not self.dirty:
            return self._base(offset, end)
        out = bytearray()
        pos = offset
        while pos < end:
            idx, po = divmod(pos, PAGE)
            n = min(PAGE - po, end - pos)
            page = self.dirty.get(idx)
            if page is not None:
                out += page[po:po + n]
            else:
                # read the run of clean pages in one pread
                run_end = pos + n
                while run_end < end and (run_end // PAGE) not in self.dirty:
                    run_end = min(run_end + PAGE, end)
                out += self._base(pos, run_end)
                n = run_end - pos
            pos += n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        pos, i, total = offset, 0, len(data)
        while i < total:
            idx, po = divmod(pos, PAGE)
            n = min(PAGE - po, total - i)
            chunk = view[i:i + n]
            if n == PAGE:
                if idx * PAGE >= self.base_limit and chunk == ZERO_PAGE:
                    self.dirty.pop(idx, None)  # zeros over nothing durable: reads give zeros anyway
                else:
                    self.dirty[idx] = bytearray(chunk)
            else:
                page = self.dirty.get(idx)
                if page is None:
                    page = bytearray(self._base(idx * PAGE, idx * PAGE + PAGE))
                    self.dirty[idx] = page
                page[po:po + n] = chunk
            pos += n
            i += n
        self.size = max(self.size, offset + total)

    def truncate(self, length: int) -> None:
        if length < self.size:
            for idx in [k for k in self.dirty if k * PAGE >= length]:
                del self.dirty[idx]
            idx, po = divmod(length, PAGE)
            page = self.dirty.get(idx)
            if page is not None and po:
                page[po:] = bytes(PAGE - po)
            self.base_limit = min(self.base_limit, length)
        self.size = length

    def sync(self) -> int:
        """Write the dirty pages, size and truncation through to the backing file and fsync it."""
        fd = self.fd
        written = 0
        if os.fstat(fd).st_size > self.base_limit:
            os.ftruncate(fd, self.base_limit)
        run_start = -1
        run = bytearray()
        for idx in sorted(self.dirty):
            start = idx * PAGE
            if start >= self.size:
                break
            page = self.dirty[idx]
            n = min(PAGE, self.size - start)
            if run and run_start + len(run) == start:
                run += page[:n]
            else:
                if run:
                    written += os.pwrite(fd, run, run_start)
                run_start, run = start, bytearray(page[:n])
        if run:
            written += os.pwrite(fd, run, run_start)
        if os.fstat(fd).st_size != self.size:
            os.ftruncate(fd, self.size)
        os.fsync(fd)
        self.dirty.clear()
        self.base_limit = self.size
        self.synced_size = self.size
        return written

    def write_back_some(self, rng: random.Random) -> int:
        """Write a random subset of the dirty pages to the backing file (no fsync, nothing marked clean:
        the state is dropped afterwards). A page past the durable size may extend the file."""
        kept = 0
        for idx in sorted(self.dirty):
            if rng.random() < 0.5:
                continue
            start = idx * PAGE
            if start >= self.size:
                continue
            n = min(PAGE, self.size - start)
            if start + n > self.base_limit and self.base_limit < os.fstat(self.fd).st_size:
                continue  # a truncation not yet durable sits under this page: leave it
            os.pwrite(self.fd, self.dirty[idx][:n], start)
            kept += 1
        return kept

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


MUTATING = frozenset({"write", "fsync", "fsyncdir", "create", "mkdir", "rename", "unlink", "rmdir", "truncate",
                      "fallocate", "chmod", "chown", "utimens"})


@dataclass
class Handle:
    state: FileState
    sync_writes: bool  # opened with O_SYNC / O_DSYNC


@dataclass
class NsOp:
    """A namespace change not yet durable."""

    what: str
    dirs: tuple[str, ...]          # visible directories whose fsync makes it durable
    undo: Callable[[], None]
    commit: Callable[[], None]


def _parent(path: str) -> str:
    p = os.path.dirname(path.rstrip("/")) or "/"
    return p


def _noop() -> None:
    return None


# ---------------------------------------------------------------------------------------------------
# the filesystem


class CrashOps:
    """The operations fusepy calls (by name, through __call__)."""

    use_ns = True  # times in nanoseconds

    def __init__(self, backing: str, sync_on_unmount: bool = True, sync_latency_s: float = 0.0) -> None:
        self.sync_latency_s = sync_latency_s
        self.root = os.path.realpath(backing)
        self.trash = os.path.join(self.root, TRASH_NAME)
        shutil.rmtree(self.trash, ignore_errors=True)
        os.makedirs(self.trash, exist_ok=True)
        self.sync_on_unmount = sync_on_unmount
        self.mutex = threading.RLock()
        self.files: dict[str, FileState] = {}
        self.handles: dict[int, Handle | None] = {}  # None: the control file
        self.next_fh = 1
        self.journal: list[NsOp] = []
        self.trash_seq = 0
        self.crashes = 0
        self.armed: str | None = None      # crash at the start of the next fsync of a path containing this
        self.armed_partial: int | None = None  # ... with some unsynced pages written back (this seed)
        self.frozen = threading.Event()   # set at a crash: changes block (never succeed) from then on
        self.thawed = threading.Event()   # set by thaw/unmount: blocked changes fail with EIO

    def __call__(self, op: str, *args: Any) -> Any:
        fn = getattr(self, op, None)
        if fn is None or op.startswith("_"):
            raise OSError(errno.ENOSYS, op)
        if TRACE and op in ("write", "fsync", "fallocate", "create"):
            t0 = time.monotonic()
            try:
                return self._call(fn, op, args)
            finally:
                log.info("trace %s %s %.6f %.6f", op, args[0], t0, time.monotonic())
        return self._call(fn, op, args)

    def _call(self, fn: Callable[..., Any], op: str, args: tuple[Any, ...]) -> Any:
        gated = op in MUTATING and not self._is_control(op, args)
        if gated and self.frozen.is_set():
            self._blocked(op)
        result = fn(*args)
        if gated and self.frozen.is_set():
            # the power went while this ran: it never returns success (an fsync may have reached the
            # disk or not; its caller must not learn that it did)
            self._blocked(op)
        return result

    def _is_control(self, op: str, args: tuple[Any, ...]) -> bool:
        if args and args[0] == "/" + CONTROL_NAME:
            return True
        if op == "write" and len(args) >= 4:
            return self.handles.get(args[3], 0) is None
        if op == "truncate" and len(args) >= 3 and args[2] is not None:
            return self.handles.get(args[2], 0) is None
        return False

    def _blocked(self, op: str) -> None:
        self.thawed.wait()
        raise OSError(errno.EIO, f"{op} after a crash")

    def thaw(self) -> None:
        self.thawed.set()

    # -- helpers

    def _b(self, path: str) -> str:
        if path == "/" + TRASH_NAME or path.startswith("/" + TRASH_NAME + "/"):
            raise OSError(errno.ENOENT, "hidden")
        return self.root + path

    def _trash_path(self) -> str:
        self.trash_seq += 1
        return os.path.join(self.trash, f"{os.getpid()}-{self.trash_seq}")

    def _state(self, path: str) -> FileState:
        st = self.files.get(path)
        if st is None:
            fd = os.open(self._b(path), os.O_RDWR | os.O_CLOEXEC)
            st = FileState(path, fd)
            self.files[path] = st
        return st

    def _maybe_drop(self, st: FileState) -> None:
        if st.opens > 0:
            return
        if st.path is None or st.dead:
            st.close()
            return
        if not st.is_dirty():
            self.files.pop(st.path, None)
            st.close()

    def _handle(self, fh: int) -> Handle:
        h = self.handles.get(fh)
        if h is None or h.state.dead:
            raise OSError(errno.EIO, "stale handle (crashed)")
        return h

    def _detach(self, path: str) -> None:
        st = self.files.pop(path, None)
        if st is not None:
            st.path = None
            self._maybe_drop(st)

    def _journal(self, op: NsOp) -> None:
        self.journal.append(op)

    # -- crash and sync

    def crash(self, partial_seed: int | None = None) -> str:
        """Power cut. With partial_seed, each unsynced page of a file that is still linked reaches the
        disk or not at random (the kernel writes dirty pages back in no particular order, at any time);
        without it none does."""
        if TRACE:
            log.info("trace crash %.6f", time.monotonic())
        self.frozen.set()  # first, without the lock: an operation under way must not finish after this
        with self.mutex:
            if partial_seed is not None:
                rng = random.Random(partial_seed)
                for st in self.files.values():
                    if st.is_dirty() and not st.dead:
                        kept = st.write_back_some(rng)
                        log.info("crash: %s: %d of its unsynced pages reached the disk", st.path, kept)
            dropped = sum(st.unsynced_bytes() for st in self.files.values() if st.is_dirty())
            nfiles = sum(1 for st in self.files.values() if st.is_dirty())
            for h in self.handles.values():
                if h is not None and h.state.path is None and h.state.is_dirty():
                    dropped += h.state.unsynced_bytes()
                    log.info("crash: an unlinked file loses %d unsynced bytes", h.state.unsynced_bytes())
            for st in list(self.files.values()):
                if st.is_dirty():
                    log.info("crash: %s loses %d unsynced bytes (size %d, durable %d)", st.path,
                             st.unsynced_bytes(), st.size, st.synced_size)
                st.dead = True
                st.close()
            for h in self.handles.values():
                if h is not None:
                    h.state.dead = True
                    h.state.close()
            self.files.clear()
            undone = 0
            for op in reversed(self.journal):
                try:
                    op.undo()
                    undone += 1
                except OSError as e:
                    log.error("crash: cannot undo %s: %s", op.what, e)
            self.journal.clear()
            self.crashes += 1
            msg = (f"crash #{self.crashes}: dropped ~{dropped} unsynced bytes in {nfiles} files, "
                   f"undid {undone} namespace changes")
            log.warning("%s", msg)
            return msg

    def sync_all(self) -> None:
        with self.mutex:
            for st in list(self.files.values()):
                if st.is_dirty():
                    st.sync()
            self._commit(len(self.journal))
            for st in list(self.files.values()):
                self._maybe_drop(st)

    def _commit(self, n: int) -> None:
        for op in self.journal[:n]:
            try:
                op.commit()
            except OSError as e:
                log.error("commit of %s failed: %s", op.what, e)
        del self.journal[:n]

    # -- attributes and directories

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        with self.mutex:
            if path == "/" + CONTROL_NAME:
                now = time.time_ns()
                return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0, "st_uid": 0,
                        "st_gid": 0, "st_atime": now, "st_mtime": now, "st_ctime": now}
            state: FileState | None = None
            if fh is not None and fh in self.handles and self.handles[fh] is not None:
                state = self._handle(fh).state
                s = os.fstat(state.fd)
            else:
                assert path is not None
                s = os.lstat(self._b(path))
                state = self.files.get(path)
            attrs = {key: getattr(s, key) for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_ino",
                                                       "st_size", "st_blocks")}
            attrs["st_atime"] = s.st_atime_ns
            attrs["st_mtime"] = s.st_mtime_ns
            attrs["st_ctime"] = s.st_ctime_ns
            if state is not None and stat.S_ISREG(s.st_mode):
                attrs["st_size"] = state.size
                attrs["st_blocks"] = max(s.st_blocks, (len(state.dirty) * PAGE) // 512)
            return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        names = os.listdir(self._b(path))
        if path == "/":
            names = [n for n in names if n != TRASH_NAME]
        return [".", "..", *names]

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.root)
        return {key: getattr(sv, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                   "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def access(self, path: str, amode: int) -> int:
        if path == "/" + CONTROL_NAME:
            return 0
        if not os.access(self._b(path), amode):
            raise OSError(errno.EACCES, "access")
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._b(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._b(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if path == "/" + CONTROL_NAME:
            return 0
        if times is None:
            os.utime(self._b(path))
        else:
            os.utime(self._b(path), ns=times)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self.mutex:
            b = self._b(path)
            os.mkdir(b, mode)
            self._journal(NsOp(f"mkdir {path}", (_parent(path),),
                               lambda: shutil.rmtree(b, ignore_errors=True), _noop))
            return 0

    def rmdir(self, path: str) -> int:
        with self.mutex:
            b = self._b(path)
            if not os.path.isdir(b) or os.path.islink(b):
                raise OSError(errno.ENOTDIR, path)
            if os.listdir(b):
                raise OSError(errno.ENOTEMPTY, path)
            t = self._trash_path()
            os.rename(b, t)
            self._journal(NsOp(f"rmdir {path}", (_parent(path),), lambda: os.rename(t, b),
                               lambda: shutil.rmtree(t, ignore_errors=True)))
            return 0

    def unlink(self, path: str) -> int:
        with self.mutex:
            b = self._b(path)
            if os.path.isdir(b) and not os.path.islink(b):
                raise OSError(errno.EISDIR, path)
            t = self._trash_path()
            os.rename(b, t)
            self._detach(path)
            self._journal(NsOp(f"unlink {path}", (_parent(path),), lambda: os.rename(t, b),
                               lambda: os.unlink(t)))
            return 0

    def rename(self, old: str, new: str) -> int:
        with self.mutex:
            bo, bn = self._b(old), self._b(new)
            if not os.path.lexists(bo):
                raise OSError(errno.ENOENT, old)
            old_is_dir = os.path.isdir(bo) and not os.path.islink(bo)
            replaced: str | None = None
            if os.path.lexists(bn):
                new_is_dir = os.path.isdir(bn) and not os.path.islink(bn)
                if old_is_dir and not new_is_dir:
                    raise OSError(errno.ENOTDIR, new)
                if new_is_dir and not old_is_dir:
                    raise OSError(errno.EISDIR, new)
                if new_is_dir and os.listdir(bn):
                    raise OSError(errno.ENOTEMPTY, new)
                if os.path.samefile(bo, bn):
                    return 0
                replaced = self._trash_path()
                os.rename(bn, replaced)
            try:
                os.rename(bo, bn)
            except OSError:
                if replaced is not None:
                    os.rename(replaced, bn)
                raise
            if replaced is not None:
                self._detach(new)
            # states of the renamed file, or of everything under the renamed directory, follow it
            for key in [k for k in self.files if k == old or k.startswith(old + "/")]:
                st = self.files.pop(key)
                st.path = new + key[len(old):]
                self.files[st.path] = st

            def undo() -> None:
                os.rename(bn, bo)
                if replaced is not None:
                    os.rename(replaced, bn)

            def commit() -> None:
                if replaced is not None:
                    if os.path.isdir(replaced) and not os.path.islink(replaced):
                        shutil.rmtree(replaced, ignore_errors=True)
                    else:
                        os.unlink(replaced)

            self._journal(NsOp(f"rename {old} -> {new}", (_parent(old), _parent(new)), undo, commit))
            return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        self._disk_latency()
        with self.mutex:
            if self.frozen.is_set():
                return 0
            target = path or "/"
            last = -1
            for i, op in enumerate(self.journal):
                if target in op.dirs:
                    last = i
            if last >= 0:
                self._commit(last + 1)
            fd = os.open(self._b(target), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return 0

    # -- files

    def _new_fh(self, h: Handle | None) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = h
        return fh

    def _open_state(self, path: str, flags: int) -> int:
        st = self._state(path)
        st.opens += 1
        if flags & os.O_TRUNC:
            st.truncate(0)
        return self._new_fh(Handle(st, bool(flags & (os.O_SYNC | os.O_DSYNC))))

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            if path == "/" + CONTROL_NAME:
                return self._new_fh(None)
            b = self._b(path)
            if os.path.isdir(b):
                raise OSError(errno.EISDIR, path)
            return self._open_state(path, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self.mutex:
            if path == "/" + CONTROL_NAME:
                return self._new_fh(None)
            b = self._b(path)
            existed = os.path.lexists(b)
            fd = os.open(b, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, mode)
            os.close(fd)
            if not existed:
                self._journal(NsOp(f"create {path}", (_parent(path),), lambda: os.unlink(b), _noop))
            return self._open_state(path, os.O_RDWR)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self.mutex:
            if self.handles.get(fh, 0) is None:
                return b""
            return self._handle(fh).state.read(offset, size)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self.mutex:
            if fh in self.handles and self.handles[fh] is None:
                self._control(data)
                return len(data)
            h = self._handle(fh)
            h.state.write(offset, data)
            if h.sync_writes:
                h.state.sync()
            return len(data)

    def _control(self, data: bytes) -> None:
        for word in data.decode("ascii", "replace").split():
            if word == "crash":
                self.crash()
            elif word == "thaw":
                self.thaw()
            elif word.startswith("arm-fsync="):
                self.armed, self.armed_partial = word.split("=", 1)[1], None
                log.info("armed: crash at the next fsync of a path containing %r", self.armed)
            elif word.startswith("arm-fsync-partial="):
                text, _, seed = word.split("=", 1)[1].rpartition(",")
                self.armed, self.armed_partial = text, int(seed)
                log.info("armed: crash with a partial write-back at the next fsync of a path containing %r",
                         self.armed)
            elif word.startswith("crash-partial="):
                self.crash(int(word.split("=", 1)[1]))
            elif word == "sync":
                self.sync_all()
            else:
                log.warning("control: unknown command %r", word)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self.mutex:
            if path == "/" + CONTROL_NAME or (fh is not None and self.handles.get(fh, 0) is None):
                return 0
            if fh is not None and fh in self.handles:
                st = self._handle(fh).state
            else:
                assert path is not None
                st = self._state(path)
            st.truncate(length)
            self._maybe_drop(st)
            return 0

    def fallocate(self, path: str | None, mode: int, offset: int, length: int, fh: int) -> int:
        with self.mutex:
            if mode & ~FALLOC_FL_KEEP_SIZE:
                raise OSError(errno.EOPNOTSUPP, "only plain fallocate")
            if offset < 0 or length <= 0:
                raise OSError(errno.EINVAL, "fallocate range")
            st = self._handle(fh).state
            end = offset + length
            if mode & FALLOC_FL_KEEP_SIZE or end <= st.size:
                return 0
            sv = os.statvfs(self.root)
            if end - st.size > sv.f_bavail * sv.f_frsize:
                raise OSError(errno.ENOSPC, "fallocate")
            st.size = end
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        if self.handles.get(fh, 0) is None:
            return 0
        st = self._handle(fh).state
        armed = self.armed
        # armed: the next fsync of such a file that has data to sync, not its first (a new file's)
        if armed is not None and st.path is not None and armed in st.path and st.synced_size > 0 and st.dirty:
            self.armed = None
            log.info("armed crash: fsync of %s", st.path)
            self.crash(self.armed_partial)  # the power goes just as this fsync starts
            return 0
        self._disk_latency()
        with self.mutex:
            if self.frozen.is_set():
                return 0  # the power went before the disk got to it: the gate never lets this return
            st.sync()
            return 0

    def _disk_latency(self) -> None:
        # a disk takes a while to sync; a crash in that time finds the data not yet written through
        if self.sync_latency_s > 0:
            time.sleep(self.sync_latency_s)

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def release(self, path: str | None, fh: int) -> int:
        with self.mutex:
            h = self.handles.pop(fh, None)
            if h is not None:
                h.state.opens -= 1
                self._maybe_drop(h.state)
            return 0

    def destroy(self, path: str) -> None:
        self.thawed.set()
        if self.sync_on_unmount and not self.frozen.is_set():
            try:
                self.sync_all()
            except OSError as e:
                log.error("sync at unmount failed: %s", e)
        log.info("unmounted")


# ---------------------------------------------------------------------------------------------------
# fusepy knows fuse_operations only up to ioctl: add libfuse 2.9's poll, write_buf, read_buf, flock
# and fallocate so fallocate reaches the filesystem


def _install_fallocate() -> Any:
    import fuse

    if getattr(fuse, "_crashfs_fallocate", False):
        return fuse.FUSE
    fallocate_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, fuse.c_off_t, fuse.c_off_t,
                                   ctypes.POINTER(fuse.fuse_file_info))

    class fuse_operations_ext(ctypes.Structure):  # noqa: N801 - libfuse's name
        _fields_ = [*fuse.fuse_operations._fields_,
                    ("poll", ctypes.c_voidp), ("write_buf", ctypes.c_voidp), ("read_buf", ctypes.c_voidp),
                    ("flock", ctypes.c_voidp), ("fallocate", fallocate_t)]

    class FUSEWithFallocate(fuse.FUSE):  # type: ignore[misc]
        def fallocate(self, path: bytes | None, mode: int, offset: int, length: int, fip: Any) -> int:
            fh = fip.contents.fh
            decoded = path.decode(self.encoding) if path else None
            return int(self.operations("fallocate", decoded, mode, offset, length, fh))

    fuse.fuse_operations = fuse_operations_ext
    fuse.FUSE = FUSEWithFallocate
    fuse._crashfs_fallocate = True
    return FUSEWithFallocate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--log", help="log file (default stderr)")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--no-sync-on-unmount", action="store_true")
    parser.add_argument("--sync-latency-ms", type=float, default=0.0,
                        help="time an fsync takes before it writes through (a crash in it loses the data)")
    args = parser.parse_args(argv)
    logging.basicConfig(filename=args.log, level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s crashfs[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("fuse").setLevel(logging.WARNING if not args.debug else logging.DEBUG)
    fuse_cls = _install_fallocate()
    # the crash signal waits for the GIL: hand it over quickly, so that a crash lands when it is sent
    sys.setswitchinterval(0.0005)
    ops = CrashOps(args.backing, sync_on_unmount=not args.no_sync_on_unmount,
                   sync_latency_s=args.sync_latency_ms / 1000)

    # SIGUSR1 = crash, SIGUSR2 = thaw. Python runs signal handlers only on the main thread, which sits
    # in fuse_main: block them everywhere and take them with sigwait on a thread of our own.
    sigs = {signal.SIGUSR1, signal.SIGUSR2}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)

    def crash_on_signal() -> None:
        while True:
            if signal.sigwait(sigs) == signal.SIGUSR1:
                ops.crash()
            else:
                ops.thaw()

    threading.Thread(target=crash_on_signal, daemon=True, name="crashfs-sigusr1").start()
    log.info("mounting %s on %s", ops.root, args.mountpoint)
    fuse_cls(ops, args.mountpoint, foreground=True, nothreads=False, fsname="crashfs", subtype="crashfs",
             big_writes=True, max_write=131072, attr_timeout=0, entry_timeout=0, negative_timeout=0,
             hard_remove=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# for the tests: one crashfs process, crashed and mounted again on demand


def fuse_problem() -> str | None:
    """Why crashfs cannot run here, or None."""
    try:
        import fuse  # noqa: F401
    except (ImportError, OSError) as e:
        return f"fusepy/libfuse2 not usable ({e}): pip install fusepy; apt-get install -y fuse3 libfuse2"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if shutil.which("fusermount") is None and shutil.which("fusermount3") is None:
        return "fusermount not found: apt-get install -y fuse3"
    return None


def _fusermount() -> str:
    return shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"


class CrashFs:
    """crashfs over `backing`, mounted on `mountpoint`, in a child process."""

    def __init__(self, backing: Path, mountpoint: Path, log_path: Path, sync_latency_ms: float = 1.0) -> None:
        self.sync_latency_ms = sync_latency_ms
        self.backing = backing
        self.mountpoint = mountpoint
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        if self.proc is not None:
            raise RuntimeError("already mounted")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), str(self.backing), str(self.mountpoint),
                 "--log", str(self.log_path), "--sync-latency-ms", str(self.sync_latency_ms)],
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"crashfs exited with {rc} before mounting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.unmount()
                raise RuntimeError(f"crashfs did not mount within {MOUNT_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def crash(self) -> None:
        """Power cut now (SIGUSR1): unsynced writes dropped, changes frozen; returns once it is done.
        Kill the processes using the mount, then `thaw()`, then `reboot()`."""
        assert self.proc is not None
        before = self.log_path.read_bytes().count(b"crash #")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while self.log_path.read_bytes().count(b"crash #") <= before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"crashfs did not report the crash:\n{self.log_tail()}")
            time.sleep(0.01)

    def crashes(self) -> int:
        return self.log_path.read_bytes().count(b"crash #")

    def arm_fsync(self, text: str, partial_seed: int | None = None) -> None:
        """Crash at the start of the next fsync of a file whose path contains `text` (a control write);
        with partial_seed, a random half of the unsynced pages reach the disk first."""
        word = f"arm-fsync={text}" if partial_seed is None else f"arm-fsync-partial={text},{partial_seed}"
        with open(self.mountpoint / CONTROL_NAME, "w") as f:
            f.write(word + "\n")

    def thaw(self) -> None:
        """Let operations blocked since the crash fail (EIO), so that killed processes can exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR2)

    def reboot(self) -> None:
        """Unmount and mount again: the kernel's caches of the mount go too."""
        self.unmount()
        self.mount()

    def unmount(self) -> None:
        """Unmount (lazily if busy) and wait for the process; safe to call twice."""
        if os.path.ismount(self.mountpoint):
            r = subprocess.run([_fusermount(), "-u", str(self.mountpoint)], capture_output=True)
            if r.returncode != 0:
                subprocess.run([_fusermount(), "-u", "-z", str(self.mountpoint)], capture_output=True)
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()  # only our own child, by its pid
                proc.wait()
        if os.path.ismount(self.mountpoint):  # a mount whose process died: "transport not connected"
            subprocess.run([_fusermount(), "-u", "-z", str(self.mountpoint)], capture_output=True)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


@contextlib.contextmanager
def mounted_crashfs(base: Path | None = None) -> Iterator[CrashFs]:
    """A crashfs in a temporary directory, unmounted and removed afterwards whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="crashfs-", dir=base))
    fs = CrashFs(tmp / "backing", tmp / "mnt", tmp / "crashfs.log")
    try:
        fs.mount()
        yield fs
    finally:
        fs.unmount()
        if not os.path.ismount(fs.mountpoint):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
