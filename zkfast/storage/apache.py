"""Apache ZooKeeper's snapshot files (its FileSnap.java, SnapStream.java and SerializeUtils.java),
read for migration and written for export.

`snapshot.<hex zxid>` (plain, `.gz` or `.snappy`): FileHeader{ZKSN, 2, -1}, sessions, the ACL
cache, node records in pre-order (root as ""), the path "/", then a seal: the Adler32 of every
byte so far and the path "/" again. With digests enabled 3.8 adds a ZxidDigest (long zxid, int
version, long digest: the tree digest after that zxid, DataTree.serializeZxidDigest) and a second
seal over every byte before it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zkfast._datatree import DIGEST_VERSION, digest_enabled, load_chunk, serialize_chunk, snapshot_nodes_end
from zkfast._jute import SNAP_MAGIC, Reader, WriteBuffer
from zkfast.storage.txnlog import fsync_dir, zxid_of_name

SNAP_PREFIX = "snapshot."
OPEN_ACL_UNSAFE = [(31, "world", "anyone")]
XERIAL_MAGIC = b"\x82SNAPPY\x00"


class ApacheSnapshotError(Exception):
    pass


def apache_snapshots(snap_dir: Path) -> list[tuple[int, Path]]:
    """(zxid, file) of Apache's snapshot files, newest first."""
    out = []
    if not snap_dir.is_dir():
        return out
    for entry in os.scandir(snap_dir):
        if not entry.is_file():
            continue
        name = entry.name
        for ext in (".gz", ".snappy"):
            if name.endswith(ext):
                name = name[: -len(ext)]
        z = zxid_of_name(name, SNAP_PREFIX)
        if z is not None:
            out.append((z, Path(entry.path)))
    out.sort(reverse=True)
    return out


def _xerial_snappy(raw: bytes) -> bytes:
    try:
        import cramjam  # type: ignore[import-not-found]
    except ImportError as e:
        raise ApacheSnapshotError("reading a .snappy snapshot needs the `cramjam` package") from e
    if not raw.startswith(XERIAL_MAGIC):
        raise ApacheSnapshotError("not a snappy stream")
    pos = 16
    out = bytearray()
    while pos < len(raw):
        n = struct.unpack(">i", raw[pos:pos + 4])[0]
        pos += 4
        out += bytes(cramjam.snappy.decompress_raw(raw[pos:pos + n]))
        pos += n
    return bytes(out)


def read_snapshot_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".snappy"):
        return _xerial_snappy(raw)
    return raw


ZXID_DIGEST_BYTES = 20  # long zxid, int digestVersion, long digest


@dataclass
class ApacheSnapshot:
    zxid: int
    sessions: dict[int, int]
    nodes: int
    digest: tuple[int, int, int] | None = None  # its ZxidDigest (zxid, version, digest), if it has one


def _read_seal(data: bytes, at: int, what: str) -> int:
    # SnapStream.checkSealIntegrity: the Adler32 of every byte before it, then the path "/"
    r = Reader(data, at)
    if (r.read_long() & 0xFFFFFFFFFFFFFFFF) != zlib.adler32(data[:at]):
        raise ApacheSnapshotError(f"{what}: checksum mismatch")
    if r.read_ustring() != b"/":
        raise ApacheSnapshotError(f"{what}: bad seal")
    return r.offset


def _seal(body: bytes) -> bytes:
    seal = WriteBuffer(64)
    seal.write_long(zlib.adler32(body))
    seal.write_ustring(b"/")
    return seal.take()


def load_apache_snapshot(path: Path, tree: Any) -> ApacheSnapshot:
    """Load one of Apache's snapshot files into an empty tree; ApacheSnapshotError if it is bad."""
    name = path.name
    for ext in (".gz", ".snappy"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    zxid = zxid_of_name(name, SNAP_PREFIX)
    if zxid is None:
        raise ApacheSnapshotError(f"{path.name}: not a snapshot file name")
    try:
        data = read_snapshot_bytes(path)
        r = Reader(data)
        magic, version, _ = r.read_int(), r.read_int(), r.read_long()
        if magic != SNAP_MAGIC or version != 2:
            raise ApacheSnapshotError(f"{path.name}: not a version-2 snapshot")
        sessions, loaded, end = decode_tree_stream(data, r.offset, tree)
        end = _read_seal(data, end, path.name)
        digest = None
        if digest_enabled() and len(data) - end >= ZXID_DIGEST_BYTES:
            # FileSnap.deserialize: the digest section, then its own seal
            r3 = Reader(data, end)
            digest = (r3.read_long(), r3.read_int(), r3.read_long())
            if digest[1] < 2:
                digest = None  # an older version's digest, in hex text: not comparable (Apache skips it too)
            else:
                _read_seal(data, r3.offset, path.name)
    except (ValueError, EOFError, OSError, zlib.error) as e:
        raise ApacheSnapshotError(f"{path.name}: {e}") from e
    tree.last_processed_zxid = zxid
    return ApacheSnapshot(zxid, sessions, loaded, digest)


def encode_tree_stream(tree: Any, sessions: dict[int, int]) -> bytes:
    """Sessions, the ACL cache, every node in pre-order and the closing "/": what follows a snapshot
    file's header, and what a leader streams after a SNAP packet (Apache's serializeSnapshot)."""
    nodes = WriteBuffer(1 << 20)
    acl_map: dict[int, Any] = {}
    acl_out: list[tuple[int, list]] = []
    stack = [b"/"]
    while stack:
        serialize_chunk(tree, stack, 1 << 30, nodes, acl_map, acl_out)
    b = WriteBuffer(1 << 20)
    b.write_int(len(sessions))
    for sid, timeout in sessions.items():
        b.write_long(sid)
        b.write_int(timeout)
    b.write_int(len(acl_out))
    for ref, acl in acl_out:
        b.write_long(ref)
        b.write_acl_list(acl)
    b.write_raw(nodes.take())
    b.write_ustring(b"/")
    return b.take()


def decode_tree_stream(data: bytes, offset: int, tree: Any) -> tuple[dict[int, int], int, int]:
    """Load a tree stream at data[offset:] into an empty tree: (sessions, nodes loaded, end offset).
    ValueError (or EOFError) if data ends before the stream does."""
    r = Reader(data, offset)
    sessions: dict[int, int] = {}
    for _ in range(r.read_int()):
        sid = r.read_long()
        sessions[sid] = r.read_int()
    acls: dict[int, list] = {-1: OPEN_ACL_UNSAFE}
    for _ in range(r.read_int()):
        ref = r.read_long()
        acls[ref] = r.read_acl_list() or []
    start = r.offset
    end = snapshot_nodes_end(data, start)
    loaded, _ = load_chunk(tree, data[start:end], acls)
    r2 = Reader(data, end)
    if r2.read_ustring() != b"/":
        raise ValueError("node list not closed")
    return sessions, loaded, r2.offset


def write_apache_snapshot(tree: Any, sessions: dict[int, int], out_dir: Path) -> Path:
    """Write the whole tree as `out_dir/snapshot.<hex last zxid>`, fsynced."""
    b = WriteBuffer(1 << 20)
    b.write_int(SNAP_MAGIC)
    b.write_int(2)
    b.write_long(-1)
    b.write_raw(encode_tree_stream(tree, sessions))
    body = b.take()
    body += _seal(body)
    if digest_enabled():
        # the whole tree at its last zxid: its digest is the one Apache checks once loaded
        d = WriteBuffer(32)
        d.write_long(tree.last_processed_zxid)
        d.write_int(DIGEST_VERSION)
        d.write_long(tree.tree_digest)
        body += d.take()
        body += _seal(body)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{SNAP_PREFIX}{tree.last_processed_zxid:x}"
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, final)
    fsync_dir(out_dir)
    return final
