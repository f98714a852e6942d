"""Bugs planted on purpose in zkfast's Zab cores and in its quorum driver, so that the simulator's checks
are shown to catch them (tests/test_zab_sim.py, tests/test_quorum_driver.py,
`python -m tests.quorum.sim --bug NAME`). Test code only: zkfast.quorum has no switch for them.

Each core bug is a subclass of LeaderCore, LearnerCore or Election overriding one of its rules
(`_next_epoch`, `_acked_by_quorum`, `_ping`, `_truncation_point`, `_proposal`, `_may_ack_newleader_now`,
the quorum rule); `plant` puts a class combining the planted subclasses where zkfast.quorum.replica
builds its cores. Each
driver bug is a subclass of QuorumDriver overriding one of its steps; the simulator builds its
drivers from `driver_class()`, the production class or one combining the planted subclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from collections.abc import Iterator, Mapping
from typing import Any

from zkfast._jute import OP_SYNC
from zkfast._quorum import QuorumVerifier

from zkfast.quorum import replica
from zkfast.quorum.driver import Era, QuorumDriver
from zkfast.quorum.election import Election
from zkfast.quorum.wire import PacketType, QuorumPacket
from zkfast.quorum.zab import Actions, LeaderCore, LearnerCore, Proposal
from zkfast.server import roles


class ReuseEpoch(LeaderCore):
    """A new leader keeps the highest accepted epoch instead of proposing the next one."""

    def _next_epoch(self) -> int:
        return super()._next_epoch() - 1


class CommitWithoutQuorum(LeaderCore):
    """The leader commits a proposal on its own ack."""

    def _acked_by_quorum(self, p: Proposal) -> bool:
        return super()._acked_by_quorum(p) or self.my_id in p.acks


class _SeesAMajority:
    """Its `quorum`, whatever is set, is a plain majority of the same voters."""

    @property
    def quorum(self) -> QuorumVerifier:
        return self._majority

    @quorum.setter
    def quorum(self, quorum: QuorumVerifier) -> None:
        self._majority = QuorumVerifier(quorum.voters)


class MajorityRule(_SeesAMajority, LeaderCore):  # type: ignore[misc]
    """The leader counts a plain majority of the voters, whatever the groups and weights: for its
    epoch, NEWLEADER and commits."""


class MajorityVotes(_SeesAMajority, Election):  # type: ignore[misc]
    """An election ends on a plain majority of the voters' votes, whatever the groups and weights."""


class IgnorePing(LearnerCore):
    """A learner never answers the leader's PINGs."""

    def _ping(self, p: QuorumPacket) -> Actions:
        return Actions()


class SkipTrunc(LearnerCore):
    """A learner told to TRUNC keeps its log as it is."""

    def _truncation_point(self, trunc_zxid: int) -> int | None:
        return None


class ApplyOnProposal(LearnerCore):
    """A learner applies a broadcast proposal as soon as it logs it (and again at COMMIT)."""

    def _proposal(self, p: QuorumPacket) -> Actions:
        out = super()._proposal(p)
        out.apply.extend(out.persist)
        return out


class AckNewleaderBeforeDurable(LearnerCore):
    """A follower ACKs NEWLEADER before the txns of its sync are durable (ZOOKEEPER-3911/4643)."""

    def _may_ack_newleader_now(self, last: int | None) -> bool:
        return True


# ------------------------------------------------------------------------------------------------ the driver


class ReconfigOldQuorum(QuorumDriver):
    """The leader proposes a reconfig as a plain txn, so a quorum of the old voters alone commits it,
    and activates it itself once committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plain_reconfigs: set[int] = set()

    def propose(self, zxid: int, data: bytes,
                membership: tuple[QuorumVerifier, frozenset[int]] | None = None) -> None:
        if membership is not None:
            self.plain_reconfigs.add(zxid)
        super().propose(zxid, data, None)

    def _execute(self, out: Actions) -> None:
        done = sorted(z for z in self.plain_reconfigs if out.commit_upto is not None and z <= out.commit_upto)
        if done:
            self.plain_reconfigs.difference_update(done)
            out.activate = done[-1]
        super()._execute(out)


class ActivateLoggedReconfig(QuorumDriver):
    """A server loading its disk takes the membership of the newest reconfig its log holds, committed
    or not (the bug of the simulator's own executor that its seed 53 found, before the driver)."""

    def _set_config_node(self, tree: Any) -> None:
        found = self._tree_membership(tree)
        if found is not None and found.version > self.membership.version:
            self._activate(found)
        super()._set_config_node(tree)


class SyncAtOnce(QuorumDriver):
    """The leader answers a learner's SYNC at once, before the proposals in flight are committed
    (Apache's Leader.processSync waits for them)."""

    def _leader_request(self, era: Era, conn: Any, p: QuorumPacket) -> None:
        data = p.data or b""
        if len(data) >= 16 and struct.unpack_from(">i", data, 12)[0] == OP_SYNC and era.server.serving:
            self._send(era, conn.sid, QuorumPacket(PacketType.SYNC, 0))
            return
        super()._leader_request(era, conn, p)


class LearnerSkipsRevalidate(QuorumDriver):
    """A learner accepts a reconnecting client's session by itself instead of asking the leader, which
    keeps the old owner: every write of the moved session gets SESSIONMOVED (fixed in a3aa62e)."""

    def _revalidate(self, conn: Any, session_id: int, timeout_ms: int) -> None:
        assert self.era is not None
        server = self.era.server
        server.finish_session_init(conn, server.sessions.reopen(session_id, timeout_ms))
        server.flush_output()


class LeaderIgnoresRevalidate(QuorumDriver):
    """The leader never answers a learner's REVALIDATE (nor moves the session; fixed in a3aa62e)."""

    def _leader_revalidate(self, era: Era, conn: Any, p: QuorumPacket) -> None:
        pass


class OwnersUntracked(QuorumDriver):
    """The leader does not track sessions' owners: a write forwarded from a connection the client
    left lands instead of getting SESSIONMOVED."""

    def _leader_role(self, era: Era, first_zxid: int) -> roles.Role:
        return dataclasses.replace(super()._leader_role(era, first_zxid), track_owners=False)


class CxidKeys(dict):  # type: ignore[type-arg]
    """A learner's forwarded requests, keyed by cxid alone."""

    def __setitem__(self, key: tuple[int, int], value: Any) -> None:
        super().__setitem__(key[1], value)

    def pop(self, key: tuple[int, int], *default: Any) -> Any:
        return super().pop(key[1], *default)


class ForwardedByCxid(QuorumDriver):
    """A learner matches a committed txn to the request it forwarded by cxid alone, not by session
    and cxid: two clients whose xids meet get each other's answers."""

    def _forward(self, req: Any) -> None:
        era = self.era
        if era is not None and not isinstance(era.forwarded, CxidKeys):
            era.forwarded = CxidKeys()
        super()._forward(req)


class PingWithoutTouches(QuorumDriver):
    """A learner's PING tells the leader of no session its clients kept alive."""

    def _touches(self, era: Era) -> bytes:
        era.server.sessions.take_touched()
        return b""


class SessionsLeftOut:
    """A learner's link that streams a SNAP's tree without the sessions it is given."""

    def __init__(self, link: Any) -> None:
        self.link = link

    def send(self, p: QuorumPacket) -> None:
        self.link.send(p)

    def send_snapshot(self, tree: Any, sessions: dict[int, int]) -> None:
        self.link.send_snapshot(tree, {})


class SnapWithoutSessions(QuorumDriver):
    """The leader's SNAP streams its tree without its sessions."""

    def _send(self, era: Era, sid: int, p: QuorumPacket) -> None:
        link = era.learner_conns.get(sid)
        if p.type != PacketType.SNAP or link is None:
            super()._send(era, sid, p)
            return
        era.learner_conns[sid] = SessionsLeftOut(link)  # type: ignore[assignment]
        try:
            super()._send(era, sid, p)
        finally:
            era.learner_conns[sid] = link


class ReadOnlySessionsKept(QuorumDriver):
    """A server leaving read-only mode keeps the sessions it made alone, which the ensemble never
    heard of."""

    def _leave_read_only(self, era: Era) -> None:
        era.global_sessions = set(era.server.sessions.sessions)
        super()._leave_read_only(era)


# ------------------------------------------------------------------------------------------------ registry


LEADER_BUGS: dict[str, type[LeaderCore]] = {
    "reuse-epoch": ReuseEpoch,
    "commit-without-quorum": CommitWithoutQuorum,
    "majority-rule": MajorityRule,
}
ELECTION_BUGS: dict[str, type[Election]] = {
    "majority-rule": MajorityVotes,  # the rule, planted in the election and the leader alike
}
LEARNER_BUGS: dict[str, type[LearnerCore]] = {
    "ignore-ping": IgnorePing,
    "skip-trunc": SkipTrunc,
    "apply-on-proposal": ApplyOnProposal,
    "ack-newleader-before-durable": AckNewleaderBeforeDurable,
}
DRIVER_BUGS: dict[str, type[QuorumDriver]] = {
    "reconfig-old-quorum": ReconfigOldQuorum,
    "activate-logged-reconfig": ActivateLoggedReconfig,
    "sync-at-once": SyncAtOnce,
    "learner-skips-revalidate": LearnerSkipsRevalidate,
    "leader-ignores-revalidate": LeaderIgnoresRevalidate,
    "owners-untracked": OwnersUntracked,
    "forwarded-by-cxid": ForwardedByCxid,
    "ping-without-touches": PingWithoutTouches,
    "snap-without-sessions": SnapWithoutSessions,
    "read-only-sessions-kept": ReadOnlySessionsKept,
}
BUGS = frozenset(LEADER_BUGS) | frozenset(LEARNER_BUGS) | frozenset(ELECTION_BUGS) | frozenset(DRIVER_BUGS)

_active: frozenset[str] = frozenset()


def active() -> frozenset[str]:
    """The bugs planted now."""
    return _active


def driver_class() -> type[QuorumDriver]:
    """The driver the simulator runs: zkfast's, with the planted driver bugs."""
    return _combined(QuorumDriver, DRIVER_BUGS, _active)


def _combined(base: type, bugs: Mapping[str, type], chosen: frozenset[str]) -> type:
    """`base` itself, or one class with every chosen bug's overrides (they touch different rules)."""
    parts = tuple(cls for name, cls in bugs.items() if name in chosen)
    if not parts:
        return base
    return type(f"Planted{base.__name__}", parts, {})


@contextlib.contextmanager
def plant(*bugs: str) -> Iterator[None]:
    """Plant `bugs`, with those already planted, until the block ends."""
    global _active
    unknown = set(bugs) - BUGS
    if unknown:
        raise ValueError(f"unknown planted bug(s) {sorted(unknown)}; known: {sorted(BUGS)}")
    saved = (_active, replica.LeaderCore, replica.LearnerCore, replica.Election)
    _active = _active | frozenset(bugs)
    replica.LeaderCore = _combined(LeaderCore, LEADER_BUGS, _active)  # type: ignore[misc]
    replica.LearnerCore = _combined(LearnerCore, LEARNER_BUGS, _active)  # type: ignore[misc]
    replica.Election = _combined(Election, ELECTION_BUGS, _active)  # type: ignore[misc]
    try:
        yield
    finally:
        _active, replica.LeaderCore, replica.LearnerCore, replica.Election = saved  # type: ignore[misc]
