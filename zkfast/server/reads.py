"""Replies (Apache's FinalRequestProcessor): to applied txns, and to every request that takes no txn.

The read hot path (exists, getData, getChildren) lives in the DataTree; this module answers what
it declines and all the rarer requests, writing each reply into the connection's buffer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkfast._datatree import MODE_PERSISTENT, MODE_PERSISTENT_RECURSIVE, MODE_STANDARD, DataTree
from zkfast._jute import (
    ADD_WATCH_PERSISTENT,
    ADD_WATCH_PERSISTENT_RECURSIVE,
    OP_ADD_WATCH,
    OP_AUTH,
    OP_CHECK_WATCHES,
    OP_ERROR,
    OP_EXISTS,
    OP_GET_ACL,
    OP_GET_ALL_CHILDREN_NUMBER,
    OP_GET_CHILDREN,
    OP_GET_CHILDREN2,
    OP_GET_DATA,
    OP_GET_EPHEMERALS,
    OP_MULTI_READ,
    OP_REMOVE_WATCHES,
    OP_SASL,
    OP_SET_WATCHES,
    OP_SET_WATCHES2,
    OP_SYNC,
    OP_WHO_AM_I,
    WATCHER_ANY,
    WATCHER_CHILDREN,
    WATCHER_DATA,
    Code,
    EventType,
    JuteError,
    Perm,
    WriteBuffer,
    ZkError,
    decode_request,
    jstr,
)
from zkfast.limits import CONNECTION_OUTPUT_HARD_LIMIT_BYTES, MAX_AUTH_IDS_PER_CONNECTION
from zkfast.server.auth import joined_auth_ids, mask_digest_ids

if TYPE_CHECKING:
    from zkfast._pipeline import Request
    from zkfast.net.connection import ClientConnection
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)


def _java_trim(s: bytes) -> bytes:
    # String.trim(): strips every char <= U+0020 at both ends
    start, end = 0, len(s)
    while start < end and s[start] <= 0x20:
        start += 1
    while end > start and s[end - 1] <= 0x20:
        end -= 1
    return s[start:end]


# ------------------------------------------------------------------------------------------------
# requests without a txn


def execute(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    """Answer one non-txn request into the connection's buffer, in its turn."""
    core = conn.core
    xid, op, body = req.cxid, req.type, req.body
    if req.error is not None:
        _error(server, conn, req, req.error.code)
        return
    if core.execute_read(xid, op, body):
        _note(server, req)
        return
    try:
        handler = _HANDLERS.get(op)
        if handler is None:
            raise ZkError(Code.UNIMPLEMENTED)
        handler(server, conn, req)
        _note(server, req)
    except ZkError as e:
        _error(server, conn, req, e.code)
    except (JuteError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        log.warning("failed to process request type %d from %s: %s", op, conn.remote, e)
        _error(server, conn, req, Code.MARSHALLINGERROR)


def _note(server: ZooKeeperServer, req: Request) -> None:
    server.note_latency(req.create_ms)


def _error(server: ZooKeeperServer, conn: ClientConnection, req: Request, code: int) -> None:
    zxid = server.tree.last_processed_zxid
    conn.core.out.reply(req.cxid, zxid, int(code))
    server.note_reply(conn, req, zxid)


def _begin(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> tuple[WriteBuffer, int]:
    out = conn.core.out
    start = out.frame_start()
    zxid = server.tree.last_processed_zxid
    out.write_reply_header(req.cxid, zxid, 0)
    conn.core.note_slow_reply(req.cxid, zxid, req.type)
    return out, start


def _read_node(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    """exists/getData/getChildren the hot path declined: a NUL in the path, or an ACL only the
    Python providers can check, or a malformed record."""
    op = req.type
    path, watch = decode_request(op, req.body)
    if path is None:
        raise TypeError("null path")
    tree = server.tree
    if op == OP_EXISTS:
        if b"\0" in path:
            raise ZkError(Code.BADARGUMENTS)
        raise TypeError("exists the hot path could not answer")
    acl = tree.get_acl(path)
    if acl is None:
        raise ZkError(Code.NONODE)
    server.auth.require(acl, Perm.READ, conn.core.auth_ids)
    if not tree.read(op, req.cxid, req.body, conn.core, conn.core.out, True):
        raise TypeError("read of a checked node failed")


def _get_acl(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    (path,) = decode_request(OP_GET_ACL, req.body)
    if path is None:
        raise TypeError("null path")
    tree = server.tree
    acl = tree.get_acl(path)
    if acl is None:
        raise ZkError(Code.NONODE)
    ids = conn.core.auth_ids
    server.auth.require(acl, Perm.READ | Perm.ADMIN, ids)
    stat = tree.stat(path)
    if not server.auth.check(acl, Perm.ADMIN, ids):
        acl = mask_digest_ids(acl)
    out, start = _begin(server, conn, req)
    out.write_acl_list(acl)
    out.write_stat(stat)
    out.frame_end(start)


def _all_children_number(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    (path,) = decode_request(OP_GET_ALL_CHILDREN_NUMBER, req.body)
    if path is None:
        raise TypeError("null path")
    tree = server.tree
    acl = tree.get_acl(path)
    if acl is None:
        raise ZkError(Code.NONODE)
    server.auth.require(acl, Perm.READ, conn.core.auth_ids)
    out, start = _begin(server, conn, req)
    out.write_int(tree.all_children_number(path))
    out.frame_end(start)


def _get_ephemerals(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    (prefix,) = decode_request(OP_GET_EPHEMERALS, req.body)
    paths, _ = server.prep.ephemeral_order(req.session_id)
    if prefix is not None:
        trimmed = _java_trim(prefix)
        if trimmed and trimmed != b"/":
            paths = [p for p in paths if p.startswith(prefix)]
    out, start = _begin(server, conn, req)
    out.write_string_list(paths)
    out.frame_end(start)


def _multi_read(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    ops = decode_request(OP_MULTI_READ, req.body)
    kinds = {op in (OP_GET_DATA, OP_GET_CHILDREN) for op, _ in ops}
    if len(kinds) > 1:
        raise JuteError("multiRead mixes reads and writes")  # fails to decode: header only
    if False in kinds:
        # Apache has already made its (empty) MultiResponse when it meets the write op, and sends
        # it after the MARSHALLINGERROR header
        out, start = _begin(server, conn, req)
        out.write_int(-1)
        out.write_bool(True)
        out.write_int(-1)
        out.frame_end(start)
        _patch_err(out, start, Code.MARSHALLINGERROR)
        return
    tree = server.tree
    ids = conn.core.auth_ids
    if _multi_read_bytes(tree, ops) > CONNECTION_OUTPUT_HARD_LIMIT_BYTES:
        # one small frame naming the same big node many times would otherwise make the server
        # build a reply many times its size
        log.warning("closing %s: its multiRead (cxid %d) would need a reply of more than %d bytes",
                    conn.remote, req.cxid, CONNECTION_OUTPUT_HARD_LIMIT_BYTES)
        conn.close()
        return
    results: list[tuple[int, object]] = []
    for op, (path, _watch) in ops:
        if path is None:
            raise TypeError("null path")
        acl = tree.get_acl(path)
        if acl is None:
            results.append((OP_ERROR, int(Code.NONODE)))
            continue
        if not server.auth.check(acl, Perm.READ, ids):
            results.append((OP_ERROR, int(Code.NOAUTH)))
            continue
        if op == OP_GET_CHILDREN:
            results.append((op, tree.get_children(path)))
        else:
            results.append((op, (tree.get_data(path), tree.stat(path))))
    out, start = _begin(server, conn, req)
    for op, value in results:
        if op == OP_ERROR:
            out.write_int(OP_ERROR)
            out.write_bool(False)
            out.write_int(value)
            out.write_int(value)
        elif op == OP_GET_CHILDREN:
            out.write_int(op)
            out.write_bool(False)
            out.write_int(0)
            out.write_string_list(value)
        else:
            data, stat = value
            out.write_int(op)
            out.write_bool(False)
            out.write_int(0)
            out.write_buffer(data)
            out.write_stat(stat)
    out.write_int(-1)
    out.write_bool(True)
    out.write_int(-1)
    out.frame_end(start)


def _multi_read_bytes(tree: DataTree, ops: list[tuple[int, tuple[bytes | None, bool]]]) -> int:
    """What a multiRead's reply takes at most (every node readable), judged before building it;
    counting stops past the output hard limit."""
    total = 0
    for op, (path, _watch) in ops:
        stat = tree.stat(path) if path is not None else None
        if stat is None:
            total += 13
        elif op == OP_GET_CHILDREN:
            total += 17 + sum(4 + len(c) for c in tree.get_children(path))
        else:
            total += 17 + max(stat[8], 0) + 68
        if total > CONNECTION_OUTPUT_HARD_LIMIT_BYTES:
            break  # too big already: no need to look further
    return total


def _patch_err(out: WriteBuffer, frame_start: int, err: int) -> None:
    """Set the err field of the reply header of the frame written at frame_start."""
    body = out.take()
    pos = frame_start + 4 + 12
    out.write_raw(body[:pos] + int(err).to_bytes(4, "big", signed=True) + body[pos + 4:])


def _sync(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    (path,) = decode_request(OP_SYNC, req.body)
    out, start = _begin(server, conn, req)
    out.write_ustring(None if path is None else jstr(path))
    out.frame_end(start)


def _set_watches(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    """Watches re-sent after a reconnect; changes missed since relativeZxid fire at once
    (Apache's DataTree.setWatches)."""
    fields = decode_request(req.type, req.body)
    rel = fields[0]
    data_w, exist_w, child_w = (fields[1] or []), (fields[2] or []), (fields[3] or [])
    persistent = (fields[4] or []) if req.type == OP_SET_WATCHES2 else []
    recursive = (fields[5] or []) if req.type == OP_SET_WATCHES2 else []
    tree = server.tree
    core = conn.core
    fired = False
    for path in data_w:
        stat = tree.stat(path)
        if stat is None:
            core.notify(int(EventType.NODE_DELETED), jstr(path))
            fired = True
        elif stat[1] > rel:
            core.notify(int(EventType.NODE_DATA_CHANGED), jstr(path))
            fired = True
        else:
            tree.watch(path, core, False, MODE_STANDARD)
    for path in exist_w:
        if tree.exists(path):
            core.notify(int(EventType.NODE_CREATED), jstr(path))
            fired = True
        else:
            tree.watch(path, core, False, MODE_STANDARD)
    for path in child_w:
        stat = tree.stat(path)
        if stat is None:
            core.notify(int(EventType.NODE_DELETED), jstr(path))
            fired = True
        elif stat[10] > rel:
            core.notify(int(EventType.NODE_CHILDREN_CHANGED), jstr(path))
            fired = True
        else:
            tree.watch(path, core, True, MODE_STANDARD)
    for path in persistent:
        tree.watch(path, core, True, MODE_PERSISTENT)
        tree.watch(path, core, False, MODE_PERSISTENT)
    for path in recursive:
        tree.watch(path, core, True, MODE_PERSISTENT_RECURSIVE)
        tree.watch(path, core, False, MODE_PERSISTENT_RECURSIVE)
    del fired
    zxid = tree.last_processed_zxid
    core.out.reply(req.cxid, zxid, 0)
    core.note_slow_reply(req.cxid, zxid, req.type)


def _add_watch(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    path, mode = decode_request(OP_ADD_WATCH, req.body)
    if path is None:
        raise TypeError("null path")
    if mode == ADD_WATCH_PERSISTENT:
        tree_mode = MODE_PERSISTENT
    elif mode == ADD_WATCH_PERSISTENT_RECURSIVE:
        tree_mode = MODE_PERSISTENT_RECURSIVE
    else:
        raise ValueError(f"unsupported addWatch mode {mode}")
    server.tree.add_persistent_watch(path, conn.core, tree_mode)
    out, start = _begin(server, conn, req)
    out.write_int(0)
    out.frame_end(start)


def _watches(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    """checkWatches / removeWatches."""
    path, wtype = decode_request(req.type, req.body)
    if path is None:
        raise TypeError("null path")
    tables = _WATCH_TABLES.get(wtype)
    if tables is None:
        raise ValueError(f"invalid WatcherType {wtype}")
    tree = server.tree
    core = conn.core
    found = False
    for child in tables:
        if req.type == OP_CHECK_WATCHES:
            found = tree.contains_watcher(path, core, child) or found
        else:
            found = tree.remove_watch(path, core, child) or found
    if not found:
        raise ZkError(Code.NOWATCHER)
    zxid = tree.last_processed_zxid
    core.out.reply(req.cxid, zxid, 0)
    core.note_slow_reply(req.cxid, zxid, req.type)


# which of the tree's watch tables (child: True) each WatcherType names
_WATCH_TABLES = {WATCHER_CHILDREN: (True,), WATCHER_DATA: (False,), WATCHER_ANY: (True, False)}


def _who_am_i(server: ZooKeeperServer, conn: ClientConnection, req: Request) -> None:
    infos = server.auth.client_infos(conn.core.auth_ids)
    out, start = _begin(server, conn, req)
    out.write_int(len(infos))
    for scheme, user in infos:
        out.write_ustring(scheme)
        out.write_ustring(user)
    out.frame_end(start)


_HANDLERS = {
    OP_EXISTS: _read_node,
    OP_GET_DATA: _read_node,
    OP_GET_CHILDREN: _read_node,
    OP_GET_CHILDREN2: _read_node,
    OP_GET_ACL: _get_acl,
    OP_GET_ALL_CHILDREN_NUMBER: _all_children_number,
    OP_GET_EPHEMERALS: _get_ephemerals,
    OP_MULTI_READ: _multi_read,
    OP_SYNC: _sync,
    OP_SET_WATCHES: _set_watches,
    OP_SET_WATCHES2: _set_watches,
    OP_ADD_WATCH: _add_watch,
    OP_CHECK_WATCHES: _watches,
    OP_REMOVE_WATCHES: _watches,
    OP_WHO_AM_I: _who_am_i,
}


# ------------------------------------------------------------------------------------------------
# auth packets, answered at once and out of the request order (as Apache does)


def handle_auth(server: ZooKeeperServer, conn: ClientConnection, xid: int, body: bytes) -> None:
    core = conn.core
    try:
        _, scheme, auth = decode_request(OP_AUTH, body)
    except JuteError:
        conn.close()
        return
    provider = server.auth.get(scheme) if scheme is not None else None
    ids = None
    if provider is not None:
        ids = provider.handle(auth or b"", conn.remote_ip)
    joined = None if ids is None else joined_auth_ids(core.auth_ids, ids)
    if joined is None:
        log.warning("authentication failed for scheme: %s from %s%s", scheme, conn.remote,
                    "" if ids is None else f": more than {MAX_AUTH_IDS_PER_CONNECTION} auth ids")
        core.out.reply(xid, 0, int(Code.AUTHFAILED))
        core.packets_sent += 1
        server.auth_failed_count += 1
        conn.close_after_flush()
        return
    log.info("session 0x%x: auth success for scheme %s and address %s",
             core.session_id & 0xFFFFFFFFFFFFFFFF, scheme, conn.remote)
    core.auth_ids = joined
    if any(scheme == "super" for scheme, _ in ids):
        core.is_super = True
    if server.enforcer is not None:
        server.enforcer.refresh(core)
    core.out.reply(xid, 0, 0)
    core.packets_sent += 1
    server.mark_dirty(conn)


def handle_sasl(server: ZooKeeperServer, conn: ClientConnection, xid: int, body: bytes) -> None:
    sasl = server.sasl
    if sasl is not None:
        sasl.handle(server, conn, xid, body)
        return
    # no SASL server: Apache's processSasl meets a null saslServer, logs it, and answers OK with a
    # null token; a record it cannot decode closes the connection without a reply
    try:
        decode_request(OP_SASL, body)
    except JuteError:
        conn.close()
        return
    log.error("SASL request from %s but no SASL login is configured (java.security.auth.login.config)",
              conn.remote)
    out = conn.core.out
    start = out.frame_start()
    out.write_reply_header(xid, 0, 0)
    out.write_buffer(None)
    out.frame_end(start)
    conn.core.packets_sent += 1
    server.mark_dirty(conn)
