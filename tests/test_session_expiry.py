"""Sessions that time out together are expired a slice per loop turn (EXPIRED_SESSIONS_PER_TURN), so
the requests of live sessions are served between the slices; every one of them still expires, each
once, and a session its client closed meanwhile gets no second closeSession."""

from __future__ import annotations

from zkfast.limits import EXPIRED_SESSIONS_PER_TURN
from zkfast.server.zkserver import ZooKeeperServer

TICK_MS = 2000
TIMEOUT_MS = 4000


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


def test_sessions_expire_a_slice_per_turn() -> None:
    clock = Clock()
    server = ZooKeeperServer(tick_time_ms=TICK_MS, min_session_timeout_ms=TIMEOUT_MS,
                             max_session_timeout_ms=10 * TIMEOUT_MS, clock_ms=clock, wall_ms=clock)
    count = 2 * EXPIRED_SESSIONS_PER_TURN + 17
    ids = []
    for _ in range(count):
        sid = server.sessions.new_session_id()
        server.sessions.track(sid, TIMEOUT_MS)
        ids.append(sid)
    # the last one is closed by its client before its turn comes
    closed = ids[-1]
    clock.now_ms += TIMEOUT_MS + 2 * TICK_MS
    turns = []
    more = True
    while more:
        more = server.expire_sessions()
        turns.append(len(server.sessions.sessions))
        if len(turns) == 1:
            server.sessions.remove(closed)  # as the commit of its client's closeSession does
    assert turns == [count - EXPIRED_SESSIONS_PER_TURN, count - 2 * EXPIRED_SESSIONS_PER_TURN - 1, 0]
    assert server.tree.last_processed_zxid == count - 1  # one closeSession txn per session, none twice
    assert not server.expire_sessions()
