"""A session that moves between the servers of an ensemble, byte for byte as Apache ZooKeeper 3.8 does it.

A client that reconnects to another server with its session id makes that server the session's owner:
a learner asks the leader (REVALIDATE), the leader answers and remembers where the client now is. A write
that still arrives through the connection the client left (forwarded by the old server) is refused with
SESSIONMOVED, which a server answers by closing that connection (ZOOKEEPER-710): the client never acts on
two connections at once, and the write is not applied.

The same script runs on an all-Apache ensemble (the reference), an all-zkfast one, and the two mixed ones
(a leader of one kind, followers of the other), so every role of zkfast meets the other kind's half of
the exchange.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from testbase.ensemble import Ensemble
from testbase.process import apache_available
from testbase.rawclient import OPEN, RawSession, connect_request, u_acl, u_str

from zkfast.server.session import session_password

pytestmark = pytest.mark.timeout(240)

OP_CREATE = 1
OP_EXISTS = 3
SESSION_TIMEOUT_MS = 30000  # negotiated down to maxSessionTimeout (20 ticks)

# (kind of the leader, kind of the followers)
SETUPS = [("apache", "apache"), ("zkfast", "zkfast"), ("apache", "zkfast"), ("zkfast", "apache")]


def _needs_apache(setup: tuple[str, str]) -> list[pytest.MarkDecorator]:
    if "apache" in setup:
        return [pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")]
    return []


@pytest.fixture(params=[pytest.param(s, id=f"{s[0]}-leads-{s[1]}", marks=_needs_apache(s)) for s in SETUPS])
def ensemble(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    leader_kind, follower_kind = request.param
    with Ensemble(leader_kind, 3, kinds={1: follower_kind, 2: follower_kind}) as e:
        # 2 and 3 elect 3 (the larger id); 1 joins it
        e.start([2, 3])
        assert e.wait_leader() == 3
        e.start([1])
        assert e.mode(1) == "follower" and e.mode(2) == "follower"
        yield e


def create(raw: RawSession, xid: int, path: str) -> list[bytes]:
    return raw.call(xid, OP_CREATE, u_str(path) + u_str(b"x") + u_acl(OPEN) + struct.pack(">i", 0))


def err_of(reply: list[bytes]) -> int | str:
    last = reply[-1]
    return "closed" if last == b"<closed>" else struct.unpack(">i", last[12:16])[0]


def exists(raw: RawSession, xid: int, path: str) -> bool:
    reply = raw.call(xid, OP_EXISTS, u_str(path) + b"\0")
    err = err_of(reply)
    assert err in (0, -101), reply
    return err == 0


def reopen(e: Ensemble, i: int, old: RawSession, opened: list[RawSession]) -> RawSession:
    raw = RawSession(e.members[i].host, e.members[i].port)
    opened.append(raw)
    resp = raw.open(connect_request(timeout_ms=SESSION_TIMEOUT_MS, session_id=old.session_id, passwd=old.passwd))
    assert raw.session_id == old.session_id and raw.timeout_ms == old.timeout_ms > 0, \
        f"server {i} refused the session that moved to it: {resp.hex()}"
    return raw


def test_a_moved_session_writes_where_it_is_and_its_old_connection_is_cut(ensemble: Ensemble) -> None:
    e = ensemble
    first = RawSession(e.members[1].host, e.members[1].port)
    opened = [first]
    try:
        first.open(connect_request(timeout_ms=SESSION_TIMEOUT_MS))
        assert first.session_id >> 56 == 1
        assert err_of(create(first, 1, "/on-1")) == 0
        # follower 1 → follower 2: a learner revalidates the session with the leader
        second = reopen(e, 2, first, opened)
        assert err_of(create(second, 1, "/on-2")) == 0
        assert err_of(create(first, 2, "/left-1")) == "closed"
        # follower 2 → the leader
        third = reopen(e, 3, second, opened)
        assert err_of(create(third, 1, "/on-3")) == 0
        assert err_of(create(second, 2, "/left-2")) == "closed"
        # and back to a follower: the leader gives the session up again
        fourth = reopen(e, 1, third, opened)
        assert err_of(create(fourth, 1, "/on-1-again")) == 0
        assert err_of(create(third, 2, "/left-3")) == "closed"
        seen = {p: exists(fourth, 2 + n, p)
                for n, p in enumerate(["/on-1", "/on-2", "/on-3", "/on-1-again", "/left-1", "/left-2", "/left-3"])}
        assert seen == {"/on-1": True, "/on-2": True, "/on-3": True, "/on-1-again": True,
                        "/left-1": False, "/left-2": False, "/left-3": False}, seen
    finally:
        for raw in opened:
            raw.close()


def test_a_session_unknown_to_the_leader_is_refused_by_every_server(ensemble: Ensemble) -> None:
    """A learner cannot vouch for a session: the leader's answer (invalid) reaches the client as Apache's
    expired-session ConnectResponse (timeout 0, session id 0)."""
    e = ensemble
    for i in e.ids:
        raw = RawSession(e.members[i].host, e.members[i].port)
        try:
            # a well-formed id of server 1 and its right password, but no such session was ever made
            ghost = (1 << 56) | 0x1234
            raw.open(connect_request(timeout_ms=SESSION_TIMEOUT_MS, session_id=ghost, passwd=session_password(ghost)))
            assert (raw.timeout_ms, raw.session_id) == (0, 0), (i, raw.timeout_ms, hex(raw.session_id))
        finally:
            raw.close()
