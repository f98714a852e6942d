# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""zkfast._datatree: the znode tree in C structures, its ACL table and watch tables.

Semantics follow Apache ZooKeeper 3.8.0's DataTree (with Debian's CVE-2024-23944 patch: watch
events are delivered only to watchers that may READ the node). Time never comes from a clock here:
every change arrives as a Txn carrying its zxid and time, so replay and replicas agree.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t
from libc.stdlib cimport malloc, free, calloc, realloc, qsort
from libc.string cimport memcpy, memcmp, memchr, memmove, memset

from zkfast._jute cimport (Stat, Txn, WriteBuffer, Cursor, cursor_init, rd_i32, rd_i64, rd_bool,
                           rd_bytes, wb_i32, wb_i64, wb_bytes, store_u32, store_u64)
from zkfast._jute cimport (Code, EventType, Perm, OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL,
                           OP_DELETE, OP_DELETE_CONTAINER, OP_SET_DATA, OP_RECONFIG, OP_SET_ACL, OP_CHECK,
                           OP_ERROR, OP_MULTI, OP_CREATE_SESSION, OP_CLOSE_SESSION, OP_EXISTS, OP_GET_DATA,
                           OP_GET_CHILDREN, OP_GET_CHILDREN2)
from zkfast._jute import encode_acl_list

import logging
import re
from collections import deque
from time import monotonic as _monotonic

cdef enum:
    STATE_SYNC_CONNECTED = 3  # Apache's Watcher.Event.KeeperState.SyncConnected
    M_STANDARD = 0
    M_PERSISTENT = 1
    M_RECURSIVE = 2
    MIN_SLOTS = 64
    # ephemeral kinds of an owner value (Apache's EphemeralType)
    KIND_VOID = 0
    KIND_NORMAL = 1
    KIND_CONTAINER = 2
    KIND_TTL = 3

cdef uint64_t TTL_MASK = 0xff00000000000000
cdef uint64_t TTL_RESERVED_MASK = 0x00ffff0000000000
cdef uint64_t TTL_VALUE_MASK = 0x000000ffffffffff


# watcher modes, for zkfast.server.reads
MODE_STANDARD = M_STANDARD
MODE_PERSISTENT = M_PERSISTENT
MODE_PERSISTENT_RECURSIVE = M_RECURSIVE


CONTAINER_EPHEMERAL_OWNER = -0x8000000000000000


class RateLogger:
    """Apache's RateLogger (100 ms): a message is logged at WARN when it first comes; repeats within
    the interval are counted and logged as `[N times] Message: ...` when it passes or another
    message comes."""

    def __init__(self, logger, interval_ms=100, clock=None):
        self.logger = logger
        self.interval_ms = interval_ms
        self.clock = clock if clock is not None else (lambda: int(_monotonic() * 1000))
        self.msg = None
        self.value = None
        self.count = 0
        self.timestamp = 0

    def flush(self):
        if self.msg is not None and self.count > 0:
            text = "[%d times] " % self.count if self.count > 1 else ""
            text += "Message: " + self.msg
            if self.value is not None:
                text += " Last value:" + self.value
            self.logger.warning("%s", text)
        self.msg = None
        self.value = None
        self.count = 0

    def rate_limit_log(self, msg, value=None):
        now = self.clock()
        if msg == self.msg:
            self.count += 1
            self.value = value
            if now - self.timestamp >= self.interval_ms:
                self.flush()
                self.msg = msg
                self.timestamp = now
                self.value = value
        else:
            self.flush()
            self.msg = msg
            self.value = value
            self.timestamp = now
            self.logger.warning("Message:%s Value:%s", msg, "null" if value is None else value)


# ------------------------------------------------------------------------------------------------
# txn digests (Apache's DigestCalculator, NodeHashMapImpl, AdHash and DataTree.compareDigest in
# zookeeper-server/src/main/java/org/apache/zookeeper/server/): every node's digest is a CRC32 of its
# path, data and StatPersisted; the tree's is their wrapping 64-bit sum, kept up to date by taking a
# node's digest out before each change and adding it back after. The leader puts the digest the tree
# will have after a txn into the txn; every server that applies it compares.

cdef extern from "zlib.h":
    unsigned long crc32(unsigned long crc, const unsigned char* buf, unsigned int n) nogil

# CRC-32 (java.util.zip.CRC32, zlib's crc32) sliced by 8 for the short runs a node digest is made of:
# zlib's call costs ~100 ns before its first byte, three times per digest; from ZLIB_FROM_BYTES on
# zlib is as fast or faster. Tables built at import; little-endian loads (else zlib throughout).
cdef uint32_t CRC_TABLES[8][256]
cdef bint CRC_SLICED = False
cdef enum:
    ZLIB_FROM_BYTES = 512


cdef void crc_tables_init() noexcept:
    global CRC_SLICED
    cdef uint32_t i, c, one = 1
    cdef int k, t
    for i in range(256):
        c = i
        for k in range(8):
            c = (0xEDB88320u ^ (c >> 1)) if (c & 1) else (c >> 1)
        CRC_TABLES[0][i] = c
    for i in range(256):
        for t in range(1, 8):
            CRC_TABLES[t][i] = (CRC_TABLES[t - 1][i] >> 8) ^ CRC_TABLES[0][CRC_TABLES[t - 1][i] & 0xFF]
    CRC_SLICED = (<const uint8_t*>&one)[0] == 1


crc_tables_init()


cdef inline uint32_t crc32_run(uint32_t crc, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t a, b
    if n >= ZLIB_FROM_BYTES or not CRC_SLICED:
        return <uint32_t>crc32(crc, p, <unsigned int>n)
    crc = ~crc
    while n >= 8:
        memcpy(&a, p, 4)
        memcpy(&b, p + 4, 4)
        a ^= crc
        crc = (CRC_TABLES[7][a & 0xFF] ^ CRC_TABLES[6][(a >> 8) & 0xFF] ^ CRC_TABLES[5][(a >> 16) & 0xFF]
               ^ CRC_TABLES[4][a >> 24] ^ CRC_TABLES[3][b & 0xFF] ^ CRC_TABLES[2][(b >> 8) & 0xFF]
               ^ CRC_TABLES[1][(b >> 16) & 0xFF] ^ CRC_TABLES[0][b >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = (crc >> 8) ^ CRC_TABLES[0][(crc ^ p[0]) & 0xFF]
        p += 1
        n -= 1
    return ~crc

DIGEST_VERSION = TXN_DIGEST_VERSION
DIGEST_LOG_INTERVAL = 128  # DataTree.DIGEST_LOG_INTERVAL: the `hash` command's history, every 0x80 zxids
DIGEST_LOG_LIMIT = 1024
digest_log = logging.getLogger("zkfast.digest")
# DataTree's static RATE_LOGGER
DIGEST_RATE_LOGGER = RateLogger(digest_log)

# zookeeper.digest.enabled: one switch per process, as Apache's static ZooKeeperServer.digestEnabled
cdef bint DIGESTS_ON = True
# ServerMetrics.DIGEST_MISMATCHES_COUNT: a process-wide counter, as Apache's, so it outlives the
# trees a server replaces (SNAP, a new role)
cdef int64_t DIGEST_MISMATCHES = 0
cdef bint DIGEST_MISMATCH_LOGGED = False


cdef bint digests_on() noexcept:
    return DIGESTS_ON


def set_digest_enabled(bint enabled):
    """zookeeper.digest.enabled (zoo.cfg digest.enabled): set before any tree is built or loaded."""
    global DIGESTS_ON
    DIGESTS_ON = enabled


def digest_enabled():
    return DIGESTS_ON


def digest_mismatches_count():
    """digest_mismatches_count (mntr, Prometheus): txns and snapshots whose digest differed."""
    return DIGEST_MISMATCHES


cdef uint32_t digest_of(const char* path, Py_ssize_t path_len, const char* data, Py_ssize_t data_len,
                        int64_t czxid, int64_t mzxid, int64_t pzxid, int64_t ctime, int64_t mtime,
                        int32_t version, int32_t cversion, int32_t aversion, int64_t owner) noexcept nogil:
    # DigestCalculator.calculateDigest: 0 below /zookeeper/ (quota stats change in place there);
    # "/" counts as "", the root's other name. Paths are UTF-8, as Java's getBytes() gives them with
    # a UTF-8 default charset.
    cdef unsigned char stat[60]
    cdef uint32_t crc = 0
    if path_len >= 11 and memcmp(path, b"/zookeeper/", 11) == 0:
        return 0
    store_u64(<char*>stat, <uint64_t>czxid)
    store_u64(<char*>stat + 8, <uint64_t>mzxid)
    store_u64(<char*>stat + 16, <uint64_t>pzxid)
    store_u64(<char*>stat + 24, <uint64_t>ctime)
    store_u64(<char*>stat + 32, <uint64_t>mtime)
    store_u32(<char*>stat + 40, <uint32_t>version)
    store_u32(<char*>stat + 44, <uint32_t>cversion)
    store_u32(<char*>stat + 48, <uint32_t>aversion)
    store_u64(<char*>stat + 52, <uint64_t>owner)
    if not (path_len == 1 and path[0] == b'/'):
        crc = crc32_run(crc, <const unsigned char*>path, path_len)
    if data_len > 0:
        crc = crc32_run(crc, <const unsigned char*>data, data_len)
    return crc32_run(crc, stat, 60)


cdef inline uint32_t node_digest(Node* n, const char* path) noexcept nogil:
    return digest_of(path, n.path_len, node_data(n), n.data_len, n.czxid, n.mzxid, n.pzxid, n.ctime, n.mtime,
                     n.version, n.cversion, n.aversion, n.ephemeral_owner)


def crc32_of(data):
    """The CRC-32 node digests use (tests: it must equal zlib.crc32)."""
    cdef const unsigned char[:] view = data
    if view.shape[0] == 0:
        return 0
    return crc32_run(0, &view[0], view.shape[0])


def path_digest(bytes path, data, int64_t czxid, int64_t mzxid, int64_t pzxid, int64_t ctime, int64_t mtime,
                int32_t version, int32_t cversion, int32_t aversion, int64_t owner):
    """DigestCalculator.calculateDigest for one node's fields (tests, tools)."""
    return digest_of(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path),
                     PyBytes_AS_STRING(data) if data is not None else NULL,
                     PyBytes_GET_SIZE(data) if data is not None else -1,
                     czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, owner)


cdef void report_mismatch(int64_t zxid) noexcept:
    # DataTree.reportDigestMismatch
    global DIGEST_MISMATCHES
    DIGEST_MISMATCHES += 1
    try:
        DIGEST_RATE_LOGGER.rate_limit_log("Digests are not matching. Value is Zxid.", str(zxid))
    except Exception:
        pass

OPEN_ACL_UNSAFE = [(31, "world", "anyone")]
READ_ACL_UNSAFE = [(1, "world", "anyone")]


# ------------------------------------------------------------------------------------------------
# quotas (Apache's org.apache.zookeeper.Quotas and StatsTrack): the nodes are ordinary znodes that
# clients write; the tree keeps the quota roots and updates each root's stats node in place

QUOTA_ZOOKEEPER = b"/zookeeper/quota"
LIMIT_NODE = b"zookeeper_limits"
STAT_NODE = b"zookeeper_stats"
cdef bytes LIMIT_SUFFIX = b"/zookeeper_limits"
cdef bytes JAVA_BLANK = bytes(range(33))  # what String.trim() removes
_PAIRS_SEPARATOR = re.compile("[,;]+")
_JAVA_LONG = re.compile(r"[+-]?\d+")
quota_log = logging.getLogger("zkfast.quotas")


def _java_split(pattern, str text):
    # String.split(regex): trailing empty strings removed
    parts = pattern.split(text) if pattern is not None else text.split("=")
    while parts and parts[len(parts) - 1] == "":
        parts.pop()
    return parts


def parse_stats_track(data):
    """Apache's StatsTrack(byte[]): {key: value}; ValueError where Java throws (a pair without a
    value, a value Long.parseLong refuses)."""
    stats = {}
    if not data:
        return stats
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for pair in _java_split(_PAIRS_SEPARATOR, text):
        kv = _java_split(None, pair)
        if len(kv) < 2:
            raise ValueError(f"quota record {text!r}: {pair!r} has no value")
        value = kv[1] or "-1"
        if _JAVA_LONG.fullmatch(value) is None:
            raise ValueError(f"quota record {text!r}: {value!r} is not a long")
        n = int(value)
        if not -0x8000000000000000 <= n <= 0x7FFFFFFFFFFFFFFF:
            raise ValueError(f"quota record {text!r}: {value!r} is out of range")
        stats[kv[0]] = n
    return stats


def format_stats_track(dict stats):
    """StatsTrack.toString: `count=N,bytes=N`, then `=;key=value` for the others, sorted."""
    keys = sorted(k for k in stats if k != "count" and k != "bytes")
    out = "count=%d,bytes=%d" % (stats.get("count", -1), stats.get("bytes", -1))
    if keys:
        out += "=" + "".join(";%s=%d" % (k, stats[k]) for k in keys)
    return out.encode("utf-8")


def quota_trie_key(bytes path):
    """The key Apache's PathTrie files path under: its components without the blank ones
    (String.trim() empty), as b"/a/b"; None when none is left."""
    comps = [c for c in path.split(b"/") if c.strip(JAVA_BLANK)]
    if not comps:
        return None
    return b"/" + b"/".join(comps)


cdef void subtree_counts(Node* top, int64_t* count, int64_t* nbytes) noexcept:
    # Apache's getCounts: the node and every descendant, and their data bytes
    cdef Node* node = top
    count[0] += 1
    nbytes[0] += top.data_len if top.data_len > 0 else 0
    node = top.first_child
    while node is not NULL:
        count[0] += 1
        nbytes[0] += node.data_len if node.data_len > 0 else 0
        if node.first_child is not NULL:
            node = node.first_child
            continue
        while node is not NULL and node is not top and node.next_sibling is NULL:
            node = node.parent
        if node is NULL or node is top:
            return
        node = node.next_sibling




cdef extern from "malloc.h":
    size_t malloc_usable_size(void* p) nogil

# where a node's name starts: its struct without the trailing padding sizeof(Node) would add
cdef Node _node_layout
cdef size_t NODE_HEADER_BYTES = <size_t>(<char*>&_node_layout.name[0] - <char*>&_node_layout)


cdef inline size_t node_data_room(Node* n) noexcept nogil:
    # the bytes after the name in the node's own allocation
    return malloc_usable_size(n) - (NODE_HEADER_BYTES + n.name_len)


cdef bint node_has_path(Node* n, const char* p, Py_ssize_t len) noexcept nogil:
    """Whether p[:len] is the node's full path: its name, then its parent's, up to the root."""
    cdef Py_ssize_t end = len
    if <Py_ssize_t>n.path_len != len:
        return False
    while n.parent is not NULL:
        end -= n.name_len
        if memcmp(p + end, n.name, n.name_len) != 0:
            return False
        end -= 1
        if p[end] != b'/':
            return False
        n = n.parent
    return end == 0 or (end == 1 and p[0] == b'/')


cdef void node_free(Node* n) noexcept nogil:
    if n.flags & NODE_DATA_EXTERNAL:
        free(node_data(n))
    free(n)


cdef inline uint64_t hash_path(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>p[i]) * 0x100000001b3ULL
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    return h


cdef int32_t java_string_hash(const char* p, Py_ssize_t n) noexcept nogil:
    # String.hashCode of the UTF-8 bytes' Java String: over UTF-16 units (surrogate pairs for
    # 4-byte sequences); int arithmetic wraps
    cdef uint32_t h = 0, cp
    cdef Py_ssize_t i = 0
    cdef uint8_t c
    while i < n:
        c = <uint8_t>p[i]
        if c < 0x80:
            cp = c
            i += 1
        elif (c & 0xE0) == 0xC0 and i + 1 < n:
            cp = ((c & 0x1F) << 6) | (<uint8_t>p[i + 1] & 0x3F)
            i += 2
        elif (c & 0xF0) == 0xE0 and i + 2 < n:
            cp = ((c & 0x0F) << 12) | ((<uint8_t>p[i + 1] & 0x3F) << 6) | (<uint8_t>p[i + 2] & 0x3F)
            i += 3
        elif (c & 0xF8) == 0xF0 and i + 3 < n:
            cp = ((c & 0x07) << 18) | ((<uint8_t>p[i + 1] & 0x3F) << 12) | ((<uint8_t>p[i + 2] & 0x3F) << 6) \
                | (<uint8_t>p[i + 3] & 0x3F)
            i += 4
            cp -= 0x10000
            h = 31 * h + (0xD800 + (cp >> 10))
            cp = 0xDC00 + (cp & 0x3FF)
        else:
            cp = 0xFFFD
            i += 1
        h = 31 * h + cp
    return <int32_t>h


cdef struct ChildSlot:
    uint32_t bucket
    uint32_t seq
    Node* node


cdef int compare_slots(const void* a, const void* b) noexcept nogil:
    cdef const ChildSlot* x = <const ChildSlot*>a
    cdef const ChildSlot* y = <const ChildSlot*>b
    if x.bucket != y.bucket:
        return -1 if x.bucket < y.bucket else 1
    if x.seq != y.seq:
        return -1 if x.seq < y.seq else 1
    return 0


cdef Node** ordered_children(Node* node) except? NULL:
    """The children as Apache's HashSet iterates them: bucket by bucket of a table of the size the
    set has grown to, insertion order within a bucket. NULL when there are none; free() the rest."""
    cdef Py_ssize_t n = node.num_children, i
    cdef ChildSlot* slots
    cdef Node** out
    cdef Node* child
    cdef uint32_t mask, h
    if n <= 0:
        return NULL
    slots = <ChildSlot*>malloc(n * sizeof(ChildSlot))
    out = <Node**>malloc(n * sizeof(Node*))
    if slots is NULL or out is NULL:
        free(slots)
        free(out)
        raise MemoryError()
    mask = (<uint32_t>1 << node.child_cap_log2) - 1
    child = node.first_child
    i = n - 1  # the sibling list runs newest first
    while child is not NULL and i >= 0:
        # Java's String.hashCode of the name: child order is a HashSet's
        h = <uint32_t>java_string_hash(child.name, child.name_len)
        slots[i].bucket = (h ^ (h >> 16)) & mask
        slots[i].seq = <uint32_t>i
        slots[i].node = child
        child = child.next_sibling
        i -= 1
    qsort(slots, n, sizeof(ChildSlot), compare_slots)
    for i in range(n):
        out[i] = slots[i].node
    free(slots)
    return out


cdef inline int owner_kind(int64_t owner, bint extended) noexcept nogil:
    if extended and (<uint64_t>owner & TTL_MASK) == TTL_MASK:
        if (<uint64_t>owner & TTL_RESERVED_MASK) == 0:
            return KIND_TTL
    if owner == <int64_t>0x8000000000000000:
        return KIND_CONTAINER
    return KIND_VOID if owner == 0 else KIND_NORMAL


def ephemeral_kind(int64_t owner, bint extended_types):
    """Apache's EphemeralType.get: VOID 0, NORMAL 1 (a session), CONTAINER 2, TTL 3."""
    return owner_kind(owner, extended_types)


def ttl_owner(int64_t ttl):
    """The ephemeralOwner a TTL node is stored with
    (zookeeper-server/src/main/java/org/apache/zookeeper/server/EphemeralType.java)."""
    return <int64_t>(TTL_MASK | <uint64_t>ttl)


def ttl_of_owner(int64_t owner):
    return <int64_t>(<uint64_t>owner & TTL_VALUE_MASK)


cdef Py_ssize_t INITIAL_OUTPUT_BYTES = 512


# ----------------------------------------------------------------------------------------------
# compact watch tables
#
# Apache's WatchManager keeps a HashSet of watchers per path and a HashSet of paths per watcher:
# about 150 bytes of heap per watch. Here a path's watchers are a set of 32-bit entries (watcher id
# << MODE_BITS | mode) and a watcher's paths a set of 32-bit path ids; the ids index the tree's
# watchers_by_id and paths_by_id lists, and are reused once free. A watch costs its two entries.

cdef uint32_t SLOT_EMPTY = 0xFFFFFFFF
cdef uint32_t NO_WATCHER_ID = 0xFFFFFFFF
cdef int MODE_BITS = 2  # M_STANDARD, M_PERSISTENT, M_RECURSIVE
cdef uint32_t MODE_MASK = 3
cdef uint32_t MAX_WATCHER_ID = (1 << 30) - 1  # what fits above MODE_BITS
cdef uint8_t IDSET_MIN_LOG2 = 1


cdef inline uint32_t idset_home(uint32_t ident, uint8_t cap_log2) noexcept:
    # Fibonacci hashing: ids are dense small integers, the top bits of the product spread them
    return <uint32_t>(ident * <uint32_t>2654435761) >> (32 - cap_log2)


cdef Py_ssize_t idset_find(IdSet* s, uint32_t ident, int tag_bits) noexcept:
    """The slot holding ident, or -1."""
    cdef uint32_t mask, i, e
    if s.size == 0:
        return -1
    mask = (<uint32_t>1 << s.cap_log2) - 1
    i = idset_home(ident, s.cap_log2)
    while True:
        e = s.slots[i]
        if e == SLOT_EMPTY:
            return -1
        if (e >> tag_bits) == ident:
            return i
        i = (i + 1) & mask


cdef int idset_resize(IdSet* s, uint8_t cap_log2, int tag_bits) except -1:
    cdef uint32_t cap = <uint32_t>1 << cap_log2
    cdef uint32_t mask = cap - 1
    cdef uint32_t* fresh = <uint32_t*>PyMem_Malloc(cap * sizeof(uint32_t))
    cdef uint32_t* old = s.slots
    cdef uint32_t old_cap = (<uint32_t>1 << s.cap_log2) if old is not NULL else 0
    cdef uint32_t j, e, i
    if fresh is NULL:
        raise MemoryError()
    memset(fresh, 0xFF, cap * sizeof(uint32_t))
    for j in range(old_cap):
        e = old[j]
        if e != SLOT_EMPTY:
            i = idset_home(e >> tag_bits, cap_log2)
            while fresh[i] != SLOT_EMPTY:
                i = (i + 1) & mask
            fresh[i] = e
    s.slots = fresh
    s.cap_log2 = cap_log2
    PyMem_Free(old)
    return 0


cdef uint32_t idset_put(IdSet* s, uint32_t entry, int tag_bits) except? 0xFFFFFFFE:
    """Add entry, or replace the one with the same id; the entry replaced, or SLOT_EMPTY."""
    cdef uint32_t mask, i, e, ident = entry >> tag_bits
    if s.slots is NULL:
        idset_resize(s, IDSET_MIN_LOG2, tag_bits)
    elif (s.size + 1) * 4 > (<uint32_t>3 << s.cap_log2):
        idset_resize(s, s.cap_log2 + 1, tag_bits)
    mask = (<uint32_t>1 << s.cap_log2) - 1
    i = idset_home(ident, s.cap_log2)
    while True:
        e = s.slots[i]
        if e == SLOT_EMPTY:
            s.slots[i] = entry
            s.size += 1
            return SLOT_EMPTY
        if (e >> tag_bits) == ident:
            s.slots[i] = entry
            return e
        i = (i + 1) & mask


cdef uint32_t idset_take(IdSet* s, uint32_t ident, int tag_bits) noexcept:
    """Remove the entry with this id; it, or SLOT_EMPTY. Gives memory back as the set empties."""
    cdef Py_ssize_t found = idset_find(s, ident, tag_bits)
    cdef uint32_t mask, hole, j, home, e, taken
    if found < 0:
        return SLOT_EMPTY
    mask = (<uint32_t>1 << s.cap_log2) - 1
    hole = <uint32_t>found
    taken = s.slots[hole]
    j = hole
    while True:  # backward-shift deletion: no tombstones, probes stay short
        j = (j + 1) & mask
        e = s.slots[j]
        if e == SLOT_EMPTY:
            break
        home = idset_home(e >> tag_bits, s.cap_log2)
        # e may move into the hole unless its home lies cyclically in (hole, j]
        if (hole < j and (home <= hole or home > j)) or (hole > j and home <= hole and home > j):
            s.slots[hole] = e
            hole = j
    s.slots[hole] = SLOT_EMPTY
    s.size -= 1
    if s.size == 0:
        idset_clear(s)
    elif s.size * 8 < (<uint32_t>1 << s.cap_log2) and s.cap_log2 > IDSET_MIN_LOG2 + 1:
        try:
            idset_resize(s, s.cap_log2 - 1, tag_bits)
        except MemoryError:
            pass  # shrinking is only an economy: the bigger table stays valid
    return taken


cdef void idset_clear(IdSet* s) noexcept:
    PyMem_Free(s.slots)
    s.slots = NULL
    s.size = 0
    s.cap_log2 = 0


cdef list idset_entries(IdSet* s):
    """A copy of the entries: what iterates while the set changes."""
    cdef list out = []
    cdef uint32_t j, e
    if s.slots is NULL:
        return out
    for j in range(<uint32_t>1 << s.cap_log2):
        e = s.slots[j]
        if e != SLOT_EMPTY:
            out.append(e)
    return out


@cython.no_gc
cdef class PathWatchers:
    """The watchers of one path in one table (data or child): ids with modes. Iterating it yields
    the Watcher objects, as the dict it replaces did."""

    # watchers_by_id is the tree's list (not the tree: no cycle through a no_gc object)

    def __len__(self):
        return self.ids.size

    def __iter__(self):
        by_id = self.watchers_by_id
        return iter([by_id[e >> MODE_BITS] for e in idset_entries(&self.ids)])

    def __dealloc__(self):
        PyMem_Free(self.ids.slots)


cdef class Watcher:
    """Receives watch events into `out`; one per client connection."""

    def __init__(self, WriteBuffer out=None):
        # small to start: an idle session holds it for its whole life (19,000 sessions: 3.5 KB each
        # saved against 4 KiB); a connection that needs more grows it once
        self.out = out if out is not None else WriteBuffer(INITIAL_OUTPUT_BYTES)
        self.session_id = 0
        self.closed = False
        self.is_super = False
        self.auth_ids = []
        self.watcher_id = NO_WATCHER_ID
        self.dirty = False
        self.packets_sent = 0

    cdef int deliver(self, int32_t event_type, bytes path) except -1:
        # ReplyHeader(-1, -1, 0) + WatcherEvent(type, SyncConnected, path): 3.8.0 sends zxid -1
        cdef WriteBuffer b = self.out
        cdef Py_ssize_t start = b.begin_frame()
        wb_i32(b, -1)
        wb_i64(b, -1)
        wb_i32(b, 0)
        wb_i32(b, event_type)
        wb_i32(b, STATE_SYNC_CONNECTED)
        wb_bytes(b, PyBytes_AS_STRING(path), <int32_t>PyBytes_GET_SIZE(path))
        b.end_frame(start)
        self.packets_sent += 1
        return 0

    def notify(self, int32_t event_type, bytes path):
        """Queue one event (setWatches synthesises events this way)."""
        self.deliver(event_type, path)

    def __dealloc__(self):
        PyMem_Free(self.watched.slots)


cdef class DataTree:
    """Znodes, ACLs, watches and ephemerals of one server."""

    def __cinit__(self):
        self.slots = <Node**>calloc(MIN_SLOTS, sizeof(Node*))
        if self.slots is NULL:
            raise MemoryError()
        self.mask = MIN_SLOTS - 1
        self.count = 0
        self.acl_cap = 16
        self.acl_refs = <int32_t*>calloc(self.acl_cap, sizeof(int32_t))
        self.acl_world = <int32_t*>calloc(self.acl_cap, sizeof(int32_t))
        if self.acl_refs is NULL or self.acl_world is NULL:
            raise MemoryError()

    def __init__(self, bint extended_types=False, bint skip_acl=False, acl_checker=None):
        self.acl_lists = []
        self.acl_encoded = []
        self.acl_index = {}
        self.acl_free = []
        self.data_watches = {}
        self.child_watches = {}
        self.watchers_by_id = []
        self.free_watcher_ids = []
        self.paths_by_id = []
        self.free_path_ids = []
        self.recursive_watch_count = 0
        self.dirty_watchers = []
        self.ephemerals = {}
        self.ephemerals_max = {}
        self.containers = set()
        self.ttls = set()
        self.skip_acl = skip_acl
        self.extended_types = extended_types
        self.acl_checker = acl_checker
        self.last_processed_zxid = 0
        self.data_bytes = 0
        self.quota_roots = set()
        self.quota_pending = False
        self.quota_drift = 0
        self.digest_sum = 0
        self.snapshot_digest_zxid = -1
        self.snapshot_digest = 0
        self.digest_log = deque(maxlen=DIGEST_LOG_LIMIT)
        # the built-in nodes (Apache's DataTree constructor): empty data, zero stat
        open_acl = self.acl_ref(OPEN_ACL_UNSAFE)
        self.root = self.new_node(b"/", NULL, b"", open_acl)
        self.digest_in(self.root)
        self.attach(b"/zookeeper", b"", self.acl_ref(OPEN_ACL_UNSAFE))
        self.attach(b"/zookeeper/quota", b"", self.acl_ref(OPEN_ACL_UNSAFE))
        self.attach(b"/zookeeper/config", b"", self.acl_ref(READ_ACL_UNSAFE))
        # Apache sets the config node's ACL with setACL(..., -1): its aversion is -1 (no digest:
        # the node is under /zookeeper/)
        self.lookup_bytes(b"/zookeeper/config").aversion = -1

    def __dealloc__(self):
        cdef size_t i
        cdef Node* node
        if self.slots is not NULL:
            for i in range(self.mask + 1):
                node = self.slots[i]
                if node is not NULL:
                    node_free(node)
            free(self.slots)
            self.slots = NULL
        if self.acl_refs is not NULL:
            free(self.acl_refs)
            self.acl_refs = NULL
        if self.acl_world is not NULL:
            free(self.acl_world)
            self.acl_world = NULL
        free(self.path_buf)
        self.path_buf = NULL

    # ------------------------------------------------------------------------------------------
    # hash index

    cdef Node* lookup(self, const char* p, Py_ssize_t n) noexcept:
        cdef uint32_t h
        cdef size_t i
        cdef Node* node
        if n == 0:
            return self.root  # Apache keeps the root under "" too
        h = <uint32_t>hash_path(p, n)
        i = h & self.mask
        while True:
            node = self.slots[i]
            if node is NULL:
                return NULL
            if node.hash == h and node_has_path(node, p, n):
                return node
            i = (i + 1) & self.mask

    cdef Node* lookup_bytes(self, bytes path) noexcept:
        return self.lookup(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path))

    cdef const char* path_of(self, Node* node) except NULL:
        """The node's full path (node.path_len bytes), rebuilt from the names up to the root into a
        buffer of the tree's: valid until the next call."""
        cdef size_t size = node.path_len + 1
        cdef char* fresh
        cdef size_t end = node.path_len
        if size > self.path_buf_size:
            fresh = <char*>realloc(self.path_buf, size)
            if fresh is NULL:
                raise MemoryError()
            self.path_buf = fresh
            self.path_buf_size = size
        self.path_buf[end] = 0
        self.path_buf[0] = b'/'  # the root's path, and every path's first byte
        while node.parent is not NULL:
            end -= node.name_len
            memcpy(self.path_buf + end, node.name, node.name_len)
            end -= 1
            self.path_buf[end] = b'/'
            node = node.parent
        assert end == 0 or (end == 1 and node.path_len == 1), "a node's path_len disagrees with its names"
        return self.path_buf

    cdef bytes path_bytes(self, Node* node):
        return PyBytes_FromStringAndSize(self.path_of(node), node.path_len)

    cdef int index_grow(self) except -1:
        cdef size_t old_n = self.mask + 1, new_n = old_n * 2, i, j
        cdef Node** old = self.slots
        cdef Node** fresh = <Node**>calloc(new_n, sizeof(Node*))
        cdef Node* node
        if fresh is NULL:
            raise MemoryError()
        for i in range(old_n):
            node = old[i]
            if node is not NULL:
                j = node.hash & (new_n - 1)
                while fresh[j] is not NULL:
                    j = (j + 1) & (new_n - 1)
                fresh[j] = node
        free(old)
        self.slots = fresh
        self.mask = new_n - 1
        return 0

    def reserve(self, Py_ssize_t nodes):
        """Size the index for `nodes` nodes at once (a snapshot about to load), instead of
        doubling it, and rehashing every node so far, twenty times on the way to a million."""
        while <size_t>(nodes + 1) * 10 > (self.mask + 1) * 7:
            self.index_grow()

    cdef int index_insert(self, Node* node) except -1:
        cdef size_t i
        if (self.count + 1) * 10 > (self.mask + 1) * 7:
            self.index_grow()
        i = node.hash & self.mask
        while self.slots[i] is not NULL:
            i = (i + 1) & self.mask
        self.slots[i] = node
        self.count += 1
        return 0

    cdef void index_remove(self, Node* node) noexcept:
        # linear probing with backward-shift deletion: no tombstones
        cdef size_t i = node.hash & self.mask, j, k
        while self.slots[i] is not node:
            i = (i + 1) & self.mask
        j = i
        while True:
            j = (j + 1) & self.mask
            if self.slots[j] is NULL:
                break
            k = self.slots[j].hash & self.mask
            if i <= j:
                if i < k and k <= j:
                    continue
            else:
                if i < k or k <= j:
                    continue
            self.slots[i] = self.slots[j]
            i = j
        self.slots[i] = NULL
        self.count -= 1

    # ------------------------------------------------------------------------------------------
    # nodes

    cdef Node* new_node(self, bytes path, Node* parent, object data, int32_t acl) except NULL:
        if data is None:
            return self.new_node_at(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path), parent, NULL, -1, acl)
        return self.new_node_at(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path), parent, PyBytes_AS_STRING(data),
                                PyBytes_GET_SIZE(data), acl)

    cdef Node* new_node_at(self, const char* p, Py_ssize_t n, Node* parent, const char* d, Py_ssize_t dlen,
                           int32_t acl) except NULL:
        """A new node from path and data in place (dlen -1: null data), e.g. inside a snapshot
        chunk: no bytes objects on the way."""
        # the name starts after the last '/'
        cdef Py_ssize_t name_off = n
        while name_off > 0 and p[name_off - 1] != b'/':
            name_off -= 1
        # the path is the parent's, '/' and the name (the root's children: '/' and the name)
        assert (parent is NULL and n == 1) or (parent is not NULL and name_off ==
                                               (parent.path_len if parent.parent is not NULL else 0) + 1), \
            "a new node's path is not its parent's and a name"
        # room for the data inline: at least a pointer's worth, for data that later moves out
        cdef Node* node = <Node*>malloc(NODE_HEADER_BYTES + (n - name_off) +
                                        max(dlen, <Py_ssize_t>sizeof(char*)))
        if node is NULL:
            raise MemoryError()
        memset(node, 0, NODE_HEADER_BYTES)
        node.name_len = <uint32_t>(n - name_off)
        memcpy(node.name, p + name_off, node.name_len)
        node.path_len = <uint32_t>n
        node.hash = <uint32_t>hash_path(p, n)
        node.child_cap_log2 = 0
        node.acl = acl
        node.data_len = -1
        self.set_node_data_at(node, d, dlen)
        try:
            self.index_insert(node)
        except BaseException:
            node_free(node)
            raise
        if parent is not NULL:
            node.parent = parent
            node.next_sibling = parent.first_child
            if parent.first_child is not NULL:
                parent.first_child.prev_sibling = node
            parent.first_child = node
            parent.num_children += 1
            # Apache's DataNode: new HashSet<>(8), doubling past 3/4 full, never shrinking
            if parent.child_cap_log2 == 0:
                parent.child_cap_log2 = 3
            while parent.num_children > ((<int32_t>1 << parent.child_cap_log2) * 3) // 4:
                parent.child_cap_log2 += 1
        return node

    cdef void digest_out(self, Node* node) noexcept:
        # NodeHashMap.preChange: the node's digest as it was leaves the sum
        self.digest_sum -= node.digest

    cdef int digest_in(self, Node* node) except -1:
        # NodeHashMap.postChange / put: the node's digest as it is now joins the sum
        node.digest = node_digest(node, self.path_of(node)) if DIGESTS_ON else 0
        self.digest_sum += node.digest
        return 0

    cdef int set_node_data(self, Node* node, object data) except -1:
        if data is None:
            return self.set_node_data_at(node, NULL, -1)
        return self.set_node_data_at(node, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef int set_node_data_at(self, Node* node, const char* d, Py_ssize_t n) except -1:
        # inline when it fits in the node's own allocation, else an allocation of its own
        cdef char* area = node.name + node.name_len
        cdef char* external = NULL
        if n > 0 and <size_t>n > node_data_room(node):
            external = <char*>malloc(n)
            if external is NULL:
                raise MemoryError()
            memcpy(external, d, n)
        if node.flags & NODE_DATA_EXTERNAL:
            free(node_data(node))
            node.flags &= ~NODE_DATA_EXTERNAL
        if external is not NULL:
            memcpy(area, &external, sizeof(char*))
            node.flags |= NODE_DATA_EXTERNAL
        elif n > 0:
            memmove(area, d, n)
        self.data_bytes += (n if n > 0 else 0) - (node.data_len if node.data_len > 0 else 0)
        node.data_len = <int32_t>n
        return 0

    def set_config(self, bytes data, int64_t mtime_ms, int64_t zxid=0):
        """/zookeeper/config of an ensemble member: Apache's initConfigInZKDatabase, a setData with
        version -1 and zxid the config's version, that fires no watch."""
        cdef Node* node = self.lookup_bytes(b"/zookeeper/config")
        assert node is not NULL
        self.digest_out(node)
        self.set_node_data(node, data)
        node.version = -1
        node.mzxid = zxid
        node.mtime = mtime_ms
        self.digest_in(node)

    cdef int attach(self, bytes path, object data, int32_t acl) except -1:
        # for the built-in nodes: no stat change on the parent, as Apache's constructor does
        cdef Py_ssize_t cut = path.rfind(b"/")
        cdef Node* parent = self.lookup_bytes(path[:cut])
        self.digest_in(self.new_node(path, parent, data, acl))
        return 0

    cdef void unlink(self, Node* node) noexcept:
        cdef Node* parent = node.parent
        if node.prev_sibling is not NULL:
            node.prev_sibling.next_sibling = node.next_sibling
        elif parent is not NULL:
            parent.first_child = node.next_sibling
        if node.next_sibling is not NULL:
            node.next_sibling.prev_sibling = node.prev_sibling
        if parent is not NULL:
            parent.num_children -= 1
        self.index_remove(node)
        self.data_bytes -= node.data_len if node.data_len > 0 else 0
        node_free(node)

    cdef void copy_stat(self, Node* node, Stat* s) noexcept:
        s.czxid = node.czxid
        s.mzxid = node.mzxid
        s.ctime = node.ctime
        s.mtime = node.mtime
        s.version = node.version
        # clients see creates + deletes (v3 semantics)
        s.cversion = node.cversion * 2 - node.num_children
        s.aversion = node.aversion
        s.ephemeral_owner = node.ephemeral_owner if owner_kind(node.ephemeral_owner, self.extended_types) == KIND_NORMAL else 0
        s.data_length = node.data_len if node.data_len > 0 else 0
        s.num_children = node.num_children
        s.pzxid = node.pzxid

    # ------------------------------------------------------------------------------------------
    # ACL table

    cpdef int32_t acl_ref(self, list acl) except -1:
        """Index of this ACL list in the table (added if new); counts one more user."""
        key = tuple(acl)
        idx = self.acl_index.get(key)
        cdef int32_t i, world = 0
        if idx is None:
            if self.acl_free:
                i = self.acl_free.pop()
                self.acl_lists[i] = list(acl)
                self.acl_encoded[i] = encode_acl_list(acl)
            else:
                i = len(self.acl_lists)
                if i >= self.acl_cap:
                    self.acl_grow()
                self.acl_lists.append(list(acl))
                self.acl_encoded.append(encode_acl_list(acl))
            for perms, scheme, ident in acl:
                if scheme == "world" and ident == "anyone":
                    world |= perms
            if len(acl) == 0:
                world = Perm.ALL  # an empty ACL list allows everything
            self.acl_world[i] = world
            self.acl_refs[i] = 0
            self.acl_index[key] = i
        else:
            i = idx
        self.acl_refs[i] += 1
        return i

    cdef int acl_grow(self) except -1:
        cdef int32_t cap = self.acl_cap * 2
        cdef int32_t* refs = <int32_t*>realloc(self.acl_refs, cap * sizeof(int32_t))
        if refs is NULL:
            raise MemoryError()
        self.acl_refs = refs
        cdef int32_t* world = <int32_t*>realloc(self.acl_world, cap * sizeof(int32_t))
        if world is NULL:
            raise MemoryError()
        self.acl_world = world
        self.acl_cap = cap
        return 0

    cdef int acl_unref(self, int32_t i) except -1:
        self.acl_refs[i] -= 1
        if self.acl_refs[i] <= 0:
            del self.acl_index[tuple(self.acl_lists[i])]
            self.acl_lists[i] = None
            self.acl_encoded[i] = None
            self.acl_free.append(i)
        return 0

    def acl_list(self, int32_t i):
        return self.acl_lists[i]

    def acl_count(self):
        return len(self.acl_index)

    cdef int check_read(self, Node* node, Watcher w) except -1:
        # 1: allowed, 0: not; the world:anyone and super cases never leave C
        if self.skip_acl or (self.acl_world[node.acl] & Perm.READ) or w.is_super:
            return 1
        if self.acl_checker is None:
            return 0
        return 1 if self.acl_checker(self.acl_lists[node.acl], Perm.READ, w) else 0

    # ------------------------------------------------------------------------------------------
    # watches (Apache's WatchManager + WatcherModeManager, one mode per watcher and path)

    cdef PathWatchers path_watchers(self, dict table, bytes path):
        """The path's entry in table, made if missing."""
        cdef PathWatchers pw = table.get(path)
        if pw is not None:
            return pw
        pw = PathWatchers.__new__(PathWatchers)
        pw.path = path
        pw.child = table is self.child_watches
        pw.watchers_by_id = self.watchers_by_id
        if self.free_path_ids:
            pw.path_id = self.free_path_ids.pop()
            self.paths_by_id[pw.path_id] = pw
        else:
            assert len(self.paths_by_id) < SLOT_EMPTY
            pw.path_id = len(self.paths_by_id)
            self.paths_by_id.append(pw)
        table[path] = pw
        return pw

    cdef int forget_path(self, PathWatchers pw) except -1:
        """pw has no watcher left: out of its table, its id free."""
        assert pw.ids.size == 0
        del (self.child_watches if pw.child else self.data_watches)[pw.path]
        self.paths_by_id[pw.path_id] = None
        self.free_path_ids.append(pw.path_id)
        return 0

    cdef int unwatch(self, Watcher w, PathWatchers pw) except -1:
        """w no longer watches pw's path: out of w's own set, and w's id free if that was its last."""
        if idset_take(&w.watched, pw.path_id, 0) == SLOT_EMPTY:
            raise AssertionError("a watch tables' entry without its watcher's")
        if pw.child:
            w.child_watch_count -= 1
        else:
            w.data_watch_count -= 1
        if w.watched.size == 0:
            self.watchers_by_id[w.watcher_id] = None
            self.free_watcher_ids.append(w.watcher_id)
            w.watcher_id = NO_WATCHER_ID
        return 0

    cdef int add_watch(self, dict table, bytes path, Watcher w, int mode) except -1:
        cdef PathWatchers pw
        cdef uint32_t old
        if w.closed:
            return 0
        if w.watcher_id == NO_WATCHER_ID:
            if self.free_watcher_ids:
                w.watcher_id = self.free_watcher_ids.pop()
                self.watchers_by_id[w.watcher_id] = w
            else:
                assert len(self.watchers_by_id) <= MAX_WATCHER_ID
                w.watcher_id = len(self.watchers_by_id)
                self.watchers_by_id.append(w)
        pw = self.path_watchers(table, path)
        try:
            old = idset_put(&pw.ids, (w.watcher_id << MODE_BITS) | <uint32_t>mode, MODE_BITS)
            if old == SLOT_EMPTY:
                idset_put(&w.watched, pw.path_id, 0)
                if pw.child:
                    w.child_watch_count += 1
                else:
                    w.data_watch_count += 1
        except MemoryError:
            if idset_find(&w.watched, pw.path_id, 0) < 0:
                idset_take(&pw.ids, w.watcher_id, MODE_BITS)
            if pw.ids.size == 0:
                self.forget_path(pw)
            if w.watched.size == 0:
                self.watchers_by_id[w.watcher_id] = None
                self.free_watcher_ids.append(w.watcher_id)
                w.watcher_id = NO_WATCHER_ID
            raise
        old = M_STANDARD if old == SLOT_EMPTY else old & MODE_MASK
        if (old == M_RECURSIVE) != (mode == M_RECURSIVE):
            self.recursive_watch_count += 1 if mode == M_RECURSIVE else -1
        return 0

    def watch(self, bytes path, Watcher w, bint child, int mode=M_STANDARD):
        self.add_watch(self.child_watches if child else self.data_watches, path, w, mode)

    def add_persistent_watch(self, bytes path, Watcher w, int mode):
        """addWatch: the same mode in both tables (Apache's DataTree.addWatch)."""
        self.add_watch(self.data_watches, path, w, mode)
        self.add_watch(self.child_watches, path, w, mode)

    cdef int drop_watch(self, dict table, bytes path, Watcher w) except -1:
        cdef PathWatchers pw = table.get(path)
        cdef uint32_t taken
        if pw is None or w.watcher_id == NO_WATCHER_ID:
            return 0
        taken = idset_take(&pw.ids, w.watcher_id, MODE_BITS)
        if taken == SLOT_EMPTY:
            return 0
        if (taken & MODE_MASK) == M_RECURSIVE:
            self.recursive_watch_count -= 1
        self.unwatch(w, pw)
        if pw.ids.size == 0:
            self.forget_path(pw)
        return 1

    def remove_watcher(self, Watcher w, Py_ssize_t max_watches=-1):
        """Forget the watches of a closed connection, at most max_watches of them (-1: all); how
        many are left. Events no longer reach it meanwhile (it is closed)."""
        cdef PathWatchers pw
        cdef uint32_t taken, j, e
        cdef list path_ids
        if w.watcher_id == NO_WATCHER_ID:
            return 0
        if max_watches < 0 or max_watches >= w.watched.size:
            path_ids = idset_entries(&w.watched)
        else:
            path_ids = []
            j = 0
            while len(path_ids) < max_watches:
                e = w.watched.slots[j]
                if e != SLOT_EMPTY:
                    path_ids.append(e)
                j += 1
        all_of_them = len(path_ids) == w.watched.size
        for path_id in path_ids:
            pw = self.paths_by_id[path_id]
            taken = idset_take(&pw.ids, w.watcher_id, MODE_BITS)
            assert taken != SLOT_EMPTY
            if (taken & MODE_MASK) == M_RECURSIVE:
                self.recursive_watch_count -= 1
            if not all_of_them:
                self.unwatch(w, pw)
            if pw.ids.size == 0:
                self.forget_path(pw)
        if all_of_them:  # w's own set goes at once, not entry by entry
            idset_clear(&w.watched)
            w.data_watch_count = w.child_watch_count = 0
            self.watchers_by_id[w.watcher_id] = None
            self.free_watcher_ids.append(w.watcher_id)
            w.watcher_id = NO_WATCHER_ID
        return w.watched.size

    def watched_paths(self, Watcher w, bint child):
        """The paths w watches in one table."""
        cdef PathWatchers pw
        out = []
        for path_id in idset_entries(&w.watched):
            pw = self.paths_by_id[path_id]
            if pw.child == child:
                out.append(pw.path)
        return out

    def remove_watch(self, bytes path, Watcher w, bint child):
        """Remove w's watch on path in one table; True if there was one."""
        return self.drop_watch(self.child_watches if child else self.data_watches, path, w) == 1

    cdef int mode_of(self, PathWatchers pw, Watcher w) noexcept:
        """w's mode on pw's path, or -1."""
        cdef Py_ssize_t slot
        if pw is None or w.watcher_id == NO_WATCHER_ID:
            return -1
        slot = idset_find(&pw.ids, w.watcher_id, MODE_BITS)
        return -1 if slot < 0 else <int>(pw.ids.slots[slot] & MODE_MASK)

    def watch_mode(self, bytes path, Watcher w, bint child):
        """w's mode on exactly this path in one table, or None."""
        mode = self.mode_of((self.child_watches if child else self.data_watches).get(path), w)
        return None if mode < 0 else mode

    def contains_watcher(self, bytes path, Watcher w, bint child):
        """Apache 3.8.0's WatchManager.containsWatcher, quirks included: true when the path has
        any watcher at all, or when w watches exactly this path recursively (a path in the table
        always has a watcher, so the first case covers the second)."""
        pw = (self.child_watches if child else self.data_watches).get(path)
        return pw is not None and len(pw) > 0

    cdef int fire(self, PathWatchers pw, bint at_path, int32_t event_type, set watchers) except -1:
        """Collect pw's watchers that this event reaches into `watchers`; standard watches at the
        path itself are used up. at_path: pw's path is the event's (not one of its parents)."""
        cdef uint32_t e, mode
        cdef Watcher w
        by_id = self.watchers_by_id
        for e in idset_entries(&pw.ids):
            mode = e & MODE_MASK
            if mode == M_RECURSIVE:
                if event_type != EventType.NODE_CHILDREN_CHANGED:
                    watchers.add(by_id[e >> MODE_BITS])
            elif at_path:
                w = by_id[e >> MODE_BITS]
                watchers.add(w)
                if mode == M_STANDARD:
                    idset_take(&pw.ids, w.watcher_id, MODE_BITS)
                    self.unwatch(w, pw)
        if pw.ids.size == 0:
            self.forget_path(pw)
        return 0

    cdef set trigger(self, dict table, bytes path, int32_t event_type, int32_t acl, set suppress):
        cdef set watchers = set()
        cdef Watcher w
        cdef PathWatchers pw
        cdef bint at_path = True
        if self.recursive_watch_count == 0:
            pw = table.get(path)
            if pw is not None:
                self.fire(pw, True, event_type, watchers)
        else:
            for local in path_and_parents(path):
                pw = table.get(local)
                if pw is not None:
                    self.fire(pw, at_path, event_type, watchers)
                at_path = False
        if not watchers:
            return None
        for w in watchers:
            if suppress is not None and w in suppress:
                continue
            if w.closed:
                continue
            if not self.watcher_may_read(acl, w):
                continue
            w.deliver(event_type, path)
            if not w.dirty:
                w.dirty = True
                self.dirty_watchers.append(w)
        return watchers

    cdef bint watcher_may_read(self, int32_t acl, Watcher w) except -1:
        if self.skip_acl or (self.acl_world[acl] & Perm.READ) or w.is_super:
            return True
        if self.acl_checker is None:
            return False
        return bool(self.acl_checker(self.acl_lists[acl], Perm.READ, w))

    def take_dirty(self):
        """Watchers with queued events since the last call."""
        out = self.dirty_watchers
        self.dirty_watchers = []
        return out

    def watch_count(self):
        """zk_watch_count: data + child watches."""
        cdef PathWatchers pw
        n = 0
        for pw in self.data_watches.values():
            n += pw.ids.size
        for pw in self.child_watches.values():
            n += pw.ids.size
        return n

    # ------------------------------------------------------------------------------------------
    # changes (each mirrors one of Apache's DataTree methods)

    cdef int create_node(self, bytes path, object data, list acl, int64_t owner, int32_t parent_cversion,
                         int64_t zxid, int64_t time, Stat* out) except -2:
        cdef Py_ssize_t cut = path.rfind(b"/")
        cdef bytes parent_path = path[:cut]
        cdef Node* parent = self.lookup_bytes(parent_path)
        cdef Node* node
        cdef int kind
        cdef int32_t acl_idx
        if parent is NULL:
            return Code.NONODE
        if self.lookup_bytes(path) is not NULL:
            return Code.NODEEXISTS
        self.digest_out(parent)
        if parent_cversion == -1:
            parent_cversion = parent.cversion + 1
        # replay of a create that the fuzzy snapshot already holds must not move cversion back
        if parent_cversion > parent.cversion:
            parent.cversion = parent_cversion
            parent.pzxid = zxid
        self.digest_in(parent)
        acl_idx = self.acl_ref(acl)
        node = self.new_node(path, parent, data, acl_idx)
        node.czxid = zxid
        node.mzxid = zxid
        node.pzxid = zxid
        node.ctime = time
        node.mtime = time
        node.ephemeral_owner = owner
        self.digest_in(node)
        kind = owner_kind(owner, self.extended_types)
        if kind == KIND_CONTAINER:
            self.containers.add(path)
        elif kind == KIND_TTL:
            self.ttls.add(path)
        elif kind == KIND_NORMAL:
            paths = self.ephemerals.get(owner)
            if paths is None:
                paths = {}
                self.ephemerals[owner] = paths
            paths[path] = None
            if len(paths) > self.ephemerals_max.get(owner, 0):
                self.ephemerals_max[owner] = len(paths)
        if out is not NULL:
            self.copy_stat(node, out)
        if cut >= 16 and memcmp(PyBytes_AS_STRING(path), b"/zookeeper/quota", 16) == 0:
            self.quota_node_created(parent_path, path[cut + 1:])
        if self.quota_roots:
            self.update_quota_stat(path, PyBytes_GET_SIZE(data) if data is not None else 0, 1)
        self.trigger(self.data_watches, path, EventType.NODE_CREATED, acl_idx, None)
        self.trigger(self.child_watches, parent_path if cut > 0 else b"/", EventType.NODE_CHILDREN_CHANGED,
                     parent.acl, None)
        return Code.OK

    cdef int note_loaded_owner(self, bytes path, int64_t owner) except -1:
        cdef int kind = owner_kind(owner, self.extended_types)
        if kind == KIND_CONTAINER:
            self.containers.add(path)
        elif kind == KIND_TTL:
            self.ttls.add(path)
        elif kind == KIND_NORMAL:
            paths = self.ephemerals.get(owner)
            if paths is None:
                paths = {}
                self.ephemerals[owner] = paths
            paths[path] = None
            if len(paths) > self.ephemerals_max.get(owner, 0):
                self.ephemerals_max[owner] = len(paths)
        return 0

    cdef int delete_node(self, bytes path, int64_t zxid) except -2:
        cdef Py_ssize_t cut = path.rfind(b"/")
        cdef bytes parent_path = path[:cut]
        cdef Node* parent = self.lookup_bytes(parent_path)
        cdef Node* node
        cdef int32_t acl, parent_acl, data_len
        cdef int64_t owner
        cdef int kind
        cdef bint limits
        if parent is NULL:
            return Code.NONODE
        self.digest_out(parent)
        if zxid > parent.pzxid:
            parent.pzxid = zxid
        self.digest_in(parent)
        node = self.lookup_bytes(path)
        if node is NULL or node is self.root:
            return Code.NONODE
        if node.first_child is not NULL:
            # Apache's deleteNode does not look at children (prep refuses NOTEMPTY); keep the tree
            # whole if a replayed txn tries it anyway
            return -111
        acl = node.acl
        owner = node.ephemeral_owner
        parent_acl = parent.acl
        data_len = node.data_len if node.data_len > 0 else 0
        limits = node.name_len == 16 and memcmp(node.name, b"zookeeper_limits", 16) == 0
        self.digest_out(node)
        self.unlink(node)
        kind = owner_kind(owner, self.extended_types)
        if kind == KIND_CONTAINER:
            self.containers.discard(path)
        elif kind == KIND_TTL:
            self.ttls.discard(path)
        elif kind == KIND_NORMAL:
            paths = self.ephemerals.get(owner)
            if paths is not None:
                paths.pop(path, None)
        if limits:
            self.quota_node_deleted(parent_path, LIMIT_NODE)
        if self.quota_roots:
            self.update_quota_stat(path, -data_len, -1)
        processed = self.trigger(self.data_watches, path, EventType.NODE_DELETED, acl, None)
        self.trigger(self.child_watches, path, EventType.NODE_DELETED, acl, processed)
        self.trigger(self.child_watches, parent_path if cut > 0 else b"/", EventType.NODE_CHILDREN_CHANGED,
                     parent_acl, None)
        self.acl_unref(acl)
        return Code.OK

    cdef int set_data(self, bytes path, object data, int32_t version, int64_t zxid, int64_t time,
                      Stat* out) except -2:
        cdef Node* node = self.lookup_bytes(path)
        cdef int32_t last_len
        if node is NULL:
            return Code.NONODE
        last_len = node.data_len if node.data_len > 0 else 0
        self.digest_out(node)
        self.set_node_data(node, data)
        node.mtime = time
        node.mzxid = zxid
        node.version = version
        self.digest_in(node)
        if out is not NULL:
            self.copy_stat(node, out)
        if self.quota_roots:
            self.update_quota_stat(path, (PyBytes_GET_SIZE(data) if data is not None else 0) - last_len, 0)
        self.trigger(self.data_watches, path, EventType.NODE_DATA_CHANGED, node.acl, None)
        return Code.OK

    cdef int set_acl(self, bytes path, list acl, int32_t version, Stat* out) except -2:
        cdef Node* node = self.lookup_bytes(path)
        cdef int32_t old
        if node is NULL:
            return Code.NONODE
        old = node.acl
        node.acl = self.acl_ref(acl)
        self.acl_unref(old)
        self.digest_out(node)
        node.aversion = version
        self.digest_in(node)
        if out is not NULL:
            self.copy_stat(node, out)
        return Code.OK

    cdef int set_cversion_pzxid(self, bytes path, int32_t cversion, int64_t zxid) except -2:
        cdef Node* node
        if path.endswith(b"/"):
            path = path[:len(path) - 1]
        node = self.lookup_bytes(path)
        if node is NULL:
            return Code.NONODE
        if cversion == -1:
            cversion = node.cversion + 1
        if cversion > node.cversion:
            self.digest_out(node)
            node.cversion = cversion
            node.pzxid = zxid
            self.digest_in(node)
        return Code.OK

    def kill_session(self, int64_t session_id, int64_t zxid, paths):
        """closeSession: delete the txn's paths, then any ephemeral of the session left over."""
        if self.quota_pending:
            self.setup_quota()
        local = self.ephemerals.pop(session_id, None)
        self.ephemerals_max.pop(session_id, None)
        if paths is not None:
            for p in paths:
                self.delete_node(p, zxid)
                if local is not None:
                    local.pop(p, None)
        if local:
            for p in list(local):
                self.delete_node(p, zxid)

    # ------------------------------------------------------------------------------------------
    # applying txns

    def apply(self, Txn t):
        """Apply one txn (Apache's DataTree.processTxn); results go into t.rc_err / t.stat."""
        if self.quota_pending:
            self.setup_quota()
        self.apply_one(t, False)
        if t.zxid > self.last_processed_zxid:
            self.last_processed_zxid = t.zxid
        if self.snapshot_digest_zxid < 0:
            # logZxidDigest, once the tree is past a fuzzy snapshot's digest zxid
            if t.zxid % DIGEST_LOG_INTERVAL == 0:
                self.digest_log.append((t.zxid, <int64_t>self.digest_sum))
            if DIGESTS_ON:
                self.compare_digest(t)
        elif DIGESTS_ON:
            self.compare_digest(t)
        return t.rc_err

    cdef int compare_digest(self, Txn t) except -1:
        # the end of Apache's processTxn (a loaded snapshot's digest, once replay reaches its zxid),
        # then compareDigest: while a fuzzy snapshot's digest is pending, the tree is not comparable
        global DIGEST_MISMATCH_LOGGED
        if self.snapshot_digest_zxid >= 0:
            if t.zxid == self.snapshot_digest_zxid:
                if <int64_t>self.digest_sum != self.snapshot_digest:
                    report_mismatch(t.zxid)
                self.snapshot_digest_zxid = -1
            else:
                if t.zxid > self.snapshot_digest_zxid:
                    DIGEST_RATE_LOGGER.rate_limit_log(
                        "The txn 0x%x of snapshot digest does not exist." % self.snapshot_digest_zxid)
                return 0
        if not t.has_digest:
            return 0
        if t.digest_version != TXN_DIGEST_VERSION:
            DIGEST_RATE_LOGGER.rate_limit_log("Digest version not the same on zxid.", str(t.zxid))
            return 0
        if t.digest != <int64_t>self.digest_sum:
            report_mismatch(t.zxid)
            if not DIGEST_MISMATCH_LOGGED:
                DIGEST_MISMATCH_LOGGED = True
                digest_log.error("First digest mismatch on txn: %r, expected digest is %d, actual digest is %d",
                                 t, t.digest, <int64_t>self.digest_sum)
        return 0

    @property
    def tree_digest(self):
        """DataTree.getTreeDigest: the sum of every node's digest, as a Java long."""
        return <int64_t>self.digest_sum

    def node_digest(self, bytes path):
        """The digest the tree keeps for one node, or None."""
        cdef Node* node = self.lookup_bytes(path)
        return None if node is NULL else node.digest

    def recount_digest(self):
        """The tree digest summed afresh over every node (a check of the kept one: they must agree)."""
        cdef size_t i
        cdef uint64_t total = 0
        cdef Node* node
        if not DIGESTS_ON:
            return 0
        for i in range(self.mask + 1):
            node = self.slots[i]
            if node is not NULL:
                total += node_digest(node, self.path_of(node))
        return <int64_t>total

    def set_snapshot_digest(self, int64_t zxid, int32_t version, int64_t digest, int64_t snapshot_zxid):
        """A loaded snapshot's ZxidDigest (DataTree.deserializeZxidDigest, FileSnap.deserialize): the
        tree digest it must have once replay applies zxid; checked at once when that is the snapshot's
        own zxid. A digest older than the snapshot, or of another version, is not compared."""
        if not DIGESTS_ON:
            return
        self.snapshot_digest_zxid = -1
        if zxid <= 0 or zxid < snapshot_zxid:
            return
        if version != TXN_DIGEST_VERSION:
            digest_log.info("Digest version changed, local: %d, new: %d, skip comparing digest now.",
                            version, TXN_DIGEST_VERSION)
            return
        if zxid == snapshot_zxid:
            if <int64_t>self.digest_sum != digest:
                report_mismatch(zxid)
            return
        self.snapshot_digest_zxid = zxid
        self.snapshot_digest = digest

    cdef int apply_one(self, Txn t, bint is_sub) except -1:
        cdef int32_t typ = t.type
        cdef int err = Code.OK
        cdef int64_t owner
        cdef Txn sub
        cdef bint failed, post_failed
        t.rc_type = typ
        t.has_stat = False
        if typ == OP_CREATE:
            err = self.create_node(t.path, t.data, t.acl, t.session_id if t.ephemeral else 0,
                                   t.parent_cversion, t.zxid, t.time, NULL)
        elif typ == OP_CREATE2 or typ == OP_CREATE_TTL or typ == OP_CREATE_CONTAINER:
            if typ == OP_CREATE2:
                owner = t.session_id if t.ephemeral else 0
            elif typ == OP_CREATE_TTL:
                owner = <int64_t>(TTL_MASK | <uint64_t>t.ttl)
            else:
                owner = <int64_t>0x8000000000000000
            err = self.create_node(t.path, t.data, t.acl, owner, t.parent_cversion, t.zxid, t.time,
                                   &t.stat)
            t.has_stat = err == Code.OK
        elif typ == OP_DELETE or typ == OP_DELETE_CONTAINER:
            err = self.delete_node(t.path, t.zxid)
        elif typ == OP_SET_DATA or typ == OP_RECONFIG:
            err = self.set_data(t.path, t.data, t.version, t.zxid, t.time, &t.stat)
            t.has_stat = err == Code.OK
        elif typ == OP_SET_ACL:
            err = self.set_acl(t.path, t.acl, t.version, &t.stat)
            t.has_stat = err == Code.OK
        elif typ == OP_CLOSE_SESSION:
            self.kill_session(t.session_id, t.zxid, t.paths)
        elif typ == OP_ERROR:
            err = t.err
        elif typ == OP_MULTI:
            failed = False
            for sub in t.subtxns:
                if sub.type == OP_ERROR:
                    failed = True
                    break
            post_failed = False
            for sub in t.subtxns:
                sub.zxid = t.zxid
                sub.time = t.time
                sub.session_id = t.session_id
                sub.cxid = t.cxid
                if sub.type == OP_ERROR:
                    post_failed = True
                    self.apply_one(sub, True)
                elif failed:
                    # a failed multi applies nothing: every op reports an error
                    sub.rc_type = OP_ERROR
                    sub.rc_err = Code.RUNTIMEINCONSISTENCY if post_failed else Code.OK
                    sub.has_stat = False
                else:
                    self.apply_one(sub, True)
                if sub.rc_err != Code.OK and err == Code.OK:
                    err = sub.rc_err
        # createSession and check change nothing in the tree
        if typ == OP_CREATE and err == Code.NODEEXISTS:
            # a replayed create whose node is already there still raises the parent's cversion
            cut = t.path.rfind(b"/")
            if self.set_cversion_pzxid(t.path[:cut], t.parent_cversion, t.zxid) != Code.OK:
                err = Code.NONODE
        t.rc_err = err
        return 0

    # ------------------------------------------------------------------------------------------
    # quotas (Apache's DataTree: pTrie, updateQuotaStat, updateQuotaForPath, setupQuota)

    def max_quota_prefix(self, bytes path):
        """Apache's getMaxPrefixWithQuota: the deepest quota root at or above path (normalised as
        the trie keeps it), or None."""
        cdef bytes prefix = b"", best = None
        if self.quota_pending:
            self.setup_quota()
        if not self.quota_roots:
            return None
        for c in path.split(b"/"):
            if not c.strip(JAVA_BLANK):
                continue
            prefix = prefix + b"/" + c
            if prefix in self.quota_roots:
                best = prefix
        return best

    cdef int quota_node_created(self, bytes parent_path, bytes child) except -1:
        # createNode under /zookeeper/quota: a limits node makes its path a quota root, a stats node
        # starts with the subtree's count and bytes. Apache takes the path after the first 16
        # characters whatever they are ("/zookeeper/quotaX/..." files "X").
        cdef bytes trimmed = parent_path[16:]
        if child == LIMIT_NODE:
            key = quota_trie_key(trimmed)
            if not trimmed:
                # Apache ZooKeeper 3.8 throws IllegalArgumentException out of the txn (its server stops)
                quota_log.error("Ignoring the quota limit node %s: a quota on / is not kept",
                                (parent_path + b"/" + child).decode("utf-8", "replace"))
            elif key is not None:
                self.quota_roots.add(key)
        if child == STAT_NODE:
            self.update_quota_for_path(trimmed)
        return 0

    cdef int quota_node_deleted(self, bytes parent_path, bytes child) except -1:
        # deleteNode of a limits node under /zookeeper: the quota root goes (Apache trims 16 characters)
        if not parent_path.startswith(b"/zookeeper") or len(parent_path) <= 16:
            return 0  # Apache: an exception out of the txn
        key = quota_trie_key(parent_path[16:])
        if key is not None:
            self.quota_roots.discard(key)
        return 0

    cdef int set_in_place(self, Node* node, bytes data) except -1:
        # new data without a txn's stat change; Apache's approximate data size never sees it
        cdef int32_t before = node.data_len if node.data_len > 0 else 0
        self.digest_out(node)  # (a node under /zookeeper/: its digest stays 0, as in Apache)
        self.set_node_data(node, data)
        self.digest_in(node)
        self.quota_drift += PyBytes_GET_SIZE(data) - before
        return 0

    cdef int update_quota_stat(self, bytes path, int64_t bytes_diff, int count_diff) except -1:
        # Apache's updateQuotaStat for the quota root above path, if any: the stats node's data
        # changes in place (its Stat, mzxid and version stay)
        prefix = self.max_quota_prefix(path)
        if prefix is None:
            return 0
        cdef bytes stat_path = QUOTA_ZOOKEEPER + prefix + b"/" + STAT_NODE
        cdef Node* node = self.lookup_bytes(stat_path)
        if node is NULL:
            quota_log.error("Missing node for stat %s", stat_path.decode("utf-8", "replace"))
            return 0
        try:
            stats = parse_stats_track(None if node.data_len <= 0 else
                                      PyBytes_FromStringAndSize(node_data(node), node.data_len))
        except ValueError as e:
            # Apache ZooKeeper 3.8 throws out of the txn here (its server stops)
            quota_log.error("Quota stats of %s not updated: %s", prefix.decode("utf-8", "replace"), e)
            return 0
        stats["count"] = stats.get("count", -1) + count_diff
        stats["bytes"] = stats.get("bytes", -1) + bytes_diff
        self.set_in_place(node, format_stats_track(stats))
        return 0

    cdef int update_quota_for_path(self, bytes path) except -1:
        # Apache's updateQuotaForPath: count and bytes of the subtree at path (as Apache looks it up:
        # "" is the root), written in place into its stats node
        cdef Node* node = self.lookup_bytes(path)
        cdef int64_t count = 0, nbytes = 0
        if node is not NULL:
            subtree_counts(node, &count, &nbytes)
        cdef bytes stat_path = QUOTA_ZOOKEEPER + path + b"/" + STAT_NODE
        cdef Node* stat_node = self.lookup_bytes(stat_path)
        if stat_node is NULL:
            quota_log.warning("Missing quota stat node %s", stat_path.decode("utf-8", "replace"))
            return 0
        self.set_in_place(stat_node, b"count=%d,bytes=%d" % (count, nbytes))
        return 0

    def setup_quota(self):
        """Apache's setupQuota after a tree is loaded (snapshot, SNAP): the quota roots are the
        leaf limits nodes under /zookeeper/quota, and each root's stats node is recounted in place.
        Loading marks it pending; it runs before the tree is next used."""
        cdef Node* node
        cdef Node* child
        self.quota_pending = False
        self.quota_roots = set()
        self.quota_drift = 0  # Apache recounts its data size when it loads
        stack = [QUOTA_ZOOKEEPER]
        while stack:
            path = stack.pop()
            node = self.lookup_bytes(path)
            if node is NULL:
                continue
            if node.first_child is NULL:
                if path.endswith(LIMIT_SUFFIX):
                    real = path[16:path.find(LIMIT_SUFFIX)]
                    self.update_quota_for_path(real)
                    key = quota_trie_key(real)
                    if real and key is not None:
                        self.quota_roots.add(key)
                continue
            child = node.first_child
            while child is not NULL:
                stack.append(self.path_bytes(child))
                child = child.next_sibling

    # ------------------------------------------------------------------------------------------
    # reads for the slow path, prep and tools

    def exists(self, bytes path):
        return self.lookup_bytes(path) is not NULL

    def stat(self, bytes path):
        """The client-visible Stat as an 11-tuple, or None."""
        cdef Node* node = self.lookup_bytes(path)
        cdef Stat s
        if node is NULL:
            return None
        self.copy_stat(node, &s)
        return (s.czxid, s.mzxid, s.ctime, s.mtime, s.version, s.cversion, s.aversion,
                s.ephemeral_owner, s.data_length, s.num_children, s.pzxid)

    def record(self, bytes path):
        """What prep needs of a node: (StatPersisted 9-tuple, child count, ACL list), or None."""
        cdef Node* node = self.lookup_bytes(path)
        if node is NULL:
            return None
        return ((node.czxid, node.mzxid, node.ctime, node.mtime, node.version, node.cversion,
                 node.aversion, node.ephemeral_owner, node.pzxid),
                node.num_children, self.acl_lists[node.acl])

    def get_data(self, bytes path):
        if self.quota_pending:
            self.setup_quota()
        cdef Node* node = self.lookup_bytes(path)
        if node is NULL:
            return None
        if node.data_len < 0:
            return None
        return PyBytes_FromStringAndSize(node_data(node), node.data_len)

    def get_children(self, bytes path):
        """Child names (bytes) in Apache's order, or None when the node is missing."""
        cdef Node* node = self.lookup_bytes(path)
        cdef Node* child
        cdef Node** ordered
        cdef Py_ssize_t i
        if node is NULL:
            return None
        out = []
        ordered = ordered_children(node)
        for i in range(node.num_children):
            child = ordered[i]
            out.append(PyBytes_FromStringAndSize(child.name, child.name_len))
        free(ordered)
        return out

    def get_acl(self, bytes path):
        cdef Node* node = self.lookup_bytes(path)
        if node is NULL:
            return None
        return self.acl_lists[node.acl]

    def node_count(self):
        """Number of znodes (the root counted once)."""
        return self.count

    def all_children_number(self, bytes path):
        """Every descendant of path (Apache's getAllChildrenNumber)."""
        cdef Node* node = self.lookup_bytes(path)
        if node is NULL:
            return 0
        if node is self.root:
            return <long>self.count - 1
        return count_descendants(node)

    def ephemeral_paths(self, int64_t session_id):
        paths = self.ephemerals.get(session_id)
        return list(paths) if paths else []

    def sessions_with_ephemerals(self):
        return [s for s, p in self.ephemerals.items() if p]

    def ephemerals_count(self):
        n = 0
        for p in self.ephemerals.values():
            n += len(p)
        return n

    def approximate_data_size(self):
        """Apache's cachedApproximateDataSize (mntr): path lengths plus data lengths of every node,
        less what quota stats updates changed in place (Apache's running count misses those)."""
        cdef size_t i
        cdef Node* node
        cdef int64_t total = 0
        for i in range(self.mask + 1):
            node = self.slots[i]
            if node is not NULL:
                total += node.path_len + (node.data_len if node.data_len > 0 else 0)
        return total - self.quota_drift

    def walk(self):
        """Every path in pre-order, parents before children (snapshots, dumps)."""
        out = []
        cdef list stack = [b"/"]
        cdef Node* node
        cdef Node* child
        while stack:
            path = stack.pop()
            out.append(path)
            node = self.lookup_bytes(path)
            child = node.first_child
            while child is not NULL:
                stack.append(self.path_bytes(child))
                child = child.next_sibling
        return out

    def node_info(self, bytes path):
        """(data, StatPersisted 9-tuple, ACL list) of one node, or None."""
        if self.quota_pending:
            self.setup_quota()
        cdef Node* node = self.lookup_bytes(path)
        if node is NULL:
            return None
        data = None if node.data_len < 0 else PyBytes_FromStringAndSize(node_data(node), node.data_len)
        return (data, (node.czxid, node.mzxid, node.ctime, node.mtime, node.version, node.cversion,
                       node.aversion, node.ephemeral_owner, node.pzxid), self.acl_lists[node.acl])

    # ------------------------------------------------------------------------------------------
    # the read hot path: decode, look up and answer without a Python object per request

    cdef int fast_read(self, int32_t op, int32_t xid, const uint8_t* body, Py_ssize_t n,
                       Watcher w, WriteBuffer out, bint acl_checked=False) except -1:
        """Answer exists/getData/getChildren/getChildren2 into `out`; 1 if done, 0 if the slow
        path must take it (bad record, a path with NUL, an ACL only Python can check)."""
        cdef Cursor c
        cdef const uint8_t* path
        cdef int32_t plen
        cdef bint watch
        cdef Node* node
        cdef Node* child
        cdef Stat s
        cdef Py_ssize_t start, count_pos, i
        cdef int32_t nkids
        cdef Node** ordered
        if self.quota_pending:
            self.setup_quota()
        cursor_init(&c, body, n)
        plen = rd_bytes(&c, &path)
        watch = rd_bool(&c)
        if c.bad or plen < 0:
            return 0
        if op == OP_EXISTS:  # exists: 3.8.0 checks no ACL, and registers the watch before the lookup
            if memchr(path, 0, plen) is not NULL:
                return 0
            if watch:
                self.add_watch(self.data_watches, PyBytes_FromStringAndSize(<const char*>path, plen), w, M_STANDARD)
            node = self.lookup(<const char*>path, plen)
            start = out.begin_frame()
            if node is NULL:
                out.put_reply_header(xid, self.last_processed_zxid, Code.NONODE)
            else:
                out.put_reply_header(xid, self.last_processed_zxid, Code.OK)
                self.copy_stat(node, &s)
                out.put_stat(&s)
            out.end_frame(start)
            return 1
        node = self.lookup(<const char*>path, plen)
        if node is NULL:
            out.reply(xid, self.last_processed_zxid, Code.NONODE)
            return 1
        if not (acl_checked or self.skip_acl or (self.acl_world[node.acl] & Perm.READ) or w.is_super):
            return 0
        if op == OP_GET_DATA:
            if watch:
                self.add_watch(self.data_watches, PyBytes_FromStringAndSize(<const char*>path, plen), w, M_STANDARD)
            start = out.begin_frame()
            out.put_reply_header(xid, self.last_processed_zxid, Code.OK)
            wb_bytes(out, node_data(node), node.data_len)
            self.copy_stat(node, &s)
            out.put_stat(&s)
            out.end_frame(start)
            return 1
        if op == OP_GET_CHILDREN or op == OP_GET_CHILDREN2:
            if watch:
                self.add_watch(self.child_watches, PyBytes_FromStringAndSize(<const char*>path, plen), w, M_STANDARD)
            start = out.begin_frame()
            out.put_reply_header(xid, self.last_processed_zxid, Code.OK)
            wb_i32(out, node.num_children)
            ordered = ordered_children(node)
            for i in range(node.num_children):
                child = ordered[i]
                wb_bytes(out, child.name, <int32_t>child.name_len)
            free(ordered)
            if op == OP_GET_CHILDREN2:
                self.copy_stat(node, &s)
                out.put_stat(&s)
            out.end_frame(start)
            return 1
        return 0

    def read(self, int32_t op, int32_t xid, bytes body, Watcher w, WriteBuffer out,
             bint acl_checked=False):
        """The hot path from Python (queued reads, tests): True when answered into `out`.
        acl_checked: the caller already verified READ with the Python providers."""
        return self.fast_read(op, xid, <const uint8_t*>PyBytes_AS_STRING(body),
                              PyBytes_GET_SIZE(body), w, out, acl_checked) == 1


cdef long count_descendants(Node* top):
    cdef long total = 0
    cdef Node* node = top.first_child
    # iterative pre-order walk over the sibling lists
    while node is not NULL:
        total += 1
        if node.first_child is not NULL:
            node = node.first_child
            continue
        while node is not NULL and node.next_sibling is NULL:
            node = node.parent
            if node is top:
                return total
        if node is NULL:
            return total
        node = node.next_sibling
    return total


def path_and_parents(bytes path):
    """path, then each parent up to "/" (Apache's PathParentIterator.forAll)."""
    out = [path]
    cdef Py_ssize_t cut
    while len(path) > 1:
        cut = path.rfind(b"/")
        path = path[:cut] if cut > 0 else b"/"
        out.append(path)
    return out


def parent_paths(bytes path):
    return path_and_parents(path)[1:]


# ------------------------------------------------------------------------------------------------
# snapshots: node records in Apache's snapshot layout (DataTree.serializeNodeData and DataNode.serialize in
# zookeeper-server/src/main/java/org/apache/zookeeper/server/):
#   ustring path ("" for the root), buffer data, long aclRef, StatPersisted (60 bytes)

cdef int put_stat_persisted(WriteBuffer out, Node* node) except -1:
    wb_i64(out, node.czxid)
    wb_i64(out, node.mzxid)
    wb_i64(out, node.ctime)
    wb_i64(out, node.mtime)
    wb_i32(out, node.version)
    wb_i32(out, node.cversion)
    wb_i32(out, node.aversion)
    wb_i64(out, node.ephemeral_owner)
    wb_i64(out, node.pzxid)
    return 0


cdef enum:
    CHILDREN_PER_TURN = 256
    EAGER_CHILDREN = 4096


def serialize_chunk(DataTree tree, list stack, int max_nodes, WriteBuffer out, dict acl_map,
                    list acl_out):
    """Write up to max_nodes node records, walking the tree from the entries on `stack` (pre-order:
    a node before its children). An entry is a path to write, or (parent path, last child taken or
    None): the rest of a parent's children, taken CHILDREN_PER_TURN at a time so that a node with a
    million children never stalls the loop. Nodes that are gone are skipped: the walk is fuzzy, and
    replay of the txns after the snapshot's start zxid repairs what changed meanwhile (a child
    visited twice after its sibling cursor vanished is written twice; loading keeps the last).
    acl_map keeps the snapshot's own ACL ids (tree index → (encoded list, id)); new ACLs are
    appended to acl_out as (id, acl list). Returns the number of records written."""
    cdef int count = 0, taken
    cdef Py_ssize_t i
    cdef Node** ordered
    cdef Node* node
    cdef Node* child
    cdef Node* parent
    cdef Node* last
    cdef int32_t idx
    cdef long snap_id
    if tree.quota_pending:
        tree.setup_quota()
    while stack and count < max_nodes:
        entry = stack.pop()
        if type(entry) is tuple:
            parent = tree.lookup_bytes(entry[0])
            if parent is NULL:
                continue
            child = parent.first_child
            if entry[1] is not None:
                last = tree.lookup_bytes(entry[1])
                if last is not NULL and last.parent is parent:
                    child = last.next_sibling
            batch = []
            taken = 0
            while child is not NULL and taken < CHILDREN_PER_TURN:
                batch.append(tree.path_bytes(child))
                last = child
                child = child.next_sibling
                taken += 1
            if child is not NULL:
                stack.append((entry[0], batch[len(batch) - 1]))
            batch.reverse()
            stack.extend(batch)
            continue
        node = tree.lookup_bytes(entry)
        if node is NULL:
            continue
        idx = node.acl
        enc = tree.acl_encoded[idx]
        known = acl_map.get(idx)
        if known is not None and known[0] is enc:
            snap_id = known[1]
        else:
            snap_id = len(acl_out) + 1
            acl_map[idx] = (enc, snap_id)
            acl_out.append((snap_id, tree.acl_lists[idx]))
        if node is tree.root:
            wb_i32(out, 0)
        else:
            wb_bytes(out, PyBytes_AS_STRING(<bytes?>entry), <int32_t>PyBytes_GET_SIZE(<bytes?>entry))  # the path it was found by
        wb_bytes(out, node_data(node), node.data_len)
        wb_i64(out, snap_id)
        put_stat_persisted(out, node)
        if node.first_child is not NULL:
            if node.num_children <= EAGER_CHILDREN:
                ordered = ordered_children(node)
                batch = [tree.path_bytes(ordered[i]) for i in range(node.num_children)]
                free(ordered)
                batch.reverse()
                stack.extend(batch)
            else:
                stack.append((entry, None))
        count += 1
    return count


cdef const char* SLASH = b"/"


def load_chunk(DataTree tree, const unsigned char[:] chunk, dict acls):
    """Add the node records of one chunk (parents always come before children). A record for a
    node that exists (the root, /zookeeper...) replaces its data, stat and ACL. Returns
    (nodes loaded, orphans skipped). New nodes are built from the chunk's bytes in place; the
    parent and the ACL of the record before are tried first (a walk writes siblings in a row, and
    most of them share an ACL)."""
    cdef Cursor c
    cdef const uint8_t* p
    cdef int32_t plen, dlen
    cdef const uint8_t* d
    cdef int64_t acl_ref, last_ref = 0
    cdef int32_t acl_idx = -1
    cdef Node* node
    cdef Node* parent
    cdef Node* last_parent = NULL
    cdef int32_t old_acl
    cdef long loaded = 0, orphans = 0
    cdef Py_ssize_t cut
    if chunk.shape[0] == 0:
        return 0, 0
    # any buffer: a snapshot's chunks are read in place from LMDB's map
    cursor_init(&c, <const uint8_t*>&chunk[0], chunk.shape[0])
    try:
        while c.left > 0:
            plen = rd_bytes(&c, &p)
            dlen = rd_bytes(&c, &d)
            acl_ref = rd_i64(&c)
            if c.left < 60 or c.bad:
                raise ValueError("truncated node record in snapshot chunk")
            if plen <= 0:
                p = <const uint8_t*>SLASH
                plen = 1
            if acl_idx < 0 or acl_ref != last_ref:
                acl = acls.get(acl_ref)
                if acl is None:
                    raise ValueError(f"snapshot node {PyBytes_FromStringAndSize(<const char*>p, plen)!r} refers to "
                                     f"unknown ACL {acl_ref}")
                if acl_idx >= 0:
                    tree.acl_unref(acl_idx)  # the reference held for the run of records before
                acl_idx = tree.acl_ref(acl)  # held until the end of the chunk: the index stays put
                last_ref = acl_ref
            node = tree.lookup(<const char*>p, plen)
            if node is NULL:
                cut = plen - 1
                while cut > 0 and p[cut] != b'/':
                    cut -= 1
                if last_parent is not NULL and node_has_path(last_parent, <const char*>p, cut):
                    parent = last_parent
                else:
                    parent = tree.lookup(<const char*>p, cut)
                if parent is NULL:
                    orphans += 1
                    c.p += 60
                    c.left -= 60
                    continue
                last_parent = parent
                node = tree.new_node_at(<const char*>p, plen, parent, <const char*>d, dlen if dlen >= 0 else -1,
                                        acl_idx)
                tree.acl_refs[acl_idx] += 1
            else:
                tree.digest_out(node)
                tree.set_node_data_at(node, <const char*>d, dlen if dlen >= 0 else -1)
                old_acl = node.acl
                tree.acl_refs[acl_idx] += 1
                node.acl = acl_idx
                tree.acl_unref(old_acl)
            node.czxid = rd_i64(&c)
            node.mzxid = rd_i64(&c)
            node.ctime = rd_i64(&c)
            node.mtime = rd_i64(&c)
            node.version = rd_i32(&c)
            node.cversion = rd_i32(&c)
            node.aversion = rd_i32(&c)
            node.ephemeral_owner = rd_i64(&c)
            node.pzxid = rd_i64(&c)
            tree.digest_in(node)
            if node.ephemeral_owner != 0:
                tree.note_loaded_owner(PyBytes_FromStringAndSize(<const char*>p, plen), node.ephemeral_owner)
            loaded += 1
    finally:
        if acl_idx >= 0:
            tree.acl_unref(acl_idx)  # the reference held for the last run of records
    node = tree.lookup_bytes(QUOTA_ZOOKEEPER)
    if node is not NULL and node.first_child is not NULL:
        tree.quota_pending = True  # setupQuota once every chunk is in, before the tree is used
    return loaded, orphans


def snapshot_nodes_end(data, Py_ssize_t offset):
    """Where the node records of an Apache snapshot end: the offset of the terminating "/" path."""
    cdef const unsigned char[:] view = data
    cdef Cursor c
    cdef const uint8_t* p
    cdef const uint8_t* d
    cdef int32_t plen
    cdef Py_ssize_t start
    if view.shape[0] <= offset:
        raise ValueError("snapshot ends before its nodes")
    cursor_init(&c, &view[offset], view.shape[0] - offset)
    while True:
        start = offset + (view.shape[0] - offset - c.left)
        plen = rd_bytes(&c, &p)
        if c.bad:
            raise ValueError(f"snapshot node list cut short at offset {start}")
        if plen == 1 and p[0] == b'/':
            return start
        rd_bytes(&c, &d)
        rd_i64(&c)
        if c.bad or c.left < 60:
            raise ValueError(f"snapshot node record cut short at offset {start}")
        c.p += 60
        c.left -= 60
