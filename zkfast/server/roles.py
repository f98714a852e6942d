"""The role a server plays: what it does differently as standalone, leader, learner or read-only.

Apache ZooKeeper builds one request-processor chain per role; zkfast gives its one server a `Role`
(`ZooKeeperServer.take_role`), chosen at start-up and at every role change, and the pipeline
consults it: whether writes go to a leader, who decides a reconnecting session, whether a write's
session must be owned by the server it came through, how a reconfig is checked, which commit stage
makes txns final. Nothing else about a server changes with its role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from zkfast._pipeline import Request
    from zkfast.server.commit import CommitStage


class QuorumFigures(Protocol):
    """A leader's figures for srvr/mntr (Apache's LeaderZooKeeperServer)."""

    def quorum_metrics(self) -> list[tuple[str, object]]: ...
    def proposal_sizes(self) -> tuple[int, int, int]: ...


# (client connection, session id, timeout ms): the leader's answer comes back later
Revalidate = Callable[[Any, int, int], None]
# (reconfig request fields, zxid) → the new config's text; ZkError when refused
PrepReconfig = Callable[[tuple[Any, ...], int], bytes]


@dataclass(frozen=True)
class Role:
    mode: str                                      # what srvr's Mode line says
    serving: bool = True                           # clients get sessions and answers
    read_only: bool = False                        # writes get NOTREADONLY
    forward: Callable[[Request], None] | None = None  # a learner's: writes and syncs go to the leader
    revalidate: Revalidate | None = None           # a learner's: the leader decides a reconnecting session
    track_owners: bool = False                     # a leader's: SESSIONMOVED for a write from where
    # the session is not (Apache's SessionTrackerImpl.checkSession)
    prep_reconfig: PrepReconfig | None = None      # a leader's with reconfigEnabled
    commit: CommitStage | None = None              # a leader's quorum commit stage (else the server's own)
    first_zxid: int | None = None                  # a leader's: zxid 0 of its epoch, where prep starts
    figures: QuorumFigures | None = None           # a leader's


STANDALONE = Role("standalone")
LOOKING = Role("looking", serving=False)  # an ensemble member between roles
READ_ONLY = Role("read-only", read_only=True)  # readonlymode.enabled, no quorum


def leader(first_zxid: int, commit: CommitStage, figures: QuorumFigures,
           prep_reconfig: PrepReconfig | None) -> Role:
    return Role("leader", track_owners=True, prep_reconfig=prep_reconfig, commit=commit, first_zxid=first_zxid,
                figures=figures)


def learner(mode: str, forward: Callable[[Request], None], revalidate: Revalidate) -> Role:
    """A follower's or an observer's."""
    return Role(mode, forward=forward, revalidate=revalidate)


def stopped(role: Role) -> Role:
    """The same role no longer serving: a leader stepping down, a server shutting down."""
    return Role(role.mode, serving=False, read_only=role.read_only)
