"""Every resource a client can fill has a named upper bound here, enforced before the work is done.

README's "Limits" section lists each with its default and its Apache ZooKeeper equivalent;
tests/test_abuse.py tries to exceed each one beside Apache ZooKeeper.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB

# Apache's jute.maxbuffer default: the largest frame a client may send (ClientCnxn/BinaryInputArchive)
DEFAULT_JUTE_MAXBUFFER_BYTES = 0xFFFFF

# -- output per connection
# Answering stops, and the connection's input is paused, once its unsent output (the reply buffer
# plus the transport's) reaches this; it resumes when the client has read half of it. Never below
# one maximum-size reply (see connection_output_soft_limit_bytes).
CONNECTION_OUTPUT_SOFT_LIMIT_BYTES = 4 * MIB
# Output can pass the soft limit only through what a client cannot be refused once it is owed:
# watch events, the reads that must precede a write already prepared, one large reply. A connection
# whose unsent output passes this is aborted at once and its buffers dropped, so it is also the
# largest reply a client can get (a multiRead that would pass it closes its connection unbuilt).
CONNECTION_OUTPUT_HARD_LIMIT_BYTES = 32 * MIB
# A connection closed after its last reply (closeSession, a four-letter word) is aborted if the
# client has not read that reply within this long.
CLOSING_CONNECTION_LINGER_MS = 10_000

# -- requests read from a connection and not yet answered (reads behind its writes, writes in flight)
# Bytes count what the server holds: a read's body, a write's WRITE_HELD_COPIES times (the request,
# the decoded txn, its change record, the txn log's batch and its writer's copy: about 5x for a write
# whose body is mostly its path, 2.5-3.4x for 1 MB setData frames and 5,000-op multis, measured by
# tests/test_abuse.py), plus QUEUED_REQUEST_OVERHEAD_BYTES each.
MAX_QUEUED_PER_CONNECTION = 10_000
MAX_QUEUED_BYTES_PER_CONNECTION = 16 * MIB
QUEUED_REQUEST_OVERHEAD_BYTES = 256  # a Request, its bytes header and its queue slot: 180-250 (tracemalloc)
WRITE_HELD_COPIES = 6

# -- writes in flight between prep and commit, across the server (on a learner: forwarded)
DEFAULT_GLOBAL_OUTSTANDING_LIMIT = 1000  # Apache's globalOutstandingLimit default (requests)
GLOBAL_OUTSTANDING_BYTES_LIMIT = 64 * MIB  # what they hold, counted as above; no Apache equivalent

# -- connections that never become sessions (Apache's nio.sessionlessCnxnTimeout default)
DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS = 10_000
# TLS handshakes in progress at once on secureClientPort, unless netty.server.outstandingHandshake.limit
# says otherwise (Apache: no limit by default). Each also counts against maxClientCnxns and maxCnxns and
# must finish within the sessionless timeout.
MAX_PENDING_TLS_HANDSHAKES = 1000
# Sockets on one quorum or election port that are not yet admitted (waiting for their first bytes, in
# their TLS handshake, or having their host checked), with sslQuorum or portUnification; more are closed
# at once. Apache accepts them one at a time (UnifiedServerSocket.accept); an ensemble has few members.
MAX_PENDING_QUORUM_HANDSHAKES = 64

# -- authentication: distinct ids (addauth, SASL, x509) one connection may hold; each ACL check of
# its requests walks them. Past it, the addauth fails as a bad one does (AUTHFAILED, connection
# closed). Apache has no such limit.
MAX_AUTH_IDS_PER_CONNECTION = 64

# -- sessions that time out together (thousands in one tickTime bucket): closeSessions submitted per
# loop turn, so requests of live sessions are served between the slices
EXPIRED_SESSIONS_PER_TURN = 64

# -- watches of closed connections forgotten per loop turn (about 2.5 ms of work): a thousand
# connections holding 10,000 watches each close at once without stalling the others
WATCHES_DROPPED_PER_TURN = 10_000

# -- four-letter words and admin commands: their answers are produced in slices between request
# batches and written through a buffer of at most this many bytes
ANSWER_SLICE_BYTES = 64 * KIB

# -- snapshots, written by a child process beside the server (zkfast/storage/snapshot.py)
# The child's dirty pages are written back and waited for every this many bytes (no cache flush):
# the txn log's fdatasync on the same disk queues behind at most this much of the snapshot.
SNAPSHOT_WRITEBACK_BYTES = 256 * KIB
# Added to the child's nice value: on a busy machine the server's own threads come first, and the
# snapshot takes longer (the next one waits: "too busy to snap").
SNAPSHOT_NICE_INCREMENT = 10
# A stop lets a snapshot in progress finish for at most this long, then kills it: a finished one
# spares the next start-up the replay of the log after the last snapshot (a start-up's own snapshot
# is often still running when a quick restart comes); a bound, because a child on a busy disk
# would hold the stop as long.
SNAPSHOT_STOP_WAIT_MS = 5_000


def connection_output_soft_limit_bytes(max_frame_bytes: int) -> int:
    """The soft limit for a server whose jute.maxbuffer is max_frame_bytes: room for one reply of
    that size (data, a Stat and the reply header) however the operator raised it."""
    return max(CONNECTION_OUTPUT_SOFT_LIMIT_BYTES, max_frame_bytes + 4 * KIB)
