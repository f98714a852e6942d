"""FastLeaderElection as a pure state machine
(Apache's zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/FastLeaderElection.java).

No sockets, no clock: `start(now_ms)`, `receive(sid, notification, now_ms)` and `tick(now_ms)` return
the notifications to send; `decided` holds the outcome once the election ends. The transport (the
election port's connections) and the peer (what to do after deciding) live elsewhere, so elections
can be run deterministically under a simulated network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from zkfast._quorum import QuorumVerifier, quorum_of
from zkfast.quorum.wire import NOTIFICATION_VERSION, Notification, ServerState

MIN_NOTIFICATION_INTERVAL_MS = 200
MAX_NOTIFICATION_INTERVAL_MS = 60000
FINALIZE_WAIT_MS = 200
NON_VOTER = -0x8000000000000000  # Long.MIN_VALUE: what an observer proposes


@dataclass(frozen=True)
class Vote:
    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int
    state: ServerState = ServerState.LOOKING
    version: int = NOTIFICATION_VERSION

    def same(self, other: Vote) -> bool:
        """Apache's Vote.equals: every field while looking, else leader and epoch."""
        if self.state == ServerState.LOOKING or other.state == ServerState.LOOKING:
            return (self.leader, self.zxid, self.election_epoch, self.peer_epoch) == \
                (other.leader, other.zxid, other.election_epoch, other.peer_epoch)
        if (self.version > 0) != (other.version > 0):
            return self.leader == other.leader
        return self.leader == other.leader and self.peer_epoch == other.peer_epoch


@dataclass(frozen=True)
class Send:
    to: int
    notification: Notification


@dataclass
class Election:
    """One server's view of leader election."""

    my_id: int
    quorum: QuorumVerifier  # who votes, and which of them make a quorum
    participant: bool
    last_logged_zxid: int
    current_epoch: int
    config: bytes = b""
    min_interval_ms: int = MIN_NOTIFICATION_INTERVAL_MS
    max_interval_ms: int = MAX_NOTIFICATION_INTERVAL_MS
    finalize_wait_ms: int = FINALIZE_WAIT_MS

    state: ServerState = ServerState.LOOKING
    logical_clock: int = 0
    proposed_leader: int = 0
    proposed_zxid: int = 0
    proposed_epoch: int = 0
    recvset: dict[int, Vote] = field(default_factory=dict)
    outofelection: dict[int, Vote] = field(default_factory=dict)
    current_vote: Vote | None = None
    decided: Vote | None = None
    timeout_ms: int = 0
    next_timeout_at: int = 0
    finalize_at: int | None = None

    # -- what we propose

    def _init_id(self) -> int:
        return self.my_id if self.participant else NON_VOTER

    def _init_zxid(self) -> int:
        return self.last_logged_zxid if self.participant else NON_VOTER

    def _init_epoch(self) -> int:
        return self.current_epoch if self.participant else NON_VOTER

    @property
    def voters(self) -> frozenset[int]:
        return self.quorum.voters

    def _weight(self, sid: int) -> int:
        if sid not in self.quorum.voters:
            return 0
        return self.quorum.weight(sid)

    def better(self, new_id: int, new_zxid: int, new_epoch: int, cur_id: int, cur_zxid: int, cur_epoch: int) -> bool:
        """totalOrderPredicate: epoch, then zxid, then server id."""
        if self._weight(new_id) == 0:
            return False
        return (new_epoch > cur_epoch) or (new_epoch == cur_epoch and (
            new_zxid > cur_zxid or (new_zxid == cur_zxid and new_id > cur_id)))

    def _quorum(self, ids: Iterable[int]) -> bool:
        """The termination predicate (SyncedLearnerTracker.hasAllQuorums): the membership's rule."""
        return quorum_of(self.quorum, set(ids))

    def _notification(self) -> Notification:
        return Notification(ServerState.LOOKING, self.proposed_leader, self.proposed_zxid, self.logical_clock,
                            self.proposed_epoch, NOTIFICATION_VERSION, self.config)

    def _broadcast(self) -> list[Send]:
        n = self._notification()
        return [Send(sid, n) for sid in sorted(self.voters)]

    def _current_answer(self, to: int) -> Send:
        v = self.current_vote
        assert v is not None
        return Send(to, Notification(self.state, v.leader, v.zxid, v.election_epoch, v.peer_epoch,
                                     NOTIFICATION_VERSION, self.config))

    # -- inputs

    def start(self, now_ms: int, last_logged_zxid: int | None = None, current_epoch: int | None = None) -> list[Send]:
        """lookForLeader: a new round with our own vote."""
        if last_logged_zxid is not None:
            self.last_logged_zxid = last_logged_zxid
        if current_epoch is not None:
            self.current_epoch = current_epoch
        self.state = ServerState.LOOKING
        self.decided = None
        self.recvset = {}
        self.outofelection = {}
        self.finalize_at = None
        self.logical_clock += 1
        self.proposed_leader, self.proposed_zxid, self.proposed_epoch = \
            self._init_id(), self._init_zxid(), self._init_epoch()
        self.current_vote = Vote(self.proposed_leader, self.proposed_zxid, self.logical_clock, self.proposed_epoch)
        self.timeout_ms = self.min_interval_ms
        self.next_timeout_at = now_ms + self.timeout_ms
        return self._broadcast()

    def tick(self, now_ms: int) -> list[Send]:
        if self.state != ServerState.LOOKING:
            return []
        if self.finalize_at is not None and now_ms >= self.finalize_at:
            self._decide(now_ms)
            return []
        if now_ms >= self.next_timeout_at:
            # nothing decided in time: say it again, and wait twice as long next time
            self.timeout_ms = min(self.timeout_ms * 2, self.max_interval_ms)
            self.next_timeout_at = now_ms + self.timeout_ms
            return self._broadcast()
        return []

    def receive(self, sid: int, n: Notification, now_ms: int) -> list[Send]:
        """A notification from sid (the WorkerReceiver and the lookForLeader loop together)."""
        out: list[Send] = []
        if sid not in self.voters:
            # a non-voter (observer) only hears our current vote, from a voter: two servers that are
            # both non-voters in each other's eyes (a removed one, an observer, after a reconfig)
            # would otherwise answer each other for ever
            if self.current_vote is not None and self.participant:
                out.append(self._current_answer(sid))
            return out
        # a voter ignores what a non-voter says and answers it right away: a non-voter answering back
        # (below) would keep the two exchanging messages for as long as the voter looks
        if self.state != ServerState.LOOKING:
            if n.state == ServerState.LOOKING and self.current_vote is not None and self.participant:
                out.append(self._current_answer(sid))
            return out
        if n.state == ServerState.LOOKING and n.election_epoch < self.logical_clock and self.participant:
            out.append(Send(sid, self._notification()))  # a peer behind us learns our round
        if n.leader not in self.voters:
            return out
        if self.finalize_at is not None:
            # waiting before deciding: only a better vote reopens the election; others are dropped
            if not self.better(n.leader, n.zxid, n.peer_epoch, self.proposed_leader, self.proposed_zxid,
                               self.proposed_epoch):
                return out
            self.finalize_at = None
        if n.state == ServerState.LOOKING:
            out.extend(self._looking(sid, n, now_ms))
        elif n.state in (ServerState.FOLLOWING, ServerState.LEADING):
            self._following(sid, n, now_ms)
        return out

    # -- the election proper

    def _update(self, leader: int, zxid: int, epoch: int) -> None:
        self.proposed_leader, self.proposed_zxid, self.proposed_epoch = leader, zxid, epoch

    def _looking(self, sid: int, n: Notification, now_ms: int) -> list[Send]:
        out: list[Send] = []
        if self._init_zxid() == -1 or n.zxid == -1:
            return out
        if n.election_epoch > self.logical_clock:
            self.logical_clock = n.election_epoch
            self.recvset = {}
            if self.better(n.leader, n.zxid, n.peer_epoch, self._init_id(), self._init_zxid(), self._init_epoch()):
                self._update(n.leader, n.zxid, n.peer_epoch)
            else:
                self._update(self._init_id(), self._init_zxid(), self._init_epoch())
            out.extend(self._broadcast())
        elif n.election_epoch < self.logical_clock:
            return out
        elif self.better(n.leader, n.zxid, n.peer_epoch, self.proposed_leader, self.proposed_zxid,
                         self.proposed_epoch):
            self._update(n.leader, n.zxid, n.peer_epoch)
            out.extend(self._broadcast())
        self.recvset[sid] = Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch)
        proposal = Vote(self.proposed_leader, self.proposed_zxid, self.logical_clock, self.proposed_epoch)
        self.current_vote = proposal
        agree = [s for s, v in self.recvset.items() if proposal.same(v)]
        if self._quorum(agree):
            # wait finalizeWait for a better vote before settling
            self.finalize_at = now_ms + self.finalize_wait_ms
        return out

    def _check_leader(self, votes: dict[int, Vote], leader: int, election_epoch: int) -> bool:
        if leader != self.my_id:
            v = votes.get(leader)
            return v is not None and v.state == ServerState.LEADING
        return self.logical_clock == election_epoch

    def _following(self, sid: int, n: Notification, now_ms: int) -> None:
        vote = Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch, n.state, n.version)
        if n.election_epoch == self.logical_clock:
            self.recvset[sid] = vote
            agree = [s for s, v in self.recvset.items() if vote.same(v)]
            if self._quorum(agree) and self._check_leader(self.recvset, n.leader, n.election_epoch):
                self._end(Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch))
                return
        self.outofelection[sid] = vote
        agree = [s for s, v in self.outofelection.items() if vote.same(v)]
        if self._quorum(agree) and self._check_leader(self.outofelection, n.leader, n.election_epoch):
            self.logical_clock = n.election_epoch
            self._end(Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch))

    def _decide(self, now_ms: int) -> None:
        self._end(Vote(self.proposed_leader, self.proposed_zxid, self.logical_clock, self.proposed_epoch))

    def _end(self, vote: Vote) -> None:
        if vote.leader == self.my_id:
            self.state = ServerState.LEADING
        else:
            self.state = ServerState.FOLLOWING if self.participant else ServerState.OBSERVING
        self.finalize_at = None
        self.current_vote = Vote(vote.leader, vote.zxid, vote.election_epoch, vote.peer_epoch, self.state)
        self.decided = self.current_vote

    def update_vote_epoch(self, epoch: int) -> None:
        """The role serves in `epoch`: report it as our vote's peerEpoch from now on (Apache's
        updateElectionVote, ZOOKEEPER-1732), so that every member of the ensemble reports the same vote
        to a server that looks later, which needs a quorum of equal (leader, peerEpoch) votes to join."""
        v = self.current_vote
        if v is not None and self.state != ServerState.LOOKING:
            self.current_vote = Vote(v.leader, v.zxid, v.election_epoch, epoch, v.state, v.version)

    def stop_role(self, now_ms: int, last_logged_zxid: int, current_epoch: int) -> list[Send]:
        """The role ended (leader lost its quorum, follower lost its leader): look again."""
        return self.start(now_ms, last_logged_zxid, current_epoch)
