"""What an ensemble member keeps on disk beyond a standalone server's log and snapshots.

- `currentEpoch` and `acceptedEpoch` in dataDir: decimal text, as Apache's QuorumPeer writes them,
  replaced atomically (write a temp file, fsync, rename, fsync the directory) so a crash leaves the
  old value or the new one, never neither.
- TRUNC: the leader says our log went past its history; the txns after a zxid go (cut out of their
  file, later files and snapshots set aside with a `.truncated` suffix an operator can inspect).
- SNAP: the leader's tree replaces ours; once it is durable as a snapshot, every older log is set
  aside (`.superseded`), since txns in them past the snapshot may be from a history the ensemble
  dropped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from zkfast.storage.apache import apache_snapshots
from zkfast.storage.snapshot import snapshot_dirs
from zkfast.storage.txnlog import cut_tail, fsync_dir, log_files, scan_log

log = logging.getLogger(__name__)

CURRENT_EPOCH = "currentEpoch"
ACCEPTED_EPOCH = "acceptedEpoch"
# the membership this server last activated (a committed reconfig), as Apache's zoo.cfg.dynamic.N
ACTIVE_MEMBERSHIP = "membership"


class EpochFileError(Exception):
    pass


def read_epoch(data_dir: Path, name: str) -> int | None:
    """The epoch in data_dir/name, None if the file does not exist."""
    path = data_dir / name
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        raise EpochFileError(f"{path} holds {text[:40]!r}, not an epoch number") from None


def write_epoch(data_dir: Path, name: str, epoch: int) -> None:
    write_atomically(data_dir, name, f"{epoch}".encode())


def write_atomically(data_dir: Path, name: str, data: bytes) -> None:
    """Replace data_dir/name durably: a reader finds the old content or the new, never a mix."""
    path = data_dir / name
    tmp = path.with_name(name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fsync_dir(data_dir)


def _set_aside(path: Path, suffix: str) -> None:
    target = path.with_name(path.name + suffix)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}.{n}")
    log.warning("setting aside %s as %s", path.name, target.name)
    os.rename(path, target)


def truncate_after(snap_dir: Path, log_dir: Path, zxid: int) -> int:
    """Drop every logged txn after zxid; returns how many were dropped."""
    dropped = 0
    for start, path in log_files(log_dir):
        if start > zxid:
            dropped += len(scan_log(path).txns)
            _set_aside(path, ".truncated")
            continue
        scan = scan_log(path)
        for i, txn in enumerate(scan.txns):
            if txn.zxid > zxid:
                dropped += len(scan.txns) - i
                log.warning("truncating %s at offset %d: txns 0x%x..0x%x", path.name, scan.offsets[i],
                            txn.zxid, scan.txns[-1].zxid)
                cut_tail(path, scan.offsets[i])
                break
    for snap_zxid, path in snapshot_dirs(snap_dir) + apache_snapshots(snap_dir):
        if snap_zxid > zxid:
            _set_aside(path, ".truncated")
    fsync_dir(log_dir)
    fsync_dir(snap_dir)
    return dropped


def supersede_logs(log_dir: Path) -> int:
    files = log_files(log_dir)
    for _, path in files:
        _set_aside(path, ".superseded")
    if files:
        fsync_dir(log_dir)
    return len(files)
