"""Sessions: ids, passwords, and expiry in tickTime buckets (Apache's SessionTrackerImpl, ExpiryQueue)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from zkfast._jute import Code, ZkError

_MASK48 = (1 << 48) - 1
_MASK64 = (1 << 64) - 1
_SUPER_SECRET = 0xB3415C00
CONTAINER_MARKER = 0x8000000000000000
PASSWORD_BYTES = 16


def to_int64(v: int) -> int:
    v &= _MASK64
    return v - (1 << 64) if v >= (1 << 63) else v


def session_password(session_id: int) -> bytes:
    """`new java.util.Random(sessionId ^ 0xB3415C00).nextBytes(16)`: every server derives the same."""
    seed = ((session_id ^ _SUPER_SECRET) ^ 0x5DEECE66D) & _MASK48
    out = bytearray()
    while len(out) < PASSWORD_BYTES:
        seed = (seed * 0x5DEECE66D + 0xB) & _MASK48
        rnd = seed >> 16
        for _ in range(min(4, PASSWORD_BYTES - len(out))):
            out.append(rnd & 0xFF)
            rnd >>= 8
    return bytes(out)


def initial_session_id(server_id: int, now_ms: int) -> int:
    """((now << 24) >>> 8) | (serverId << 56), skipping the container marker."""
    sid = (((now_ms << 24) & _MASK64) >> 8) | ((server_id & 0xFF) << 56)
    if sid == CONTAINER_MARKER:
        sid += 1
    return to_int64(sid)


@dataclass
class Session:
    session_id: int
    timeout_ms: int
    expires_at_ms: int = 0
    closing: bool = False
    # an ensemble leader's: where its client is connected (zkfast._pipeline.THIS_SERVER, or a
    # learner's connection); None: not known yet (sessions a new leader found on disk)
    owner: object | None = None


class SessionTracker:
    """Live sessions and their expiry buckets; time in milliseconds of a monotonic clock."""

    def __init__(self, tick_time_ms: int, server_id: int = 0,
                 clock_ms: Callable[[], int] | None = None, wall_ms: Callable[[], int] | None = None) -> None:
        assert tick_time_ms > 0
        self.tick_time_ms = tick_time_ms
        self.clock_ms = clock_ms or (lambda: time.monotonic_ns() // 1_000_000)
        wall = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self.sessions: dict[int, Session] = {}
        self.buckets: dict[int, set[int]] = {}
        self.next_id = initial_session_id(server_id, wall())
        self.next_expiration_ms = self._round_up(self.clock_ms())
        self.touched: set[int] | None = None  # a learner's: sessions to report to the leader

    def track_touches(self) -> None:
        """A learner reports the sessions its clients kept alive with each PING to the leader."""
        self.touched = set()

    def take_touched(self) -> set[int]:
        touched = self.touched or set()
        if self.touched is not None:
            self.touched = set()
        return touched

    def _round_up(self, t_ms: int) -> int:
        return (t_ms // self.tick_time_ms + 1) * self.tick_time_ms

    def new_session_id(self) -> int:
        sid = self.next_id
        self.next_id = to_int64(self.next_id + 1)
        if self.next_id == to_int64(CONTAINER_MARKER):
            self.next_id = to_int64(self.next_id + 1)
        return sid

    def track(self, session_id: int, timeout_ms: int) -> Session:
        """Start tracking a session (new, or restored from disk); refresh its expiry."""
        s = self.sessions.get(session_id)
        if s is None:
            s = Session(session_id, timeout_ms)
            self.sessions[session_id] = s
        self._update_expiry(s, timeout_ms)
        return s

    def _update_expiry(self, s: Session, timeout_ms: int) -> None:
        new = self._round_up(self.clock_ms() + timeout_ms)
        if new == s.expires_at_ms:
            return
        if s.expires_at_ms:
            bucket = self.buckets.get(s.expires_at_ms)
            if bucket is not None:
                bucket.discard(s.session_id)
                if not bucket:
                    del self.buckets[s.expires_at_ms]
        self.buckets.setdefault(new, set()).add(s.session_id)
        s.expires_at_ms = new

    def touch(self, session_id: int, timeout_ms: int | None = None) -> bool:
        """A packet from the client: push its expiry out. False if unknown or closing."""
        s = self.sessions.get(session_id)
        if s is None or s.closing:
            return False
        self._update_expiry(s, s.timeout_ms if timeout_ms is None else timeout_ms)
        if self.touched is not None:
            self.touched.add(session_id)
        return True

    def reopen(self, session_id: int, timeout_ms: int, owner: object | None = None) -> bool:
        """A client back with its session (Apache's touchSession; on a leader also setOwner, with the
        server it is on now). False if the session is unknown or closing."""
        if not self.touch(session_id, timeout_ms):
            return False
        if owner is not None:
            self.sessions[session_id].owner = owner
        return True

    def check(self, session_id: int) -> None:
        s = self.sessions.get(session_id)
        if s is None:
            raise ZkError(Code.UNKNOWNSESSION)
        if s.closing:
            raise ZkError(Code.SESSIONEXPIRED)

    def set_closing(self, session_id: int) -> None:
        s = self.sessions.get(session_id)
        if s is not None:
            s.closing = True

    def remove(self, session_id: int) -> None:
        s = self.sessions.pop(session_id, None)
        if s is None:
            return
        bucket = self.buckets.get(s.expires_at_ms)
        if bucket is not None:
            bucket.discard(session_id)
            if not bucket:
                del self.buckets[s.expires_at_ms]

    def wait_ms(self) -> int:
        return max(0, self.next_expiration_ms - self.clock_ms())

    def poll_expired(self) -> list[int]:
        """Sessions whose bucket has passed; each is marked closing (Apache's run loop)."""
        now = self.clock_ms()
        expired: list[int] = []
        while self.next_expiration_ms <= now:
            bucket = self.buckets.pop(self.next_expiration_ms, None)
            self.next_expiration_ms += self.tick_time_ms
            if bucket:
                for sid in sorted(bucket):
                    s = self.sessions.get(sid)
                    if s is not None:
                        s.closing = True
                        expired.append(sid)
        return expired

    def timeout_of(self, session_id: int) -> int | None:
        s = self.sessions.get(session_id)
        return None if s is None else s.timeout_ms

    def __len__(self) -> int:
        return len(self.sessions)
