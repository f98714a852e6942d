"""Start-up: the newest complete snapshot, then every logged txn after its start zxid.

Replay is idempotent: txns carry absolute results (DataTree.java applies a txn's recorded outcome,
which FileTxnSnapLog.java's replay over a fuzzy snapshot relies on). A torn tail is cut after the
last whole entry and reported; a damaged entry with whole entries after it stops start-up, naming
file and offset; a gap between the snapshot and the logs, or inside the logs, stops start-up too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zkfast._jute import OP_CLOSE_SESSION, OP_CREATE_SESSION, Txn
from zkfast.storage.apache import ApacheSnapshotError, apache_snapshots, load_apache_snapshot
from zkfast.storage.snapshot import SnapshotError, load_snapshot, snapshot_dirs
from zkfast.storage.txnlog import LogCorruption, cut_tail, log_files, logs_needed, scan_log

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
# logged txns kept after recovery for an ensemble leader's DIFF syncs (Apache's commitLogCount)
TAIL_TXNS = 500


class RecoveryError(Exception):
    """Start-up cannot go on without losing data; the message says what and where."""


@dataclass
class Recovered:
    tree: Any
    sessions: dict[int, int]
    last_zxid: int
    snapshot: Path | None
    snapshot_zxid: int
    replayed: int
    torn: list[str] = field(default_factory=list)
    skipped_snapshots: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tail: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=TAIL_TXNS))  # (zxid, txn bytes)


def zxid_epoch(zxid: int) -> int:
    return zxid >> 32


def _contiguous(prev: int, nxt: int) -> bool:
    # within an epoch zxids count up by one; a new epoch starts its counter again
    if nxt == prev + 1:
        return True
    return zxid_epoch(nxt) > zxid_epoch(prev) and (nxt & 0xFFFFFFFF) >= 1


def recover(snap_dir: Path, log_dir: Path, new_tree: Callable[[], Any],
            truncate_log_at: tuple[str, int] | None = None,
            progress: Callable[[str], None] | None = None) -> Recovered:
    """Rebuild the tree and the session table from disk."""
    started = time.monotonic()
    say = progress or (lambda msg: log.info("%s", msg))
    skipped: list[str] = []
    tree = new_tree()
    sessions: dict[int, int] = {}
    snap_path: Path | None = None
    snap_zxid = 0
    last_report = [time.monotonic()]

    def snap_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last_report[0] >= PROGRESS_EVERY_S:
            last_report[0] = now
            say(f"loading snapshot: {done}/{total} znodes")

    # zkfast's snapshots and, for an operator coming from Apache ZooKeeper, its snapshot files:
    # the newest valid one wins, whichever kind
    candidates = [(z, 1, p) for z, p in snapshot_dirs(snap_dir)] + \
                 [(z, 0, p) for z, p in apache_snapshots(snap_dir)]
    candidates.sort(reverse=True)
    for _zxid, ours, path in candidates:
        try:
            if ours:
                loaded = load_snapshot(path, tree, snap_progress)
                nodes, loaded_sessions, loaded_zxid = loaded.nodes, loaded.sessions, loaded.zxid
                digest = loaded.digest
                if loaded.orphans:
                    log.warning("snapshot %s held %d znodes whose parent is not in it", path.name,
                                loaded.orphans)
            else:
                say(f"importing Apache ZooKeeper snapshot {path.name}")
                apache = load_apache_snapshot(path, tree)
                nodes, loaded_sessions, loaded_zxid = apache.nodes, apache.sessions, apache.zxid
                digest = list(apache.digest) if apache.digest is not None else None
        except (SnapshotError, ApacheSnapshotError, OSError) as e:
            log.warning("snapshot %s is not usable (%s): trying the one before", path.name, e)
            skipped.append(f"{path.name}: {e}")
            tree = new_tree()
            continue
        snap_path, snap_zxid, sessions = path, loaded_zxid, dict(loaded_sessions)
        if digest is not None:
            # compared at once, or when replay reaches its zxid (the txn digests wait until then)
            tree.set_snapshot_digest(digest[0], digest[1], digest[2], snap_zxid)
        say(f"loaded snapshot {path.name}: {nodes} znodes, {len(sessions)} sessions, zxid 0x{snap_zxid:x}")
        break
    tree.last_processed_zxid = snap_zxid

    files = log_files(log_dir)
    needed = logs_needed(files, snap_zxid)
    # Apache reads the file the snapshot falls in entry by entry; when the next file starts at or
    # before the snapshot's next zxid, the file holds nothing past the snapshot (files do not
    # overlap: TRUNC cuts them, SNAP sets the older ones aside), and reading it cost half of a 10M-znode
    # start-up
    while snap_path is not None and len(needed) > 1 and needed[1][0] <= snap_zxid + 1:
        needed.pop(0)
    if snap_path is None and files and files[0][0] > 1:
        raise RecoveryError(f"no snapshot, and the oldest txn log {files[0][1].name} starts at zxid "
                            f"0x{files[0][0]:x}: the txns before it are missing")
    last = snap_zxid
    replayed = 0
    torn: list[str] = []
    tail: deque[tuple[int, bytes]] = deque(maxlen=TAIL_TXNS)
    for i, (start, path) in enumerate(needed):
        cut_at = None
        if truncate_log_at is not None and truncate_log_at[0] == path.name:
            cut_at = truncate_log_at[1]
        try:
            scan = scan_log(path, from_zxid=snap_zxid, truncate_at=cut_at)
        except LogCorruption as e:
            raise RecoveryError(
                f"txn log {e.path} is damaged at offset {e.offset}: {e}. Whole entries follow the damage, so "
                f"this is not a torn tail; start with --truncate-log-at {e.path.name}:{e.offset} to accept "
                f"losing every txn from there on") from e
        if start > last + 1 and scan.txns and not _contiguous(last, scan.txns[0].zxid):
            raise RecoveryError(f"txn log gap: {path.name} starts at 0x{start:x}, the txns before it end at "
                                f"0x{last:x}")
        for txn in scan.txns:
            if txn.zxid <= last:
                continue
            if not _contiguous(last, txn.zxid):
                raise RecoveryError(f"txn log gap in {path.name}: zxid 0x{txn.zxid:x} follows 0x{last:x}")
            tail.append((txn.zxid, txn.to_bytes()))
            apply_recovered(tree, sessions, txn)
            last = txn.zxid
            replayed += 1
            now = time.monotonic()
            if now - last_report[0] >= PROGRESS_EVERY_S:
                last_report[0] = now
                say(f"replaying txn log {path.name}: zxid 0x{last:x}, {replayed} txns so far")
        if scan.torn is not None or cut_at is not None:
            later = needed[i + 1:]
            if later and cut_at is None:
                first_later = later[0][0]
                if not _contiguous(last, first_later) and first_later != last + 1:
                    raise RecoveryError(f"txn log {path.name} is torn at offset {scan.end_offset} and the next "
                                        f"log starts at 0x{first_later:x}, after a gap from 0x{last:x}")
            msg = (f"txn log {path.name}: {scan.torn or 'truncated on request'} at offset {scan.end_offset}; "
                   f"cut after the last whole entry (zxid 0x{last:x})")
            log.warning("%s", msg)
            torn.append(msg)
            cut_tail(path, scan.end_offset)
            if cut_at is not None:
                for _, later_path in later:
                    log.warning("removing txn log %s, after the truncation point", later_path.name)
                    later_path.rename(later_path.with_name(later_path.name + ".truncated"))
                break
    tree.last_processed_zxid = last
    _kill_dead_sessions(tree, sessions, last)
    seconds = time.monotonic() - started
    if replayed or snap_path is not None:
        say(f"recovered zxid 0x{last:x} ({replayed} txns replayed) in {seconds:.2f}s")
    return Recovered(tree, sessions, last, snap_path, snap_zxid, replayed, torn, skipped, seconds, tail)


def apply_recovered(tree: Any, sessions: dict[int, int], txn: Txn) -> None:
    if txn.type == OP_CREATE_SESSION:
        sessions[txn.session_id] = txn.timeout
    elif txn.type == OP_CLOSE_SESSION:
        sessions.pop(txn.session_id, None)
    tree.apply(txn)


def _kill_dead_sessions(tree: Any, sessions: dict[int, int], zxid: int) -> None:
    # ephemerals of sessions the table does not know belong to nobody (Apache's loadData)
    for sid in list(tree.sessions_with_ephemerals()):
        if sid not in sessions:
            log.info("removing ephemerals of dead session 0x%x", sid & 0xFFFFFFFFFFFFFFFF)
            tree.kill_session(sid, zxid, None)
