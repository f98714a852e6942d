"""Operator tools on a data directory: log-dump, snap-dump, cleanup, import-zk, export-zk."""

from __future__ import annotations

import base64
import datetime
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zkfast._datatree import DataTree
from zkfast._jute import (
    OP_CHECK,
    OP_CLOSE_SESSION,
    OP_CREATE,
    OP_CREATE2,
    OP_CREATE_CONTAINER,
    OP_CREATE_SESSION,
    OP_CREATE_TTL,
    OP_DELETE,
    OP_DELETE_CONTAINER,
    OP_ERROR,
    OP_MULTI,
    OP_RECONFIG,
    OP_SET_ACL,
    OP_SET_DATA,
    Txn,
)
from zkfast.storage.apache import apache_snapshots, write_apache_snapshot
from zkfast.storage.recovery import Recovered, recover
from zkfast.storage.snapshot import read_snapshot_meta
from zkfast.storage.store import purge_dirs
from zkfast.storage.txnlog import scan_log

OP_NAMES = {OP_CREATE: "create", OP_DELETE: "delete", OP_SET_DATA: "setData", OP_SET_ACL: "setACL",
            OP_CHECK: "check", OP_MULTI: "multi", OP_CREATE2: "create2", OP_RECONFIG: "reconfig",
            OP_CREATE_CONTAINER: "createContainer", OP_DELETE_CONTAINER: "deleteContainer",
            OP_CREATE_TTL: "createTtl", OP_CREATE_SESSION: "createSession",
            OP_CLOSE_SESSION: "closeSession", OP_ERROR: "error"}


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", "replace")


def _acl_text(acl: list | None) -> str:
    if acl is None:
        return "null"
    return "[" + ", ".join(f"{p},s{{'{s}','{i}'}}" for p, s, i in acl) + "]"


def txn_details(t: Txn) -> str:
    """The body as Apache's TxnLogToolkit prints it."""
    typ = t.type
    if typ in (OP_CREATE, OP_CREATE2):
        return f"{_text(t.path)},{_text(t.data)},{_acl_text(t.acl)},{str(t.ephemeral).lower()},{t.parent_cversion}"
    if typ == OP_CREATE_CONTAINER:
        return f"{_text(t.path)},{_text(t.data)},{_acl_text(t.acl)},{t.parent_cversion}"
    if typ == OP_CREATE_TTL:
        return f"{_text(t.path)},{_text(t.data)},{_acl_text(t.acl)},{t.parent_cversion},{t.ttl}"
    if typ in (OP_SET_DATA, OP_RECONFIG):
        return f"{_text(t.path)},{_text(t.data)},{t.version}"
    if typ in (OP_DELETE, OP_DELETE_CONTAINER):
        return _text(t.path)
    if typ == OP_SET_ACL:
        return f"{_text(t.path)},{_acl_text(t.acl)},{t.version}"
    if typ == OP_CHECK:
        return f"{_text(t.path)},{t.version}"
    if typ == OP_ERROR:
        return f"err:{t.err}"
    if typ == OP_CREATE_SESSION:
        return f"timeout:{t.timeout}"
    if typ == OP_CLOSE_SESSION:
        return "" if t.paths is None else "[" + ", ".join(_text(p) for p in t.paths) + "]"
    if typ == OP_MULTI:
        return ";".join(f"{OP_NAMES.get(s.type, s.type)}:{txn_details(s)}" for s in t.subtxns or [])
    return ""


def txn_json(t: Txn) -> dict[str, Any]:
    out: dict[str, Any] = {"zxid": t.zxid, "session": t.session_id, "cxid": t.cxid, "time": t.time,
                           "type": OP_NAMES.get(t.type, t.type)}
    for name in ("path", "data"):
        value = getattr(t, name)
        if value is not None:
            out[name] = base64.b64encode(value).decode() if name == "data" else _text(value)
    if t.acl is not None:
        out["acl"] = [list(a) for a in t.acl]
    if t.type in (OP_CREATE, OP_CREATE2):
        out["ephemeral"] = bool(t.ephemeral)
    if t.type in (OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL):
        out["parentCVersion"] = t.parent_cversion
    if t.type in (OP_SET_DATA, OP_SET_ACL, OP_CHECK, OP_RECONFIG):
        out["version"] = t.version
    if t.type == OP_CREATE_TTL:
        out["ttl"] = t.ttl
    if t.type == OP_ERROR:
        out["err"] = t.err
    if t.type == OP_CREATE_SESSION:
        out["timeout"] = t.timeout
    if t.type == OP_CLOSE_SESSION and t.paths is not None:
        out["paths"] = [_text(p) for p in t.paths]
    if t.type == OP_MULTI:
        out["txns"] = [txn_json(s) for s in t.subtxns or []]
    return out


def log_dump(path: Path, as_json: bool, out: Callable[[str], None]) -> int:
    scan = scan_log(path)
    for t in scan.txns:
        if as_json:
            out(json.dumps(txn_json(t)))
        else:
            when = datetime.datetime.fromtimestamp(t.time / 1000).strftime("%m/%d/%y, %I:%M:%S %p %Z").strip()
            out(f"{when} session 0x{t.session_id & 0xFFFFFFFFFFFFFFFF:x} cxid 0x{t.cxid & 0xFFFFFFFF:x} "
                f"zxid 0x{t.zxid:x} {OP_NAMES.get(t.type, 'unknown ' + str(t.type))} {txn_details(t)}")
    if scan.torn:
        out(f"EOF reached after {len(scan.txns)} txns ({scan.torn} at offset {scan.end_offset})")
    elif not as_json:
        out(f"EOF reached after {len(scan.txns)} txns.")
    return 0


def _walk(tree: DataTree) -> Iterator[tuple[bytes, Any]]:
    for path in tree.walk():
        info = tree.node_info(path)
        if info is not None:
            yield path, info


def snap_dump(path: Path, as_json: bool, out: Callable[[str], None], with_data: bool = False) -> int:
    """A snapshot's nodes, like Apache's SnapshotFormatter (a zkfast snapshot dir or an Apache file)."""
    from zkfast.storage.apache import load_apache_snapshot
    from zkfast.storage.snapshot import load_snapshot

    tree = DataTree(extended_types=True)
    if path.is_dir():
        meta = read_snapshot_meta(path)
        loaded = load_snapshot(path, tree)
        zxid, sessions = loaded.zxid, loaded.sessions
    else:
        meta = {}
        apache = load_apache_snapshot(path, tree)
        zxid, sessions = apache.zxid, apache.sessions
    if as_json:
        nodes = []
        for p, (data, stat, acl) in _walk(tree):
            node: dict[str, Any] = {"path": _text(p), "czxid": stat[0], "mzxid": stat[1], "ctime": stat[2],
                                    "mtime": stat[3], "version": stat[4], "cversion": stat[5],
                                    "aversion": stat[6], "ephemeralOwner": stat[7], "pzxid": stat[8],
                                    "dataLength": 0 if data is None else len(data), "acl": [list(a) for a in acl]}
            if with_data and data is not None:
                node["data"] = base64.b64encode(data).decode()
            nodes.append(node)
        out(json.dumps({"zxid": zxid, "meta": meta, "sessions": {f"0x{k & 0xFFFFFFFFFFFFFFFF:x}": v
                                                                 for k, v in sessions.items()},
                        "nodes": nodes}))
        return 0
    out(f"ZNode Details (count={tree.node_count()}):")
    for p, (data, stat, _acl) in _walk(tree):
        out("----")
        out(_text(p))
        for name, value in zip(("cZxid", "ctime", "mZxid", "mtime", "pZxid", "cversion", "dataVersion",
                                "aclVersion", "ephemeralOwner"),
                               (f"0x{stat[0]:x}", stat[2], f"0x{stat[1]:x}", stat[3], f"0x{stat[8]:x}", stat[5],
                                stat[4], stat[6], f"0x{stat[7] & 0xFFFFFFFFFFFFFFFF:x}"), strict=True):
            out(f"  {name} = {value}")
        out(f"  dataLength = {0 if data is None else len(data)}")
        if with_data and data is not None:
            out(f"  data = {base64.b64encode(data).decode()}")
    out("----")
    out(f"Session Details (sid, timeout, ephemeralCount): {len(sessions)}")
    for sid, timeout in sessions.items():
        out(f"0x{sid & 0xFFFFFFFFFFFFFFFF:x}, {timeout}, {len(tree.ephemeral_paths(sid))}")
    out(f"Last zxid: 0x{zxid:x}")
    return 0


def cleanup(snap_dir: Path, log_dir: Path, retain: int, out: Callable[[str], None]) -> int:
    removed = purge_dirs(snap_dir, log_dir, retain)
    for p in removed:
        out(f"Removing file: {p}")
    return 0


def _recover_into_tree(snap_dir: Path, log_dir: Path) -> Recovered:
    return recover(snap_dir, log_dir, lambda: DataTree(extended_types=True))


def import_zk(zk_data_dir: Path, zk_log_dir: Path, snap_dir: Path, log_dir: Path,
              out: Callable[[str], None]) -> int:
    """Apache ZooKeeper's dataDir → zkfast's store (snapshot + logs), Apache's files left as they are."""
    src_snap, src_log = zk_data_dir / "version-2", zk_log_dir / "version-2"
    if not apache_snapshots(src_snap) and not any(src_log.glob("log.*")):
        out(f"no Apache ZooKeeper snapshot or txn log in {src_snap}")
        return 1
    rec = _recover_into_tree(src_snap, src_log)
    out(f"read Apache ZooKeeper data: zxid 0x{rec.last_zxid:x}, {rec.tree.node_count()} znodes, "
        f"{len(rec.sessions)} sessions")
    snap_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    if src_snap.resolve() != snap_dir.resolve():
        # the store starts from an Apache-format snapshot of the imported tree, which zkfast loads
        write_apache_snapshot(rec.tree, rec.sessions, snap_dir)
    out(f"imported into {snap_dir}")
    return 0


def export_zk(snap_dir: Path, log_dir: Path, out_dir: Path, out: Callable[[str], None]) -> int:
    """zkfast's store → a dataDir Apache ZooKeeper 3.8 starts on: version-2/snapshot.<zxid>."""
    rec = _recover_into_tree(snap_dir, log_dir)
    target = out_dir / "version-2"
    target.mkdir(parents=True, exist_ok=True)
    path = write_apache_snapshot(rec.tree, rec.sessions, target)
    for epoch_file in ("currentEpoch", "acceptedEpoch"):
        src = snap_dir / epoch_file
        if src.exists():
            shutil.copy2(src, target / epoch_file)
    out(f"exported zxid 0x{rec.last_zxid:x} ({rec.tree.node_count()} znodes, {len(rec.sessions)} sessions) "
        f"to {path}")
    return 0
