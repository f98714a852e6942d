"""Turning write requests into txns (Apache's PrepRequestProcessor).

Prep checks a request against the tree *plus* the changes of txns already prepared but not yet
applied (outstanding change records), so that pipelined writes see each other: sequence numbers,
versions, existence. Every write gets a zxid, failed ones too (an error txn), as in Apache.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    JuteError,
    Txn,
    decode_request,
)
from zkfast.server import javaorder
from zkfast.server.auth import AuthId, AuthRegistry
from zkfast.server.codes import CONTAINER_EPHEMERAL_OWNER, TTL_MAX, Code, CreateMode, Perm, ZkError
from zkfast.server.paths import validate_path

log = logging.getLogger(__name__)

# StatPersisted field positions in a change record's stat list
CZXID, MZXID, CTIME, MTIME, VERSION, CVERSION, AVERSION, OWNER, PZXID = range(9)

SPECIAL_PATHS = frozenset((b"/", b"/zookeeper", b"/zookeeper/quota", b"/zookeeper/config"))
CONFIG_NODE = b"/zookeeper/config"

WRITE_OPS = frozenset((OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL, OP_DELETE,
                       OP_DELETE_CONTAINER, OP_SET_DATA, OP_SET_ACL, OP_CHECK, OP_MULTI, OP_RECONFIG,
                       OP_CREATE_SESSION, OP_CLOSE_SESSION))


@dataclass
class ChangeRecord:
    zxid: int
    path: bytes
    stat: list[int] | None        # StatPersisted fields; None: the node is being deleted
    child_count: int
    acl: list[tuple[int, str, str]] | None

    def duplicate(self, zxid: int) -> ChangeRecord:
        return ChangeRecord(zxid, self.path, None if self.stat is None else list(self.stat),
                            self.child_count, None if self.acl is None else list(self.acl))


@dataclass
class Request:
    """One client request on its way through prep, commit and apply."""

    session_id: int
    cxid: int
    type: int
    body: bytes
    auth_ids: list[AuthId]
    conn: Any = None                  # the connection to answer, None for server-made requests
    txn: Txn | None = None
    error: ZkError | None = None      # a prep failure that leaves no txn (reads)
    create_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def owner_kind(owner: int, extended_types: bool) -> str:
    if extended_types and (owner & 0xFF00000000000000) == 0xFF00000000000000 and owner < 0:
        if owner & 0x00FFFF0000000000 == 0:
            return "ttl"
    if owner == CONTAINER_EPHEMERAL_OWNER:
        return "container"
    return "void" if owner == 0 else "normal"


def ttl_owner(ttl: int) -> int:
    v = 0xFF00000000000000 | ttl
    return v - (1 << 64)


class Prep:
    """Prepares write requests into txns, keeping the outstanding change records."""

    def __init__(self, tree: Any, sessions: Any, auth: AuthRegistry, next_zxid: Callable[[], int],
                 now_ms: Callable[[], int], extended_types: bool = False,
                 reconfig_enabled: bool = False, close_session_txn: bool = True) -> None:
        self.tree = tree
        self.sessions = sessions
        self.auth = auth
        self.next_zxid = next_zxid
        self.now_ms = now_ms
        self.extended_types = extended_types
        self.reconfig_enabled = reconfig_enabled
        self.close_session_txn = close_session_txn
        self.outstanding: deque[ChangeRecord] = deque()
        self.by_path: dict[bytes, ChangeRecord] = {}
        self.failed = False  # a failed multi inside pRequest2Txn, for callers that want to know

    # -- change records

    def record(self, path: bytes) -> ChangeRecord:
        rec = self.by_path.get(path)
        if rec is None:
            info = self.tree.record(path)
            if info is not None:
                stat, children, acl = info
                rec = ChangeRecord(-1, path, list(stat), children, acl)
        if rec is None or rec.stat is None:
            raise ZkError(Code.NONODE, path)
        return rec

    def add(self, rec: ChangeRecord) -> None:
        self.outstanding.append(rec)
        self.by_path[rec.path] = rec

    def applied(self, zxid: int) -> None:
        """A txn up to zxid reached the tree: its change records are no longer needed."""
        while self.outstanding and self.outstanding[0].zxid <= zxid:
            rec = self.outstanding.popleft()
            if self.by_path.get(rec.path) is rec:
                del self.by_path[rec.path]

    def _pending_for_multi(self, ops: list[tuple[int, tuple]]) -> dict[bytes, ChangeRecord]:
        pending: dict[bytes, ChangeRecord] = {}
        for _, args in ops:
            path = args[0]
            if path is None:
                continue
            rec = self.by_path.get(path)
            if rec is not None:
                pending[path] = rec
            cut = path.rfind(b"/")
            if cut == -1 or b"\0" in path:
                continue
            parent = path[:cut]
            rec = self.by_path.get(parent)
            if rec is not None:
                pending[parent] = rec
        return pending

    def _rollback(self, zxid: int, pending: dict[bytes, ChangeRecord]) -> None:
        while self.outstanding and self.outstanding[-1].zxid == zxid:
            rec = self.outstanding.pop()
            self.by_path.pop(rec.path, None)
        if not self.outstanding:
            return
        first = self.outstanding[0].zxid
        for rec in pending.values():
            if rec.zxid >= first:
                self.by_path[rec.path] = rec

    # -- the entry point

    def prep(self, req: Request) -> Txn | None:
        """A txn for a write request (a failed one becomes an error txn); None for other types.

        Reads get only the session check; a failure is left in req.error.
        """
        typ = req.type
        try:
            if typ == OP_MULTI:
                return self._prep_multi(req)
            if typ == OP_RECONFIG:
                try:
                    decode_request(typ, req.body)
                except JuteError:
                    # Apache decodes a reconfig before giving it a txn header: no zxid is spent
                    req.error = ZkError(Code.MARSHALLINGERROR)
                    return None
            if typ in WRITE_OPS:
                txn = Txn(req.session_id, req.cxid, self.next_zxid(), self.now_ms(), typ)
                req.txn = txn
                try:
                    self._to_txn(typ, txn, req, None)
                except ZkError as e:
                    self._fail(txn, e.code)
                except (JuteError, ValueError, TypeError, AttributeError, IndexError) as e:
                    log.warning("failed to process request type %d of session 0x%x: %s", typ,
                                req.session_id & 0xFFFFFFFFFFFFFFFF, e)
                    self._fail(txn, Code.MARSHALLINGERROR)
                return txn
            self.sessions.check(req.session_id)
        except ZkError as e:
            req.error = e
        return None

    @staticmethod
    def _fail(txn: Txn, code: Code) -> None:
        txn.type = OP_ERROR
        txn.err = int(code)
        txn.path = None
        txn.data = None
        txn.acl = None
        txn.subtxns = None
        txn.paths = None

    def _prep_multi(self, req: Request) -> Txn:
        try:
            ops = decode_request(OP_MULTI, req.body)
            if any(op in (4, 8) for op, _ in ops):
                # mixed kinds fail to decode; an all-read multi fails on its first op (Apache:
                # a null txn): either way MARSHALLINGERROR, and the zxid is spent
                raise JuteError("read ops in a multi")
        except (JuteError, ValueError) as e:
            log.warning("bad multi from session 0x%x: %s", req.session_id & 0xFFFFFFFFFFFFFFFF, e)
            txn = Txn(req.session_id, req.cxid, self.next_zxid(), self.now_ms(), OP_MULTI)
            req.txn = txn
            self._fail(txn, Code.MARSHALLINGERROR)
            return txn
        zxid = self.next_zxid()
        pending = self._pending_for_multi(ops)
        txn = Txn(req.session_id, req.cxid, zxid, self.now_ms(), OP_MULTI)
        req.txn = txn
        subs: list[Txn] = []
        failed = False
        try:
            for op, args in ops:
                sub = Txn(req.session_id, req.cxid, zxid, txn.time, op)
                if failed:
                    self._fail(sub, Code.RUNTIMEINCONSISTENCY)
                else:
                    sub.type = _multi_sub_type(op, args)
                    if op == OP_CREATE_TTL and sub.type != OP_CREATE_TTL:
                        args = args[:4]  # Op.create without a TTL mode keeps a plain CreateRequest
                    try:
                        self._to_txn(sub.type, sub, req, args)
                    except ZkError as e:
                        failed = True
                        self._fail(sub, e.code)
                        self._rollback(zxid, pending)
                subs.append(sub)
        except (JuteError, ValueError, TypeError, AttributeError, IndexError) as e:
            # Apache's pRequest2Txn meets a record of the wrong class (e.g. a create header
            # whose flags ask for TTL): the whole multi fails with MARSHALLINGERROR
            log.warning("bad multi op from session 0x%x: %s", req.session_id & 0xFFFFFFFFFFFFFFFF, e)
            self._fail(txn, Code.MARSHALLINGERROR)
            return txn
        txn.subtxns = subs
        return txn

    # -- per type (Apache's pRequest2Txn)

    def _to_txn(self, typ: int, txn: Txn, req: Request, args: tuple | None) -> None:
        if typ in (OP_CREATE, OP_CREATE2, OP_CREATE_TTL, OP_CREATE_CONTAINER):
            self._create(typ, txn, req, args if args is not None else decode_request(typ, req.body))
        elif typ == OP_DELETE_CONTAINER:
            self._delete_container(txn, req.body)
        elif typ == OP_DELETE:
            self.sessions.check(req.session_id)
            path, version = args if args is not None else decode_request(typ, req.body)
            if path is None:
                raise TypeError("null path")
            parent_path = self._parent_of_deletable(path)
            parent = self.record(parent_path)
            self.auth.require(parent.acl, Perm.DELETE, req.auth_ids)
            node = self.record(path)
            _check_version(node.stat[VERSION], version, path)
            if node.child_count > 0:
                raise ZkError(Code.NOTEMPTY, path)
            txn.path = path
            parent = parent.duplicate(txn.zxid)
            parent.child_count -= 1
            parent.stat[PZXID] = txn.zxid
            self.add(parent)
            self.add(ChangeRecord(txn.zxid, path, None, -1, None))
        elif typ == OP_SET_DATA:
            self.sessions.check(req.session_id)
            path, data, version = args if args is not None else decode_request(typ, req.body)
            self._validate(path)
            node = self.record(path)
            self.auth.require(node.acl, Perm.WRITE, req.auth_ids)
            new_version = _check_version(node.stat[VERSION], version, path)
            txn.path = path
            txn.data = data
            txn.version = new_version
            node = node.duplicate(txn.zxid)
            node.stat[VERSION] = new_version
            node.stat[MTIME] = txn.time
            node.stat[MZXID] = txn.zxid
            self.add(node)
        elif typ == OP_SET_ACL:
            self.sessions.check(req.session_id)
            path, acl, version = args if args is not None else decode_request(typ, req.body)
            self._validate(path)
            acl = self.auth.fixup_acl(path, req.auth_ids, acl)
            node = self.record(path)
            self.auth.require(node.acl, Perm.ADMIN, req.auth_ids)
            new_version = _check_version(node.stat[AVERSION], version, path)
            txn.path = path
            txn.acl = acl
            txn.version = new_version
            node = node.duplicate(txn.zxid)
            node.stat[AVERSION] = new_version
            node.acl = acl
            self.add(node)
        elif typ == OP_CHECK:
            self.sessions.check(req.session_id)
            path, version = args if args is not None else decode_request(typ, req.body)
            self._validate(path)
            node = self.record(path)
            self.auth.require(node.acl, Perm.READ, req.auth_ids)
            txn.path = path
            txn.version = _check_version(node.stat[VERSION], version, path)
        elif typ == OP_RECONFIG:
            if not self.reconfig_enabled:
                raise ZkError(Code.RECONFIGDISABLED)
            self.sessions.check(req.session_id)
            # a standalone server cannot reconfigure (Apache: UnimplementedException)
            raise ZkError(Code.UNIMPLEMENTED)
        elif typ == OP_CREATE_SESSION:
            txn.timeout = req.extra["timeout_ms"]
        elif typ == OP_CLOSE_SESSION:
            self._close_session(txn, req)
        else:
            raise ZkError(Code.UNIMPLEMENTED)

    def _create(self, typ: int, txn: Txn, req: Request, args: tuple) -> None:
        if typ == OP_CREATE_TTL:
            path, data, acl, flags, ttl = args
        else:
            path, data, acl, flags = args
            ttl = -1
        try:
            mode = CreateMode(flags)
        except ValueError:
            raise ZkError(Code.BADARGUMENTS, path) from None
        # validateCreateRequest
        if mode.is_ttl and not self.extended_types:
            raise ZkError(Code.UNIMPLEMENTED)
        if mode.is_ttl:
            if not 0 < ttl <= TTL_MAX:
                raise ZkError(Code.BADARGUMENTS, path)
        elif ttl >= 0 or typ == OP_CREATE_TTL:
            # createTTL with a non-TTL mode: Apache fails this only when applying; refuse here
            raise ZkError(Code.BADARGUMENTS, path)
        self.sessions.check(req.session_id)
        if path is None:
            raise TypeError("null path")
        cut = path.rfind(b"/")
        if cut == -1 or b"\0" in path:
            raise ZkError(Code.BADARGUMENTS, path)
        parent_path = path[:cut]
        acl = self.auth.fixup_acl(path, req.auth_ids, acl)
        parent = self.record(parent_path)
        self.auth.require(parent.acl, Perm.CREATE, req.auth_ids)
        parent_cversion = parent.stat[CVERSION]
        if mode.is_sequential:
            path = path + b"%010d" % parent_cversion
        self._validate(path)
        try:
            self.record(path)
        except ZkError:
            pass
        else:
            raise ZkError(Code.NODEEXISTS, path)
        if owner_kind(parent.stat[OWNER], self.extended_types) == "normal":
            raise ZkError(Code.NOCHILDRENFOREPHEMERALS, path)
        new_cversion = parent.stat[CVERSION] + 1
        txn.path = path
        txn.data = data
        txn.acl = acl
        txn.parent_cversion = new_cversion
        if typ == OP_CREATE_TTL:
            txn.ttl = ttl
        elif typ in (OP_CREATE, OP_CREATE2):
            txn.ephemeral = mode.is_ephemeral
        if mode.is_container:
            owner = CONTAINER_EPHEMERAL_OWNER
        elif mode.is_ttl:
            owner = ttl_owner(ttl)
        elif mode.is_ephemeral:
            owner = req.session_id
        else:
            owner = 0
        parent = parent.duplicate(txn.zxid)
        parent.child_count += 1
        parent.stat[CVERSION] = new_cversion
        parent.stat[PZXID] = txn.zxid
        self.add(parent)
        stat = [txn.zxid, txn.zxid, txn.time, txn.time, 0, 0, 0, owner, txn.zxid]
        self.add(ChangeRecord(txn.zxid, path, stat, 0, acl))

    def _delete_container(self, txn: Txn, body: bytes) -> None:
        # the ContainerManager's request carries the bare path, not a DeleteRequest
        path = body
        parent_path = self._parent_of_deletable(path)
        node = self.record(path)
        if node.child_count > 0:
            raise ZkError(Code.NOTEMPTY, path)
        if owner_kind(node.stat[OWNER], self.extended_types) == "normal":
            raise ZkError(Code.BADVERSION, path)
        parent = self.record(parent_path)
        txn.path = path
        parent = parent.duplicate(txn.zxid)
        parent.child_count -= 1
        parent.stat[PZXID] = txn.zxid
        self.add(parent)
        self.add(ChangeRecord(txn.zxid, path, None, -1, None))

    def _close_session(self, txn: Txn, req: Request) -> None:
        order, capacity = self.ephemeral_order(req.session_id)
        for rec in self.outstanding:
            if rec.stat is None:
                if rec.path in order:
                    order.remove(rec.path)
            elif rec.stat[OWNER] == req.session_id:
                order, capacity = javaorder.add_to_set(order, capacity, len(order), rec.path)
        for path in order:
            self.add(ChangeRecord(txn.zxid, path, None, 0, None))
        if self.close_session_txn:
            txn.paths = order
        self.sessions.set_closing(req.session_id)

    def ephemeral_order(self, session_id: int) -> tuple[list[bytes], int]:
        """The session's ephemerals in the order Apache's closeSession lists them."""
        paths = self.tree.ephemeral_paths(session_id)
        if not paths:
            return [], 16
        capacity = javaorder.capacity_after_inserts(self.tree.ephemerals_max.get(session_id, len(paths)))
        source = javaorder.iteration_order(paths, capacity)
        return javaorder.cloned_set_order(source)

    # -- helpers

    @staticmethod
    def _validate(path: bytes | None) -> None:
        if path is None:
            raise TypeError("null path")
        if not validate_path(path):
            raise ZkError(Code.BADARGUMENTS, path)

    @staticmethod
    def _parent_of_deletable(path: bytes | None) -> bytes:
        if path is None:
            raise TypeError("null path")
        cut = path.rfind(b"/")
        if cut == -1 or b"\0" in path or path in SPECIAL_PATHS:
            raise ZkError(Code.BADARGUMENTS, path)
        return path[:cut]


def _check_version(current: int, expected: int, path: bytes) -> int:
    if expected != -1 and expected != current:
        raise ZkError(Code.BADVERSION, path)
    new = current + 1
    return new - (1 << 32) if new > 0x7FFFFFFF else new  # Java int arithmetic wraps


def _multi_sub_type(op: int, args: tuple) -> int:
    """The opcode Apache's Op gives a multi entry: create kinds follow the flags, not the header."""
    if op in (OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER):
        flags = args[3]
        if flags in (5, 6):
            return OP_CREATE_TTL  # with a CreateRequest record: fails as Apache's cast does
        return OP_CREATE_CONTAINER if flags == 4 else OP_CREATE
    if op == OP_CREATE_TTL:
        flags = args[3]
        if flags in (5, 6):
            return OP_CREATE_TTL
        return OP_CREATE_CONTAINER if flags == 4 else OP_CREATE
    return op
