"""Bugs planted on purpose in zkfast's Zab cores, so that the simulator's checks are shown to catch them
(tests/test_zab_sim.py, `python -m tests.quorum.sim --bug NAME`). Test code only: zkfast.quorum.zab has
no switch for them.

Each bug is a subclass of LeaderCore or LearnerCore overriding one of its rules (`_next_epoch`,
`_acked_by_quorum`, `_ping`, `_truncation_point`, `_proposal`, `_may_ack_newleader_now`). `plant`
puts a class combining the planted subclasses where zkfast.quorum.replica builds its cores. The
simulator's own driver has one more (DRIVER_BUGS), which it asks about with `is_planted`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from zkfast.quorum import replica
from zkfast.quorum.wire import QuorumPacket
from zkfast.quorum.zab import Actions, LeaderCore, LearnerCore, Proposal


class ReuseEpoch(LeaderCore):
    """A new leader keeps the highest accepted epoch instead of proposing the next one."""

    def _next_epoch(self) -> int:
        return super()._next_epoch() - 1


class CommitWithoutQuorum(LeaderCore):
    """The leader commits a proposal on its own ack."""

    def _acked_by_quorum(self, p: Proposal) -> bool:
        return super()._acked_by_quorum(p) or self.my_id in p.acks


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


LEADER_BUGS: dict[str, type[LeaderCore]] = {
    "reuse-epoch": ReuseEpoch,
    "commit-without-quorum": CommitWithoutQuorum,
}
LEARNER_BUGS: dict[str, type[LearnerCore]] = {
    "ignore-ping": IgnorePing,
    "skip-trunc": SkipTrunc,
    "apply-on-proposal": ApplyOnProposal,
    "ack-newleader-before-durable": AckNewleaderBeforeDurable,
}
# planted in the simulator's driver, not in a core: the leader's driver proposes a reconfig as a plain
# txn (so it commits with a quorum of the old voters only) and activates it itself once committed
DRIVER_BUGS = frozenset({"reconfig-old-quorum"})
BUGS = frozenset(LEADER_BUGS) | frozenset(LEARNER_BUGS) | DRIVER_BUGS

_active: frozenset[str] = frozenset()


def active() -> frozenset[str]:
    """The bugs planted now."""
    return _active


def is_planted(bug: str) -> bool:
    assert bug in BUGS, f"unknown planted bug {bug!r}"
    return bug in _active


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
    saved = (_active, replica.LeaderCore, replica.LearnerCore)
    _active = _active | frozenset(bugs)
    replica.LeaderCore = _combined(LeaderCore, LEADER_BUGS, _active)  # type: ignore[misc]
    replica.LearnerCore = _combined(LearnerCore, LEARNER_BUGS, _active)  # type: ignore[misc]
    try:
        yield
    finally:
        _active, replica.LeaderCore, replica.LearnerCore = saved  # type: ignore[misc]
