# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""zkfast._pipeline: the request pipeline's per-request work, in C.

Prep turns write requests into txns (Apache's PrepRequestProcessor). It checks a request against the
tree *plus* the changes of txns already prepared but not yet applied (outstanding change records),
so that pipelined writes see each other: sequence numbers, versions, existence. Every write gets a
zxid, failed ones too (an error txn), as in Apache.

PipelineCore takes a frame the read hot path did not answer through prep, the commit stage, apply
and the reply, in request order per connection. ZooKeeperServer (zkfast.server.zkserver) subclasses
it: what the core needs of the server is declared here as hooks (see PipelineCore), and objects handed
in (sessions, auth, commit stage, connections), so that this module imports nothing of zkfast.server.
"""

import logging
import sys
from time import monotonic as _monotonic
from collections import deque

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t, uint8_t
from libc.string cimport memchr, memset
from libc.time cimport time_t

from zkfast._jute cimport (Code, Perm, Stat, Txn, WriteBuffer, is_txn_op, is_valid_op, load_u32, wb_bool,
                           wb_i32, FLAG_CONTAINER, FLAG_EPHEMERAL, FLAG_EPHEMERAL_SEQUENTIAL, FLAG_PERSISTENT,
                           FLAG_PERSISTENT_SEQUENTIAL, FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL,
                           FLAG_PERSISTENT_WITH_TTL, OP_ADD_WATCH, OP_AUTH, OP_CHECK, OP_CHECK_WATCHES,
                           OP_CLOSE_SESSION, OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_SESSION,
                           OP_CREATE_TTL, OP_DELETE, OP_DELETE_CONTAINER, OP_ERROR, OP_EXISTS,
                           OP_GET_CHILDREN, OP_GET_CHILDREN2, OP_GET_DATA, OP_MULTI, OP_PING, OP_RECONFIG,
                           OP_REMOVE_WATCHES, OP_SASL, OP_SET_ACL, OP_SET_DATA, OP_SET_WATCHES, OP_SYNC)
from zkfast._datatree cimport DataTree, Node, node_data, digest_of, digests_on, TXN_DIGEST_VERSION
from zkfast._datatree import LIMIT_NODE, QUOTA_ZOOKEEPER, STAT_NODE, RateLogger, parse_stats_track
from zkfast._fastpath cimport ConnCore

from zkfast import javaorder
from zkfast._fastpath import FLUSH_AT_BYTES
from zkfast._jute import JuteError, ZkError, decode_request
from zkfast.limits import (CONNECTION_OUTPUT_HARD_LIMIT_BYTES, GLOBAL_OUTSTANDING_BYTES_LIMIT,
                           QUEUED_REQUEST_OVERHEAD_BYTES, WRITE_HELD_COPIES)

cdef extern from "<time.h>" nogil:
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    int CLOCK_REALTIME


cdef inline int64_t wall_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


log = logging.getLogger("zkfast.server.prep")

cdef int64_t CONTAINER_OWNER = <int64_t>0x8000000000000000
cdef uint64_t TTL_MASK = 0xff00000000000000
cdef uint64_t TTL_RESERVED = 0x00ffff0000000000
cdef int64_t TTL_MAX = 0xFFFFFFFFFF


class _ThisServer:
    def __repr__(self):
        return "this server"


# A session's owner on an ensemble's leader (Apache's SessionImpl.owner): where its client is connected,
# THIS_SERVER or the connection of the learner that created or revalidated it. A write that comes
# through another owner is from a connection the client has left: SESSIONMOVED.
THIS_SERVER = _ThisServer()

SPECIAL_PATHS = frozenset((b"/", b"/zookeeper", b"/zookeeper/quota", b"/zookeeper/config"))
CONFIG_NODE = b"/zookeeper/config"

_MALFORMED = (JuteError, ValueError, TypeError, AttributeError, IndexError)


# ZooKeeperServer's RATE_LOGGER (one per process, as Apache's static one)
QUOTA_RATE_LOGGER = RateLogger(logging.getLogger("zkfast.quotas"))


cdef class Request:
    """One client request on its way through prep, commit and apply."""

    cdef public int64_t session_id
    cdef public int32_t cxid
    cdef public int32_t type
    cdef public bytes body
    cdef public object auth_ids
    cdef public object conn          # the connection to answer, None for server-made requests
    cdef public Txn txn
    cdef public object error         # a prep failure that leaves no txn (reads)
    cdef public int64_t create_ms
    cdef public dict extra
    cdef public object owner         # a leader's: the learner connection it came through; None: this server
    cdef public int64_t reply_estimate  # a read queued behind writes: the bytes its reply may take

    def __init__(self, int64_t session_id, int32_t cxid, int32_t type, bytes body, auth_ids, conn=None,
                 txn=None, error=None, int64_t create_ms=0, extra=None, owner=None):
        self.session_id = session_id
        self.cxid = cxid
        self.type = type
        self.body = body
        self.auth_ids = auth_ids
        self.conn = conn
        self.txn = txn
        self.error = error
        self.create_ms = create_ms
        self.extra = extra if extra is not None else {}
        self.owner = owner


@cython.no_gc
cdef class ChangeRecord:
    """What prep knows of a node once outstanding txns are counted: exists=False while a delete is
    pending. Fields as Apache's StatPersisted, plus the child count and the ACL list, the data and
    Apache's precalculatedDigest (the node's digest, and the tree's once this change is applied)."""

    cdef public int64_t zxid
    cdef public bytes path
    cdef public bint exists
    cdef public int64_t czxid, mzxid, ctime, mtime, owner, pzxid
    cdef public int32_t version, cversion, aversion, child_count
    cdef public int32_t data_len  # Apache's ChangeRecord.data, as far as quotas need it (-1: null)
    cdef public object acl
    cdef public bint tree_data    # the data is the tree node's (no copy taken): no change set it
    cdef public object data       # else the data a change set (None: null)
    cdef public uint32_t node_digest
    cdef public uint64_t tree_digest

    cdef ChangeRecord duplicate(self, int64_t zxid):
        cdef ChangeRecord r = ChangeRecord.__new__(ChangeRecord)
        r.zxid = zxid
        r.path = self.path
        r.exists = self.exists
        r.czxid, r.mzxid, r.ctime, r.mtime = self.czxid, self.mzxid, self.ctime, self.mtime
        r.owner, r.pzxid = self.owner, self.pzxid
        r.version, r.cversion, r.aversion = self.version, self.cversion, self.aversion
        r.child_count = self.child_count
        r.data_len = self.data_len
        r.acl = self.acl
        r.tree_data = self.tree_data
        r.data = self.data
        r.node_digest = self.node_digest
        return r

    @property
    def stat(self):
        """StatPersisted as a 9-tuple (czxid, mzxid, ctime, mtime, version, cversion, aversion,
        ephemeralOwner, pzxid), or None when a delete is pending."""
        if not self.exists:
            return None
        return (self.czxid, self.mzxid, self.ctime, self.mtime, self.version, self.cversion,
                self.aversion, self.owner, self.pzxid)


cdef ChangeRecord deleted_record(int64_t zxid, bytes path):
    cdef ChangeRecord r = ChangeRecord.__new__(ChangeRecord)
    r.zxid = zxid
    r.path = path
    r.exists = False
    r.child_count = -1
    return r


cdef inline bint is_session_owner(int64_t owner, bint extended):
    # EphemeralType.NORMAL: a session's ephemeral, not a container or TTL node
    if extended and (<uint64_t>owner & TTL_MASK) == TTL_MASK and (<uint64_t>owner & TTL_RESERVED) == 0:
        return False
    return owner != 0 and owner != CONTAINER_OWNER


ctypedef fused path_unit:
    uint8_t
    uint16_t

cdef enum:
    SLASH = 0x2F
    DOT = 0x2E

# a path that is not ASCII is checked as Java sees it: UTF-16 code units in this machine's order
NATIVE_UTF16 = "utf-16-le" if sys.byteorder == "little" else "utf-16-be"


cdef bint valid_path_units(const path_unit* p, Py_ssize_t n) noexcept:
    # Apache's PathUtils.validatePath over a path's Java chars; ASCII bytes are their own chars
    cdef Py_ssize_t i
    cdef uint32_t c, last = SLASH
    if n == 0 or p[0] != SLASH:
        return False
    if n == 1:
        return True
    if p[n - 1] == SLASH:
        return False
    for i in range(1, n):
        c = p[i]
        if c == 0:
            return False
        if c == SLASH and last == SLASH:
            return False
        if c == DOT and last == DOT:
            if p[i - 2] == SLASH and (i + 1 == n or p[i + 1] == SLASH):
                return False
        elif c == DOT:
            if p[i - 1] == SLASH and (i + 1 == n or p[i + 1] == SLASH):
                return False
        elif (0 < c <= 0x1F) or (0x7F <= c <= 0x9F) or (0xD800 <= c <= 0xF8FF) or c >= 0xFFF0:
            return False
        last = c
    return True


cdef bint valid_path(bytes path) except -1:
    cdef const char* p = PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path), i
    cdef bytes units
    for i in range(n):
        if <uint8_t>p[i] >= 0x80:
            # Java decodes it first: a byte that is not UTF-8 becomes U+FFFD, which the rules refuse
            units = path.decode("utf-8", "replace").encode(NATIVE_UTF16)
            return valid_path_units(<const uint16_t*>PyBytes_AS_STRING(units), PyBytes_GET_SIZE(units) // 2)
    return valid_path_units(<const uint8_t*>p, n)


cdef bint acl_allows_world(object acl, int perm) except -1:
    if not acl:
        return True
    for entry in acl:
        if (entry[0] & perm) and entry[1] == "world" and entry[2] == "anyone":
            return True
    return False


cdef int32_t java_int_inc(int32_t v) noexcept:
    # Java int arithmetic wraps
    return <int32_t>(<uint32_t>v + 1u)


cdef class Prep:
    """Prepares write requests into txns, keeping the outstanding change records."""

    cdef public DataTree tree
    cdef public object sessions
    cdef public object auth
    cdef public int64_t last_zxid    # the last zxid handed out
    cdef public bint extended_types
    cdef public bint reconfig_enabled
    cdef public object reconfig      # an ensemble leader's: (request args, zxid) -> the new config's bytes
    cdef public bint close_session_txn
    cdef public bint track_owners    # an ensemble leader's: SESSIONMOVED for a write from where the session is not
    cdef public object outstanding
    cdef public dict by_path
    cdef public bint enforce_quota   # zookeeper.enforceQuota: hard quotas refuse with QUOTAEXCEEDED
    cdef public dict quota_exceeded  # top namespace → QUOTAEXCEEDED refusals (quota_exceeded_error_per_namespace)
    cdef public object quota_outstanding  # (zxid, quota root, count diff, bytes diff) of txns not applied yet
    cdef public dict quota_in_flight      # quota root → [count diff, bytes diff] summed over quota_outstanding
    cdef public list quota_txn            # the diffs of the txn being prepared, published once it is made
    cdef public bint digests         # zookeeper.digest.enabled: txns carry the tree digest they lead to

    def __init__(self, DataTree tree, sessions, auth, bint extended_types=False,
                 bint reconfig_enabled=False, bint close_session_txn=True, bint enforce_quota=False):
        self.tree = tree
        self.sessions = sessions
        self.auth = auth
        self.last_zxid = 0
        self.extended_types = extended_types
        self.reconfig_enabled = reconfig_enabled
        self.reconfig = None
        self.close_session_txn = close_session_txn
        self.track_owners = False
        self.outstanding = deque()
        self.by_path = {}
        self.enforce_quota = enforce_quota
        self.quota_exceeded = {}
        self.quota_outstanding = deque()
        self.quota_in_flight = {}
        self.quota_txn = []
        self.digests = digests_on()

    cdef inline int64_t next_zxid(self) noexcept:
        self.last_zxid += 1
        return self.last_zxid

    cdef void check_session(self, Request req) except *:
        """Apache's SessionTrackerImpl.checkSession: the first write after an election claims an
        unowned session for the server it came through."""
        s = self.sessions.sessions.get(req.session_id)
        if s is None:
            raise ZkError(Code.UNKNOWNSESSION)
        if s.closing:
            raise ZkError(Code.SESSIONEXPIRED)
        if self.track_owners:
            owner = owner_of(req)
            if s.owner is None:
                s.owner = owner
            elif s.owner is not owner:
                raise ZkError(Code.SESSIONMOVED)

    # -- change records

    cdef ChangeRecord lookup(self, bytes path):
        """The record for path, or None when the node does not exist (or a delete is pending)."""
        cdef ChangeRecord rec = self.by_path.get(path)
        cdef Node* node
        if rec is None:
            node = self.tree.lookup_bytes(path)
            if node is NULL:
                return None
            rec = ChangeRecord.__new__(ChangeRecord)
            rec.zxid = -1
            rec.path = path
            rec.exists = True
            rec.czxid, rec.mzxid, rec.ctime, rec.mtime = node.czxid, node.mzxid, node.ctime, node.mtime
            rec.owner, rec.pzxid = node.ephemeral_owner, node.pzxid
            rec.version, rec.cversion, rec.aversion = node.version, node.cversion, node.aversion
            rec.child_count = node.num_children
            rec.data_len = node.data_len
            rec.acl = self.tree.acl_lists[node.acl]
            rec.tree_data = True
            rec.node_digest = node.digest
            return rec
        if not rec.exists:
            return None
        return rec

    cdef ChangeRecord record(self, bytes path):
        cdef ChangeRecord rec = self.lookup(path)
        if rec is None:
            raise ZkError(Code.NONODE, path)
        return rec

    cdef void add(self, ChangeRecord rec):
        self.outstanding.append(rec)
        self.by_path[rec.path] = rec

    # -- txn digests (Apache's precalculateDigest, getCurrentTreeDigest, setTxnDigest)

    cdef uint64_t current_digest(self):
        """The tree's digest once every outstanding change is applied."""
        if self.outstanding:
            return (<ChangeRecord>self.outstanding[len(self.outstanding) - 1]).tree_digest
        return self.tree.digest_sum

    cdef uint32_t record_digest(self, ChangeRecord rec):
        cdef const char* data = NULL
        cdef Py_ssize_t data_len = -1
        cdef Node* node
        if rec.tree_data:
            node = self.tree.lookup_bytes(rec.path)
            if node is not NULL:
                data, data_len = node_data(node), node.data_len
        elif rec.data is not None:
            data, data_len = PyBytes_AS_STRING(rec.data), PyBytes_GET_SIZE(rec.data)
        return digest_of(PyBytes_AS_STRING(rec.path), PyBytes_GET_SIZE(rec.path), data, data_len,
                         rec.czxid, rec.mzxid, rec.pzxid, rec.ctime, rec.mtime, rec.version, rec.cversion,
                         rec.aversion, rec.owner)

    cdef void add_change(self, ChangeRecord rec, ChangeRecord prev):
        """add(rec), with the digests Apache precalculates: rec replaces prev, the latest record of its
        path (UPDATE; REMOVE when rec is a deletion), or is a new node's (ADD, prev None)."""
        cdef uint32_t old = prev.node_digest if prev is not None else 0
        cdef int count_diff
        cdef int64_t bytes_diff
        if self.digests:
            rec.node_digest = self.record_digest(rec) if rec.exists else 0
            rec.tree_digest = self.current_digest() - old + rec.node_digest
        if self.tree.quota_roots:
            count_diff = <int>rec.exists - <int>(prev is not None and prev.exists)
            bytes_diff = ((rec.data_len if rec.exists and rec.data_len > 0 else 0)
                          - (prev.data_len if prev is not None and prev.exists and prev.data_len > 0 else 0))
            if count_diff != 0 or bytes_diff != 0:
                prefix = self.tree.max_quota_prefix(rec.path)
                if prefix is not None:
                    self.quota_txn.append((rec.zxid, prefix, count_diff, bytes_diff))
        self.add(rec)

    cdef void quota_txn_made(self, bint made):
        """The txn being prepared is made (or failed): its quota diffs count as in flight until it is
        applied (or are dropped)."""
        if not self.quota_txn:
            return
        if made:
            for item in self.quota_txn:
                self.quota_outstanding.append(item)
                _, prefix, count_diff, bytes_diff = item
                in_flight = self.quota_in_flight.get(prefix)
                if in_flight is None:
                    self.quota_in_flight[prefix] = [count_diff, bytes_diff]
                else:
                    in_flight[0] += count_diff
                    in_flight[1] += bytes_diff
        self.quota_txn = []

    cdef void stamp(self, Txn txn):
        # a txn that is not an error carries the digest the tree has once it is applied; an error
        # txn carries none, as Apache's prep leaves it
        if self.digests and txn.type != OP_ERROR:
            txn.has_digest = True
            txn.digest_version = TXN_DIGEST_VERSION
            txn.digest = <int64_t>self.current_digest()

    def applied(self, int64_t zxid):
        """A txn up to zxid reached the tree: its change records are no longer needed."""
        cdef ChangeRecord rec
        outstanding = self.outstanding
        by_path = self.by_path
        while outstanding:
            rec = outstanding[0]
            if rec.zxid > zxid:
                break
            outstanding.popleft()
            if by_path.get(rec.path) is rec:
                del by_path[rec.path]
        quota = self.quota_outstanding
        while quota and quota[0][0] <= zxid:
            _, prefix, count_diff, bytes_diff = quota.popleft()
            in_flight = self.quota_in_flight[prefix]
            in_flight[0] -= count_diff
            in_flight[1] -= bytes_diff
            if in_flight[0] == 0 and in_flight[1] == 0:
                del self.quota_in_flight[prefix]

    def reset(self):
        """Forget every outstanding change (their txns failed)."""
        self.outstanding.clear()
        self.by_path.clear()
        self.quota_outstanding.clear()
        self.quota_in_flight.clear()
        self.quota_txn = []

    cdef dict pending_for_multi(self, list ops):
        cdef dict pending = {}
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

    cdef void rollback(self, int64_t zxid, dict pending):
        cdef ChangeRecord rec
        outstanding = self.outstanding
        while outstanding:
            rec = outstanding[len(outstanding) - 1]
            if rec.zxid != zxid:
                break
            outstanding.pop()
            self.by_path.pop(rec.path, None)
        if not outstanding:
            return
        first = (<ChangeRecord>outstanding[0]).zxid
        for rec in pending.values():
            if rec.zxid >= first:
                self.by_path[rec.path] = rec

    # -- quotas (Apache's ZooKeeperServer.checkQuota): limits as committed in the tree; stats as committed,
    # plus the diffs of the txns made before this one and not applied yet. Apache checks against the
    # committed stats alone, so writes in flight together can pass a hard limit (7 of 200 pipelined
    # creates took one free place in tests/test_quotas.py's check); zkfast's prep runs a pipelined batch
    # ahead of its log and commit, so that would let all of them. The ops of one multi are checked
    # against the same stats, as on Apache.

    cdef void check_quota(self, bytes path, int64_t bytes_diff, int count_diff) except *:
        prefix = self.tree.max_quota_prefix(path)
        if prefix is None:
            return
        limit_path = QUOTA_ZOOKEEPER + prefix + b"/" + LIMIT_NODE
        limits_data = self.tree.get_data(limit_path)
        if limits_data is None and not self.tree.exists(limit_path):
            log.error("Missing limit node for quota %s", limit_path.decode("utf-8", "replace"))
            return
        limits = parse_stats_track(limits_data)  # ValueError: MARSHALLINGERROR, as Apache's prep
        count_limit, count_hard = limits.get("count", -1), limits.get("countHardLimit", -1)
        bytes_limit, bytes_hard = limits.get("bytes", -1), limits.get("byteHardLimit", -1)
        check_count = count_diff != 0 and (count_limit > -1 or count_hard > -1)
        check_bytes = bytes_diff != 0 and (bytes_limit > -1 or bytes_hard > -1)
        if not check_count and not check_bytes:
            return
        stat_path = QUOTA_ZOOKEEPER + prefix + b"/" + STAT_NODE
        stats_data = self.tree.get_data(stat_path)
        if stats_data is None and not self.tree.exists(stat_path):
            log.error("Missing node for stat %s", stat_path.decode("utf-8", "replace"))
            return
        current = parse_stats_track(stats_data)
        in_flight = self.quota_in_flight.get(prefix)
        if in_flight is not None:
            for key, diff in zip(("count", "bytes"), in_flight):
                if key in current:
                    current[key] += diff
        if check_count:
            self.check_quota_limit(path, prefix, "count", "CountLimit", current.get("count", -1) + count_diff,
                                   count_limit, count_hard)
        if check_bytes:
            self.check_quota_limit(path, prefix, "bytes", "ByteLimit", current.get("bytes", -1) + bytes_diff,
                                   bytes_limit, bytes_hard)

    cdef void check_quota_limit(self, bytes path, bytes prefix, str stat, str limit_name, int64_t new,
                                int64_t soft, int64_t hard) except *:
        """One of checkQuota's two checks: the hard limit wins where set; past it the write is refused,
        past a soft one only logged."""
        cdef int64_t limit = hard if hard > -1 else soft
        if new <= limit:
            return
        QUOTA_RATE_LOGGER.rate_limit_log("Quota exceeded: %s [current %s=%d, %s%s=%d]" % (
            prefix.decode("utf-8", "replace"), stat, new, "hard" if hard > -1 else "soft", limit_name, limit))
        if hard > -1:
            self.quota_refused(path, prefix)

    cdef void quota_refused(self, bytes path, bytes prefix) except *:
        parts = path.split(b"/")
        if len(parts) > 1:  # PathUtils.getTopNamespace
            namespace = parts[1].decode("utf-8", "replace")
            self.quota_exceeded[namespace] = self.quota_exceeded.get(namespace, 0) + 1
        raise ZkError(Code.QUOTAEXCEEDED, prefix)

    # -- ACL checks: world:anyone in C, the rest through the Python providers

    cdef void require(self, object acl, int perm, object ids) except *:
        if acl_allows_world(acl, perm):
            return
        self.auth.require(acl, perm, ids)

    cdef object fixup(self, bytes path, object ids, object acl):
        if acl is not None and len(acl) == 1:
            entry = acl[0]
            if entry[1] == "world" and entry[2] == "anyone":
                return acl
        return self.auth.fixup_acl(path, ids, acl)

    # -- the entry point

    def prep(self, Request req):
        """A txn for a write request (a failed one becomes an error txn); None for other types.

        Reads get only the session check; a failure is left in req.error.
        """
        cdef int32_t typ = req.type
        cdef Txn txn
        try:
            if typ == OP_MULTI:
                return self.prep_multi(req)
            if typ == OP_RECONFIG:
                try:
                    decode_request(typ, req.body)
                except JuteError:
                    # Apache decodes a reconfig before giving it a txn header: no zxid is spent
                    req.error = ZkError(Code.MARSHALLINGERROR)
                    return None
            if is_txn_op(typ):
                txn = Txn(req.session_id, req.cxid, self.next_zxid(), wall_ms(), typ)
                req.txn = txn
                if self.quota_txn:
                    self.quota_txn = []
                try:
                    self.to_txn(typ, txn, req, None)
                    self.quota_txn_made(True)
                except ZkError as e:
                    self.quota_txn_made(False)
                    fail(txn, e.code)
                except _MALFORMED as e:
                    self.quota_txn_made(False)
                    log.warning("failed to process request type %d of session 0x%x: %s", typ,
                                req.session_id & 0xFFFFFFFFFFFFFFFF, e)
                    fail(txn, Code.MARSHALLINGERROR)
                self.stamp(txn)
                return txn
            self.check_session(req)
        except ZkError as e:
            req.error = e
        return None

    cdef Txn prep_multi(self, Request req):
        cdef Txn txn, sub
        cdef bint failed = False
        cdef int64_t zxid
        cdef int32_t op, sub_type
        try:
            ops = decode_request(OP_MULTI, req.body)
            if any(o == OP_GET_DATA or o == OP_GET_CHILDREN for o, _ in ops):
                # mixed kinds fail to decode; an all-read multi fails on its first op (Apache:
                # a null txn): either way MARSHALLINGERROR, and the zxid is spent
                raise JuteError("read ops in a multi")
        except (JuteError, ValueError) as e:
            log.warning("bad multi from session 0x%x: %s", req.session_id & 0xFFFFFFFFFFFFFFFF, e)
            txn = Txn(req.session_id, req.cxid, self.next_zxid(), wall_ms(), OP_MULTI)
            req.txn = txn
            fail(txn, Code.MARSHALLINGERROR)
            return txn
        zxid = self.next_zxid()
        pending = self.pending_for_multi(ops)
        txn = Txn(req.session_id, req.cxid, zxid, wall_ms(), OP_MULTI)
        req.txn = txn
        subs = []
        if self.quota_txn:
            self.quota_txn = []
        try:
            for op, args in ops:
                sub = Txn(req.session_id, req.cxid, zxid, txn.time, op)
                if failed:
                    fail(sub, Code.RUNTIMEINCONSISTENCY)
                else:
                    sub_type = multi_sub_type(op, args)
                    sub.type = sub_type
                    if op == OP_CREATE_TTL and sub_type != OP_CREATE_TTL:
                        args = args[:4]  # Op.create without a TTL mode keeps a plain CreateRequest
                    try:
                        self.to_txn(sub_type, sub, req, args)
                    except ZkError as e:
                        failed = True
                        fail(sub, e.code)
                        self.rollback(zxid, pending)
                subs.append(sub)
        except _MALFORMED as e:
            # Apache's pRequest2Txn meets a record of the wrong class (e.g. a create header
            # whose flags ask for TTL): the whole multi fails with MARSHALLINGERROR
            log.warning("bad multi op from session 0x%x: %s", req.session_id & 0xFFFFFFFFFFFFFFFF, e)
            self.quota_txn_made(False)
            fail(txn, Code.MARSHALLINGERROR)
            return txn
        self.quota_txn_made(not failed)
        txn.subtxns = subs
        self.stamp(txn)
        return txn

    # -- per type (Apache's pRequest2Txn)

    cdef void to_txn(self, int32_t typ, Txn txn, Request req, object args) except *:
        cdef ChangeRecord node, parent, prev
        cdef bytes path, parent_path
        cdef int32_t version
        if typ == OP_CREATE or typ == OP_CREATE2 or typ == OP_CREATE_TTL or typ == OP_CREATE_CONTAINER:
            self.create(typ, txn, req, args if args is not None else decode_request(typ, req.body))
        elif typ == OP_DELETE_CONTAINER:
            self.delete_container(txn, req.body, req.conn is not None)
        elif typ == OP_DELETE:
            self.check_session(req)
            path, version = args if args is not None else decode_request(typ, req.body)
            if path is None:
                raise TypeError("null path")
            parent_path = parent_of_deletable(path)
            parent = self.record(parent_path)
            self.require(parent.acl, Perm.DELETE, req.auth_ids)
            node = self.record(path)
            check_version(node.version, version, path)
            if node.child_count > 0:
                raise ZkError(Code.NOTEMPTY, path)
            txn.path = path
            prev = parent
            parent = parent.duplicate(txn.zxid)
            parent.child_count -= 1
            parent.pzxid = txn.zxid
            self.add_change(parent, prev)
            self.add_change(deleted_record(txn.zxid, path), node)
        elif typ == OP_SET_DATA:
            self.check_session(req)
            path, data, version = args if args is not None else decode_request(typ, req.body)
            validate(path)
            node = self.record(path)
            self.require(node.acl, Perm.WRITE, req.auth_ids)
            if self.enforce_quota and self.tree.quota_roots:
                self.check_quota(path, (PyBytes_GET_SIZE(data) if data is not None else 0)
                                 - (node.data_len if node.data_len > 0 else 0), 0)
            version = check_version(node.version, version, path)
            txn.path = path
            txn.data = data
            txn.version = version
            prev = node
            node = node.duplicate(txn.zxid)
            node.version = version
            node.mtime = txn.time
            node.mzxid = txn.zxid
            node.data_len = -1 if data is None else PyBytes_GET_SIZE(data)
            node.tree_data = False
            node.data = data
            self.add_change(node, prev)
        elif typ == OP_SET_ACL:
            self.check_session(req)
            path, acl, version = args if args is not None else decode_request(typ, req.body)
            validate(path)
            acl = self.auth.fixup_acl(path, req.auth_ids, acl)
            node = self.record(path)
            self.auth.require(node.acl, Perm.ADMIN, req.auth_ids)
            version = check_version(node.aversion, version, path)
            txn.path = path
            txn.acl = acl
            txn.version = version
            prev = node
            node = node.duplicate(txn.zxid)
            node.aversion = version
            node.acl = acl
            self.add_change(node, prev)
        elif typ == OP_CHECK:
            self.check_session(req)
            path, version = args if args is not None else decode_request(typ, req.body)
            validate(path)
            node = self.record(path)
            self.require(node.acl, Perm.READ, req.auth_ids)
            txn.path = path
            txn.version = check_version(node.version, version, path)
        elif typ == OP_RECONFIG:
            if not self.reconfig_enabled:
                raise ZkError(Code.RECONFIGDISABLED)
            self.check_session(req)
            if self.reconfig is None:
                # a standalone server cannot reconfigure (Apache: UnimplementedException)
                raise ZkError(Code.UNIMPLEMENTED)
            # the leader checks the request (ZkError) and makes the new config; the ACL comes last,
            # as in Apache's PrepRequestProcessor
            data = self.reconfig(args if args is not None else decode_request(typ, req.body), txn.zxid)
            node = self.record(b"/zookeeper/config")
            self.require(node.acl, Perm.WRITE, req.auth_ids)
            txn.path = b"/zookeeper/config"
            txn.data = data
            txn.version = -1
            prev = node
            node = node.duplicate(txn.zxid)
            node.version = -1
            node.mtime = txn.time
            node.mzxid = txn.zxid
            node.tree_data = False
            node.data = data
            node.data_len = -1 if data is None else PyBytes_GET_SIZE(data)
            self.add_change(node, prev)
        elif typ == OP_CREATE_SESSION:
            txn.timeout = req.extra["timeout_ms"]
            if self.track_owners:
                s = self.sessions.sessions.get(req.session_id)
                if s is not None:
                    s.owner = owner_of(req)
        elif typ == OP_CLOSE_SESSION:
            self.close_session(txn, req)
        else:
            raise ZkError(Code.UNIMPLEMENTED)

    cdef void create(self, int32_t typ, Txn txn, Request req, tuple args) except *:
        cdef bytes path, parent_path
        cdef int32_t flags, new_cversion
        cdef int64_t ttl, owner
        cdef Py_ssize_t cut
        cdef ChangeRecord parent, rec, prev
        cdef bint sequential, ephemeral
        if typ == OP_CREATE_TTL:
            path, data, acl, flags, ttl = args
        else:
            path, data, acl, flags = args
            ttl = -1
        if flags < FLAG_PERSISTENT or flags > FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL:
            raise ZkError(Code.BADARGUMENTS, path)
        # validateCreateRequest
        if flags == FLAG_PERSISTENT_WITH_TTL or flags == FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL:
            if not self.extended_types:
                raise ZkError(Code.UNIMPLEMENTED)
            if not (0 < ttl <= TTL_MAX):
                raise ZkError(Code.BADARGUMENTS, path)
        elif ttl >= 0 or typ == OP_CREATE_TTL:
            # createTTL with a non-TTL mode: Apache fails this only when applying; refuse here
            raise ZkError(Code.BADARGUMENTS, path)
        self.check_session(req)
        if path is None:
            raise TypeError("null path")
        cut = path.rfind(b"/")
        if cut == -1 or memchr(PyBytes_AS_STRING(path), 0, PyBytes_GET_SIZE(path)) is not NULL:
            raise ZkError(Code.BADARGUMENTS, path)
        parent_path = path[:cut]
        acl = self.fixup(path, req.auth_ids, acl)
        parent = self.record(parent_path)
        self.require(parent.acl, Perm.CREATE, req.auth_ids)
        sequential = flags == FLAG_PERSISTENT_SEQUENTIAL or flags == FLAG_EPHEMERAL_SEQUENTIAL \
            or flags == FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL
        ephemeral = flags == FLAG_EPHEMERAL or flags == FLAG_EPHEMERAL_SEQUENTIAL
        if sequential:
            path = path + b"%010d" % parent.cversion
        validate(path)
        if self.lookup(path) is not None:
            raise ZkError(Code.NODEEXISTS, path)
        if is_session_owner(parent.owner, self.extended_types):
            raise ZkError(Code.NOCHILDRENFOREPHEMERALS, path)
        new_cversion = parent.cversion + 1
        if self.enforce_quota and self.tree.quota_roots:
            self.check_quota(path, PyBytes_GET_SIZE(data) if data is not None else 0, 1)
        txn.path = path
        txn.data = data
        txn.acl = acl
        txn.parent_cversion = new_cversion
        if typ == OP_CREATE_TTL:
            txn.ttl = ttl
        elif typ == OP_CREATE or typ == OP_CREATE2:
            txn.ephemeral = ephemeral
        if flags == FLAG_CONTAINER:
            owner = CONTAINER_OWNER
        elif flags == FLAG_PERSISTENT_WITH_TTL or flags == FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL:
            owner = <int64_t>(TTL_MASK | <uint64_t>ttl)
        elif ephemeral:
            owner = req.session_id
        else:
            owner = 0
        prev = parent
        parent = parent.duplicate(txn.zxid)
        parent.child_count += 1
        parent.cversion = new_cversion
        parent.pzxid = txn.zxid
        self.add_change(parent, prev)
        rec = ChangeRecord.__new__(ChangeRecord)
        rec.zxid = txn.zxid
        rec.path = path
        rec.exists = True
        rec.czxid = rec.mzxid = rec.pzxid = txn.zxid
        rec.ctime = rec.mtime = txn.time
        rec.owner = owner
        rec.version = rec.cversion = rec.aversion = 0
        rec.child_count = 0
        rec.data_len = -1 if data is None else PyBytes_GET_SIZE(data)
        rec.acl = acl
        rec.data = data
        self.add_change(rec, None)

    cdef void delete_container(self, Txn txn, bytes body, bint from_client) except *:
        # the ContainerManager's request carries the bare path, not a DeleteRequest. Apache reads a
        # client's deleteContainer the same way from its whole buffer, header included: the zero
        # bytes of its opcode make that "path" invalid, so a client always gets BADARGUMENTS
        if from_client:
            raise ZkError(Code.BADARGUMENTS)
        cdef bytes path = body
        cdef bytes parent_path = parent_of_deletable(path)
        cdef ChangeRecord node = self.record(path), parent, prev
        if node.child_count > 0:
            raise ZkError(Code.NOTEMPTY, path)
        if is_session_owner(node.owner, self.extended_types):
            raise ZkError(Code.BADVERSION, path)
        parent = self.record(parent_path)
        txn.path = path
        prev = parent
        parent = parent.duplicate(txn.zxid)
        parent.child_count -= 1
        parent.pzxid = txn.zxid
        self.add_change(parent, prev)
        self.add_change(deleted_record(txn.zxid, path), node)

    cdef void close_session(self, Txn txn, Request req) except *:
        cdef ChangeRecord rec, prev, parent
        order, capacity = self.ephemeral_order(req.session_id)
        for rec in self.outstanding:
            if not rec.exists:
                if rec.path in order:
                    order.remove(rec.path)
            elif rec.owner == req.session_id:
                order, capacity = javaorder.add_to_set(order, capacity, len(order), rec.path)
        for path in order:
            if self.digests:
                # Apache records the parent's new pzxid only for the digest
                prev = self.record(path[:path.rfind(b"/")])
                parent = prev.duplicate(txn.zxid)
                parent.pzxid = txn.zxid
                self.add_change(parent, prev)
            self.add_change(deleted_record(txn.zxid, path), self.lookup(path))
        if self.close_session_txn:
            txn.paths = order
        self.sessions.set_closing(req.session_id)

    def ephemeral_order(self, int64_t session_id):
        """The session's ephemerals in the order Apache's closeSession lists them."""
        paths = self.tree.ephemeral_paths(session_id)
        if not paths:
            return [], javaorder.DEFAULT_CAPACITY
        capacity = javaorder.capacity_after_inserts(self.tree.ephemerals_max.get(session_id, len(paths)))
        source = javaorder.iteration_order(paths, capacity)
        return javaorder.cloned_set_order(source)


cdef void fail(Txn txn, object code):
    txn.type = OP_ERROR
    txn.err = int(code)
    txn.path = None
    txn.data = None
    txn.acl = None
    txn.subtxns = None
    txn.paths = None


cdef void validate(object path) except *:
    if path is None:
        raise TypeError("null path")
    if not valid_path(path):
        raise ZkError(Code.BADARGUMENTS, path)


cdef bytes parent_of_deletable(object path):
    if path is None:
        raise TypeError("null path")
    cut = path.rfind(b"/")
    if cut == -1 or b"\0" in path or path in SPECIAL_PATHS:
        raise ZkError(Code.BADARGUMENTS, path)
    return path[:cut]


cdef int32_t check_version(int32_t current, int32_t expected, bytes path) except? -1:
    if expected != -1 and expected != current:
        raise ZkError(Code.BADVERSION, path)
    return java_int_inc(current)


cdef int32_t multi_sub_type(int32_t op, tuple args) except? -99:
    """The opcode Apache's Op gives a multi entry: create kinds follow the flags, not the header."""
    cdef int32_t flags
    if op == OP_CREATE or op == OP_CREATE2 or op == OP_CREATE_CONTAINER or op == OP_CREATE_TTL:
        flags = args[3]
        if flags == FLAG_PERSISTENT_WITH_TTL or flags == FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL:
            # from a create header this pairs a CreateRequest with createTTL: it fails as Apache's cast
            return OP_CREATE_TTL
        return OP_CREATE_CONTAINER if flags == FLAG_CONTAINER else OP_CREATE
    return op


# ------------------------------------------------------------------------------------------------
# The pipeline's per-request path: a frame the read hot path did not take → prep → commit stage →
# apply → reply in request order. ZooKeeperServer (Python) subclasses this and adds the rest.

cdef Py_ssize_t WRITE_COPIES = WRITE_HELD_COPIES

cdef Py_ssize_t OUTPUT_HARD_LIMIT = CONNECTION_OUTPUT_HARD_LIMIT_BYTES

# stands in for the txn of a request a learner forwarded to its leader, until the leader's commit
# brings the real one: reads of the same connection queue behind it as behind any write
FORWARDED = Txn(0, 0, 0, 0, OP_ERROR)
# stands in for the txn of a write that waits, unprepared, behind reads of its connection whose
# replies may not fit under the connection's output limit: it is prepared once they are answered.
# Behind reads with small replies a write is prepared at once (pipelining), and those reads are
# answered before it is applied whatever the output (answer_reads_ahead).
DEFERRED = Txn(0, 0, 0, 0, OP_ERROR)


def now_ms():
    return wall_ms()


cdef class PipelineCore:
    """Per-request work of the server, in C where it runs once per request."""

    cdef public DataTree tree
    cdef public Prep prep
    cdef public object sessions
    cdef readonly object commit      # the commit stage (take_role may replace it)
    cdef public object in_flight
    cdef public list dirty_conns
    cdef public list paused
    cdef public int global_outstanding_limit
    cdef public object write_failure
    cdef readonly object forward     # a learner's: sends writes (and syncs) to the leader
    cdef readonly object write_refusal  # read-only mode: the error every write gets (NOTREADONLY)
    cdef public dict by_session
    cdef public int64_t latency_min_ms
    cdef public int64_t latency_max_ms
    cdef public int64_t latency_total_ms
    cdef public int64_t latency_count
    cdef public int64_t in_flight_bytes  # request bodies of in_flight and of forwarded requests
    cdef public int64_t forwarded_count  # a learner's: requests sent to the leader, not yet finished
    cdef bint flushing_commit

    def __init__(self, commit):
        self.commit = commit
        self.in_flight = deque()
        self.in_flight_bytes = 0
        self.forwarded_count = 0
        self.flushing_commit = False
        self.dirty_conns = []
        self.paused = []
        self.by_session = {}
        self.write_failure = None
        self.forward = None
        self.write_refusal = None
        self.reset_latency()

    def take_role(self, role):
        """What the per-request path consults of a role (zkfast.server.roles.Role): where writes go,
        which error every write gets, and prep's owner and reconfig checks; its commit stage, if it
        brings one, from now on (started by whoever made it)."""
        self.forward = role.forward
        self.write_refusal = Code.NOTREADONLY if role.read_only else None
        self.prep.track_owners = role.track_owners
        self.prep.reconfig = role.prep_reconfig
        if role.commit is not None:
            self.commit = role.commit
        if role.first_zxid is not None:
            # as Apache's Leader.startZkServer: the tree counts as at the new epoch's zxid 0
            self.prep.last_zxid = role.first_zxid
            self.tree.last_processed_zxid = max(self.tree.last_processed_zxid, role.first_zxid)

    def reset_latency(self):
        self.latency_min_ms = -1
        self.latency_max_ms = 0
        self.latency_total_ms = 0
        self.latency_count = 0

    # -- hooks: what the server built on this core provides (ZooKeeperServer overrides each). The core
    # calls nothing else of its own that it does not define, so it depends on no Python module of
    # the server.

    def run_read(self, conn, req):
        """Answer a request that takes no txn, now (nothing of its session is ahead of it)."""
        raise NotImplementedError

    def handle_auth(self, conn, xid, body):
        """An auth packet: answered at once, out of the request order (as Apache does)."""
        raise NotImplementedError

    def handle_sasl(self, conn, xid, body):
        """A SASL packet: answered at once, out of the request order (as Apache does)."""
        raise NotImplementedError

    def pause(self, conn):
        """Stop reading conn: the server holds more requests than its outstanding limits allow."""
        raise NotImplementedError

    def resume_paused(self):
        """Read again from every connection pause stopped."""
        raise NotImplementedError

    def close_local_session(self, conn, xid):
        """A closeSession that takes no txn (read-only mode): answer it and close the connection."""
        raise NotImplementedError

    def finish_session_init(self, conn, valid):
        """Answer the ConnectRequest of conn, whose session was created (valid) or refused."""
        raise NotImplementedError

    # -- requests

    def on_request(self, conn, int32_t xid, int32_t op, bytes body):
        """A frame the read hot path did not answer (Apache's processPacket)."""
        cdef ConnCore core = conn.core
        cdef Request req
        if op == OP_AUTH:
            self.handle_auth(conn, xid, body)
            return
        if op == OP_SASL:
            self.handle_sasl(conn, xid, body)
            return
        session = self.sessions.sessions.get(core.session_id)
        if session is None or session.closing:
            # a closing or unknown session: Apache drops the packet
            log.info("dropping op %d of %s session 0x%x", op, "unknown" if session is None else "closing",
                     core.session_id & 0xFFFFFFFFFFFFFFFF)
            return
        if not is_valid_op(op):
            log.warning("received packet of unknown type %d from %s", op, conn.remote)
            core.out.reply(xid, -1, Code.UNIMPLEMENTED)
            conn.close_after_flush()
            return
        req = Request.__new__(Request)
        req.session_id = core.session_id
        req.cxid = xid
        req.type = op
        req.body = body
        req.auth_ids = core.auth_ids
        req.conn = conn
        req.create_ms = wall_ms()
        if self.write_refusal is not None and is_txn_op(op):
            if op == OP_CLOSE_SESSION:
                self.close_local_session(conn, xid)
                return
            req.error = ZkError(self.write_refusal)  # answered in its turn, like a read
        elif is_txn_op(op) or (op == OP_SYNC and self.forward is not None):
            if self.write_failure is not None:
                req.error = ZkError(Code.SYSTEMERROR)  # answered in its turn, like a read
            elif waits_for_reads(conn.queue) and (
                    (<Request>conn.queue[len(conn.queue) - 1]).txn is DEFERRED
                    or core.queued_reply_estimate + len(core.out) + core.backlog >= core.out_limit):
                req.txn = DEFERRED
                self.enqueue(conn, req)
                return
            else:
                self.submit(req)
                return
        if conn.queue:
            req.reply_estimate = self.reply_estimate(req, core.max_frame_bytes)
            self.enqueue(conn, req)
        else:
            self.run_read(conn, req)

    cdef int64_t reply_estimate(self, Request req, int64_t unknown) except -1:
        """What the reply to a read may take, judged by the tree now (a write queued ahead of it may
        still change that: answer_reads_ahead bounds the difference)."""
        cdef Node* node
        cdef Node* child
        cdef int64_t size = 128
        cdef const char* p
        cdef Py_ssize_t n
        cdef uint32_t path_len
        cdef int32_t op = req.type
        if op == OP_EXISTS or op == OP_PING or op == OP_SYNC or op == OP_SET_WATCHES \
                or op == OP_CHECK_WATCHES or op == OP_REMOVE_WATCHES or op == OP_ADD_WATCH or req.error is not None:
            return size
        if op != OP_GET_DATA and op != OP_GET_CHILDREN and op != OP_GET_CHILDREN2:
            return unknown
        p = PyBytes_AS_STRING(req.body)
        n = PyBytes_GET_SIZE(req.body)
        if n < 4:
            return size
        path_len = load_u32(<const uint8_t*>p)
        if path_len > <uint32_t>(n - 4):
            return size
        node = self.tree.lookup(p + 4, path_len)
        if node is NULL:
            return size
        if op == OP_GET_DATA:
            return size + (node.data_len if node.data_len > 0 else 0)
        child = node.first_child
        while child is not NULL:
            size += 4 + child.name_len
            child = child.next_sibling
        return size

    cpdef enqueue(self, conn, Request req):
        """req joins its connection's queue of requests read and not yet answered."""
        cdef ConnCore core = conn.core
        conn.queue.append(req)
        core.queued += 1
        core.queued_bytes += held_bytes(req) + QUEUED_REQUEST_OVERHEAD_BYTES
        core.queued_reply_estimate += req.reply_estimate

    cpdef bint dequeue(self, conn, Request req):
        """req leaves the head of its connection's queue; False if it is not the head."""
        cdef ConnCore core = conn.core
        queue = conn.queue
        if not queue or queue[0] is not req:
            return False
        queue.popleft()
        core.queued -= 1
        core.queued_bytes -= held_bytes(req) + QUEUED_REQUEST_OVERHEAD_BYTES
        core.queued_reply_estimate -= req.reply_estimate
        return True

    cpdef bint answer_reads_ahead(self, conn, Request req):
        """Answer the reads the connection queued ahead of req, a write about to be applied (or
        failed), whatever its output: they must see the tree as it is before req's txn. False if
        that took the output past the hard limit: a client that sent more replies' worth of reads
        ahead of a write than it can hold, without reading them, is aborted."""
        cdef ConnCore core = conn.core
        cdef Request head
        queue = conn.queue
        while not conn.closed and queue and queue[0] is not req:
            head = queue[0]
            assert head.txn is None, "only reads wait ahead of a write in flight"
            if len(core.out) + core.backlog > OUTPUT_HARD_LIMIT:
                log.warning("aborting %s: the reads it sent ahead of a write would take more than %d bytes "
                            "of replies, unread", conn.remote, OUTPUT_HARD_LIMIT)
                conn.abort()
                return False
            if len(core.out) >= FLUSH_AT_BYTES:
                conn.flush()
            self.dequeue(conn, head)
            self.run_read(conn, head)
        self.mark_dirty(conn)
        return not conn.closed

    cpdef submit(self, Request req, bint queued=False):
        """Prepare req (or forward it to the leader) and hand its txn to the commit stage; `queued`:
        req is already at the head of its connection's queue (a deferred write)."""
        cdef Txn txn
        conn = req.conn
        if self.forward is not None:
            req.txn = FORWARDED
            if conn is not None:
                if not queued:
                    self.enqueue(conn, req)
                self.forwarded_count += 1  # until forwarded_done (only a client's are answered)
                self.in_flight_bytes += held_bytes(req)
            self.forward(req)
            if conn is not None:
                self.throttle(conn)
            return
        txn = self.prep.prep(req)
        if txn is None:
            # a read or reconfig that failed before getting a zxid: answered in order
            if conn is not None and not queued:
                if conn.queue:
                    self.enqueue(conn, req)
                else:
                    self.run_read(conn, req)
            return
        if conn is not None and not queued:
            self.enqueue(conn, req)
        self.in_flight.append(req)
        self.in_flight_bytes += held_bytes(req)
        self.commit.append(txn)
        if conn is not None:
            self.throttle(conn)

    cdef throttle(self, conn):
        # globalOutstandingLimit, and its byte counterpart: stop reading the client that passed it
        if len(self.in_flight) + self.forwarded_count > self.global_outstanding_limit \
                or self.in_flight_bytes > GLOBAL_OUTSTANDING_BYTES_LIMIT:
            self.pause(conn)

    cdef resume_if_below_half(self):
        if self.paused and len(self.in_flight) + self.forwarded_count <= self.global_outstanding_limit // 2 \
                and self.in_flight_bytes <= GLOBAL_OUTSTANDING_BYTES_LIMIT // 2:
            self.resume_paused()

    def forwarded_done(self, Request req):
        """The leader has answered a request this learner forwarded (its commit or its sync)."""
        self.forwarded_count -= 1
        self.in_flight_bytes -= held_bytes(req)
        self.resume_if_below_half()

    def end_batch(self):
        """After a batch of input: let the commit stage make its txns final, flush output."""
        self.flush_commit()
        self.flush_output()

    cdef flush_commit(self):
        # not from inside a flush: a commit stage that commits at once calls on_commit from its
        # flush, and loops until nothing new was appended
        if self.flushing_commit:
            return
        self.flushing_commit = True
        try:
            self.commit.flush()
        finally:
            self.flushing_commit = False

    # -- commit and apply

    def on_commit(self, int64_t zxid):
        """Every txn up to zxid is final: apply them in order and answer their clients."""
        cdef Request req
        in_flight = self.in_flight
        while in_flight:
            req = in_flight[0]
            if req.txn.zxid > zxid:
                break
            in_flight.popleft()
            self.in_flight_bytes -= held_bytes(req)
            self.make_final(req.txn, req)
        self.resume_if_below_half()
        self.flush_commit()  # writes prepared meanwhile (deferred behind reads just answered)
        if self.tree.dirty_watchers or self.dirty_conns:
            self.flush_output()

    cpdef make_final(self, Txn txn, Request req):
        """One txn is final, whichever role made it so (this server's commit stage, or a leader's
        COMMIT that a learner follows): apply it and answer req, the request it came from if that
        came through this server (else None). The one apply path of every role."""
        conn = req.conn if req is not None else None
        if conn is not None and conn.queue and conn.queue[0] is not req:
            self.answer_reads_ahead(conn, req)  # before the txn: they must not see it
        self.apply(txn)
        if req is not None:
            self.finish(req)
        elif txn.type == OP_CLOSE_SESSION:
            self.close_session_connection(txn.session_id)

    cpdef apply(self, Txn txn):
        """Apply one final txn (Apache's ZooKeeperServer.processTxn): every server commits a
        createSession's session to its tracker there, the leader's refreshing what it tracked."""
        if txn.type == OP_CLOSE_SESSION:
            self.sessions.remove(txn.session_id)
        elif txn.type == OP_CREATE_SESSION:
            self.sessions.track(txn.session_id, txn.timeout)
        self.tree.apply(txn)
        self.prep.applied(txn.zxid)

    cdef close_session_connection(self, int64_t session_id):
        """A session closed elsewhere (expired by the leader, closed through another server): its
        connection here, if any, goes once its output is out."""
        other = self.by_session.get(session_id)
        if other is not None:
            other.close_after_flush()

    cpdef finish(self, Request req):
        """Answer a request whose txn was applied (Apache's FinalRequestProcessor)."""
        conn = req.conn
        cdef Txn txn = req.txn
        cdef ConnCore core
        if conn is None:
            if req.type == OP_CLOSE_SESSION:
                self.close_session_connection(txn.session_id)
            return
        core = conn.core
        if conn.closed:
            self.dequeue(conn, req)
            return
        popped = self.dequeue(conn, req)
        assert popped, "writes finish in the order their connection sent them"
        if req.type == OP_CREATE_SESSION:
            self.finish_session_init(conn, True)
        elif session_moved(txn):
            # Apache's FinalRequestProcessor: a connection-level error (ZOOKEEPER-710), answered by
            # closing the connection, so the client reconnects (and revalidates) wherever it is now
            conn.close_after_flush()
            return
        else:
            self.write_txn_reply(core, req)
            if req.type == OP_CLOSE_SESSION:
                conn.close_after_flush()
                return
        self.drain_queue(conn)

    cpdef drain_queue(self, conn):
        """Answer the reads that waited behind a finished write, up to the next write in flight,
        while the connection's output is below its soft limit (the connection drains the rest once
        its client has read); a deferred write they reach is prepared."""
        cdef Request req
        cdef ConnCore core = conn.core
        queue = conn.queue
        core.stalled = False
        while queue:
            req = queue[0]
            if req.txn is DEFERRED:
                req.txn = None
                self.submit(req, True)
                if req.txn is not None:
                    break  # in flight now (a reconfig refused before its zxid is answered below)
            elif req.txn is not None:
                break
            if core.output_full():
                core.stalled = True
                break
            if len(core.out) >= FLUSH_AT_BYTES:
                conn.flush()
                if conn.closed:
                    return
            self.dequeue(conn, req)
            self.run_read(conn, req)
        self.mark_dirty(conn)
        if core.blocked:
            conn.wake()

    cpdef mark_dirty(self, conn):
        if not conn.dirty_flag:
            conn.dirty_flag = True
            self.dirty_conns.append(conn)

    cpdef note_reply(self, conn, Request req, int64_t zxid):
        cdef ConnCore core = conn.core
        cdef int64_t latency = wall_ms() - req.create_ms
        core.packets_sent += 1
        core.last_cxid = req.cxid
        core.last_zxid = zxid
        core.last_op = req.type
        if latency < 0:
            latency = 0
        self.latency_total_ms += latency
        self.latency_count += 1
        if latency > self.latency_max_ms:
            self.latency_max_ms = latency
        if self.latency_min_ms < 0 or latency < self.latency_min_ms:
            self.latency_min_ms = latency

    def note_latency(self, int64_t create_ms):
        cdef int64_t latency = wall_ms() - create_ms
        if latency < 0:
            latency = 0
        self.latency_total_ms += latency
        self.latency_count += 1
        if latency > self.latency_max_ms:
            self.latency_max_ms = latency
        if self.latency_min_ms < 0 or latency < self.latency_min_ms:
            self.latency_min_ms = latency

    def flush_output(self):
        for w in self.tree.take_dirty():
            w.dirty = False
            w.handler.flush()
        conns = self.dirty_conns
        if conns:
            self.dirty_conns = []
            for conn in conns:
                conn.dirty_flag = False
                conn.flush()

    # -- replies to applied txns (Apache's FinalRequestProcessor, write side)

    cpdef write_txn_reply(self, ConnCore core, Request req):
        cdef Txn txn = req.txn
        cdef WriteBuffer out = core.out
        cdef int64_t zxid = self.tree.last_processed_zxid
        cdef int32_t op = req.type, err
        cdef Py_ssize_t start
        cdef Txn sub
        self.note_reply(req.conn, req, zxid)
        if txn.type == OP_ERROR:
            out.reply(req.cxid, zxid, txn.err)
            return
        err = txn.rc_err
        if op == OP_MULTI:
            start = out.begin_frame()
            out.put_reply_header(req.cxid, zxid, 0)
            for sub in txn.subtxns:
                write_multi_result(out, sub)
            wb_i32(out, -1)
            wb_bool(out, True)
            wb_i32(out, -1)
            out.end_frame(start)
            return
        if err != 0 or op == OP_DELETE or op == OP_DELETE_CONTAINER or op == OP_CLOSE_SESSION:
            out.reply(req.cxid, zxid, err)
            return
        if op == OP_CHECK:
            # Apache 3.8.0 answers a top-level check with SetDataResponse(null), which fails to
            # serialise: the txn is applied, no reply is sent, the connection stays open
            core.packets_sent -= 1
            return
        start = out.begin_frame()
        out.put_reply_header(req.cxid, zxid, 0)
        if op == OP_CREATE:
            out.put_buffer_obj(txn.path)
        elif op == OP_CREATE2 or op == OP_CREATE_TTL or op == OP_CREATE_CONTAINER:
            out.put_buffer_obj(txn.path)
            out.put_stat(&txn.stat)
        elif op == OP_SET_DATA or op == OP_SET_ACL:
            out.put_stat(&txn.stat)
        elif op == OP_RECONFIG:
            # GetDataResponse: the new config and its stat
            out.put_buffer_obj(txn.data)
            out.put_stat(&txn.stat)
        out.end_frame(start)


cdef inline Py_ssize_t held_bytes(Request req) noexcept:
    # what the server holds for a request until it is answered: its body, and a write's several
    # times (the decoded txn, the log batch, the log writer's copy)
    cdef Py_ssize_t n = 0 if req.body is None else PyBytes_GET_SIZE(req.body)
    return n * WRITE_COPIES if is_txn_op(req.type) else n


cdef inline bint waits_for_reads(object queue):
    # the connection's last queued request is a read not yet answered, or a write waiting for one
    cdef Request last
    if not queue:
        return False
    last = queue[len(queue) - 1]
    return last.txn is None or last.txn is DEFERRED


cdef inline object owner_of(Request req):
    return THIS_SERVER if req.owner is None else req.owner


cdef bint session_moved(Txn txn) except -1:
    cdef Txn sub
    if txn.type == OP_ERROR:
        return txn.err == Code.SESSIONMOVED
    if txn.type == OP_MULTI and txn.subtxns:
        for sub in txn.subtxns:
            if sub.type == OP_ERROR and sub.err == Code.SESSIONMOVED:
                return True
    return False


cdef int write_multi_result(WriteBuffer out, Txn sub) except -1:
    cdef int32_t typ = sub.rc_type, err
    cdef Stat zero
    if typ == OP_ERROR:
        err = sub.rc_err if sub.type != OP_ERROR else sub.err
        wb_i32(out, OP_ERROR)
        wb_bool(out, False)
        wb_i32(out, err)
        wb_i32(out, err)
    elif typ == OP_CREATE:
        wb_i32(out, OP_CREATE)
        wb_bool(out, False)
        wb_i32(out, 0)
        out.put_buffer_obj(sub.path)
    elif typ == OP_CREATE2 or typ == OP_CREATE_TTL or typ == OP_CREATE_CONTAINER:
        wb_i32(out, OP_CREATE2)
        wb_bool(out, False)
        wb_i32(out, 0)
        out.put_buffer_obj(sub.path)
        if sub.has_stat:
            out.put_stat(&sub.stat)
        else:
            memset(&zero, 0, sizeof(Stat))
            out.put_stat(&zero)
    elif typ == OP_DELETE or typ == OP_DELETE_CONTAINER:
        wb_i32(out, OP_DELETE)
        wb_bool(out, False)
        wb_i32(out, 0)
    elif typ == OP_SET_DATA:
        wb_i32(out, OP_SET_DATA)
        wb_bool(out, False)
        wb_i32(out, 0)
        if sub.has_stat:
            out.put_stat(&sub.stat)
        else:
            memset(&zero, 0, sizeof(Stat))
            out.put_stat(&zero)
    elif typ == OP_CHECK:
        wb_i32(out, OP_CHECK)
        wb_bool(out, False)
        wb_i32(out, 0)
    return 0
