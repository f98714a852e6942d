# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""zkfast._jute: the one jute codec (Apache's
zookeeper-jute/src/main/java/org/apache/jute/BinaryOutputArchive.java and BinaryInputArchive.java,
the records of zookeeper-jute/src/main/resources/zookeeper.jute).

Bytes live in two places: a WriteBuffer (growable, framed output) and a Cursor (a read position
over bytes owned by someone else). Strings stay bytes inside the server; `jdecode`/`jencode` give
Java's view of them (UTF-8 in with replacement, CESU-8 out) where Apache ZooKeeper turns a client
string into a Java String and back.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int32_t, int64_t, uint32_t, uint8_t
from libc.string cimport memcpy, memchr

from zkfast._jute cimport (Cursor, Stat, cursor_init, rd_i32, rd_i64, rd_bool, rd_bytes,
                           wb_i32, wb_i64, wb_bool, wb_bytes, store_u32, store_u64, load_u32,
                           load_u64)
from libc.stdint cimport uint64_t

# The opcodes, error codes and other protocol numbers are declared in zkfast/_jute.pxd.

# what `cons` and the AdminServer show as a connection's last operation: Apache's lastOp strings
# (zookeeper-server/src/main/java/org/apache/zookeeper/server/FinalRequestProcessor.java)
LAST_OP_NAMES = {
    OP_PING: "PING", OP_CREATE_SESSION: "SESS", OP_MULTI: "MULT", OP_MULTI_READ: "MLTR",
    OP_CREATE: "CREA", OP_CREATE2: "CREA", OP_CREATE_TTL: "CREA", OP_CREATE_CONTAINER: "CREA",
    OP_DELETE: "DELE", OP_DELETE_CONTAINER: "DELE", OP_SET_DATA: "SETD", OP_RECONFIG: "RECO",
    OP_SET_ACL: "SETA", OP_CLOSE_SESSION: "CLOS", OP_SYNC: "SYNC", OP_CHECK: "CHEC", OP_EXISTS: "EXIS",
    OP_GET_DATA: "GETD", OP_SET_WATCHES: "SETW", OP_SET_WATCHES2: "STW2", OP_ADD_WATCH: "ADDW",
    OP_GET_ACL: "GETA", OP_GET_CHILDREN: "GETC", OP_GET_CHILDREN2: "GETC",
    OP_GET_ALL_CHILDREN_NUMBER: "GETACN", OP_CHECK_WATCHES: "CHKW", OP_REMOVE_WATCHES: "REMW",
    OP_WHO_AM_I: "HOMI", OP_GET_EPHEMERALS: "GETE",
}

# the names Apache's logs and txn log tools give the opcodes: Request.op2String
# (zookeeper-server/src/main/java/org/apache/zookeeper/server/Request.java)
OP_NAMES = {
    OP_NOTIFICATION: "notification", OP_CREATE: "create", OP_DELETE: "delete", OP_EXISTS: "exists",
    OP_GET_DATA: "getData", OP_SET_DATA: "setData", OP_GET_ACL: "getACL", OP_SET_ACL: "setACL",
    OP_GET_CHILDREN: "getChildren", OP_SYNC: "sync", OP_PING: "ping", OP_GET_CHILDREN2: "getChildren2",
    OP_CHECK: "check", OP_MULTI: "multi", OP_CREATE2: "create2", OP_RECONFIG: "reconfig",
    OP_CHECK_WATCHES: "checkWatches", OP_REMOVE_WATCHES: "removeWatches",
    OP_CREATE_CONTAINER: "createContainer", OP_DELETE_CONTAINER: "deleteContainer", OP_CREATE_TTL: "createTtl",
    OP_MULTI_READ: "multiRead", OP_AUTH: "auth", OP_SET_WATCHES: "setWatches", OP_SET_WATCHES2: "setWatches2",
    OP_SASL: "sasl", OP_GET_EPHEMERALS: "getEphemerals", OP_GET_ALL_CHILDREN_NUMBER: "getAllChildrenNumber",
    OP_CREATE_SESSION: "createSession", OP_CLOSE_SESSION: "closeSession", OP_ERROR: "error",
    OP_WHO_AM_I: "whoAmI",
}

REPLY_HEADER_BYTES = 16
STAT_BYTES = 68


class JuteError(ValueError):
    """A record could not be decoded: short, or a length out of range."""


class ZkError(Exception):
    """A KeeperException: the request fails with `code`."""

    def __init__(self, code, path=None):
        super().__init__(f"{code.name}{'' if path is None else ' ' + path.decode('utf-8', 'replace')}")
        self.code = code
        self.path = path


# ----------------------------------------------------------------------------------------------
# Java strings


def jdecode(bytes b):
    """Bytes as Apache ZooKeeper's reader turns them into a String (UTF-8, bad bytes → U+FFFD)."""
    return b.decode("utf-8", "replace")


def jencode(str s):
    """A String as Apache ZooKeeper's writer sends it: each UTF-16 unit on its own (CESU-8)."""
    cdef Py_ssize_t i
    if s.isascii():
        return s.encode("ascii")
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError:
        b = None
    if b is not None and all(ord(ch) < 0x10000 for ch in s):
        return b
    out = []
    for ch in s:
        cp = ord(ch)
        if cp >= 0x10000:
            cp -= 0x10000
            out.append(chr(0xD800 + (cp >> 10)).encode("utf-8", "surrogatepass"))
            out.append(chr(0xDC00 + (cp & 0x3FF)).encode("utf-8", "surrogatepass"))
        else:
            out.append(ch.encode("utf-8", "surrogatepass"))
    return b"".join(out)


def jstr(bytes b):
    """The bytes Apache ZooKeeper echoes for a client string it read: decode then re-encode."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i
    for i in range(n):
        if p[i] >= 0x80:
            return jencode(jdecode(b))
    return b


# ----------------------------------------------------------------------------------------------
# Output


# what an emptied WriteBuffer keeps of its capacity
cdef Py_ssize_t KEEP_CAPACITY_BYTES = 256 * 1024
# take_view hands its memory over from this much output on, and starts again with this capacity
cdef Py_ssize_t HAND_OVER_BYTES = 64 * 1024
cdef Py_ssize_t FRESH_CAPACITY_BYTES = 4096


cdef class HandedOver:
    """Memory a WriteBuffer handed over (take_view): read-only bytes, freed with this object."""

    cdef char* buf
    cdef Py_ssize_t len

    def __cinit__(self):
        self.buf = NULL
        self.len = 0

    def __dealloc__(self):
        if self.buf is not NULL:
            PyMem_Free(self.buf)
            self.buf = NULL

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.buf, self.len, 1, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass


cdef class WriteBuffer:
    """Growable output bytes with length-prefixed framing. One per connection and per log batch."""

    def __cinit__(self, Py_ssize_t initial_bytes=4096):
        if initial_bytes < 64:
            initial_bytes = 64
        self.buf = <char*>PyMem_Malloc(initial_bytes)
        if self.buf is NULL:
            raise MemoryError()
        self.cap = initial_bytes
        self.len = 0

    def __dealloc__(self):
        if self.buf is not NULL:
            PyMem_Free(self.buf)
            self.buf = NULL

    cdef int grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.len + extra
        cdef Py_ssize_t cap = self.cap
        cdef char* nb
        while cap < need:
            cap *= 2
        nb = <char*>PyMem_Realloc(self.buf, cap)
        if nb is NULL:
            raise MemoryError()
        self.buf = nb
        self.cap = cap
        return 0

    cdef Py_ssize_t begin_frame(self) except -1:
        cdef Py_ssize_t start = self.len
        wb_i32(self, 0)
        return start

    cdef int end_frame(self, Py_ssize_t start) except -1:
        store_u32(self.buf + start, <uint32_t>(self.len - start - 4))
        return 0

    cdef int put_raw(self, const char* p, Py_ssize_t n) except -1:
        if self.len + n > self.cap:
            self.grow(n)
        memcpy(self.buf + self.len, p, n)
        self.len += n
        return 0

    cdef int put_buffer_obj(self, object data) except -1:
        if data is None:
            return wb_i32(self, -1)
        if not isinstance(data, bytes):
            data = bytes(data)
        return wb_bytes(self, PyBytes_AS_STRING(data), <int32_t>PyBytes_GET_SIZE(data))

    cdef int put_stat(self, const Stat* s) except -1:
        if self.len + 68 > self.cap:
            self.grow(68)
        wb_i64(self, s.czxid)
        wb_i64(self, s.mzxid)
        wb_i64(self, s.ctime)
        wb_i64(self, s.mtime)
        wb_i32(self, s.version)
        wb_i32(self, s.cversion)
        wb_i32(self, s.aversion)
        wb_i64(self, s.ephemeral_owner)
        wb_i32(self, s.data_length)
        wb_i32(self, s.num_children)
        wb_i64(self, s.pzxid)
        return 0

    cdef int put_reply_header(self, int32_t xid, int64_t zxid, int32_t err) except -1:
        wb_i32(self, xid)
        wb_i64(self, zxid)
        wb_i32(self, err)
        return 0

    # -- Python-facing API (slow paths, tests, tools)
    def __len__(self):
        return self.len

    def getvalue(self):
        return PyBytes_FromStringAndSize(self.buf, self.len)

    def take(self):
        """The bytes written so far; the buffer is empty afterwards, and gives back the memory a
        burst of big replies made it grow to (the taken bytes hold a copy until they are sent)."""
        cdef char* nb
        out = PyBytes_FromStringAndSize(self.buf, self.len)
        self.len = 0
        if self.cap > KEEP_CAPACITY_BYTES:
            nb = <char*>PyMem_Realloc(self.buf, KEEP_CAPACITY_BYTES)
            if nb is not NULL:
                self.buf = nb
                self.cap = KEEP_CAPACITY_BYTES
        return out

    def take_view(self):
        """The bytes written so far, for a transport to send: many of them are handed over without
        a copy (a memoryview of this buffer's memory, freed once the view is gone); the buffer
        starts afresh. A burst of big replies is so never held twice."""
        cdef HandedOver owner
        cdef char* fresh
        if self.len < HAND_OVER_BYTES:
            return self.take()
        fresh = <char*>PyMem_Malloc(FRESH_CAPACITY_BYTES)
        if fresh is NULL:
            raise MemoryError()
        owner = HandedOver.__new__(HandedOver)
        owner.buf = self.buf
        owner.len = self.len
        self.buf = fresh
        self.cap = FRESH_CAPACITY_BYTES
        self.len = 0
        return memoryview(owner)

    def clear(self):
        self.len = 0

    def frame_start(self):
        return self.begin_frame()

    def frame_end(self, Py_ssize_t start):
        self.end_frame(start)

    def write_int(self, int32_t v):
        wb_i32(self, v)

    def write_long(self, int64_t v):
        wb_i64(self, v)

    def write_bool(self, bint v):
        wb_bool(self, v)

    def write_raw(self, bytes b):
        self.put_raw(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    def write_buffer(self, data):
        """A jute buffer: None is null (-1), b'' is an empty buffer."""
        self.put_buffer_obj(data)

    def write_ustring(self, s):
        """A jute ustring from bytes (sent as is) or str (encoded as Java does), None is null."""
        if s is None:
            wb_i32(self, -1)
        elif isinstance(s, str):
            self.put_buffer_obj(jencode(s))
        else:
            self.put_buffer_obj(s)

    def write_reply_header(self, int32_t xid, int64_t zxid, int32_t err):
        self.put_reply_header(xid, zxid, err)

    def write_stat(self, tuple st):
        """Stat from an 11-tuple in wire order."""
        cdef Stat s
        stat_from_tuple(st, &s)
        self.put_stat(&s)

    def write_acl_list(self, acl):
        put_acl_list(self, acl)

    def write_string_list(self, items):
        if items is None:
            wb_i32(self, -1)
            return
        wb_i32(self, len(items))
        for it in items:
            self.write_ustring(it)

    def reply(self, int32_t xid, int64_t zxid, int32_t err):
        """A whole frame holding only a ReplyHeader (errors, and ops without a response body)."""
        cdef Py_ssize_t start = self.begin_frame()
        self.put_reply_header(xid, zxid, err)
        self.end_frame(start)


cdef int put_acl_list(WriteBuffer b, acl) except -1:
    if acl is None:
        return wb_i32(b, -1)
    wb_i32(b, len(acl))
    for perms, scheme, ident in acl:
        wb_i32(b, perms)
        b.write_ustring(scheme)
        b.write_ustring(ident)
    return 0


def encode_acl_list(acl):
    """vector<ACL> bytes, the form the ACL table keeps for getACL replies and snapshots."""
    cdef WriteBuffer b = WriteBuffer(64)
    put_acl_list(b, acl)
    return b.getvalue()


cdef int stat_from_tuple(tuple st, Stat* s) except -1:
    if len(st) != 11:
        raise ValueError("a Stat has 11 fields")
    s.czxid, s.mzxid, s.ctime, s.mtime = st[0], st[1], st[2], st[3]
    s.version, s.cversion, s.aversion = st[4], st[5], st[6]
    s.ephemeral_owner, s.data_length, s.num_children, s.pzxid = st[7], st[8], st[9], st[10]
    return 0


cdef tuple stat_to_tuple(const Stat* s):
    return (s.czxid, s.mzxid, s.ctime, s.mtime, s.version, s.cversion, s.aversion,
            s.ephemeral_owner, s.data_length, s.num_children, s.pzxid)


# ----------------------------------------------------------------------------------------------
# Input


cdef class Reader:
    """Python-level decoding over one bytes object (slow paths, the log reader, tests)."""

    cdef bytes src
    cdef Cursor cur

    def __cinit__(self, bytes src, Py_ssize_t offset=0):
        self.src = src
        if offset < 0 or offset > PyBytes_GET_SIZE(src):
            raise JuteError("offset outside the buffer")
        cursor_init(&self.cur, <const uint8_t*>PyBytes_AS_STRING(src) + offset,
                    PyBytes_GET_SIZE(src) - offset)

    cdef inline int check(self) except -1:
        if self.cur.bad:
            raise JuteError("truncated or malformed record")
        return 0

    @property
    def remaining(self):
        return self.cur.left

    @property
    def offset(self):
        return <Py_ssize_t>(self.cur.p - <const uint8_t*>PyBytes_AS_STRING(self.src))

    def read_int(self):
        cdef int32_t v = rd_i32(&self.cur)
        self.check()
        return v

    def read_long(self):
        cdef int64_t v = rd_i64(&self.cur)
        self.check()
        return v

    def read_bool(self):
        cdef bint v = rd_bool(&self.cur)
        self.check()
        return v

    def read_buffer(self):
        """bytes, or None for a null buffer."""
        cdef const uint8_t* p
        cdef int32_t n = rd_bytes(&self.cur, &p)
        self.check()
        if n < 0:
            return None
        return PyBytes_FromStringAndSize(<const char*>p, n)

    def read_ustring(self):
        """A ustring as raw bytes (None when null)."""
        return self.read_buffer()

    def read_stat(self):
        cdef Stat s
        read_stat_into(&self.cur, &s)
        self.check()
        return stat_to_tuple(&s)

    def read_acl_list(self):
        """vector<ACL> as a list of (perms, scheme str, id str); None when null."""
        return read_acl_list(&self.cur)

    def read_string_list(self):
        """vector<ustring> as a list of bytes; None when null."""
        return read_string_list(&self.cur)


cdef int read_stat_into(Cursor* c, Stat* s) except -1:
    s.czxid = rd_i64(c)
    s.mzxid = rd_i64(c)
    s.ctime = rd_i64(c)
    s.mtime = rd_i64(c)
    s.version = rd_i32(c)
    s.cversion = rd_i32(c)
    s.aversion = rd_i32(c)
    s.ephemeral_owner = rd_i64(c)
    s.data_length = rd_i32(c)
    s.num_children = rd_i32(c)
    s.pzxid = rd_i64(c)
    return 0


cdef object read_buf_obj(Cursor* c):
    cdef const uint8_t* p
    cdef int32_t n = rd_bytes(c, &p)
    if n < 0:
        return None
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef object read_str_obj(Cursor* c):
    # a ustring the server treats as a Java String (ACL ids, auth schemes): str, None when null
    cdef const uint8_t* p
    cdef int32_t n = rd_bytes(c, &p)
    if n < 0:
        return None
    return PyBytes_FromStringAndSize(<const char*>p, n).decode("utf-8", "replace")


# Most requests carry one of a few ACLs (OPEN_ACL_UNSAFE above all): decoded lists are kept by their
# bytes, so a create does not build tuples and strings anew. The lists are shared: nobody mutates them.
cdef dict _acl_cache = {}
cdef enum:
    ACL_CACHE_MAX = 256
    ACL_CACHE_MAX_BYTES = 512


cdef Py_ssize_t acl_list_size(Cursor* c) noexcept:
    # the byte length of the vector<ACL> at the cursor, or -1 if it does not fit
    cdef Cursor probe = c[0]
    cdef int32_t n = rd_i32(&probe), i
    cdef const uint8_t* p
    if probe.bad or n < 0:
        return -1
    for i in range(n):
        rd_i32(&probe)
        rd_bytes(&probe, &p)
        rd_bytes(&probe, &p)
        if probe.bad:
            return -1
    return c.left - probe.left


cdef object read_acl_list(Cursor* c):
    cdef Py_ssize_t size = acl_list_size(c)
    cdef bytes key = None
    if 0 < size <= ACL_CACHE_MAX_BYTES:
        key = PyBytes_FromStringAndSize(<const char*>c.p, size)
        cached = _acl_cache.get(key)
        if cached is not None:
            c.p += size
            c.left -= size
            return cached
    cdef int32_t n = rd_i32(c), i, perms
    if c.bad:
        raise JuteError("truncated record")
    if n == -1:
        return None
    out = []
    for i in range(n):
        perms = rd_i32(c)
        scheme = read_str_obj(c)
        ident = read_str_obj(c)
        if c.bad:
            raise JuteError("truncated ACL list")
        out.append((perms, scheme, ident))
    if key is not None and len(_acl_cache) < ACL_CACHE_MAX:
        _acl_cache[key] = out
    return out


cdef object read_string_list(Cursor* c):
    cdef int32_t n = rd_i32(c), i
    if c.bad:
        raise JuteError("truncated record")
    if n == -1:
        return None
    out = []
    for i in range(n):
        out.append(read_buf_obj(c))
        if c.bad:
            raise JuteError("truncated string list")
    return out


# ----------------------------------------------------------------------------------------------
# Requests (client → server), decoded for the slow path. Paths stay bytes.


cdef tuple decode_one(int32_t op, Cursor* c):
    if op == OP_CREATE or op == OP_CREATE2 or op == OP_CREATE_CONTAINER:
        path = read_buf_obj(c)
        data = read_buf_obj(c)
        acl = read_acl_list(c)
        flags = rd_i32(c)
        return (path, data, acl, flags)
    if op == OP_CREATE_TTL:
        path = read_buf_obj(c)
        data = read_buf_obj(c)
        acl = read_acl_list(c)
        flags = rd_i32(c)
        ttl = rd_i64(c)
        return (path, data, acl, flags, ttl)
    if op == OP_DELETE or op == OP_DELETE_CONTAINER or op == OP_CHECK:
        path = read_buf_obj(c)
        return (path, rd_i32(c))
    if op == OP_EXISTS or op == OP_GET_DATA or op == OP_GET_CHILDREN or op == OP_GET_CHILDREN2:
        path = read_buf_obj(c)
        return (path, rd_bool(c))
    if op == OP_SET_DATA:
        path = read_buf_obj(c)
        data = read_buf_obj(c)
        return (path, data, rd_i32(c))
    if (op == OP_GET_ACL or op == OP_SYNC or op == OP_GET_EPHEMERALS
            or op == OP_GET_ALL_CHILDREN_NUMBER):
        return (read_buf_obj(c),)
    if op == OP_SET_ACL:
        path = read_buf_obj(c)
        acl = read_acl_list(c)
        return (path, acl, rd_i32(c))
    if op == OP_RECONFIG:
        joining = read_buf_obj(c)
        leaving = read_buf_obj(c)
        members = read_buf_obj(c)
        return (joining, leaving, members, rd_i64(c))
    if op == OP_CHECK_WATCHES or op == OP_REMOVE_WATCHES or op == OP_ADD_WATCH:
        path = read_buf_obj(c)
        return (path, rd_i32(c))
    if op == OP_AUTH:
        typ = rd_i32(c)
        scheme = read_str_obj(c)
        return (typ, scheme, read_buf_obj(c))
    if op == OP_SET_WATCHES or op == OP_SET_WATCHES2:
        rel = rd_i64(c)
        lists = [read_string_list(c), read_string_list(c), read_string_list(c)]
        if op == OP_SET_WATCHES2:
            lists.append(read_string_list(c))
            lists.append(read_string_list(c))
        return (rel, *lists)
    if op == OP_SASL:
        return (read_buf_obj(c),)
    if op == OP_WHO_AM_I or op == OP_PING or op == OP_CLOSE_SESSION:
        return ()
    raise JuteError(f"no request record for op {op}")


MULTI_WRITE_OPS = frozenset((OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL, OP_DELETE,
                             OP_SET_DATA, OP_CHECK))
MULTI_READ_OPS = frozenset((OP_GET_CHILDREN, OP_GET_DATA))


cdef list decode_multi(Cursor* c):
    # MultiOperationRecord: (MultiHeader + op record)* closed by a header with done=true.
    cdef int32_t typ
    cdef bint done
    ops = []
    while True:
        typ = rd_i32(c)
        done = rd_bool(c)
        rd_i32(c)  # err, unused in requests
        if c.bad:
            raise JuteError("truncated multi header")
        if done:
            return ops
        if typ not in MULTI_WRITE_OPS and typ not in MULTI_READ_OPS:
            raise JuteError(f"invalid type of op {typ} in multi")
        ops.append((typ, decode_one(typ, c)))
        if c.bad:
            raise JuteError("truncated multi op")


def decode_request(int32_t op, body):
    """The request record of `op` as a tuple (multi: a list of (op, tuple)). Raises JuteError."""
    cdef Cursor c
    cdef const uint8_t* p
    cdef Py_ssize_t n
    if not isinstance(body, bytes):
        body = bytes(body)
    p = <const uint8_t*>PyBytes_AS_STRING(body)
    n = PyBytes_GET_SIZE(body)
    cursor_init(&c, p, n)
    if op == OP_MULTI or op == OP_MULTI_READ:
        return decode_multi(&c)
    out = decode_one(op, &c)
    if c.bad:
        raise JuteError(f"truncated record for op {op}")
    return out


def decode_connect_request(bytes body):
    """ConnectRequest → (protocol, last_zxid, timeout_ms, session_id, passwd, read_only or None).

    read_only is None for clients that do not send the trailing byte (≤ 3.3): their answer
    must leave it out too (processConnectRequest in
    zookeeper-server/src/main/java/org/apache/zookeeper/server/ZooKeeperServer.java).
    """
    cdef Cursor c
    cursor_init(&c, <const uint8_t*>PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    proto = rd_i32(&c)
    last_zxid = rd_i64(&c)
    timeout = rd_i32(&c)
    session_id = rd_i64(&c)
    passwd = read_buf_obj(&c)
    if c.bad:
        raise JuteError("truncated ConnectRequest")
    read_only = None
    if c.left >= 1:
        read_only = rd_bool(&c)
    return (proto, last_zxid, timeout, session_id, passwd, read_only)


def encode_connect_response(int32_t timeout, int64_t session_id, bytes passwd, read_only):
    """A whole ConnectResponse frame; `read_only` None leaves the trailing byte out."""
    cdef WriteBuffer b = WriteBuffer(64)
    cdef Py_ssize_t start = b.begin_frame()
    wb_i32(b, 0)
    wb_i32(b, timeout)
    wb_i64(b, session_id)
    b.put_buffer_obj(passwd)
    if read_only is not None:
        wb_bool(b, read_only)
    b.end_frame(start)
    return b.getvalue()


def encode_notification(int32_t event_type, int32_t state, bytes path):
    """A whole notification frame: ReplyHeader(-1, -1, 0) + WatcherEvent (3.8.0 sends zxid -1)."""
    cdef WriteBuffer b = WriteBuffer(64 + len(path))
    cdef Py_ssize_t start = b.begin_frame()
    b.put_reply_header(XID_NOTIFICATION, -1, 0)
    wb_i32(b, event_type)
    wb_i32(b, state)
    b.put_buffer_obj(path)
    b.end_frame(start)
    return b.getvalue()


# ----------------------------------------------------------------------------------------------
# Transactions (the records of zookeeper-jute/src/main/resources/zookeeper.jute, and
# SerializeUtils.java in zookeeper-server/src/main/java/org/apache/zookeeper/server/util/):
# the bytes that are logged are the bytes that are proposed.


@cython.no_gc
cdef class Txn:
    """One txn: header fields, the body of its type, and (after DataTree.apply) its results.
    (Not tracked by the cycle collector: a txn refers only to bytes, ACL tuples and sub-txns.)"""

    def __init__(self, int64_t session_id=0, int32_t cxid=0, int64_t zxid=0, int64_t time=0,
                 int32_t type=0):
        self.session_id = session_id
        self.cxid = cxid
        self.zxid = zxid
        self.time = time
        self.type = type
        self.path = None
        self.data = None
        self.acl = None
        self.ephemeral = False
        self.parent_cversion = -1
        self.version = 0
        self.ttl = 0
        self.err = 0
        self.timeout = 0
        self.paths = None
        self.subtxns = None
        self.has_digest = False
        self.rc_err = 0
        self.rc_type = type
        self.has_stat = False

    @property
    def stat(self):
        """The Stat the op produced (create2, setData, setACL), as an 11-tuple, or None."""
        return stat_to_tuple(&self.stat) if self.has_stat else None

    def __repr__(self):
        return (f"Txn(type={self.type}, zxid=0x{self.zxid:x}, session=0x{self.session_id:x}, "
                f"cxid={self.cxid}, path={self.path!r})")

    cdef int encode_body(self, WriteBuffer b) except -1:
        cdef int32_t t = self.type
        cdef Txn sub
        cdef WriteBuffer inner
        if t == OP_CREATE or t == OP_CREATE2:
            b.put_buffer_obj(self.path)
            b.put_buffer_obj(self.data)
            put_acl_list(b, self.acl)
            wb_bool(b, self.ephemeral)
            wb_i32(b, self.parent_cversion)
        elif t == OP_CREATE_CONTAINER:
            b.put_buffer_obj(self.path)
            b.put_buffer_obj(self.data)
            put_acl_list(b, self.acl)
            wb_i32(b, self.parent_cversion)
        elif t == OP_CREATE_TTL:
            b.put_buffer_obj(self.path)
            b.put_buffer_obj(self.data)
            put_acl_list(b, self.acl)
            wb_i32(b, self.parent_cversion)
            wb_i64(b, self.ttl)
        elif t == OP_DELETE or t == OP_DELETE_CONTAINER:
            b.put_buffer_obj(self.path)
        elif t == OP_SET_DATA or t == OP_RECONFIG:
            b.put_buffer_obj(self.path)
            b.put_buffer_obj(self.data)
            wb_i32(b, self.version)
        elif t == OP_SET_ACL:
            b.put_buffer_obj(self.path)
            put_acl_list(b, self.acl)
            wb_i32(b, self.version)
        elif t == OP_CHECK:
            b.put_buffer_obj(self.path)
            wb_i32(b, self.version)
        elif t == OP_ERROR:
            wb_i32(b, self.err)
        elif t == OP_CREATE_SESSION:
            wb_i32(b, self.timeout)
        elif t == OP_CLOSE_SESSION:
            if self.paths is not None:
                wb_i32(b, len(self.paths))
                for p in self.paths:
                    b.put_buffer_obj(p)
        elif t == OP_MULTI:
            wb_i32(b, len(self.subtxns))
            inner = WriteBuffer(256)
            for sub in self.subtxns:
                inner.len = 0
                sub.encode_body(inner)
                wb_i32(b, sub.type)
                wb_bytes(b, inner.buf, <int32_t>inner.len)
        else:
            raise ValueError(f"no txn body for type {t}")
        return 0

    def encode(self, WriteBuffer b):
        """TxnHeader + body (+ TxnDigest when has_digest): a log entry's payload."""
        wb_i64(b, self.session_id)
        wb_i32(b, self.cxid)
        wb_i64(b, self.zxid)
        wb_i64(b, self.time)
        wb_i32(b, self.type)
        self.encode_body(b)
        if self.has_digest:
            wb_i32(b, self.digest_version)
            wb_i64(b, self.digest)

    def to_bytes(self):
        cdef WriteBuffer b = WriteBuffer(128)
        self.encode(b)
        return b.getvalue()


cdef int decode_txn_body(Txn t, Cursor* c) except -1:
    cdef int32_t typ = t.type, n, i, ln
    cdef const uint8_t* p
    cdef Cursor sc
    cdef Txn sub
    if typ == OP_CREATE or typ == OP_CREATE2:
        t.path = read_buf_obj(c)
        t.data = read_buf_obj(c)
        t.acl = read_acl_list(c)
        t.ephemeral = rd_bool(c)
        # CreateTxnV0 (no parentCVersion) is read as "parent + 1"
        t.parent_cversion = rd_i32(c) if c.left >= 4 else -1
    elif typ == OP_CREATE_CONTAINER:
        t.path = read_buf_obj(c)
        t.data = read_buf_obj(c)
        t.acl = read_acl_list(c)
        t.parent_cversion = rd_i32(c)
    elif typ == OP_CREATE_TTL:
        t.path = read_buf_obj(c)
        t.data = read_buf_obj(c)
        t.acl = read_acl_list(c)
        t.parent_cversion = rd_i32(c)
        t.ttl = rd_i64(c)
    elif typ == OP_DELETE or typ == OP_DELETE_CONTAINER:
        t.path = read_buf_obj(c)
    elif typ == OP_SET_DATA or typ == OP_RECONFIG:
        t.path = read_buf_obj(c)
        t.data = read_buf_obj(c)
        t.version = rd_i32(c)
    elif typ == OP_SET_ACL:
        t.path = read_buf_obj(c)
        t.acl = read_acl_list(c)
        t.version = rd_i32(c)
    elif typ == OP_CHECK:
        t.path = read_buf_obj(c)
        t.version = rd_i32(c)
    elif typ == OP_ERROR:
        t.err = rd_i32(c)
    elif typ == OP_CREATE_SESSION:
        t.timeout = rd_i32(c)
    elif typ == OP_CLOSE_SESSION:
        # older logs, and a server with closeSessionTxn.enabled=false, write no body: then 12 bytes
        # left that start with version 2 are a TxnDigest (a body of 12 bytes that counts 2 paths
        # would hold two empty ones, which no closeSession lists)
        if c.left >= 4 and not (c.left == 12 and load_u32(c.p) == 2):
            t.paths = read_string_list(c)
        else:
            t.paths = None
    elif typ == OP_MULTI:
        n = rd_i32(c)
        t.subtxns = []
        for i in range(n if n > 0 else 0):
            sub = Txn(t.session_id, t.cxid, t.zxid, t.time, rd_i32(c))
            ln = rd_bytes(c, &p)
            if c.bad:
                break
            cursor_init(&sc, p, ln if ln > 0 else 0)
            decode_txn_body(sub, &sc)
            if sc.bad:
                c.bad = True
                break
            t.subtxns.append(sub)
    else:
        raise JuteError(f"unknown txn type {typ}")
    if c.bad:
        raise JuteError(f"truncated txn of type {typ}")
    return 0


def decode_txn(bytes payload):
    """A log entry's payload (TxnHeader + body [+ TxnDigest]) → Txn."""
    cdef Cursor c
    cursor_init(&c, <const uint8_t*>PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))
    cdef int64_t session_id = rd_i64(&c)
    cdef int32_t cxid = rd_i32(&c)
    cdef int64_t zxid = rd_i64(&c)
    cdef int64_t time = rd_i64(&c)
    cdef int32_t typ = rd_i32(&c)
    if c.bad:
        raise JuteError("truncated TxnHeader")
    cdef Txn t = Txn(session_id, cxid, zxid, time, typ)
    decode_txn_body(t, &c)
    if c.left >= 12:
        t.has_digest = True
        t.digest_version = rd_i32(&c)
        t.digest = rd_i64(&c)
    return t


# ----------------------------------------------------------------------------------------------
# Txn log entries (FileTxnLog.java and Util.java in
# zookeeper-server/src/main/java/org/apache/zookeeper/server/persistence/):
# long Adler32(payload), int len, payload, byte 'B'

cdef extern from "zlib.h":
    unsigned long adler32(unsigned long adler, const unsigned char* buf, unsigned int n) nogil

LOG_MAGIC = 0x5A4B4C47  # "ZKLG"
SNAP_MAGIC = 0x5A4B534E  # "ZKSN"
LOG_VERSION = 2
LOG_FILE_HEADER_BYTES = 16

ENTRY_OK = 0
ENTRY_END = 1      # a zero length or no room for a header: the end of the written log
ENTRY_TORN = 2     # an entry cut short, or without its 'B'
ENTRY_BAD_CRC = 3  # a whole entry whose checksum does not match


def adler32_of(data):
    """Adler32 as java.util.zip.Adler32 computes it."""
    cdef const unsigned char[:] view = data
    if view.shape[0] == 0:
        return 1
    return adler32(1, &view[0], <unsigned int>view.shape[0])


def append_log_entry(WriteBuffer b, Txn t):
    """Append one log entry for t to b; returns the entry's size in bytes."""
    cdef Py_ssize_t start = b.len, payload_start, n
    cdef unsigned long crc
    wb_i64(b, 0)
    wb_i32(b, 0)
    payload_start = b.len
    t.encode(b)
    n = b.len - payload_start
    crc = adler32(1, <const unsigned char*>b.buf + payload_start, <unsigned int>n)
    store_u64(b.buf + start, <uint64_t>crc)
    store_u32(b.buf + start + 8, <uint32_t>n)
    wb_bool(b, True)
    b.buf[b.len - 1] = 0x42
    return b.len - start


def read_log_entry(buf, Py_ssize_t offset):
    """One entry of a log file held in buf, at offset: (status, next_offset, payload or None)."""
    cdef const unsigned char[:] view = buf
    cdef Py_ssize_t total = view.shape[0]
    cdef uint64_t crc
    cdef int32_t n
    cdef Py_ssize_t i
    if offset + 12 > total:
        # fewer bytes than an entry header: the clean end only if they are the zero padding
        for i in range(offset, total):
            if view[i] != 0:
                return ENTRY_TORN, offset, None
        return ENTRY_END, offset, None
    crc = load_u64(&view[offset])
    n = <int32_t>load_u32(&view[offset + 8])
    if n == 0 and crc == 0:
        return ENTRY_END, offset, None
    if n <= 0 or offset + 12 + n + 1 > total:
        return ENTRY_TORN, offset, None
    if view[offset + 12 + n] != 0x42:
        return ENTRY_TORN, offset, None
    if adler32(1, &view[offset + 12], <unsigned int>n) != crc:
        return ENTRY_BAD_CRC, offset + 12 + n + 1, None
    return ENTRY_OK, offset + 12 + n + 1, bytes(view[offset + 12:offset + 12 + n])


def find_whole_entry(buf, Py_ssize_t start, int64_t min_zxid):
    """The offset of the first whole, checksummed entry at or after `start` whose zxid exceeds
    min_zxid, or -1: damage with such an entry after it is corruption, not a torn tail, whatever the
    damaged length field claims."""
    cdef const unsigned char[:] view = buf
    cdef Py_ssize_t total = view.shape[0], off
    cdef int32_t n
    cdef int64_t zxid
    for off in range(start, total - 12 - 33):
        n = <int32_t>load_u32(&view[off + 8])
        if n < 32 or off + 12 + n + 1 > total:
            continue
        if view[off + 12 + n] != 0x42:
            continue
        if adler32(1, &view[off + 12], <unsigned int>n) != load_u64(&view[off]):
            continue
        zxid = <int64_t>load_u64(&view[off + 12 + 12])
        if zxid > min_zxid:
            return off
    return -1
