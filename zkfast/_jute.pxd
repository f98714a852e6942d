# cython: language_level=3
# The jute codec's C-level interface, shared by every Cython module of zkfast: the client protocol's
# numbers (opcodes, error codes, ...: the one place they are declared), one buffer class for output,
# one cursor for input, and the records the hot paths touch (Stat, Txn).

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t
from libc.string cimport memcpy

cdef enum:
    NULL_LEN = -1


# The client protocol's numbers, declared once for C and Python alike. C code cimports them; the
# `cpdef` makes zkfast._jute export each anonymous member as a Python int (OP_CREATE, ...) and each
# named enum as a Python IntEnum (Code, Perm, EventType).

# Apache's ZooDefs.OpCode (zookeeper-server/src/main/java/org/apache/zookeeper/ZooDefs.java); there
# is no opcode 10
cpdef enum:
    OP_NOTIFICATION = 0
    OP_CREATE = 1
    OP_DELETE = 2
    OP_EXISTS = 3
    OP_GET_DATA = 4
    OP_SET_DATA = 5
    OP_GET_ACL = 6
    OP_SET_ACL = 7
    OP_GET_CHILDREN = 8
    OP_SYNC = 9
    OP_PING = 11
    OP_GET_CHILDREN2 = 12
    OP_CHECK = 13
    OP_MULTI = 14
    OP_CREATE2 = 15
    OP_RECONFIG = 16
    OP_CHECK_WATCHES = 17
    OP_REMOVE_WATCHES = 18
    OP_CREATE_CONTAINER = 19
    OP_DELETE_CONTAINER = 20
    OP_CREATE_TTL = 21
    OP_MULTI_READ = 22
    OP_AUTH = 100
    OP_SET_WATCHES = 101
    OP_SASL = 102
    OP_GET_EPHEMERALS = 103
    OP_GET_ALL_CHILDREN_NUMBER = 104
    OP_SET_WATCHES2 = 105
    OP_ADD_WATCH = 106
    OP_WHO_AM_I = 107
    OP_CREATE_SESSION = -10
    OP_CLOSE_SESSION = -11
    OP_ERROR = -1


# Apache's Request.isValid (zookeeper-server/src/main/java/org/apache/zookeeper/server/Request.java):
# anything else is answered UNIMPLEMENTED and the connection closed. notification and error are not
# requests; auth and sasl are handled before the request pipeline.
cdef inline bint is_valid_op(int32_t op) noexcept nogil:
    return op == OP_CHECK or op == OP_CLOSE_SESSION or op == OP_CREATE or op == OP_CREATE2 \
        or op == OP_CREATE_TTL or op == OP_CREATE_CONTAINER or op == OP_CREATE_SESSION or op == OP_DELETE \
        or op == OP_DELETE_CONTAINER or op == OP_EXISTS or op == OP_GET_ACL or op == OP_GET_CHILDREN \
        or op == OP_GET_ALL_CHILDREN_NUMBER or op == OP_GET_CHILDREN2 or op == OP_GET_DATA \
        or op == OP_GET_EPHEMERALS or op == OP_MULTI or op == OP_MULTI_READ or op == OP_PING \
        or op == OP_RECONFIG or op == OP_SET_ACL or op == OP_SET_DATA or op == OP_SET_WATCHES \
        or op == OP_SET_WATCHES2 or op == OP_SYNC or op == OP_CHECK_WATCHES or op == OP_REMOVE_WATCHES \
        or op == OP_ADD_WATCH or op == OP_WHO_AM_I


# The ops that take a zxid, failed ones too, and go through the commit stage: those Apache's
# PrepRequestProcessor.pRequest gives a txn header
# (zookeeper-server/src/main/java/org/apache/zookeeper/server/PrepRequestProcessor.java).
cdef inline bint is_txn_op(int32_t op) noexcept nogil:
    return op == OP_CREATE or op == OP_CREATE2 or op == OP_CREATE_CONTAINER or op == OP_CREATE_TTL \
        or op == OP_DELETE or op == OP_DELETE_CONTAINER or op == OP_SET_DATA or op == OP_SET_ACL \
        or op == OP_CHECK or op == OP_MULTI or op == OP_RECONFIG or op == OP_CLOSE_SESSION \
        or op == OP_CREATE_SESSION


# Special xids (zookeeper-server/src/main/java/org/apache/zookeeper/ClientCnxn.java)
cpdef enum:
    XID_NOTIFICATION = -1
    XID_PING = -2


# Apache's KeeperException.Code (zookeeper-server/src/main/java/org/apache/zookeeper/KeeperException.java)
cpdef enum Code:
    OK = 0
    SYSTEMERROR = -1
    RUNTIMEINCONSISTENCY = -2
    DATAINCONSISTENCY = -3
    CONNECTIONLOSS = -4
    MARSHALLINGERROR = -5
    UNIMPLEMENTED = -6
    OPERATIONTIMEOUT = -7
    BADARGUMENTS = -8
    UNKNOWNSESSION = -12
    NEWCONFIGNOQUORUM = -13
    RECONFIGINPROGRESS = -14
    APIERROR = -100
    NONODE = -101
    NOAUTH = -102
    BADVERSION = -103
    NOCHILDRENFOREPHEMERALS = -108
    NODEEXISTS = -110
    NOTEMPTY = -111
    SESSIONEXPIRED = -112
    INVALIDCALLBACK = -113
    INVALIDACL = -114
    AUTHFAILED = -115
    SESSIONMOVED = -118
    NOTREADONLY = -119
    EPHEMERALONLOCALSESSION = -120
    NOWATCHER = -121
    REQUESTTIMEOUT = -122
    RECONFIGDISABLED = -123
    SESSIONCLOSEDREQUIRESASLAUTH = -124
    QUOTAEXCEEDED = -125
    THROTTLEDOP = -127


# Apache's ZooDefs.Perms (zookeeper-server/src/main/java/org/apache/zookeeper/ZooDefs.java)
cpdef enum Perm:
    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


# Apache's Watcher.Event.EventType (zookeeper-server/src/main/java/org/apache/zookeeper/Watcher.java);
# the last three only a client makes, when it removes watches
cpdef enum EventType:
    NONE = -1
    NODE_CREATED = 1
    NODE_DELETED = 2
    NODE_DATA_CHANGED = 3
    NODE_CHILDREN_CHANGED = 4
    DATA_WATCH_REMOVED = 5
    CHILD_WATCH_REMOVED = 6
    PERSISTENT_WATCH_REMOVED = 7


# Apache's CreateMode flags (zookeeper-server/src/main/java/org/apache/zookeeper/CreateMode.java)
cpdef enum:
    FLAG_PERSISTENT = 0
    FLAG_EPHEMERAL = 1
    FLAG_PERSISTENT_SEQUENTIAL = 2
    FLAG_EPHEMERAL_SEQUENTIAL = 3
    FLAG_CONTAINER = 4
    FLAG_PERSISTENT_WITH_TTL = 5
    FLAG_PERSISTENT_SEQUENTIAL_WITH_TTL = 6


# checkWatches/removeWatches' Watcher.WatcherType
# (zookeeper-server/src/main/java/org/apache/zookeeper/Watcher.java) and addWatch's AddWatchMode
# (zookeeper-server/src/main/java/org/apache/zookeeper/AddWatchMode.java)
cpdef enum:
    WATCHER_CHILDREN = 1
    WATCHER_DATA = 2
    WATCHER_ANY = 3
    ADD_WATCH_PERSISTENT = 0
    ADD_WATCH_PERSISTENT_RECURSIVE = 1

# Stat as the client sees it (zookeeper-jute/src/main/resources/zookeeper.jute): 68 bytes on the wire.
cdef struct Stat:
    int64_t czxid
    int64_t mzxid
    int64_t ctime
    int64_t mtime
    int32_t version
    int32_t cversion
    int32_t aversion
    int64_t ephemeral_owner
    int32_t data_length
    int32_t num_children
    int64_t pzxid

# A read position inside bytes someone else owns; `bad` turns on at the first short or invalid read,
# and every later read returns zeros, so decoders check it once at the end.
cdef struct Cursor:
    const uint8_t* p
    Py_ssize_t left
    bint bad


cdef inline uint32_t load_u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline uint64_t load_u64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>load_u32(p) << 32) | <uint64_t>load_u32(p + 4)


cdef inline void store_u32(char* p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef inline void store_u64(char* p, uint64_t v) noexcept nogil:
    store_u32(p, <uint32_t>(v >> 32))
    store_u32(p + 4, <uint32_t>v)


cdef inline void cursor_init(Cursor* c, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    c.p = p
    c.left = n
    c.bad = False


cdef inline int32_t rd_i32(Cursor* c) noexcept nogil:
    cdef int32_t v
    if c.left < 4:
        c.bad = True
        c.left = 0
        return 0
    v = <int32_t>load_u32(c.p)
    c.p += 4
    c.left -= 4
    return v


cdef inline int64_t rd_i64(Cursor* c) noexcept nogil:
    cdef int64_t v
    if c.left < 8:
        c.bad = True
        c.left = 0
        return 0
    v = <int64_t>load_u64(c.p)
    c.p += 8
    c.left -= 8
    return v


cdef inline bint rd_bool(Cursor* c) noexcept nogil:
    cdef bint v
    if c.left < 1:
        c.bad = True
        return False
    v = c.p[0] != 0
    c.p += 1
    c.left -= 1
    return v


# A buffer or ustring: sets *out and returns its length, or -1 for null. A length below -1 or past
# the end marks the cursor bad (Apache's BinaryInputArchive.checkLength).
cdef inline int32_t rd_bytes(Cursor* c, const uint8_t** out) noexcept nogil:
    cdef int32_t n = rd_i32(c)
    out[0] = NULL
    if c.bad or n == -1:
        return -1
    if n < -1 or n > c.left:
        c.bad = True
        c.left = 0
        return -1
    out[0] = c.p
    c.p += n
    c.left -= n
    return n


cdef class WriteBuffer:
    cdef char* buf
    cdef Py_ssize_t len
    cdef Py_ssize_t cap
    cdef int grow(self, Py_ssize_t extra) except -1
    cdef Py_ssize_t begin_frame(self) except -1
    cdef int end_frame(self, Py_ssize_t start) except -1
    cdef int put_raw(self, const char* p, Py_ssize_t n) except -1
    cdef int put_buffer_obj(self, object data) except -1
    cdef int put_stat(self, const Stat* s) except -1
    cdef int put_reply_header(self, int32_t xid, int64_t zxid, int32_t err) except -1


cdef inline int wb_i32(WriteBuffer b, int32_t v) except -1:
    if b.len + 4 > b.cap:
        b.grow(4)
    store_u32(b.buf + b.len, <uint32_t>v)
    b.len += 4
    return 0


cdef inline int wb_i64(WriteBuffer b, int64_t v) except -1:
    if b.len + 8 > b.cap:
        b.grow(8)
    store_u64(b.buf + b.len, <uint64_t>v)
    b.len += 8
    return 0


cdef inline int wb_bool(WriteBuffer b, bint v) except -1:
    if b.len + 1 > b.cap:
        b.grow(1)
    b.buf[b.len] = 1 if v else 0
    b.len += 1
    return 0


cdef inline int wb_bytes(WriteBuffer b, const char* p, int32_t n) except -1:
    # a jute buffer/ustring: length then bytes; n == -1 writes null
    if b.len + 4 + (n if n > 0 else 0) > b.cap:
        b.grow(4 + (n if n > 0 else 0))
    store_u32(b.buf + b.len, <uint32_t>n)
    b.len += 4
    if n > 0:
        memcpy(b.buf + b.len, p, n)
        b.len += n
    return 0


# One transaction, as logged and proposed (records of zookeeper-jute/src/main/resources/zookeeper.jute, and
# SerializeUtils.java in zookeeper-server/src/main/java/org/apache/zookeeper/server/util/):
# a TxnHeader plus the body of its type.
# DataTree.apply fills in the result fields (rc_err, rc_path, stat, sub results for multi).
cdef class Txn:
    cdef public int64_t session_id
    cdef public int32_t cxid
    cdef public int64_t zxid
    cdef public int64_t time
    cdef public int32_t type
    cdef public object path
    cdef public object data
    cdef public object acl
    cdef public bint ephemeral
    cdef public int32_t parent_cversion
    cdef public int32_t version
    cdef public int64_t ttl
    cdef public int32_t err
    cdef public int32_t timeout
    cdef public object paths
    cdef public list subtxns
    cdef public bint has_digest
    cdef public int32_t digest_version
    cdef public int64_t digest
    # results of applying it
    cdef public int32_t rc_err
    cdef public int32_t rc_type
    cdef Stat stat
    cdef public bint has_stat

    cdef int encode_body(self, WriteBuffer b) except -1
