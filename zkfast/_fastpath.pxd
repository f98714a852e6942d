# cython: language_level=3
from libc.stdint cimport int32_t, int64_t

from zkfast._datatree cimport DataTree, Watcher


cdef class ConnCore(Watcher):
    cdef DataTree tree
    cdef char* inbuf
    cdef Py_ssize_t inlen
    cdef Py_ssize_t incap
    cdef public int state
    cdef public int queued          # requests read and not yet answered (the connection's queue)
    cdef public Py_ssize_t queued_bytes  # their bodies, plus QUEUED_REQUEST_OVERHEAD_BYTES each
    cdef public Py_ssize_t queued_reply_estimate  # what the replies of the queued reads may take
    cdef public Py_ssize_t out_limit     # the output soft limit; 0: none
    cdef public Py_ssize_t backlog       # bytes the transport held at the last flush
    cdef public bint blocked        # the frame loop stopped on a frame it may not take yet
    cdef public bint stalled        # the queue's reads wait for the output to drain
    cdef public bint overflowed     # events were dropped past the output hard limit: abort it
    cdef public bint slow_only  # every frame to handler.on_request (auth enforcement)
    cdef public bint paused
    cdef public int32_t max_frame_bytes
    cdef public object handler
    cdef public object server_counters
    cdef public int64_t packets_received
    cdef public int32_t last_cxid
    cdef public int64_t last_zxid
    cdef public int last_op
    cdef public int64_t fast_replies

    cdef int keep(self, const char* p, Py_ssize_t n) except -1
    cdef int run(self, const char* p, Py_ssize_t n) except -1
    cpdef bint output_full(self)
    cdef int deliver(self, int32_t event_type, bytes path) except -1
    cdef bint may_not_take(self) noexcept
    cdef int answer_ping(self, int32_t xid) except -1
    cdef void note_reply(self, int32_t xid, int op) noexcept
