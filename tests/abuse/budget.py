"""How much memory an attack may cost zkfast: the sum of the named limits (zkfast.limits) the attack
can fill, plus a fixed allowance for the interpreter's own noise.

The limits are read from zkfast.limits when a bound is computed, never copied: a limit renamed or
removed there fails the suite here instead of leaving a stale figure behind.

How each limit is filled, as zkfast.limits describes them:
  unread output  a client that never reads: answering stops once the connection's unsent output
                 reaches the soft limit, so it holds at most the soft limit plus the one reply that
                 crossed it (the check comes before answering);
  unrefusable    output owed whatever the client does (watch events): up to the hard limit, plus the
                 one event that crossed it (past it the connection is aborted at once);
  queued         requests read and not yet answered: at most MAX_QUEUED_PER_CONNECTION of them and
                 MAX_QUEUED_BYTES_PER_CONNECTION (their bodies, a write's WRITE_HELD_COPIES times,
                 plus QUEUED_REQUEST_OVERHEAD_BYTES each), plus the request that crossed it and the
                 next one still arriving (a partial frame, at most jute.maxbuffer); never more than
                 the attacker sent;
  partial frame  a frame still arriving: at most jute.maxbuffer per connection;
  answer stream  a four-letter answer is produced in ANSWER_SLICE_BYTES slices and stops at the soft
                 limit like any output.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

MIB = 1024 * 1024

# The allowance for the interpreter's own wobble and what the probe adds (its two sessions, the
# ~100 znodes its writer creates during a case). Measured on the development machine: VmRSS of
# zkfast under the probe alone did not move in 60 s (32.53 MiB throughout, 2971 writer creates);
# the cases whose attack fills no byte limit (slowloris, floods, deep-tree) grew by at most 0.6 MiB
# beyond their connections' objects. 4 MiB is several times that.
NOISE_ALLOWANCE_BYTES = 4 * MIB

# The fixed objects of one connection an attack holds, which no byte limit covers (transport,
# protocol object, session; TLS state during a handshake): maxCnxns and maxClientCnxns bound how
# many there are. Measured: 5-8 KiB with a session (the flood cases, 58 and 238 connections),
# 63-77 KiB during a TLS handshake (tls-half-open, 60 and 233 connections). About twice the largest.
CONNECTION_OBJECT_BYTES = 160 * 1024

# issue 11's figure for the never-reading case (one 1 MB znode, 5 attackers): the server's RSS
# stays under this much over its baseline
NEVER_READING_1MB_CAP_BYTES = 64 * MIB
NEVER_READING_1MB_ATTACKERS = 5


def limits() -> ModuleType:
    return importlib.import_module("zkfast.limits")


@dataclass
class Bound:
    """The named limits one attack can fill: (what, how many, bytes each)."""

    terms: list[tuple[str, int, int]] = field(default_factory=list)
    cap: int | None = None  # a figure from the issue, when it is below the sum

    def add(self, what: str, count: int, each: int) -> Bound:
        if count > 0 and each > 0:
            self.terms.append((what, count, each))
        return self

    def connections(self, count: int) -> Bound:
        """The fixed objects of `count` connections held by the attack."""
        return self.add("connection objects", count, CONNECTION_OBJECT_BYTES)

    @property
    def total(self) -> int:
        total = sum(count * each for _, count, each in self.terms) + NOISE_ALLOWANCE_BYTES
        return total if self.cap is None else min(total, self.cap)

    def describe(self) -> str:
        parts = [f"{count}x {what} {each / MIB:.2f}" for what, count, each in self.terms]
        parts.append(f"noise {NOISE_ALLOWANCE_BYTES / MIB:.2f}")
        text = " + ".join(parts) + " MiB"
        return text if self.cap is None else f"min({text}, {self.cap / MIB:.0f} MiB)"


class Budget:
    """The per-connection figures of zkfast.limits for a server whose jute.maxbuffer is max_frame."""

    def __init__(self, max_frame: int | None = None) -> None:
        lim = limits()
        self.max_frame = max_frame if max_frame is not None else lim.DEFAULT_JUTE_MAXBUFFER_BYTES
        self.soft = lim.connection_output_soft_limit_bytes(self.max_frame)
        self.hard = lim.CONNECTION_OUTPUT_HARD_LIMIT_BYTES
        self.slice = lim.ANSWER_SLICE_BYTES
        self.sessionless_default_ms = lim.DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS
        self.max_pending_tls = lim.MAX_PENDING_TLS_HANDSHAKES
        self._lim = lim

    def unread_output(self, largest_reply: int) -> int:
        return self.soft + largest_reply

    def unrefusable_output(self, largest_event: int) -> int:
        return self.hard + largest_event

    def queued(self, n_requests: int, request_bytes: int, writes: bool = False) -> int:
        copies = self._lim.WRITE_HELD_COPIES if writes else 1
        each = request_bytes * copies + self._lim.QUEUED_REQUEST_OVERHEAD_BYTES
        by_count = min(n_requests, self._lim.MAX_QUEUED_PER_CONNECTION) * each
        arriving = min(request_bytes, self.max_frame) if n_requests > 1 else 0
        return min(by_count, self._lim.MAX_QUEUED_BYTES_PER_CONNECTION + each + arriving)

    def answer_stream(self) -> int:
        return self.soft + self.slice

    def reading_client(self, n_requests: int, request_bytes: int, reply_bytes: int, writes: bool = False) -> int:
        """A client that reads its replies but pipelines: its queue, and output up to the soft
        limit when it reads slower than the server answers."""
        return self.queued(n_requests, request_bytes, writes) + self.unread_output(reply_bytes)
