# cython: language_level=3
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t

from libc.string cimport memcpy

from zkfast._jute cimport Stat, Txn, WriteBuffer

# One znode, one allocation: the struct, its name (the last path segment), then its
# data. The full path is the parent's path, '/' and the name (DataTree.path_of rebuilds it; the index
# keeps a hash of it). Children form a doubly linked sibling list, so create and delete are O(1)
# whatever the fan-out. Fields go widest first so the struct has no padding; the name starts right
# after the last field (NODE_HEADER_BYTES in datatree.pyx), not at sizeof(Node).
#
# The data lives in the same allocation, right after the name, when it fits there: a znode is one
# malloc chunk, not two. The space after the path is at least 8 bytes and whatever malloc's rounding
# adds (malloc_usable_size); a setData that does not fit puts the data in an allocation of its own and
# keeps its address in that space (NODE_DATA_EXTERNAL). Read the data with node_data(), never from the
# struct.
cdef struct Node:
    Node* parent
    Node* first_child
    Node* next_sibling
    Node* prev_sibling
    int64_t czxid
    int64_t mzxid
    int64_t ctime
    int64_t mtime
    int64_t pzxid
    int64_t ephemeral_owner
    int32_t version
    int32_t cversion          # stored form: counts creates only; copyStat gives clients creates + deletes
                              # (zookeeper-server/src/main/java/org/apache/zookeeper/server/DataNode.java)
    int32_t aversion
    int32_t num_children
    int32_t acl               # index into the tree's ACL table
    int32_t data_len          # -1 for null data
    uint32_t path_len         # of the full path
    uint32_t name_len
    uint32_t hash             # the index's hash of the full path (low 32 bits of hash_path)
    uint32_t digest           # this node's DigestCalculator digest, kept current (0 under /zookeeper/)
    uint8_t child_cap_log2    # log2 of the capacity Apache's HashSet of children would have (0: none)
    uint8_t flags             # NODE_DATA_EXTERNAL
    char name[1]


cdef enum:
    NODE_DATA_EXTERNAL = 1


cdef inline char* node_data(Node* n) noexcept nogil:
    """Where the node's data_len bytes are (meaningless when data_len <= 0)."""
    cdef char* area = n.name + n.name_len
    cdef char* external
    if n.flags & NODE_DATA_EXTERNAL:
        memcpy(&external, area, sizeof(char*))
        return external
    return area


# An open-addressing set of 32-bit entries (linear probing, backward-shift deletion): one per
# watched path (its watchers' ids, each with its mode in the low bits) and one per watcher (the ids
# of the paths it watches). 4 bytes an entry, at most 3/4 full, shrunk as it empties.
ctypedef struct IdSet:
    uint32_t* slots
    uint32_t size
    uint8_t cap_log2


# A party that receives watch events: a client connection. Events are written straight into its
# output buffer; the server flushes every dirty watcher once per batch.
cdef class Watcher:
    cdef public WriteBuffer out
    cdef public int64_t session_id
    cdef public bint closed
    cdef public bint is_super
    cdef public object auth_ids
    # its id in the tree's watch tables (NO_WATCHER_ID until its first watch) and the ids of the
    # paths it watches there, data and child tables both (datatree.pyx: compact watch tables)
    cdef uint32_t watcher_id
    cdef IdSet watched
    cdef readonly uint32_t data_watch_count
    cdef readonly uint32_t child_watch_count
    cdef public bint dirty
    cdef public int64_t packets_sent
    cdef int deliver(self, int32_t event_type, bytes path) except -1


# The watchers of one path in one table (datatree.pyx: compact watch tables)
cdef class PathWatchers:
    cdef readonly bytes path
    cdef readonly uint32_t path_id
    cdef readonly bint child
    cdef IdSet ids
    cdef list watchers_by_id


# Apache's DigestCalculator (DIGEST_VERSION 2): a node's digest from its path, data and StatPersisted
cdef enum:
    TXN_DIGEST_VERSION = 2

cdef uint32_t digest_of(const char* path, Py_ssize_t path_len, const char* data, Py_ssize_t data_len,
                        int64_t czxid, int64_t mzxid, int64_t pzxid, int64_t ctime, int64_t mtime,
                        int32_t version, int32_t cversion, int32_t aversion, int64_t owner) noexcept nogil
cdef bint digests_on() noexcept


cdef class DataTree:
    cdef Node** slots
    cdef size_t mask
    cdef size_t count
    cdef Node* root
    # where path_of rebuilds a node's full path (grown as needed, freed with the tree)
    cdef char* path_buf
    cdef size_t path_buf_size
    cdef public int64_t last_processed_zxid
    cdef public int64_t data_bytes
    # ACL table: index → list of (perms, scheme, id), its encoded vector<ACL>, reference count,
    # and the perms it grants to world:anyone (the hot path's check)
    cdef public list acl_lists
    cdef public list acl_encoded
    cdef dict acl_index
    cdef int32_t* acl_refs
    cdef int32_t* acl_world
    cdef int32_t acl_cap
    cdef list acl_free
    # watches: path → PathWatchers (its watchers' ids and modes); the objects behind the ids
    cdef public dict data_watches
    cdef public dict child_watches
    cdef list watchers_by_id
    cdef list free_watcher_ids
    cdef list paths_by_id
    cdef list free_path_ids
    cdef public int recursive_watch_count
    cdef public list dirty_watchers
    # path sets by kind
    cdef public dict ephemerals
    cdef public dict ephemerals_max
    cdef public set containers
    cdef public set ttls
    # policy
    cdef public bint skip_acl
    cdef public bint extended_types
    cdef public object acl_checker
    # quotas (Apache's PathTrie of quota roots, normalised "/a/b"), a load's pending setupQuota, and
    # the bytes the in-place stats updates moved that Apache's approximate data size never counts
    cdef public set quota_roots
    cdef public bint quota_pending
    cdef public int64_t quota_drift
    # txn digests (Apache's NodeHashMapImpl + AdHash): the wrapping sum of every node's digest, and
    # the digest a loaded snapshot recorded at a zxid, checked when replay reaches it (-1: none)
    cdef uint64_t digest_sum
    cdef public int64_t snapshot_digest_zxid
    cdef public int64_t snapshot_digest
    cdef public object digest_log  # DataTree.digestLog: (zxid, digest) of every 128th zxid, 1024 at most

    cdef Node* lookup(self, const char* p, Py_ssize_t n) noexcept
    cdef Node* lookup_bytes(self, bytes path) noexcept
    cdef const char* path_of(self, Node* node) except NULL
    cdef bytes path_bytes(self, Node* node)
    cdef int index_grow(self) except -1
    cdef int index_insert(self, Node* node) except -1
    cdef void index_remove(self, Node* node) noexcept
    cdef Node* new_node(self, bytes path, Node* parent, object data, int32_t acl) except NULL
    cdef Node* new_node_at(self, const char* p, Py_ssize_t n, Node* parent, const char* d, Py_ssize_t dlen,
                           int32_t acl) except NULL
    cdef int set_node_data(self, Node* node, object data) except -1
    cdef int set_node_data_at(self, Node* node, const char* d, Py_ssize_t n) except -1
    cdef void digest_out(self, Node* node) noexcept
    cdef int digest_in(self, Node* node) except -1
    cdef int attach(self, bytes path, object data, int32_t acl) except -1
    cdef void unlink(self, Node* node) noexcept
    cdef void copy_stat(self, Node* node, Stat* s) noexcept
    cpdef int32_t acl_ref(self, list acl) except -1
    cdef int acl_grow(self) except -1
    cdef int acl_unref(self, int32_t i) except -1
    cdef int check_read(self, Node* node, Watcher w) except -1
    cdef PathWatchers path_watchers(self, dict table, bytes path)
    cdef int forget_path(self, PathWatchers pw) except -1
    cdef int unwatch(self, Watcher w, PathWatchers pw) except -1
    cdef int mode_of(self, PathWatchers pw, Watcher w) noexcept
    cdef int fire(self, PathWatchers pw, bint at_path, int32_t event_type, set watchers) except -1
    cdef int add_watch(self, dict table, bytes path, Watcher w, int mode) except -1
    cdef int drop_watch(self, dict table, bytes path, Watcher w) except -1
    cdef set trigger(self, dict table, bytes path, int32_t event_type, int32_t acl, set suppress)
    cdef bint watcher_may_read(self, int32_t acl, Watcher w) except -1
    cdef int create_node(self, bytes path, object data, list acl, int64_t owner, int32_t parent_cversion,
                         int64_t zxid, int64_t time, Stat* out) except -2
    cdef int note_loaded_owner(self, bytes path, int64_t owner) except -1
    cdef int delete_node(self, bytes path, int64_t zxid) except -2
    cdef int set_data(self, bytes path, object data, int32_t version, int64_t zxid, int64_t time,
                      Stat* out) except -2
    cdef int set_acl(self, bytes path, list acl, int32_t version, Stat* out) except -2
    cdef int set_cversion_pzxid(self, bytes path, int32_t cversion, int64_t zxid) except -2
    cdef int apply_one(self, Txn t, bint is_sub) except -1
    cdef int compare_digest(self, Txn t) except -1
    cdef int quota_node_created(self, bytes parent_path, bytes child) except -1
    cdef int quota_node_deleted(self, bytes parent_path, bytes child) except -1
    cdef int update_quota_stat(self, bytes path, int64_t bytes_diff, int count_diff) except -1
    cdef int update_quota_for_path(self, bytes path) except -1
    cdef int set_in_place(self, Node* node, bytes data) except -1
    cdef int fast_read(self, int32_t op, int32_t xid, const uint8_t* body, Py_ssize_t n,
                       Watcher w, WriteBuffer out, bint acl_checked=*) except -1
