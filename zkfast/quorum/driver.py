"""The quorum driver: what an ensemble member does with its replica's Actions, with no I/O of its own.

`Replica` (zkfast.quorum.replica) decides; this driver carries its decisions out over ports and owns
the protocol logic around them that is not the cores': eras (one ZooKeeperServer and txn log per
role), membership activation, SYNC release, session revalidation and owners, forwarded-request
matching, PING session touches, SNAP streaming, read-only switching, the leader's reconfig checks.
It talks to the world only through ports:

- `DiskPort`: recovery of an era's tree and log, truncation, snapshot installs, epochs, the active
  membership;
- `NetPort`: election notifications, listening for learners, connecting to a leader; the links it
  hands back (`Link`) carry quorum packets;
- `Scheduler`: the clock, running something at the end of this turn or after a delay;
- `ServingTasks`: the background work of a serving leader (session expiry, containers).

zkfast.quorum.peer implements them with asyncio sockets and files.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from zkfast._datatree import DataTree
from zkfast._jute import (
    OP_CLOSE_SESSION,
    OP_CREATE_SESSION,
    OP_NAMES,
    OP_RECONFIG,
    OP_SYNC,
    Code,
    Txn,
    ZkError,
    decode_txn,
)
from zkfast._pipeline import Request, now_ms
from zkfast._quorum import QuorumVerifier
from zkfast.config import ConfigError, ServerSpec
from zkfast.quorum.membership import BadReconfig, MalformedReconfig, Membership
from zkfast.quorum.replica import Disk, Replica
from zkfast.quorum.wire import (
    LearnerInfo,
    Notification,
    PacketType,
    QuorumPacket,
    ServerState,
    make_zxid,
    zxid_epoch,
)
from zkfast.quorum.zab import COMMITTED_LOG_MAX, Actions
from zkfast.server import roles
from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)

CURRENT_EPOCH = "currentEpoch"
ACCEPTED_EPOCH = "acceptedEpoch"
# leader → learner packets whose Actions a learner in broadcast merges over one read
BATCHED_FROM_LEADER = frozenset({PacketType.PROPOSAL, PacketType.COMMIT, PacketType.INFORM, PacketType.PING})
MODE_NAMES = {ServerState.LEADING: "leader", ServerState.FOLLOWING: "follower",
              ServerState.OBSERVING: "observer", ServerState.LOOKING: "looking"}


# ------------------------------------------------------------------------------------------------ ports


class CommitLog(Protocol):
    """An era's txn log, as a commit stage (zkfast.server.commit): durable once fsynced."""

    on_failure: Callable[[BaseException, int, bool], None] | None

    def start(self, on_commit: Callable[[int], None]) -> None: ...
    def append(self, txn: Txn) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def metrics(self) -> list[tuple[str, object]]: ...


class EraStore(Protocol):
    """An era's disk: its txn log, and snapshots of its server's tree."""

    commit: CommitLog

    def attach(self, server: ZooKeeperServer) -> None: ...
    def close(self) -> None: ...


@dataclass
class Recovered:
    """What an era starts from: the store, the tree and sessions rebuilt from it, the log's end."""

    store: EraStore
    tree: DataTree
    sessions: dict[int, int]
    last_zxid: int
    tail: list[tuple[int, bytes]]  # the newest logged txns (zxid, bytes), for DIFFs
    had_snapshot: bool = True  # False: the disk held no snapshot to start from


class DiskError(Exception):
    """The disk cannot give an era a consistent start (a port's recovery failed, or the epochs and
    the log disagree)."""


class DiskPort(Protocol):
    """DiskError (or OSError) when the disk cannot be read back."""

    def recover(self) -> Recovered: ...
    def truncate(self, store: EraStore, zxid: int) -> Recovered: ...
    def install_snapshot(self, store: EraStore, zxid: int, tree: DataTree, sessions: dict[int, int]) -> Recovered: ...
    def read_epoch(self, name: str) -> int | None: ...
    def write_epoch(self, name: str, epoch: int) -> None: ...
    def read_membership(self) -> bytes | None: ...
    def write_membership(self, text: bytes) -> None: ...


class Link(Protocol):
    """A quorum connection between a learner and its leader."""

    sid: int | None
    remote: str
    closed: bool

    def send(self, p: QuorumPacket) -> None: ...
    def send_snapshot(self, tree: DataTree, sessions: dict[int, int]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Cancel(Protocol):
    def cancel(self) -> Any: ...


class NetPort(Protocol):
    def notify(self, sid: int, payload: bytes) -> None: ...
    def set_election_peers(self, peers: dict[int, tuple[str, int]]) -> None: ...
    def listen_for_learners(self, era: Era) -> None: ...
    def stop_listening(self) -> None: ...
    def connect_to_leader(self, era: Era, leader_id: int, spec: ServerSpec) -> None: ...


class Scheduler(Protocol):
    def now_ms(self) -> int: ...
    def soon(self, fn: Callable[[], None]) -> None: ...
    def later(self, delay_ms: int, fn: Callable[[], None]) -> Cancel: ...


class ServingTasks(Protocol):
    def start(self, server: ZooKeeperServer) -> list[Cancel]: ...


@dataclass(frozen=True)
class Settings:
    tick_ms: int
    init_limit: int
    sync_limit: int
    reconfig_enabled: bool = False
    standalone_enabled: bool = True
    read_only_mode_enabled: bool = False


# ------------------------------------------------------------------------------------------------ eras


class QuorumCommit:
    """The leader's commit stage: log locally, propose to the learners, final on a quorum of acks."""

    def __init__(self, driver: QuorumDriver, local: CommitLog) -> None:
        self.driver = driver
        self.local = local
        self._on_commit: Callable[[int], None] | None = None
        self.last_proposal_bytes = -1
        self.min_proposal_bytes = -1
        self.max_proposal_bytes = -1

    def start(self, on_commit: Callable[[int], None]) -> None:
        self._on_commit = on_commit
        self.local.start(self.driver.on_local_durable)

    def append(self, txn: Txn) -> None:
        self.local.append(txn)
        data = txn.to_bytes()
        n = len(data)
        self.last_proposal_bytes = n
        self.min_proposal_bytes = n if self.min_proposal_bytes < 0 else min(self.min_proposal_bytes, n)
        self.max_proposal_bytes = max(self.max_proposal_bytes, n)
        membership = None
        if txn.type == OP_RECONFIG:
            m = self.driver.pending_memberships.get(txn.zxid)
            assert m is not None, "the leader made this reconfig's membership when it prepared it"
            membership = (m.quorum, m.observers)
        self.driver.propose(txn.zxid, data, membership)

    def flush(self) -> None:
        self.local.flush()
        self.driver.end_turn_soon()  # the proposals of every client read of this turn in one write

    def committed(self, zxid: int) -> None:
        if self._on_commit is not None:
            self._on_commit(zxid)

    def close(self) -> None:
        self._on_commit = None
        self.local.close()

    def rewind(self, zxid: int) -> None:
        pass  # a leader whose log failed steps down (_log_failed): its next era starts from disk

    def metrics(self) -> list[tuple[str, object]]:
        return self.local.metrics()


@dataclass(eq=False)
class Era:
    """One role's server and disk."""

    server: ZooKeeperServer
    store: EraStore
    tasks: list[Cancel] = field(default_factory=list)
    decoded: dict[int, Txn] = field(default_factory=dict)                     # learner: logged, not applied
    forwarded: dict[tuple[int, int], Request] = field(default_factory=dict)   # learner: writes sent to the leader
    pending_syncs: deque[Request] = field(default_factory=deque)              # learner: syncs sent to the leader
    leader_conn: Link | None = None
    learner_conns: dict[int, Link] = field(default_factory=dict)
    leader_syncs: list[tuple[int, int]] = field(default_factory=list)         # leader: (zxid to wait for, sid)
    global_sessions: set[int] = field(default_factory=set)                    # sessions before read-only mode
    pending_acks: dict[int, list[int]] = field(default_factory=dict)          # leader: ACKs of this read
    leader_packets: list[QuorumPacket] = field(default_factory=list)          # learner: broadcast of this read
    leader_commit: QuorumCommit | None = None                                 # leader: its pipeline's commit stage
    # learner: reconnecting clients waiting for the leader's word on their session, one per session
    pending_revalidations: dict[int, Any] = field(default_factory=dict)
    closed: bool = False


# ------------------------------------------------------------------------------------------------ the driver


def _membership_or_none(data: bytes | None, where: str) -> Membership | None:
    """The membership data holds; None (logged) if there is none or it cannot be read."""
    if not data:
        return None
    try:
        return Membership.parse(data)
    except ConfigError as e:
        log.warning("ignoring %s: %s", where, e)
        return None


class QuorumDriver:
    def __init__(self, my_id: int, me: ServerSpec, membership: Membership, settings: Settings, *,
                 build_server: Callable[[], ZooKeeperServer], disk: DiskPort, net: NetPort,
                 clock: Scheduler, serving_tasks: ServingTasks,
                 on_era: Callable[[ZooKeeperServer], None] = lambda server: None) -> None:
        """on_era: told of each era's server as it is built (the client port hands it clients)."""
        self.my_id = my_id
        self.me = me
        self.settings = settings
        self.build_server = build_server
        self.disk = disk
        self.net = net
        self.clock = clock
        self.serving_tasks = serving_tasks
        self.on_era = on_era
        self.membership = membership
        active = self._read_active_membership()
        if active is not None and active.version > self.membership.version:
            # a committed reconfig this server activated before it stopped wins over the file's list
            log.info("membership of reconfig 0x%x (newer than the config file's): %s", active.version,
                     active.text().decode(errors="replace").replace("\n", ", "))
            self.membership = active
        self.voters = self.membership.voters
        self.observers = self.membership.observers
        self.specs = dict(self.membership.servers)
        self.specs.setdefault(my_id, me)
        self.pending_memberships: dict[int, Membership] = {}  # leader: reconfig zxid → what it makes
        self.replica: Replica | None = None
        self.era: Era | None = None
        self.first_disk: Disk | None = None
        self.mode = "looking"
        self.failed: str | None = None  # why the driver stopped (it cannot go on), once it did
        self.on_failed: Callable[[], None] = lambda: None
        self.role_started_ms = 0
        # sends and client replies of one event-loop turn go out together, once it ends
        self.turn_end_scheduled = False
        self.turn_applied = False
        self.turn_commit_upto: int | None = None   # leader: the pipeline learns of commits once per turn

    # ------------------------------------------------------------------------------------------
    # membership

    def election_peers(self) -> dict[int, tuple[str, int]]:
        return {sid: (s.host, s.election_port) for sid, s in self.membership.servers.items() if sid != self.my_id}

    def _set_config_node(self, tree: DataTree) -> None:
        """The ensemble's membership as Apache's QuorumVerifier prints it, in /zookeeper/config. A
        newer one that the recovered tree holds came from a logged reconfig that may not be committed:
        it stays in the tree, and becomes the membership only if it is part of the history this server
        serves (see _serve), as Apache activates only what it committed."""
        found = self._tree_membership(tree)
        if found is None or found.version <= self.membership.version:
            tree.set_config(self.membership.text(), self.clock.now_ms(), self.membership.version)

    def _read_active_membership(self) -> Membership | None:
        return _membership_or_none(self.disk.read_membership(), "the active membership on disk")

    def _tree_membership(self, tree: DataTree) -> Membership | None:
        return _membership_or_none(tree.get_data(b"/zookeeper/config"), "/zookeeper/config of the tree")

    def _activate(self, m: Membership) -> None:
        """A committed reconfig (Apache's processReconfig): kept on disk for restarts, then who
        votes and where the servers are."""
        log.info("reconfig 0x%x committed: voters %s, observers %s", m.version, sorted(m.voters),
                 sorted(m.observers))
        self.disk.write_membership(m.text())
        self.membership = m
        self.voters, self.observers = m.voters, m.observers
        self.specs = dict(m.servers)
        self.specs.setdefault(self.my_id, self.me)
        self.net.set_election_peers(self.election_peers())
        if self.replica is not None:
            self.replica.election.config = m.text()  # what our notifications tell the others
            self._execute(self.replica.set_membership(m.quorum, m.observers, self.clock.now_ms()))

    def _prep_reconfig(self, args: tuple[Any, ...], zxid: int) -> bytes:
        """The leader's checks of a reconfig request, in Apache's order; the new config's text."""
        replica = self.replica
        leader = replica.leader if replica is not None else None
        if leader is None:
            raise ZkError(Code.UNIMPLEMENTED)
        if leader.reconfig_in_progress():
            raise ZkError(Code.RECONFIGINPROGRESS)
        joining, leaving, members, from_version = (
            a.decode("utf-8", "replace") if isinstance(a, bytes) else a for a in args)
        if from_version != -1 and from_version != self.membership.version:
            raise ZkError(Code.BADVERSION)
        try:
            new = self.membership.reconfigured(joining, leaving, members, zxid,
                                               min_voters=2 if self.settings.standalone_enabled else 1)
        except BadReconfig as e:
            log.warning("reconfig refused: %s", e)
            raise ZkError(Code.BADARGUMENTS) from None
        except MalformedReconfig as e:
            log.warning("reconfig refused: %s", e)
            raise ZkError(Code.MARSHALLINGERROR) from None
        if not leader.synced_quorum_of(new.quorum):
            log.warning("Reconfig failed - there must be a connected and synced quorum in new configuration")
            raise ZkError(Code.NEWCONFIGNOQUORUM)
        self.pending_memberships[zxid] = new
        return new.text()

    def on_notification(self, sid: int, payload: bytes) -> None:
        """An election message from server sid."""
        n = Notification.decode(payload)
        if n is None:
            log.warning("malformed election message from server %d (%d bytes)", sid, len(payload))
            return
        if self.replica is None or self.era is None:
            return
        if n.config:
            self._membership_of_peer(sid, n.config)
        self._execute(self.replica.on_notification(sid, n, self.clock.now_ms()))

    def _membership_of_peer(self, sid: int, config: bytes) -> None:
        """A notification carries its sender's membership, one it activated: newer than ours, we
        missed a reconfig (down, or cut off, when it committed) and take it, as Apache's
        FastLeaderElection does, or we could not even recognise the leader it elected."""
        if self.replica is not None and config == self.replica.election.config:
            return  # ours, as in nearly every notification: not parsed again
        try:
            m = Membership.parse(config)
        except ConfigError as e:
            log.warning("ignoring the configuration server %d sent: %s", sid, e)
            return
        if m.version > self.membership.version and m.servers:
            log.info("server %d has a newer configuration (0x%x) than ours (0x%x): taking it", sid,
                     m.version, self.membership.version)
            self._activate(m)

    # ------------------------------------------------------------------------------------------
    # eras: a server and a store per role, built from disk

    def _load(self) -> Disk:
        """Build the era's server and store from disk; the Disk facts the replica needs."""
        recovered = self.disk.recover()
        server = self.build_server()
        self._set_config_node(recovered.tree)
        server.install(recovered.tree, recovered.sessions)
        server.attach_store(recovered.store)
        server.take_role(roles.LOOKING)
        recovered.store.attach(server)
        era = self.era = Era(server, recovered.store)
        if self.settings.read_only_mode_enabled:
            delay_ms = max(2000, self.settings.tick_ms)
            era.tasks.append(self.clock.later(delay_ms, lambda: self._read_only(era, delay_ms)))
        self.on_era(server)
        last = recovered.last_zxid
        current = self.disk.read_epoch(CURRENT_EPOCH)
        accepted = self.disk.read_epoch(ACCEPTED_EPOCH)
        if current is None:
            current = zxid_epoch(last)
            log.info("%s not found: creating it with epoch %d", CURRENT_EPOCH, current)
            self.disk.write_epoch(CURRENT_EPOCH, current)
        if accepted is None:
            accepted = current
            log.info("%s not found: creating it with epoch %d", ACCEPTED_EPOCH, accepted)
            self.disk.write_epoch(ACCEPTED_EPOCH, accepted)
        if current > accepted:
            raise DiskError(f"the current epoch, {current}, is after the accepted epoch, {accepted}")
        if current < zxid_epoch(last) <= accepted:
            # a learner logs its sync's txns and writes currentEpoch once they are durable (ZOOKEEPER-4643);
            # a role that ended before that fsync came back (closing the log made them durable), or a
            # crash that kept some of them, leaves them here under the old epoch. They are a prefix of
            # that leader's history, as after its NEWLEADER, and were never acknowledged: its epoch is ours
            log.warning("the txn log goes on to 0x%x, past the current epoch %d: taking epoch %d", last, current,
                        zxid_epoch(last))
            current = zxid_epoch(last)
            self.disk.write_epoch(CURRENT_EPOCH, current)
        if zxid_epoch(last) > current:
            raise DiskError(f"the current epoch, {current}, is older than the last zxid, 0x{last:x}")
        return Disk(accepted, current, last, list(recovered.tail)[-COMMITTED_LOG_MAX:])

    def prepare(self) -> ZooKeeperServer:
        """Load the disk for the first election; the server clients are handed to meanwhile."""
        self.first_disk = self._load()
        assert self.era is not None
        return self.era.server

    def start(self) -> None:
        """The first election (after prepare)."""
        disk = self.first_disk
        assert disk is not None and self.era is not None, "prepare() first"
        s = self.settings
        self.replica = Replica(self.my_id, self.membership.quorum, self.observers, tick_ms=s.tick_ms,
                               init_limit=s.init_limit, sync_limit=s.sync_limit, disk=disk,
                               config=self.membership.text())
        log.info("zkfast server %d looking for a leader among %s (observers %s)", self.my_id,
                 sorted(self.voters), sorted(self.observers))
        self._execute(self.replica.start(self.clock.now_ms()))

    def tick(self) -> None:
        if self.replica is not None:
            self._execute(self.replica.on_tick(self.clock.now_ms()))

    def close_era(self) -> None:
        if self.era is not None and not self.era.closed:
            self.era.closed = True
            self.era.store.close()

    def stop(self) -> None:
        self._end_era()

    def _fail(self, why: str) -> None:
        self.failed = why
        self.on_failed()

    # ------------------------------------------------------------------------------------------
    # effects

    def _execute(self, out: Actions) -> None:
        replica = self.replica
        era = self.era
        assert replica is not None and era is not None
        if out.truncate_to is not None:
            self._truncate(out.truncate_to)
        if out.snapshot is not None:
            self._install_snapshot(*out.snapshot)
        era = self.era
        store = era.store
        if out.persist:
            for zxid, data in out.persist:
                txn = decode_txn(data)
                assert txn.zxid == zxid, "a proposal's zxid is its txn's"
                store.commit.append(txn)
                era.decoded[zxid] = txn
            store.commit.flush()
        if out.write_accepted_epoch is not None:
            self.disk.write_epoch(ACCEPTED_EPOCH, out.write_accepted_epoch)
        if out.write_current_epoch is not None:
            self.disk.write_epoch(CURRENT_EPOCH, out.write_current_epoch)
        if out.apply:
            for zxid, data in out.apply:
                txn = era.decoded.pop(zxid, None) or decode_txn(data)
                self._apply_committed(era, txn)
            self.turn_applied = True
        if out.commit_upto is not None and era.leader_commit is not None:
            self.turn_commit_upto = max(self.turn_commit_upto or 0, out.commit_upto)
        if out.activate is not None:
            m = self.pending_memberships.pop(out.activate)
            self.pending_memberships = {z: p for z, p in self.pending_memberships.items() if z > out.activate}
            self._activate(m)
        for sid, p in out.send:
            self._send(era, sid, p)
        for sid, n in out.notify:
            self.net.notify(sid, n.encode())
        for sid in out.drop:
            conn = era.learner_conns.pop(sid, None)
            if conn is not None:
                conn.close()
        if out.role is not None and not out.reload:
            self._took_role(out.role)
        if out.connect_leader is not None:
            spec = self.specs.get(out.connect_leader)
            if spec is None:
                self._execute(replica.on_leader_lost(f"leader {out.connect_leader} is not in the config",
                                                     self.clock.now_ms()))
            else:
                self.net.connect_to_leader(era, out.connect_leader, spec)
        if out.serve:
            self._serve()
        if out.reload:
            self._end_turn()  # what the ending role still sends goes out first
            # its clients go now, as Apache closes every connection when a role ends: a request they
            # sent meanwhile would reach a pipeline whose commit stage has no role behind it
            self._stop_serving(era)
            # the rebuild not from inside whatever called us (the pipeline, a connection): from the loop
            self.clock.soon(self._reload)
        else:
            self.end_turn_soon()

    def end_turn_soon(self) -> None:
        if not self.turn_end_scheduled:
            self.turn_end_scheduled = True
            self.clock.soon(self._end_turn)

    def _end_turn(self) -> None:
        """One write per connection for everything this turn of the loop sent (proposals, commits,
        acks, forwarded requests), and the client replies of the txns it applied."""
        self.turn_end_scheduled = False
        era = self.era
        if era is None or era.closed:
            return
        self._commit_turn(era)
        if self.turn_applied:
            self.turn_applied = False
            era.server.end_batch()
        self._flush_quorum(era)

    def _commit_turn(self, era: Era) -> None:
        """The leader's pipeline applies (and answers) what was committed this turn."""
        upto, self.turn_commit_upto = self.turn_commit_upto, None
        if upto is not None and era.leader_commit is not None:
            era.leader_commit.committed(upto)
            self._release_syncs(era, upto)

    def _flush_quorum(self, era: Era) -> None:
        if era.leader_conn is not None:
            era.leader_conn.flush()
        for conn in era.learner_conns.values():
            conn.flush()

    def _send(self, era: Era, sid: int, p: QuorumPacket) -> None:
        if sid == 0:
            conn = era.leader_conn
            if conn is None:
                return
            if p.type == PacketType.PING:
                p = QuorumPacket(PacketType.PING, p.zxid, self._touches(era))
            conn.send(p)
            return
        conn = era.learner_conns.get(sid)
        if conn is None:
            return
        conn.send(p)
        if p.type == PacketType.SNAP:
            server = era.server
            # a commit of this turn (another learner's ACK read just before) reaches the tree first
            self._commit_turn(era)
            assert server.tree.last_processed_zxid >= p.zxid, "the tree holds everything committed"
            sessions = {sid_: s.timeout_ms for sid_, s in server.sessions.sessions.items()}
            conn.send_snapshot(server.tree, sessions)
            log.info("sent a snapshot at 0x%x to server %d", p.zxid, sid)

    def _touches(self, era: Era) -> bytes:
        sessions = era.server.sessions
        touched = sessions.take_touched()
        out = bytearray()
        for sid in touched:
            s = sessions.sessions.get(sid)
            if s is not None:
                out += struct.pack(">qi", sid, s.timeout_ms)
        return bytes(out)

    # ------------------------------------------------------------------------------------------
    # roles

    def _read_only(self, era: Era, waited_ms: int) -> None:
        """readonlymode.enabled: still no quorum after max(2 s, a tick)? Serve reads (Apache's
        ReadOnlyZooKeeperServer) until a role is taken."""
        replica = self.replica
        if era.closed or self.era is not era or replica is None or replica.state != ServerState.LOOKING:
            return
        server = era.server
        era.global_sessions = set(server.sessions.sessions)
        server.take_role(roles.READ_ONLY)
        log.info("no quorum for %d ms: serving read-only clients", waited_ms)

    def _leave_read_only(self, era: Era) -> None:
        server = era.server
        server.take_role(roles.LOOKING)
        for conn in list(server.connections):
            conn.close()
        for sid in list(server.sessions.sessions):
            if sid not in era.global_sessions:
                server.sessions.remove(sid)
        log.info("leaving read-only mode")

    def _took_role(self, role: ServerState) -> None:
        era = self.era
        assert era is not None and self.replica is not None
        if era.server.read_only:
            self._leave_read_only(era)
        self.mode = MODE_NAMES[role]
        self.role_started_ms = self.clock.now_ms()
        log.info("server %d: %s (leader %s)", self.my_id, self.mode.upper(), self.replica.leader_id)
        era.store.commit.on_failure = self._log_failed
        if role == ServerState.LEADING:
            # the leader's pipeline commits through the quorum; its own log's durability is its ack
            server = era.server
            era.leader_commit = QuorumCommit(self, era.store.commit)
            era.leader_commit.start(server.on_commit)
            self.net.listen_for_learners(era)
        elif role in (ServerState.FOLLOWING, ServerState.OBSERVING):
            era.store.commit.start(self._learner_durable)

    def _serve(self) -> None:
        era = self.era
        replica = self.replica
        assert era is not None and replica is not None
        server = era.server
        if server.serving:
            return
        found = self._tree_membership(server.tree)
        if found is not None and found.version > self.membership.version:
            # a reconfig of the history this server now serves (committed by the new epoch): Apache's
            # leader activates it after NEWLEADER, learners at UPTODATE
            self._activate(found)
            if self.era is not era or replica.leader is None and replica.learner is None:
                return  # it ended the role (this server is no longer a voter)
        epoch = replica.epoch
        if self.settings.reconfig_enabled and self.membership.version == 0 and epoch is not None:
            # ZOOKEEPER-1783: with reconfig on, the file's unversioned config takes the version of
            # the first leader's epoch (its zxid 0)
            self.membership = dataclasses.replace(self.membership, version=make_zxid(epoch, 0))
            replica.election.config = self.membership.text()
            self.disk.write_membership(self.membership.text())  # Apache's processReconfig at UPTODATE
        if found is None or found.version < self.membership.version:
            # a membership taken since the tree was loaded (from a peer's notification, or the one
            # above): /zookeeper/config shows it
            server.tree.set_config(self.membership.text(), self.clock.now_ms(), self.membership.version)
        if replica.leader is not None:
            server.take_role(self._leader_role(era, replica.first_zxid_of_epoch()))
            era.tasks.extend(self.serving_tasks.start(server))
        else:
            server.take_role(roles.learner(self.mode, self._forward, self._revalidate))
        log.info("server %d serving clients as %s, epoch %s, zxid 0x%x, %d ms after taking the role",
                 self.my_id, self.mode, replica.epoch, server.tree.last_processed_zxid,
                 self.clock.now_ms() - self.role_started_ms)

    def _leader_role(self, era: Era, first_zxid: int) -> roles.Role:
        assert era.leader_commit is not None, "a leader's era has its quorum commit stage"
        return roles.leader(first_zxid, era.leader_commit, self,
                            self._prep_reconfig if self.settings.reconfig_enabled else None)

    def _reload(self) -> None:
        self._end_era()
        replica = self.replica
        assert replica is not None
        self.mode = "looking"
        try:
            disk = self._load()
        except (DiskError, OSError) as e:
            log.error("cannot reload from disk: %s; stopping", e)
            self._fail(str(e))
            return
        self._execute(replica.on_reloaded(disk, self.clock.now_ms()))

    def _end_era(self) -> None:
        era = self.era
        if era is None or era.closed:
            return
        era.closed = True
        self.turn_commit_upto = None  # commits of this era's pipeline, never of the next one's
        self.turn_applied = False
        self._stop_serving(era)
        if era.leader_conn is not None:
            era.leader_conn.close()
        for conn in era.learner_conns.values():
            conn.close()
        era.learner_conns.clear()
        self.net.stop_listening()
        # a snapshot still being written finishes on its own thread; the log closes now
        era.store.close()

    def _stop_serving(self, era: Era) -> None:
        server = era.server
        server.stop_serving()
        for t in era.tasks:
            t.cancel()
        for conn in list(server.connections):
            conn.close()

    # ------------------------------------------------------------------------------------------
    # leader side

    def listen_failed(self, why: str) -> None:
        """The leader could not listen for learners."""
        if self.replica is not None:
            self._execute(self.replica.stop(f"quorum port: {why}", self.clock.now_ms()))

    def on_learner_packet(self, conn: Link, p: QuorumPacket) -> None:
        era = self.era
        replica = self.replica
        if era is None or era.closed or replica is None or replica.leader is None:
            conn.close()
            return
        if conn.sid is None:
            if p.type not in (PacketType.FOLLOWERINFO, PacketType.OBSERVERINFO):
                log.warning("learner %s did not start with FOLLOWERINFO/OBSERVERINFO: closing", conn.remote)
                conn.close()
                return
            try:
                sid = LearnerInfo.decode(p.data).sid
            except ValueError:
                conn.close()
                return
            old = era.learner_conns.get(sid)
            if old is not None:
                old.close()
            conn.sid = sid
            era.learner_conns[sid] = conn
            log.info("learner %d connected from %s", sid, conn.remote)
            self._execute(replica.on_learner_packet(sid, p, self.clock.now_ms()))
            return
        sid = conn.sid
        if p.type == PacketType.ACK and p.zxid & 0xFFFFFFFF:
            # a proposal's ACK (not NEWLEADER's): counted with the others of this read
            era.pending_acks.setdefault(sid, []).append(p.zxid)
            return
        self._count_acks(era, sid)
        if p.type == PacketType.REQUEST:
            self._leader_request(era, conn, p)
        elif p.type == PacketType.REVALIDATE:
            self._leader_revalidate(era, conn, p)
        elif p.type == PacketType.PING and p.data:
            self._leader_touch(era, p.data)
        self._execute(replica.on_learner_packet(sid, p, self.clock.now_ms()))

    def on_learner_lost(self, conn: Link) -> None:
        era = self.era
        if era is None or conn.sid is None or era.learner_conns.get(conn.sid) is not conn:
            return
        self._count_acks(era, conn.sid)
        del era.learner_conns[conn.sid]
        log.warning("learner %d disconnected", conn.sid)
        if self.replica is not None and not era.closed:
            self._execute(self.replica.on_learner_lost(conn.sid, self.clock.now_ms()))

    def on_learner_read(self, conn: Link) -> None:
        """The packets of one read from a learner are handled: their ACKs counted together, and the
        client replies they released go out."""
        era = self.era
        if era is None or era.closed:
            return
        if conn.sid is not None:
            self._count_acks(era, conn.sid)
        if era.server.serving:
            era.server.end_batch()

    def _leader_touch(self, era: Era, data: bytes) -> None:
        sessions = era.server.sessions
        for off in range(0, len(data) - 11, 12):
            sid, timeout = struct.unpack_from(">qi", data, off)
            sessions.touch(sid, timeout)

    def _leader_revalidate(self, era: Era, conn: Link, p: QuorumPacket) -> None:
        """A client reconnected to a learner (Apache's Leader.revalidateSession): a live session is
        touched and owned by that learner from now on; the answer goes back in the same packet type."""
        data = p.data or b""
        if len(data) < 12:
            log.warning("learner %s sent a short REVALIDATE (%d bytes)", conn.sid, len(data))
            return
        session_id, timeout_ms = struct.unpack_from(">qi", data)
        valid = era.server.sessions.reopen(session_id, timeout_ms, conn)
        log.debug("session 0x%x revalidated through learner %s: %s", session_id & 0xFFFFFFFFFFFFFFFF, conn.sid,
                  valid)
        conn.send(QuorumPacket(PacketType.REVALIDATE, p.zxid, struct.pack(">q?", session_id, valid)))
        self.end_turn_soon()

    def _leader_request(self, era: Era, conn: Link, p: QuorumPacket) -> None:
        """A write or sync a learner forwarded (Apache's LearnerHandler REQUEST → submitLearnerRequest)."""
        learner = conn.sid
        assert learner is not None
        data = p.data or b""
        if len(data) < 16:
            return
        session_id, cxid, op = struct.unpack_from(">qii", data)
        body = data[16:]
        server = era.server
        if not server.serving:
            return
        if op == OP_SYNC:
            replica = self.replica
            assert replica is not None and replica.leader is not None
            pending = replica.leader.proposals
            if pending:
                era.leader_syncs.append((max(pending), learner))
            else:
                self._send(era, learner, QuorumPacket(PacketType.SYNC, 0))
            return
        log.debug("learner %d forwarded op %d cxid %d of session 0x%x", learner, op, cxid,
                  session_id & 0xFFFFFFFFFFFFFFFF)
        extra = None
        if op == OP_CREATE_SESSION:
            timeout = struct.unpack_from(">i", body)[0] if len(body) >= 4 else server.min_session_timeout_ms
            server.sessions.track(session_id, timeout)
            extra = {"timeout_ms": timeout}
        auth = [(scheme, ident) for scheme, ident in p.authinfo]
        req = Request(session_id, cxid, op, body, auth, None, create_ms=now_ms(), extra=extra, owner=conn)
        if op == OP_CLOSE_SESSION:
            server.sessions.set_closing(session_id)
        server.submit(req)

    def _count_acks(self, era: Era, sid: int) -> None:
        zxids = era.pending_acks.pop(sid, None)
        if zxids and self.replica is not None:
            self._execute(self.replica.on_learner_acks(sid, zxids, self.clock.now_ms()))

    def _release_syncs(self, era: Era, committed: int) -> None:
        if not era.leader_syncs:
            return
        keep = []
        for zxid, sid in era.leader_syncs:
            if zxid <= committed:
                self._send(era, sid, QuorumPacket(PacketType.SYNC, 0))
            else:
                keep.append((zxid, sid))
        era.leader_syncs = keep

    def propose(self, zxid: int, data: bytes,
                membership: tuple[QuorumVerifier, frozenset[int]] | None = None) -> None:
        replica = self.replica
        assert replica is not None
        self._execute(replica.propose(zxid, data, self.clock.now_ms(), membership))

    def on_local_durable(self, zxid: int) -> None:
        replica = self.replica
        if replica is not None and self.era is not None and not self.era.closed:
            self._execute(replica.on_durable(zxid, self.clock.now_ms()))

    def _log_failed(self, exc: BaseException, first_zxid: int, permanent: bool) -> None:
        era = self.era
        if era is None or era.closed:
            return
        era.server.on_commit_failed(exc, first_zxid, permanent)
        if self.replica is not None:
            self._execute(self.replica.stop(f"the txn log failed: {exc}", self.clock.now_ms()))

    # ------------------------------------------------------------------------------------------
    # learner side

    def on_leader_connected(self, era: Era, conn: Link) -> None:
        if era.closed or self.era is not era or self.replica is None:
            conn.close()
            return
        era.leader_conn = conn
        self._execute(self.replica.on_leader_connected(self.clock.now_ms()))

    def on_leader_packet(self, conn: Link, p: QuorumPacket) -> None:
        era = self.era
        if era is None or era.closed or era.leader_conn is not conn or self.replica is None:
            return
        learner = self.replica.learner
        if p.type in BATCHED_FROM_LEADER and learner is not None and learner.phase == "serving":
            # broadcast: one read's packets are handled together (one call into the replica, one
            # log write, one apply pass, one set of client replies)
            era.leader_packets.append(p)
            return
        self.on_leader_read(conn)  # what came before this packet is done first (a SYNC's reply
        # must see every commit before it)
        if p.type == PacketType.SYNC:
            self._finish_sync(era)
            return
        if p.type == PacketType.REVALIDATE:
            self._revalidated(era, p)
            return
        self._execute(self.replica.on_leader_packet(p, self.clock.now_ms()))

    def on_leader_read(self, conn: Link) -> None:
        """The packets of one read from the leader are in: the broadcast among them is handled."""
        era = self.era
        if era is None or era.closed or not era.leader_packets or self.replica is None:
            return
        packets, era.leader_packets = era.leader_packets, []
        self._execute(self.replica.on_leader_packets(packets, self.clock.now_ms()))

    def on_leader_snapshot(self, conn: Link, zxid: int, loaded: tuple[DataTree, dict[int, int]]) -> None:
        era = self.era
        if era is None or era.closed or era.leader_conn is not conn or self.replica is None:
            return
        self._execute(self.replica.on_snapshot(zxid, loaded, self.clock.now_ms()))

    def on_leader_lost(self, conn: Link) -> None:
        era = self.era
        if era is None or era.closed or era.leader_conn is not conn or self.replica is None:
            return
        self.on_leader_read(conn)
        self._execute(self.replica.on_leader_lost("the connection to the leader broke", self.clock.now_ms()))

    def _learner_durable(self, zxid: int) -> None:
        replica = self.replica
        if replica is not None and self.era is not None and not self.era.closed:
            self._execute(replica.on_durable(zxid, self.clock.now_ms()))

    def _truncate(self, zxid: int) -> None:
        """TRUNC: our log went past the leader's history; drop the rest and rebuild the tree."""
        era = self.era
        assert era is not None
        log.warning("the leader says truncate to 0x%x", zxid)
        self._rebuild(era, self.disk.truncate(era.store, zxid))

    def _install_snapshot(self, zxid: int, loaded: tuple[DataTree, dict[int, int]]) -> None:
        """SNAP: the leader's tree becomes ours, durably, before anything is acked."""
        era = self.era
        assert era is not None
        tree, sessions = loaded
        tree.last_processed_zxid = zxid
        self._rebuild(era, self.disk.install_snapshot(era.store, zxid, tree, sessions))

    def _rebuild(self, era: Era, recovered: Recovered) -> None:
        era.store = recovered.store
        recovered.store.attach(era.server)
        era.server.attach_store(recovered.store)
        self._set_config_node(recovered.tree)
        era.server.replace_state(recovered.tree, recovered.sessions)
        recovered.store.commit.start(self._learner_durable)
        recovered.store.commit.on_failure = self._log_failed

    def _forward(self, req: Request) -> None:
        """A learner's write or sync goes to the leader (Apache's Learner.request)."""
        era = self.era
        if era is None or era.closed or era.leader_conn is None:
            return
        body = req.body
        if req.type == OP_CREATE_SESSION:
            body = struct.pack(">i", (req.extra or {}).get("timeout_ms", 0))
        if req.type == OP_SYNC:
            era.pending_syncs.append(req)
        elif req.conn is not None:
            era.forwarded[(req.session_id, req.cxid)] = req
        log.debug("forwarding op %d cxid %d of session 0x%x to the leader", req.type, req.cxid,
                  req.session_id & 0xFFFFFFFFFFFFFFFF)
        data = struct.pack(">qii", req.session_id, req.cxid, req.type) + (body or b"")
        auth = tuple((str(s), str(i)) for s, i in (req.auth_ids or ()))
        era.leader_conn.send(QuorumPacket(PacketType.REQUEST, -1, data, auth))
        self.end_turn_soon()

    def _revalidate(self, conn: Any, session_id: int, timeout_ms: int) -> None:
        """A client reconnects with a session: the leader decides whether it lives, and moves it here
        (Apache's Learner.validateSession), so writes it forwarded from elsewhere get SESSIONMOVED."""
        era = self.era
        if era is None or era.closed or era.leader_conn is None:
            conn.close()
            return
        waiting = era.pending_revalidations.get(session_id)
        if waiting is not None and waiting is not conn:
            waiting.close()  # the client gave up on that connection and tried again
        era.pending_revalidations[session_id] = conn
        log.info("revalidating session 0x%x of client %s with the leader", session_id & 0xFFFFFFFFFFFFFFFF,
                 conn.remote)
        era.leader_conn.send(QuorumPacket(PacketType.REVALIDATE, -1, struct.pack(">qi", session_id, timeout_ms)))
        self.end_turn_soon()

    def _revalidated(self, era: Era, p: QuorumPacket) -> None:
        data = p.data or b""
        if len(data) < 9:
            log.warning("the leader sent a short REVALIDATE (%d bytes)", len(data))
            return
        session_id, valid = struct.unpack_from(">q?", data)
        conn = era.pending_revalidations.pop(session_id, None)
        if conn is None:
            log.warning("missing session 0x%x for validation", session_id & 0xFFFFFFFFFFFFFFFF)
            return
        if conn.closed:
            return
        era.server.finish_session_init(conn, valid)
        era.server.flush_output()

    def _apply_committed(self, era: Era, txn: Txn) -> None:
        server = era.server
        if txn.type in (OP_CREATE_SESSION, OP_CLOSE_SESSION):
            log.debug("applying %s of session 0x%x at zxid 0x%x", OP_NAMES[txn.type],
                      txn.session_id & 0xFFFFFFFFFFFFFFFF, txn.zxid)
        req = era.forwarded.pop((txn.session_id, txn.cxid), None)
        if req is not None:
            server.forwarded_done(req)
            req.txn = txn
        server.make_final(txn, req)
        if txn.type == OP_RECONFIG:
            try:
                self._activate(Membership.parse(txn.data))
            except ConfigError as e:
                log.error("reconfig 0x%x carries a config we cannot read: %s", txn.zxid, e)

    def _finish_sync(self, era: Era) -> None:
        if not era.pending_syncs:
            return
        req = era.pending_syncs.popleft()
        conn = req.conn
        if conn is None:
            return
        server = era.server
        server.forwarded_done(req)
        server.answer_reads_ahead(conn, req)
        server.dequeue(conn, req)
        req.txn = None
        if not conn.closed:
            server.run_read(conn, req)
            server.drain_queue(conn)
        server.flush_output()

    # ------------------------------------------------------------------------------------------
    # figures

    def proposal_sizes(self) -> tuple[int, int, int]:
        """(last, min, max) bytes of this leader's proposals (-1 before the first)."""
        era = self.era
        qc = era.leader_commit if era is not None else None
        if qc is None:
            return -1, -1, -1
        return qc.last_proposal_bytes, qc.min_proposal_bytes, qc.max_proposal_bytes

    def quorum_metrics(self) -> list[tuple[str, object]]:
        era = self.era
        replica = self.replica
        if era is None or replica is None or replica.leader is None:
            return []
        leader = replica.leader
        synced = leader.synced_followers()
        observers = [ls.sid for ls in leader.learners.values() if ls.observer and ls.phase == "serving"]
        return [("learners", len(leader.learners)), ("synced_followers", len(synced)),
                ("synced_non_voting_followers", 0), ("synced_observers", len(observers)),
                ("pending_syncs", len(era.leader_syncs))]
