"""Every queue and buffer in zkfast has a named upper bound; past it: back-pressure or an error."""

from __future__ import annotations

# Apache's jute.maxbuffer default: the largest frame a client may send (protocol.md §1.1)
DEFAULT_JUTE_MAXBUFFER_BYTES = 0xFFFFF

# requests one connection may have queued behind its pending writes before reading pauses
MAX_QUEUED_PER_CONNECTION = 10_000

# output bytes a connection may have waiting in its transport before we stop reading from it
# (a client that does not read its replies must not make the server buffer without bound)
MAX_CONNECTION_OUTPUT_BYTES = 64 * 1024 * 1024

# writes in flight between prep and commit across the server (globalOutstandingLimit default)
DEFAULT_GLOBAL_OUTSTANDING_LIMIT = 1000

# a four-letter word answer never needs more than this (dump of many sessions included)
MAX_FOUR_LETTER_ANSWER_BYTES = 64 * 1024 * 1024

# setWatches may list many paths; Apache splits them in ~128 KB batches, jute.maxbuffer bounds them
MAX_SESSIONS = 1_000_000
