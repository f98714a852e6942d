# cython: language_level=3
# The jute codec's C-level interface, shared by every Cython module of zkfast: one buffer class for
# output, one cursor for input, and the records the hot paths touch (Stat, Txn).

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t
from libc.string cimport memcpy

cdef enum:
    NULL_LEN = -1

# Stat as the client sees it (protocol.md §1.6): 68 bytes on the wire.
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


# One transaction, as logged and proposed (protocol.md §4.2): a TxnHeader plus the body of its type.
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
