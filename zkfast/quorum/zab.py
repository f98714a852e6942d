"""Zab as pure state machines (Apache's Leader.java, LearnerHandler.java, Learner.java, Follower.java and
Observer.java in zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/).

`LeaderCore` and `LearnerCore` take packets, ticks and "durable up to zxid" notices, and return
`Actions`: packets to send, txns to persist (with or without fsync), txns to apply, epochs to write,
and whether to step down. They never touch a socket, a file or a clock, so elections and failovers
run in the simulator (tests/quorum) exactly as they run between real processes.

The orderings that Apache's data-loss bugs were about are part of the contract:
- a learner acks NEWLEADER only after every txn it was sent (DIFF or SNAP) and its currentEpoch
  are durable (ZOOKEEPER-3911, ZOOKEEPER-1282): `Actions.persist` comes back with `sync=True` and the
  ACK is held in `after_durable` until the peer reports the fsync;
- a learner acks a proposal only once it is durable;
- the leader commits a zxid only with a quorum of voters (itself included once its own log is
  durable) having acked it, and commits in zxid order. A quorum is what the membership's
  QuorumVerifier says (a majority, or Apache's hierarchical groups and weights), for epochs,
  NEWLEADER and commits alike.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Actions and the quorum rule (quorum_of, with its QuorumVerifier) are C: every packet of a replicated
# write makes Actions, and every ACK is counted
from zkfast._quorum import Actions as Actions
from zkfast._quorum import QuorumVerifier, quorum_of
from zkfast.quorum.wire import (
    LEARNER_PROTOCOL_VERSION,
    LearnerInfo,
    PacketType,
    QuorumPacket,
    make_zxid,
    zxid_epoch,
)

# proposals the leader keeps in memory for DIFF syncs (Apache's commitLogCount default)
COMMITTED_LOG_MAX = 500
# proposals one learner may have queued during sync before the leader gives up on it
MAX_LEARNER_QUEUE = 100_000


def _long(v: int) -> bytes:
    return struct.pack(">q", v)


def _int(v: int) -> bytes:
    return struct.pack(">i", v)


# ------------------------------------------------------------------------------------------------
# leader


@dataclass
class LearnerState:
    sid: int
    observer: bool
    accepted_epoch: int = -1
    phase: str = "info"              # info → epoch-acked → syncing → newleader-acked → serving
    last_zxid: int = -1
    current_epoch: int = -1
    last_heard_tick: int = 0
    forwarding: bool = False          # gets new proposals/commits
    pending: deque[QuorumPacket] = field(default_factory=deque)  # queued while it syncs


@dataclass
class Proposal:
    zxid: int
    data: bytes
    acks: set[int] = field(default_factory=set)
    # a reconfig: the membership it makes, (its quorum rule, observers); it needs a quorum of both configs
    membership: tuple[QuorumVerifier, frozenset[int]] | None = None


class LeaderCore:
    """The leader of one epoch: discovery, synchronisation, broadcast, liveness."""

    def __init__(self, my_id: int, quorum: QuorumVerifier, observers: frozenset[int], accepted_epoch: int,
                 current_epoch: int, last_zxid: int, committed_log: Iterable[tuple[int, bytes]],
                 init_limit: int, sync_limit: int, config: bytes = b"",
                 log_reader: Callable[[int], list[tuple[int, bytes]] | None] | None = None) -> None:
        self.my_id = my_id
        self.quorum = quorum
        self.observers = observers
        self.accepted_epoch = accepted_epoch
        self.current_epoch = current_epoch
        self.last_zxid = last_zxid            # last txn in the leader's tree when it started
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.config = config
        self.log_reader = log_reader          # older committed txns from the txn log, if DIFF needs them
        self.committed: deque[tuple[int, bytes]] = deque(committed_log, maxlen=COMMITTED_LOG_MAX)
        self.learners: dict[int, LearnerState] = {}
        self.tick = 0
        self.epoch: int | None = None         # the new epoch, once a quorum has connected
        self.epoch_acked: set[int] = set()
        self.newleader_acked: set[int] = set()
        self.established = False              # a quorum acked NEWLEADER: serving
        self.proposals: dict[int, Proposal] = {}
        self.last_proposed = 0
        self.last_committed = last_zxid
        self.local_durable = last_zxid
        self.connected_for_epoch: set[int] = {my_id}

    @property
    def voters(self) -> frozenset[int]:
        return self.quorum.voters

    # -- discovery

    def start(self) -> Actions:
        return self._try_epoch()

    def on_connect(self, sid: int, packet: QuorumPacket) -> Actions:
        """FOLLOWERINFO or OBSERVERINFO: a learner registers."""
        info = LearnerInfo.decode(packet.data)
        observer = packet.type == PacketType.OBSERVERINFO or sid not in self.voters
        ls = LearnerState(info.sid, observer, accepted_epoch=zxid_epoch(packet.zxid), last_heard_tick=self.tick)
        self.learners[info.sid] = ls
        out = Actions()
        if not observer:
            self.connected_for_epoch.add(info.sid)
            self.accepted_epoch = max(self.accepted_epoch, ls.accepted_epoch)
        had_epoch = self.epoch is not None
        if self.epoch is not None and not observer and ls.accepted_epoch > self.epoch:
            # it promised a later epoch (to a leader-elect that failed) and would refuse ours for as long
            # as we lead: step down, the next election picks an epoch above it
            out.stop = f"follower {info.sid} accepted epoch {ls.accepted_epoch}, above ours ({self.epoch})"
            return out
        out.merge(self._try_epoch())  # sends LEADERINFO to every learner if this makes the quorum
        if had_epoch:
            out.send.append((info.sid, self._leaderinfo()))
        return out

    def _leaderinfo(self) -> QuorumPacket:
        assert self.epoch is not None
        return QuorumPacket(PacketType.LEADERINFO, make_zxid(self.epoch, 0), _int(LEARNER_PROTOCOL_VERSION))

    def _try_epoch(self) -> Actions:
        out = Actions()
        if self.epoch is None and quorum_of(self.quorum, self.connected_for_epoch):
            self.epoch = self._next_epoch()
            out.write_accepted_epoch = self.epoch
            self.epoch_acked.add(self.my_id)
            for sid in self.learners:
                out.send.append((sid, self._leaderinfo()))
            if quorum_of(self.quorum, self.epoch_acked):
                # the only voter (standaloneEnabled=false): its own ACKEPOCH and NEWLEADER ack make the
                # quorums that waitForEpochAck and waitForNewLeaderAck wait for, as on Apache
                self.current_epoch = self.epoch
                out.write_current_epoch = self.epoch
                out.merge(self._maybe_established())
        return out

    def _next_epoch(self) -> int:
        """getEpochToPropose: one past the highest accepted epoch of a quorum that includes us."""
        return max(self.accepted_epoch, zxid_epoch(self.last_zxid)) + 1

    def on_ackepoch(self, sid: int, packet: QuorumPacket) -> Actions:
        out = Actions()
        ls = self.learners.get(sid)
        if ls is None or self.epoch is None or ls.phase != "info":
            return out  # a second ACKEPOCH changes nothing
        ls.last_heard_tick = self.tick
        data = packet.data or b""
        peer_epoch = struct.unpack(">i", data[:4])[0] if len(data) >= 4 else -1
        ls.current_epoch = peer_epoch if peer_epoch != -1 else self.current_epoch
        ls.last_zxid = packet.zxid
        # a follower ahead of the leader cannot be led by it (waitForEpochAck); once a quorum acked the
        # epoch the check is over (Apache's electionFinished): self.current_epoch is the new epoch by
        # then, and a follower reconnecting within it may hold its proposals
        if not ls.observer and not quorum_of(self.quorum, self.epoch_acked) and (
                ls.current_epoch > self.current_epoch or (
                ls.current_epoch == self.current_epoch and ls.last_zxid > self.last_zxid)):
            out.stop = f"follower {sid} is ahead of the leader (epoch {ls.current_epoch}, zxid 0x{ls.last_zxid:x})"
            return out
        ls.phase = "epoch-acked"
        if not ls.observer:
            self.epoch_acked.add(sid)
        if quorum_of(self.quorum, self.epoch_acked) and self.current_epoch != self.epoch:
            self.current_epoch = self.epoch
            out.write_current_epoch = self.epoch
        if quorum_of(self.quorum, self.epoch_acked):
            # sync every learner that acked (this one, and any that waited for the quorum)
            for other in self.learners.values():
                if other.phase == "epoch-acked":
                    out.merge(self._sync(other))
        return out

    # -- synchronisation (LearnerHandler.syncFollower)

    def _history(self) -> list[tuple[int, bytes]]:
        return list(self.committed)

    def _sync(self, ls: LearnerState) -> Actions:
        assert self.epoch is not None
        out = Actions()
        ls.phase = "syncing"
        peer = ls.last_zxid
        history = self._history()
        max_log = history[-1][0] if history else self.last_committed
        min_log = history[0][0] if history else self.last_committed
        packets: list[QuorumPacket] = []
        snap = False
        if peer == self.last_committed:
            packets.append(QuorumPacket(PacketType.DIFF, peer))
        elif peer > max_log and (peer & 0xFFFFFFFF) != 0:
            packets.append(QuorumPacket(PacketType.TRUNC, max_log))
        elif min_log <= peer <= max_log or (peer < min_log and self._older(peer) is not None):
            source = history if min_log <= peer else (self._older(peer) or []) + history
            pk = self._diff_or_trunc(source, peer, max_log)
            if pk is None:
                snap = True
            else:
                packets.extend(pk)
        else:
            snap = True
        if snap:
            # the peer follows a SNAP packet with its tree, serialised as of last_committed
            packets.append(QuorumPacket(PacketType.SNAP, self.last_committed))
        packets.append(QuorumPacket(PacketType.NEWLEADER, make_zxid(self.epoch, 0), self.config))
        # proposals in flight are forwarded after the sync packets, in order; not to an observer, which
        # gets each as an INFORM once committed (Apache's startForwarding)
        for zxid in sorted(self.proposals) if not ls.observer else ():
            packets.append(QuorumPacket(PacketType.PROPOSAL, zxid, self.proposals[zxid].data))
        ls.forwarding = True
        for p in packets:
            out.send.append((ls.sid, p))
        return out

    def _older(self, peer: int) -> list[tuple[int, bytes]] | None:
        if self.log_reader is None:
            return None
        return self.log_reader(peer)

    def _diff_or_trunc(self, source: list[tuple[int, bytes]], peer: int, max_log: int) -> list[QuorumPacket] | None:
        """queueCommittedProposals: DIFF with the txns after the peer's, or TRUNC where it diverged."""
        out: list[QuorumPacket] = []
        new_epoch_zxid = (peer & 0xFFFFFFFF) == 0
        prev = -1
        need_op = True
        queued = peer
        for zxid, data in source:
            if zxid > max_log:
                break  # the txn log also holds our uncommitted proposals: never sent as committed
            if zxid < peer:
                prev = zxid
                continue
            if need_op:
                if zxid == peer:
                    out.append(QuorumPacket(PacketType.DIFF, max_log))
                    need_op = False
                    continue
                if new_epoch_zxid:
                    out.append(QuorumPacket(PacketType.DIFF, max_log))
                    need_op = False
                elif zxid > peer:
                    if zxid_epoch(zxid) != zxid_epoch(peer):
                        return None  # the peer's txns are from an epoch we never saw: SNAP
                    out.append(QuorumPacket(PacketType.TRUNC, prev))
                    need_op = False
            if zxid <= queued:
                continue
            out.append(QuorumPacket(PacketType.PROPOSAL, zxid, data))
            out.append(QuorumPacket(PacketType.COMMIT, zxid))
            queued = zxid
        if need_op:
            if new_epoch_zxid:
                out.append(QuorumPacket(PacketType.DIFF, max_log))
            else:
                return None
        return out

    def on_ack(self, sid: int, packet: QuorumPacket) -> Actions:
        out = Actions()
        ls = self.learners.get(sid)
        if ls is None:
            return out
        ls.last_heard_tick = self.tick
        if self.epoch is not None and packet.zxid == make_zxid(self.epoch, 0):
            if ls.phase == "syncing":
                ls.phase = "newleader-acked"
                if not ls.observer:
                    self.newleader_acked.add(sid)
                out.merge(self._maybe_established())
                if self.established and ls.phase == "newleader-acked":  # not if that just sent it UPTODATE
                    out.send.append((sid, QuorumPacket(PacketType.UPTODATE, -1)))
                    ls.phase = "serving"
            return out
        return self.on_acks(sid, (packet.zxid,))

    def on_acks(self, sid: int, zxids: Iterable[int]) -> Actions:
        """Several proposal ACKs of one learner, in the order they came (a read's worth): as many
        on_ack calls, with one commit pass."""
        ls = self.learners.get(sid)
        if ls is None:
            return Actions()
        ls.last_heard_tick = self.tick
        if ls.observer:
            return Actions()
        for zxid in zxids:
            p = self.proposals.get(zxid)
            if p is not None:
                p.acks.add(sid)
        return self._try_commit()

    def on_local_durable(self, zxid: int) -> Actions:
        """The leader's own log holds everything up to zxid."""
        self.local_durable = max(self.local_durable, zxid)
        for p in self.proposals.values():
            if p.zxid > zxid:
                break  # in zxid order (propose): the rest are not durable yet
            p.acks.add(self.my_id)
        return self._try_commit()

    def _maybe_established(self) -> Actions:
        out = Actions()
        if not self.established:
            self.newleader_acked.add(self.my_id)
            if quorum_of(self.quorum, self.newleader_acked):
                self.established = True
                out.serve = True
                for ls in self.learners.values():
                    if ls.phase == "newleader-acked":
                        out.send.append((ls.sid, QuorumPacket(PacketType.UPTODATE, -1)))
                        ls.phase = "serving"
        return out

    # -- broadcast

    def propose(self, zxid: int, data: bytes,
                membership: tuple[QuorumVerifier, frozenset[int]] | None = None) -> Actions:
        """A txn of the leader's pipeline; the peer also logs it locally. A reconfig's txn comes with
        the membership it makes (its quorum rule, observers)."""
        assert self.epoch is not None and zxid_epoch(zxid) == self.epoch, "txns carry the leader's epoch"
        assert zxid > self.last_proposed, "proposals go out in zxid order"
        assert membership is None or not self.reconfig_in_progress(), "one reconfig at a time"
        self.last_proposed = zxid
        self.proposals[zxid] = Proposal(zxid, data, membership=membership)
        out = Actions()
        packet = QuorumPacket(PacketType.PROPOSAL, zxid, data)
        for ls in self.learners.values():
            if ls.forwarding and not ls.observer:
                out.send.append((ls.sid, packet))
        return out

    def _try_commit(self) -> Actions:
        out = Actions()
        while True:
            # proposals go in in zxid order and leave from the head: the first key is the oldest
            nxt = next(iter(self.proposals), None)
            if nxt is None:
                return out
            p = self.proposals[nxt]
            if not self._acked_by_quorum(p):
                return out
            if p.membership is not None and not quorum_of(p.membership[0], p.acks):
                return out  # a reconfig needs a quorum of the new config too
            del self.proposals[nxt]
            self.last_committed = nxt
            self.committed.append((nxt, p.data))
            out.commit_upto = nxt
            commit = inform = None  # made once, for the first learner that gets one
            for ls in self.learners.values():
                if not ls.forwarding:
                    continue
                if ls.observer:
                    inform = inform or self._inform_packet(p)
                    out.send.append((ls.sid, inform))
                else:
                    commit = commit or self._commit_packet(p)
                    out.send.append((ls.sid, commit))
            if p.membership is not None:
                out.merge(self._activate(nxt, *p.membership))
                if out.stop is not None:
                    return out

    def _commit_packet(self, p: Proposal) -> QuorumPacket:
        if p.membership is None:
            return QuorumPacket(PacketType.COMMIT, p.zxid)
        # Apache's commitAndActivate: the designated leader (us) first
        return QuorumPacket(PacketType.COMMITANDACTIVATE, p.zxid, _long(self.my_id))

    def _inform_packet(self, p: Proposal) -> QuorumPacket:
        if p.membership is None:
            return QuorumPacket(PacketType.INFORM, p.zxid, p.data)
        # Apache's informAndActivate
        return QuorumPacket(PacketType.INFORMANDACTIVATE, p.zxid, _long(self.my_id) + p.data)

    def _acked_by_quorum(self, p: Proposal) -> bool:
        """A proposal commits once a quorum of the voters (the leader counting once durable) acked it."""
        return quorum_of(self.quorum, p.acks)

    def _activate(self, zxid: int, quorum: QuorumVerifier, observers: frozenset[int]) -> Actions:
        """A committed reconfig: its membership rules from now on. A follower it removed stays
        connected as a non-voting follower (its acks no longer count), as in Apache, until it
        reconnects; then it is refused."""
        out = Actions()
        out.activate = zxid
        self.quorum, self.observers = quorum, observers
        if self.my_id not in quorum.voters:
            out.stop = "this server is no longer a voter of the configuration"
        return out

    def reconfig_in_progress(self) -> bool:
        return any(p.membership is not None for p in self.proposals.values())

    def synced_quorum_of(self, quorum: QuorumVerifier) -> bool:
        """Apache's isQuorumSynced: the leader and the followers it serves that vote in `quorum`'s
        membership make a quorum of it."""
        # not observers: they get no PROPOSAL, so could never ack the reconfig
        synced = {sid for sid in (self.my_id, *(ls.sid for ls in self.learners.values()
                                                if ls.phase == "serving" and ls.forwarding and not ls.observer))
                  if sid in quorum.voters}
        return quorum_of(quorum, synced)

    def on_packet(self, sid: int, packet: QuorumPacket) -> Actions:
        ls = self.learners.get(sid)
        if ls is not None:
            ls.last_heard_tick = self.tick
        if packet.type == PacketType.ACKEPOCH:
            return self.on_ackepoch(sid, packet)
        if packet.type == PacketType.ACK:
            return self.on_ack(sid, packet)
        return Actions()  # PING replies, REQUEST, REVALIDATE, SYNC: handled by the peer

    def on_disconnect(self, sid: int) -> Actions:
        self.learners.pop(sid, None)
        self.connected_for_epoch.discard(sid)
        return Actions()

    # -- liveness

    def on_tick(self) -> Actions:
        """Every half tick, as Apache's lead() loop: pings, and a quorum check every other one."""
        self.tick += 1
        out = Actions()
        synced = {self.my_id}
        for ls in list(self.learners.values()):
            # a learner still syncing (no PINGs yet) has initLimit + syncLimit, as Apache's
            # LearnerHandler's first ack deadline
            limit = self.sync_limit if self.established and ls.phase == "serving" else self.init_limit + self.sync_limit
            if self.tick - ls.last_heard_tick <= 2 * limit:
                if not ls.observer:
                    synced.add(ls.sid)
            else:
                out.drop.append(ls.sid)  # silent for longer than the limit: Apache's LearnerHandler gives up
                self.on_disconnect(ls.sid)
        if not self.established and self.tick > 2 * self.init_limit:
            out.stop = f"a quorum did not sync within initLimit ({self.init_limit} ticks): {sorted(synced)}"
            return out
        if self.established:
            if not quorum_of(self.quorum, synced):
                out.stop = f"not sufficient followers synced, only synced with sids: {sorted(synced)}"
                return out
        ping = QuorumPacket(PacketType.PING, self.last_proposed or self.last_committed)
        for ls in self.learners.values():
            if ls.phase == "serving":
                # not before UPTODATE: an Apache learner still syncing takes a PING for a protocol
                # error and exits (LearnerHandler.ping waits the same way)
                out.send.append((ls.sid, ping))
        return out

    def synced_followers(self) -> list[int]:
        limit = self.sync_limit
        return [ls.sid for ls in self.learners.values()
                if not ls.observer and ls.phase == "serving" and self.tick - ls.last_heard_tick <= 2 * limit]


# ------------------------------------------------------------------------------------------------
# learner (follower or observer)


class LearnerCore:
    """A follower (or observer) of one leader."""

    def __init__(self, my_id: int, observer: bool, accepted_epoch: int, current_epoch: int, last_logged_zxid: int,
                 sync_limit: int, init_limit: int, config_version: int = 0) -> None:
        self.my_id = my_id
        self.observer = observer
        self.accepted_epoch = accepted_epoch
        self.current_epoch = current_epoch
        self.last_logged_zxid = last_logged_zxid
        self.sync_limit = sync_limit
        self.init_limit = init_limit
        self.config_version = config_version
        self.phase = "connecting"  # → registered → syncing → synced (NEWLEADER acked) → serving
        self.new_epoch: int | None = None
        self.tick = 0
        self.last_heard_tick = 0
        self.sync_mode: str | None = None
        self.not_committed: deque[tuple[int, bytes]] = deque()  # proposals seen, not yet committed
        self.committed_before_newleader: list[tuple[int, bytes]] = []
        self.awaiting_durable: dict[int, QuorumPacket] = {}     # zxid → the ACK to send once durable
        self.newleader_ack: QuorumPacket | None = None
        self.epoch_after_durable: tuple[int, int] | None = None  # (zxid, epoch): write once zxid is durable
        self.durable = last_logged_zxid
        self.snapshot: tuple[int, bytes] | None = None  # a SNAP received: installed at NEWLEADER

    def hello(self) -> Actions:
        """Connected to the leader: register (FOLLOWERINFO/OBSERVERINFO)."""
        self.phase = "registered"
        info = LearnerInfo(self.my_id, LEARNER_PROTOCOL_VERSION, self.config_version).encode()
        typ = PacketType.OBSERVERINFO if self.observer else PacketType.FOLLOWERINFO
        out = Actions()
        out.send.append((0, QuorumPacket(typ, make_zxid(self.accepted_epoch, 0), info)))
        return out

    def on_packets(self, packets: Iterable[QuorumPacket]) -> Actions:
        """Several packets in the order they came (a read's worth of broadcast): as many on_packet
        calls, their Actions merged into one."""
        out = Actions()
        for p in packets:
            out.merge(self.on_packet(p))
        return out

    def on_packet(self, p: QuorumPacket) -> Actions:
        self.last_heard_tick = self.tick
        t = p.type
        # the broadcast's packets first: every write brings one of each
        if t == PacketType.PROPOSAL:
            return self._proposal(p)
        if t in (PacketType.COMMIT, PacketType.COMMITANDACTIVATE):
            return self._commit(p.zxid)  # the peer activates a reconfig when it applies the txn
        if t == PacketType.LEADERINFO:
            return self._leaderinfo(p)
        if t in (PacketType.DIFF, PacketType.TRUNC):
            return self._sync_start(p)
        if t == PacketType.INFORM:
            return self._inform(p)
        if t == PacketType.INFORMANDACTIVATE:
            return self._inform(QuorumPacket(PacketType.INFORM, p.zxid, (p.data or b"")[8:]))
        if t == PacketType.NEWLEADER:
            if self.observer:
                # an observer vouches for nothing: it acks at once and takes the leader's state only at
                # UPTODATE, the leader established; until then that state may hold txns of an epoch that
                # never gets established, which a later leader's TRUNC could not take out of a snapshot
                assert self.new_epoch is not None
                out = Actions()
                out.send.append((0, QuorumPacket(PacketType.ACK, make_zxid(self.new_epoch, 0))))
                return out
            return self._newleader(p)
        if t == PacketType.UPTODATE:
            out = self._newleader(p) if self.observer else Actions()
            self.phase = "serving"
            out.serve = True
            assert self.new_epoch is not None
            out.send.append((0, QuorumPacket(PacketType.ACK, make_zxid(self.new_epoch, 0))))
            return out
        if t == PacketType.PING:
            return self._ping(p)
        return Actions()

    def _ping(self, p: QuorumPacket) -> Actions:
        """The leader's PING: answered at once, so that it keeps counting us as synced."""
        out = Actions()
        out.send.append((0, QuorumPacket(PacketType.PING, p.zxid)))  # the peer adds its session touches
        return out

    def on_snapshot(self, zxid: int, stream: bytes) -> Actions:
        """SNAP: the leader's tree as of zxid (the peer read the stream after the SNAP packet)."""
        self.sync_mode = "SNAP"
        self.phase = "syncing"
        # not on disk before NEWLEADER, as Apache's takeSnapshot there: the leader's tree may hold txns
        # of an epoch that never gets established, which a later leader's TRUNC could not undo in a snapshot
        self.snapshot = (zxid, stream)
        self.last_logged_zxid = zxid
        return Actions()

    def _leaderinfo(self, p: QuorumPacket) -> Actions:
        out = Actions()
        new_epoch = zxid_epoch(p.zxid)
        if new_epoch > self.accepted_epoch:
            reply = _int(self.current_epoch)
            self.accepted_epoch = new_epoch
            out.write_accepted_epoch = new_epoch
        elif new_epoch == self.accepted_epoch or self.observer:
            reply = _int(-1)  # an observer promised nothing (it neither votes nor acks): any epoch leads it
        else:
            out.stop = f"leader's epoch {new_epoch} is lower than our accepted epoch {self.accepted_epoch}"
            return out
        self.new_epoch = new_epoch
        # the accepted epoch is written before the ACKEPOCH leaves (the peer does persist first)
        out.send.append((0, QuorumPacket(PacketType.ACKEPOCH, self.last_logged_zxid, reply)))
        return out

    def _sync_start(self, p: QuorumPacket) -> Actions:
        out = Actions()
        self.phase = "syncing"
        if p.type == PacketType.TRUNC:
            self.sync_mode = "TRUNC"
            out.truncate_to = self._truncation_point(p.zxid)
            self.last_logged_zxid = p.zxid
            self.durable = min(self.durable, p.zxid)  # what was durable past it is gone
        else:
            self.sync_mode = "DIFF"
        return out

    def _truncation_point(self, trunc_zxid: int) -> int | None:
        """Where a TRUNC cuts the log: every txn logged past the leader's zxid goes."""
        return trunc_zxid

    def _proposal(self, p: QuorumPacket) -> Actions:
        out = Actions()
        data = p.data or b""
        self.not_committed.append((p.zxid, data))
        if self.phase == "syncing":
            return out  # logged with the rest at NEWLEADER
        # broadcast (or between NEWLEADER and UPTODATE): log, fsync, then ACK
        out.persist.append((p.zxid, data))
        out.sync = True
        if not self.observer:
            self.awaiting_durable[p.zxid] = QuorumPacket(PacketType.ACK, p.zxid)
        return out

    def _commit(self, zxid: int) -> Actions:
        out = Actions()
        while self.not_committed and self.not_committed[0][0] < zxid:
            self.not_committed.popleft()  # a proposal the leader will never commit (older epoch)
        if not self.not_committed or self.not_committed[0][0] != zxid:
            return out
        item = self.not_committed.popleft()
        if self.phase == "syncing":
            self.committed_before_newleader.append(item)
        else:
            out.apply.append(item)
        return out

    def _inform(self, p: QuorumPacket) -> Actions:
        out = Actions()
        data = p.data or b""
        if self.phase == "syncing":
            self.committed_before_newleader.append((p.zxid, data))
            return out
        out.persist.append((p.zxid, data))
        out.apply.append((p.zxid, data))
        return out

    def _newleader(self, p: QuorumPacket) -> Actions:
        """Everything received so far goes to disk, then currentEpoch, and only then the ACK."""
        out = Actions()
        assert self.new_epoch is not None
        if self.snapshot is not None:
            out.snapshot, self.snapshot = self.snapshot, None  # durable at once: the peer installs it first
            self.durable = out.snapshot[0]
        for zxid, data in self.committed_before_newleader:
            out.persist.append((zxid, data))
            out.apply.append((zxid, data))
        for zxid, data in self.not_committed:
            out.persist.append((zxid, data))
        self.committed_before_newleader = []
        out.sync = True
        self.phase = "synced"
        ack = QuorumPacket(PacketType.ACK, make_zxid(self.new_epoch, 0))
        last = max([z for z, _ in out.persist], default=None)
        if self._may_ack_newleader_now(last):
            out.write_current_epoch = self.new_epoch
            self.current_epoch = self.new_epoch
            if not self.observer:  # an observer acked NEWLEADER when it came
                out.send.append((0, ack))
        else:
            # currentEpoch only once the txns it vouches for are on disk (ZOOKEEPER-4643), then the ACK
            self.epoch_after_durable = (last, self.new_epoch)
            self.awaiting_durable[last] = ack
        return out

    def _may_ack_newleader_now(self, last: int | None) -> bool:
        """An observer vouches for nothing; a follower's ACK vouches that every txn of its sync, up to
        `last`, is durable."""
        return self.observer or last is None or last <= self.durable

    def on_durable(self, zxid: int) -> Actions:
        """The log holds everything up to zxid: the ACKs that waited for it may go."""
        self.durable = max(self.durable, zxid)
        out = Actions()
        if self.epoch_after_durable is not None and self.epoch_after_durable[0] <= zxid:
            out.write_current_epoch = self.epoch_after_durable[1]
            self.current_epoch = self.epoch_after_durable[1]
            self.epoch_after_durable = None
        for z in sorted(z for z in self.awaiting_durable if z <= zxid):
            out.send.append((0, self.awaiting_durable.pop(z)))
        return out

    def on_tick(self) -> Actions:
        self.tick += 1
        out = Actions()
        limit = self.sync_limit if self.phase == "serving" else self.init_limit
        if self.tick - self.last_heard_tick > 2 * limit:
            out.stop = "leader silent for longer than the limit"
        return out
