# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""zkfast._fastpath: a client connection's frame loop.

`ConnCore.feed(data)` splits every whole frame out of the received bytes. Reads that nothing
orders behind (exists, getData, getChildren, getChildren2, ping) are answered here, straight from
the DataTree into the connection's output buffer; everything else goes to the Python handler,
one call per frame. The caller writes `out` once per `feed`.

Before each frame the loop checks that it may take it: the session is set up, the server is not
throttling this connection, the connection's unsent output is below its soft limit and its queue of
unanswered requests below its count and byte limits. If not, it stops with `blocked` set and keeps
the rest of the input; the caller pauses reading until whatever stopped it has cleared.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint32_t, uint8_t
from libc.stdlib cimport malloc, free, realloc
from libc.string cimport memcpy, memmove

from zkfast._jute cimport (WriteBuffer, load_u32, OP_EXISTS, OP_GET_CHILDREN, OP_GET_CHILDREN2, OP_GET_DATA,
                           OP_PING, XID_PING)
from zkfast._datatree cimport DataTree, Watcher

from zkfast.limits import (CONNECTION_OUTPUT_HARD_LIMIT_BYTES, MAX_QUEUED_BYTES_PER_CONNECTION,
                           MAX_QUEUED_PER_CONNECTION)

cdef Py_ssize_t MAX_QUEUED = MAX_QUEUED_PER_CONNECTION
cdef Py_ssize_t MAX_QUEUED_BYTES = MAX_QUEUED_BYTES_PER_CONNECTION
cdef Py_ssize_t OUTPUT_HARD_LIMIT = CONNECTION_OUTPUT_HARD_LIMIT_BYTES
# output handed to the transport as soon as it is this big, not once per input chunk: a batch of big
# replies is then never held twice (our buffer and the bytes the transport keeps)
FLUSH_AT_BYTES = 256 * 1024
cdef Py_ssize_t FLUSH_AT = FLUSH_AT_BYTES

# connection states
STATE_HANDSHAKE = 0     # the first frame is a ConnectRequest or a four-letter word
STATE_WAIT_SESSION = 1  # the ConnectRequest is being answered: nothing more is read
STATE_OPEN = 2
STATE_CLOSED = 3

cdef enum:
    S_HANDSHAKE = 0
    S_WAIT_SESSION = 1
    S_OPEN = 2
    S_CLOSED = 3

# Apache's FourLetterCommands: the first int of a connection, when it is one of these, is a command
FOUR_LETTER_CODES = {}
for _cmd in ("conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr",
             "stat", "wchc", "wchp", "wchs", "mntr", "isro", "hash"):
    FOUR_LETTER_CODES[int.from_bytes(_cmd.encode(), "big", signed=True)] = _cmd
FOUR_LETTER_CODES[int.from_bytes(b"\xff\xf4\xff\xfd", "big", signed=True)] = "telnetclose"


cdef inline bint answered_from_tree(int32_t op) noexcept:
    # the reads DataTree.fast_read answers
    return op == OP_EXISTS or op == OP_GET_DATA or op == OP_GET_CHILDREN or op == OP_GET_CHILDREN2


cdef class ConnCore(Watcher):
    """One client connection's bytes: framing, the read hot path, and its counters."""

    def __init__(self, DataTree tree, handler, int32_t max_frame_bytes):
        Watcher.__init__(self)
        self.tree = tree
        self.handler = handler
        self.max_frame_bytes = max_frame_bytes
        self.state = S_HANDSHAKE
        self.queued = 0
        self.queued_bytes = 0
        self.queued_reply_estimate = 0
        self.out_limit = 0
        self.backlog = 0
        self.blocked = False
        self.stalled = False
        self.overflowed = False
        self.slow_only = False
        self.paused = False
        self.inbuf = NULL
        self.inlen = 0
        self.incap = 0
        self.packets_received = 0
        self.last_cxid = 0
        self.last_zxid = 0
        self.last_op = 0
        self.fast_replies = 0

    def __dealloc__(self):
        if self.inbuf is not NULL:
            free(self.inbuf)
            self.inbuf = NULL

    @property
    def buffered_bytes(self):
        return self.inlen

    cdef int keep(self, const char* p, Py_ssize_t n) except -1:
        # the unprocessed tail becomes the whole input buffer
        cdef char* nb
        if n > self.incap:
            nb = <char*>realloc(self.inbuf, n)
            if nb is NULL:
                raise MemoryError()
            self.inbuf = nb
            self.incap = n
        if n > 0 and p != self.inbuf:
            memmove(self.inbuf, p, n)
        self.inlen = n
        return 0

    def feed(self, data):
        """Take bytes from the socket and handle every whole frame in them."""
        cdef const char* p
        cdef Py_ssize_t n
        cdef char* nb
        if self.state == S_CLOSED:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        if self.inlen == 0:
            self.run(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        else:
            n = PyBytes_GET_SIZE(data)
            if self.inlen + n > self.incap:
                nb = <char*>realloc(self.inbuf, self.inlen + n)
                if nb is NULL:
                    raise MemoryError()
                self.inbuf = nb
                self.incap = self.inlen + n
            memcpy(self.inbuf + self.inlen, PyBytes_AS_STRING(data), n)
            self.inlen += n
            self.run(self.inbuf, self.inlen)

    def resume(self):
        """Handle frames left buffered while the session was being set up or throttled."""
        if self.inlen > 0 and self.state != S_CLOSED:
            self.run(self.inbuf, self.inlen)

    cdef int deliver(self, int32_t event_type, bytes path) except -1:
        # events owed to a client that does not read them stop at the output hard limit: the
        # connection is aborted at its next flush, and would drop them then anyway
        if self.overflowed:
            return 0
        if self.out.len + self.backlog >= OUTPUT_HARD_LIMIT:
            self.backlog = self.handler.output_backlog_bytes()  # the client may have read since
            if self.out.len + self.backlog >= OUTPUT_HARD_LIMIT:
                self.overflowed = True
                return 0
        return Watcher.deliver(self, event_type, path)

    cpdef bint output_full(self):
        """The unsent output (ours and the transport's) has reached the soft limit."""
        return self.out_limit > 0 and self.out.len + self.backlog >= self.out_limit

    cdef bint may_not_take(self) noexcept:
        return (self.paused or self.state == S_WAIT_SESSION or self.queued >= MAX_QUEUED
                or self.queued_bytes >= MAX_QUEUED_BYTES
                or (self.out_limit > 0 and self.out.len + self.backlog >= self.out_limit))

    cdef int run(self, const char* p, Py_ssize_t n) except -1:
        cdef int32_t length, xid, op
        cdef Py_ssize_t pos = 0
        cdef DataTree tree = self.tree
        cdef WriteBuffer out = self.out
        self.blocked = False
        while n - pos >= 4 and self.state != S_CLOSED:
            if self.may_not_take():
                self.blocked = True
                break
            if out.len >= FLUSH_AT:
                self.handler.flush()
            length = <int32_t>load_u32(<const uint8_t*>p + pos)
            if self.state == S_HANDSHAKE and length in FOUR_LETTER_CODES:
                self.state = S_CLOSED
                self.inlen = 0
                self.packets_received += 1  # Apache counts a four-letter word as a packet each way
                self.packets_sent += 1
                self.handler.on_four_letter(FOUR_LETTER_CODES[length],
                                            PyBytes_FromStringAndSize(p + pos + 4, n - pos - 4))
                return 0
            if length < 0 or length > self.max_frame_bytes:
                self.state = S_CLOSED
                self.inlen = 0
                self.handler.on_bad_frame(length)
                return 0
            if n - pos - 4 < length:
                break
            pos += 4
            self.packets_received += 1
            if self.state == S_HANDSHAKE:
                self.state = S_WAIT_SESSION
                self.handler.on_connect(PyBytes_FromStringAndSize(p + pos, length))
                pos += length
                continue
            if length < 8:
                # no RequestHeader: Apache fails to deserialise it and drops the connection
                self.state = S_CLOSED
                self.inlen = 0
                self.handler.on_bad_frame(length)
                return 0
            xid = <int32_t>load_u32(<const uint8_t*>p + pos)
            op = <int32_t>load_u32(<const uint8_t*>p + pos + 4)
            if self.queued == 0 and not self.slow_only:
                if answered_from_tree(op):
                    if tree.fast_read(op, xid, <const uint8_t*>p + pos + 8, length - 8, self, out):
                        self.note_reply(xid, op)
                        pos += length
                        continue
                elif op == OP_PING:
                    self.answer_ping(xid)
                    pos += length
                    continue
            self.handler.on_request(xid, op, PyBytes_FromStringAndSize(p + pos + 8, length - 8))
            pos += length
        if self.state == S_CLOSED:
            self.inlen = 0
        else:
            self.keep(p + pos, n - pos)
        return 0

    cdef int answer_ping(self, int32_t xid) except -1:
        cdef Py_ssize_t start = self.out.begin_frame()
        self.out.put_reply_header(XID_PING, self.tree.last_processed_zxid, 0)
        self.out.end_frame(start)
        self.note_reply(xid, OP_PING)
        return 0

    cdef void note_reply(self, int32_t xid, int op) noexcept:
        self.packets_sent += 1
        self.fast_replies += 1
        self.last_cxid = xid
        self.last_zxid = self.tree.last_processed_zxid
        self.last_op = op

    def note_slow_reply(self, int32_t xid, int64_t zxid, int op):
        self.packets_sent += 1
        self.last_cxid = xid
        self.last_zxid = zxid
        self.last_op = op

    def execute_read(self, int32_t xid, int32_t op, bytes body):
        """Run a queued read through the fast path; False if only the slow path can answer it."""
        if op == OP_PING:
            self.answer_ping(xid)
            return True
        if answered_from_tree(op):
            if self.tree.fast_read(op, xid, <const uint8_t*>PyBytes_AS_STRING(body),
                                   PyBytes_GET_SIZE(body), self, self.out):
                self.note_reply(xid, op)
                return True
        return False
