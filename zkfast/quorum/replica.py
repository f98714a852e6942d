"""One ensemble member as a pure state machine: election, then leading or learning, then election again.

`Replica` owns an `Election`, and while it has a role a `LeaderCore` or a `LearnerCore`. Inputs are
election notifications, quorum packets, connection events, "durable up to zxid" notices and the clock
(`now_ms` passed in); outputs are `Actions`. The real peer (zkfast.quorum.peer) performs them over
sockets and files, the simulator (tests/quorum) over a seeded network and in-memory disks: both run
this same code.

When a role ends the replica asks for `reload`: the peer stops serving, rebuilds its tree from disk
(which holds every txn it logged, committed or not, as Apache's loadDataBase does) and calls
`on_reloaded` with what the disk says; only then does the next election start, with that zxid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zkfast._quorum import QuorumVerifier
from zkfast.quorum.election import Election, Send
from zkfast.quorum.wire import PacketType, QuorumPacket, ServerState, make_zxid
from zkfast.quorum.zab import Actions, LeaderCore, LearnerCore

log = logging.getLogger(__name__)


@dataclass
class Disk:
    """What a replica's disk says after start-up or a reload."""

    accepted_epoch: int
    current_epoch: int
    last_logged_zxid: int
    committed_tail: list[tuple[int, bytes]] = field(default_factory=list)  # the newest logged txns


class Replica:
    def __init__(self, my_id: int, quorum: QuorumVerifier, observers: frozenset[int], *, tick_ms: int,
                 init_limit: int, sync_limit: int, disk: Disk, config: bytes = b"",
                 log_reader: Callable[[int], list[tuple[int, bytes]] | None] | None = None) -> None:
        assert tick_ms > 0 and init_limit > 0 and sync_limit > 0
        self.my_id = my_id
        self.quorum = quorum
        self.observers = observers
        self.tick_ms = tick_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.config = config
        self.log_reader = log_reader
        self.disk = disk
        self.participant = my_id in quorum.voters
        self.election = Election(my_id, quorum, self.participant, disk.last_logged_zxid, disk.current_epoch,
                                 config=config)
        self.state = ServerState.LOOKING
        self.reloading = False
        self.leader: LeaderCore | None = None
        self.learner: LearnerCore | None = None
        self.leader_id: int | None = None
        self.next_half_tick_ms = 0
        self.role_started_ms = 0
        self.last_stop_reason: str | None = None

    @property
    def voters(self) -> frozenset[int]:
        return self.quorum.voters

    # -- the election

    def start(self, now_ms: int) -> Actions:
        return self._notify(self.election.start(now_ms, self.disk.last_logged_zxid, self.disk.current_epoch))

    def _notify(self, sends: Iterable[Send]) -> Actions:
        out = Actions()
        out.notify.extend((s.to, s.notification) for s in sends)
        return out

    def on_notification(self, sid: int, n: object, now_ms: int) -> Actions:
        out = self._notify(self.election.receive(sid, n, now_ms))  # type: ignore[arg-type]
        return out.merge(self._take_role(now_ms))

    def _take_role(self, now_ms: int) -> Actions:
        out = Actions()
        vote = self.election.decided
        if self.state != ServerState.LOOKING or self.reloading or vote is None:
            return out
        self.state = self.election.state
        self.role_started_ms = now_ms
        self.next_half_tick_ms = now_ms + self.tick_ms // 2
        out.role = self.state
        self.leader_id = vote.leader
        d = self.disk
        if self.state == ServerState.LEADING:
            self.leader = LeaderCore(self.my_id, self.quorum, self.observers, d.accepted_epoch, d.current_epoch,
                                     d.last_logged_zxid, d.committed_tail, self.init_limit, self.sync_limit,
                                     self.config, self.log_reader)
            out.merge(self._checked(self.leader.start(), now_ms))
        else:
            self.learner = LearnerCore(self.my_id, self.state == ServerState.OBSERVING, d.accepted_epoch,
                                       d.current_epoch, d.last_logged_zxid, self.sync_limit, self.init_limit)
            out.connect_leader = vote.leader
        return out

    # -- time

    def on_tick(self, now_ms: int) -> Actions:
        if self.reloading:
            return Actions()
        if self.state == ServerState.LOOKING:
            out = self._notify(self.election.tick(now_ms))
            return out.merge(self._take_role(now_ms))
        out = Actions()
        half_tick_ms = max(self.tick_ms // 2, 1)
        while now_ms >= self.next_half_tick_ms and not out.reload:
            self.next_half_tick_ms += half_tick_ms
            core = self.leader or self.learner
            assert core is not None, "a role without its core"
            out.merge(self._checked(core.on_tick(), now_ms))
        return out

    # -- leader side

    def on_learner_packet(self, sid: int, p: QuorumPacket, now_ms: int) -> Actions:
        leader = self.leader
        if leader is None:
            return Actions()
        if p.type in (PacketType.FOLLOWERINFO, PacketType.OBSERVERINFO):
            if sid not in self.voters and sid not in self.observers:
                out = Actions()
                out.drop.append(sid)
                return out
            return self._checked(leader.on_connect(sid, p), now_ms)
        if sid not in leader.learners:
            return Actions()
        return self._checked(leader.on_packet(sid, p), now_ms)

    def on_learner_acks(self, sid: int, zxids: list[int], now_ms: int) -> Actions:
        """Proposal ACKs (not NEWLEADER's) of one learner, batched by the peer."""
        leader = self.leader
        if leader is None or sid not in leader.learners:
            return Actions()
        return self._checked(leader.on_acks(sid, zxids), now_ms)

    def on_learner_lost(self, sid: int, now_ms: int) -> Actions:
        if self.leader is None:
            return Actions()
        return self._checked(self.leader.on_disconnect(sid), now_ms)

    def propose(self, zxid: int, data: bytes, now_ms: int,
                membership: tuple[QuorumVerifier, frozenset[int]] | None = None) -> Actions:
        assert self.leader is not None and self.leader.established, "only an established leader proposes"
        return self._checked(self.leader.propose(zxid, data, membership), now_ms)

    def set_membership(self, quorum: QuorumVerifier, observers: frozenset[int], now_ms: int) -> Actions:
        """A committed reconfig (the leader's core switched at commit; learners switch when they apply
        it): elections count the new voters. A learner made a voter leaves its role and looks again,
        as one; a follower removed (or made an observer) goes on following without a vote."""
        changed = quorum != self.quorum
        self.quorum, self.observers = quorum, observers
        participant = self.my_id in quorum.voters
        self.election.quorum = quorum
        out = Actions()
        if changed and self.state == ServerState.LOOKING and not self.reloading:
            # looking under the old membership: a new round, so that the new voters hear our vote
            # (made as what we are now, voter or not)
            self.participant = self.election.participant = participant
            return out.merge(self._notify(self.election.start(now_ms, self.disk.last_logged_zxid,
                                                              self.disk.current_epoch)))
        if participant != self.participant:
            self.participant = participant
            self.election.participant = participant
            if self.learner is not None and participant:
                out.stop = "this server is a voter in the new configuration"
        if self.leader is not None:
            # a reconfig the new epoch's history holds (the core switches itself at a commit)
            self.leader.quorum, self.leader.observers = quorum, observers
            if not participant:
                out.stop = "this server is no longer a voter of the configuration"
        return self._checked(out, now_ms)

    @property
    def epoch(self) -> int | None:
        if self.leader is not None:
            return self.leader.epoch
        if self.learner is not None:
            return self.learner.new_epoch
        return None

    def first_zxid_of_epoch(self) -> int:
        assert self.leader is not None and self.leader.epoch is not None
        return make_zxid(self.leader.epoch, 0)

    # -- learner side

    def on_leader_connected(self, now_ms: int) -> Actions:
        if self.learner is None:
            return Actions()
        return self._checked(self.learner.hello(), now_ms)

    def on_leader_packet(self, p: QuorumPacket, now_ms: int) -> Actions:
        if self.learner is None:
            return Actions()
        return self._checked(self.learner.on_packet(p), now_ms)

    def on_leader_packets(self, packets: list[QuorumPacket], now_ms: int) -> Actions:
        """A read's worth of the leader's broadcast (PROPOSAL, COMMIT, INFORM, PING), in order."""
        if self.learner is None:
            return Actions()
        return self._checked(self.learner.on_packets(packets), now_ms)

    def on_snapshot(self, zxid: int, stream: bytes, now_ms: int) -> Actions:
        if self.learner is None:
            return Actions()
        return self._checked(self.learner.on_snapshot(zxid, stream), now_ms)

    def on_leader_lost(self, reason: str, now_ms: int) -> Actions:
        if self.learner is None:
            return Actions()
        out = Actions()
        out.stop = reason
        return self._checked(out, now_ms)

    # -- both

    def on_durable(self, zxid: int, now_ms: int) -> Actions:
        if self.leader is not None:
            return self._checked(self.leader.on_local_durable(zxid), now_ms)
        if self.learner is not None:
            return self._checked(self.learner.on_durable(zxid), now_ms)
        return Actions()

    def _checked(self, out: Actions, now_ms: int) -> Actions:
        """A core that asks to stop ends the role: drop the connections and reload from disk."""
        if out.stop is not None and not self.reloading and self.state != ServerState.LOOKING:
            log.warning("leaving %s: %s", self.state.name, out.stop)
            self.last_stop_reason = out.stop
            if self.leader is not None:
                out.drop.extend(self.leader.learners)
            self.leader = None
            self.learner = None
            self.leader_id = None
            self.state = ServerState.LOOKING
            self.election.state = ServerState.LOOKING  # peers asking hear we are looking again
            self.reloading = True
            out.reload = True
            out.role = ServerState.LOOKING
            # whatever else the core asked for still happens, except starting to serve
            out.serve = False
        if out.serve and self.epoch is not None:
            self.election.update_vote_epoch(self.epoch)
        return out

    def stop(self, reason: str, now_ms: int) -> Actions:
        """The peer ends the role (e.g. its log failed)."""
        out = Actions()
        out.stop = reason
        return self._checked(out, now_ms)

    def on_reloaded(self, disk: Disk, now_ms: int) -> Actions:
        assert self.reloading, "on_reloaded answers a reload"
        self.reloading = False
        self.disk = disk
        return self._notify(self.election.stop_role(now_ms, disk.last_logged_zxid, disk.current_epoch))
