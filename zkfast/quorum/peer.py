"""An ensemble member as a process: the `Replica` state machine wired to sockets, the disk and a server.

Each role (leading, following, observing) is an era with its own `ZooKeeperServer` and `Store`,
built from disk when the era starts: the client port stays open throughout and hands new connections
to the current era's server, which refuses sessions until the era serves. When a role ends the era's
clients are disconnected (they reconnect, as with Apache ZooKeeper), its log is closed, and the next
era is rebuilt from disk before the election starts.

The leader's commit stage is `QuorumCommit`: a txn is logged locally and proposed to the learners,
and the pipeline applies it once `LeaderCore` has a quorum of acks. A learner's pipeline forwards
writes and syncs to the leader (REQUEST) and answers them when the leader's COMMIT (or SYNC) comes
back; everything else is served locally, as a standalone server does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zkfast._datatree import DataTree
from zkfast._jute import OP_CLOSE_SESSION, OP_CREATE_SESSION, OP_RECONFIG, OP_SYNC, Txn, decode_txn
from zkfast._pipeline import Request, now_ms
from zkfast.config import ConfigError, ServerConfig
from zkfast.quorum.membership import BadReconfig, MalformedReconfig, Membership
from zkfast.quorum.replica import Disk, Replica
from zkfast.quorum.transport import SNAP_SIGNATURE, ElectionTransport, PacketConnection
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
from zkfast.server.codes import Code, ZkError
from zkfast.server.zkserver import ZooKeeperServer
from zkfast.storage.apache import decode_tree_stream, encode_tree_stream, write_apache_snapshot
from zkfast.storage.quorumdisk import (
    ACCEPTED_EPOCH,
    ACTIVE_MEMBERSHIP,
    CURRENT_EPOCH,
    read_epoch,
    supersede_logs,
    truncate_after,
    write_atomically,
    write_epoch,
)
from zkfast.storage.recovery import RecoveryError
from zkfast.storage.store import Store

log = logging.getLogger(__name__)

TIMER_MS = 25
# leader → learner packets whose Actions a learner in broadcast merges over one read
BATCHED_FROM_LEADER = frozenset({PacketType.PROPOSAL, PacketType.COMMIT, PacketType.INFORM, PacketType.PING})
# A learner often decides before its leader listens: retry soon, then back off to Apache's
# leaderConnectDelayDuringRetryMs (100 ms).
LEADER_CONNECT_FIRST_RETRY_S = 0.01
LEADER_CONNECT_MAX_RETRY_S = 0.1
# jute.maxbuffer plus room for the packet around a txn
QUORUM_PACKET_SLACK_BYTES = 64 * 1024
MODE_NAMES = {ServerState.LEADING: "leader", ServerState.FOLLOWING: "follower",
              ServerState.OBSERVING: "observer", ServerState.LOOKING: "looking"}


def mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class QuorumCommit:
    """The leader's commit stage: log locally, propose to the learners, final on a quorum of acks."""

    def __init__(self, peer: QuorumPeer, local: Any) -> None:
        self.peer = peer
        self.local = local
        self._on_commit: Callable[[int], None] | None = None
        self.last_proposal_bytes = -1
        self.min_proposal_bytes = -1
        self.max_proposal_bytes = -1

    def start(self, on_commit: Callable[[int], None]) -> None:
        self._on_commit = on_commit
        self.local.start(self.peer.on_local_durable)

    def append(self, txn: Txn) -> None:
        self.local.append(txn)
        data = txn.to_bytes()
        n = len(data)
        self.last_proposal_bytes = n
        self.min_proposal_bytes = n if self.min_proposal_bytes < 0 else min(self.min_proposal_bytes, n)
        self.max_proposal_bytes = max(self.max_proposal_bytes, n)
        membership = None
        if txn.type == OP_RECONFIG:
            m = self.peer.pending_memberships.get(txn.zxid)
            assert m is not None, "the leader made this reconfig's membership when it prepared it"
            membership = (m.voters, m.observers)
        self.peer.propose(txn.zxid, data, membership)

    def flush(self) -> None:
        self.local.flush()
        self.peer.end_turn_soon()  # the proposals of every client read of this turn in one write

    def committed(self, zxid: int) -> None:
        if self._on_commit is not None:
            self._on_commit(zxid)

    def close(self) -> None:
        self._on_commit = None
        self.local.close()

    def metrics(self) -> list[tuple[str, object]]:
        return self.local.metrics()


class Era:
    """One role's server and disk."""

    def __init__(self, server: ZooKeeperServer, store: Store) -> None:
        self.server = server
        self.store = store
        self.tasks: list[asyncio.Task[Any]] = []
        self.decoded: dict[int, Txn] = {}                     # learner: logged txns not yet applied
        self.forwarded: dict[tuple[int, int], Request] = {}   # learner: writes sent to the leader
        self.pending_syncs: deque[Request] = deque()          # learner: syncs sent to the leader
        self.leader_conn: PacketConnection | None = None
        self.learner_conns: dict[int, PacketConnection] = {}
        self.leader_syncs: list[tuple[int, int]] = []         # leader: (zxid to wait for, learner sid)
        self.global_sessions: set[int] = set()                 # sessions before read-only mode began
        self.pending_acks: dict[int, list[int]] = {}           # leader: proposal ACKs of this read, by learner
        self.leader_batch: Actions | None = None               # learner: broadcast packets of this read
        # learner: reconnecting clients waiting for the leader's word on their session, one per session
        # (so no more than the client connections)
        self.pending_revalidations: dict[int, Any] = {}
        self.closed = False


class QuorumPeer:
    def __init__(self, config: ServerConfig, build_server: Callable[..., ZooKeeperServer]) -> None:
        assert config.is_quorum
        self.config = config
        self.build_server = build_server
        self.my_id = config.server_id
        me = next(s for s in config.servers if s.server_id == self.my_id)
        self.me = me
        self.membership = Membership.of(config.servers, config.quorum_config_version)
        active = self._read_active_membership()
        if active is not None and active.version > self.membership.version:
            # a committed reconfig this server activated before it stopped wins over the file's list
            log.info("membership of reconfig 0x%x (newer than the config file's): %s", active.version,
                     active.text().decode(errors="replace").replace("\n", ", "))
            self.membership = active
        self.voters = self.membership.voters
        self.observers = self.membership.observers
        self.specs = dict(self.membership.servers)
        self.specs.setdefault(self.my_id, me)
        self.pending_memberships: dict[int, Membership] = {}  # leader: reconfig zxid → what it makes
        self.tick_ms = config.tick_time_ms
        assert config.init_limit_ticks and config.sync_limit_ticks
        self.max_packet_bytes = config.jute_max_buffer_bytes + QUORUM_PACKET_SLACK_BYTES
        self.election = ElectionTransport(
            self.my_id, me.host, me.election_port,
            {sid: (s.host, s.election_port) for sid, s in self.membership.servers.items() if sid != self.my_id},
            self._on_election_message)
        self.replica: Replica | None = None
        self.era: Era | None = None
        self.quorum_server: asyncio.base_events.Server | None = None
        # client listeners, AdminServer, metrics: their `server` follows the era's
        self.holders: Callable[[], list[Any]] = lambda: []
        self.first_disk: Disk | None = None
        self.mode = "looking"
        self.failed: str | None = None
        self.stopped = asyncio.Event()
        self.role_started_mono_ms = 0
        # sends and client replies of one event-loop turn go out together, once it ends
        self.turn_end_scheduled = False
        self.turn_applied = False
        self.turn_commit_upto: int | None = None   # leader: the pipeline learns of commits once per turn

    # ------------------------------------------------------------------------------------------
    # the disk

    def _new_tree(self) -> DataTree:
        return DataTree(extended_types=self.config.extended_types_enabled, skip_acl=self.config.skip_acl)

    def _set_config_node(self, tree: DataTree) -> None:
        """The ensemble's membership as Apache's QuorumVerifier prints it, in /zookeeper/config. A
        newer one that the recovered tree holds came from a logged reconfig that may not be committed:
        it stays in the tree, and becomes the membership only if it is part of the history this server
        serves (see _serve), as Apache activates only what it committed."""
        found = self._tree_membership(tree)
        if found is None or found.version <= self.membership.version:
            tree.set_config(self.membership.text(), time.time_ns() // 1_000_000, self.membership.version)

    def _read_active_membership(self) -> Membership | None:
        path = self.config.data_dir / ACTIVE_MEMBERSHIP
        try:
            return Membership.parse(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ConfigError) as e:
            log.warning("ignoring %s: %s", path, e)
            return None

    def _tree_membership(self, tree: DataTree) -> Membership | None:
        data = tree.get_data(b"/zookeeper/config")
        if not data:
            return None
        try:
            return Membership.parse(data)
        except ConfigError as e:
            log.warning("ignoring /zookeeper/config of the tree: %s", e)
            return None

    def _activate(self, m: Membership) -> None:
        """A committed reconfig (Apache's processReconfig): kept in dataDir for restarts, then who
        votes and where the servers are."""
        log.info("reconfig 0x%x committed: voters %s, observers %s", m.version, sorted(m.voters),
                 sorted(m.observers))
        write_atomically(self.config.data_dir, ACTIVE_MEMBERSHIP, m.text())
        self.membership = m
        self.voters, self.observers = m.voters, m.observers
        self.specs = dict(m.servers)
        self.specs.setdefault(self.my_id, self.me)
        self.election.peers = {sid: (s.host, s.election_port) for sid, s in m.servers.items() if sid != self.my_id}
        if self.replica is not None:
            self.replica.election.config = m.text()  # what our notifications tell the others
            self._execute(self.replica.set_membership(m.voters, m.observers, mono_ms()))

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
                                               min_voters=2 if self.config.standalone_enabled else 1)
        except BadReconfig as e:
            log.warning("reconfig refused: %s", e)
            raise ZkError(Code.BADARGUMENTS) from None
        except MalformedReconfig as e:
            log.warning("reconfig refused: %s", e)
            raise ZkError(Code.MARSHALLINGERROR) from None
        if not leader.synced_quorum_of(new.voters):
            log.warning("Reconfig failed - there must be a connected and synced quorum in new configuration")
            raise ZkError(Code.NEWCONFIGNOQUORUM)
        self.pending_memberships[zxid] = new
        return new.text()

    def _load(self) -> Disk:
        """Build the era's server and store from disk; the Disk facts the replica needs."""
        config = self.config
        for d in (config.data_dir, config.data_log_dir):
            (d / "version-2").mkdir(parents=True, exist_ok=True)
        store = Store.from_config(config)
        recovered = store.recover(self._new_tree)
        if recovered.snapshot is None:
            # as Apache's loadData: a snapshot to start from, so logs of later epochs never lack a base
            write_apache_snapshot(recovered.tree, recovered.sessions, store.snap_dir)
        server = self.build_server(config)
        self._set_config_node(recovered.tree)
        server.install(recovered.tree, recovered.sessions)
        server.store = store
        server.mode = "looking"
        server.quorum = self
        store.attach(server)
        self.era = Era(server, store)
        if config.read_only_mode_enabled:
            era = self.era
            era.tasks.append(asyncio.get_running_loop().create_task(self._read_only_later(era)))
        for holder in self.holders():
            holder.server = server
        server.listener = next((h for h in self.holders() if hasattr(h, "tls") and not h.tls), None)
        server.secure_listener = next((h for h in self.holders() if getattr(h, "tls", None)), None)
        last = recovered.last_zxid
        current = read_epoch(config.data_dir, CURRENT_EPOCH)
        accepted = read_epoch(config.data_dir, ACCEPTED_EPOCH)
        if current is None:
            current = zxid_epoch(last)
            log.info("%s not found: creating it with epoch %d", CURRENT_EPOCH, current)
            write_epoch(config.data_dir, CURRENT_EPOCH, current)
        if accepted is None:
            accepted = current
            log.info("%s not found: creating it with epoch %d", ACCEPTED_EPOCH, accepted)
            write_epoch(config.data_dir, ACCEPTED_EPOCH, accepted)
        if current > accepted:
            raise RecoveryError(f"the current epoch, {current}, is after the accepted epoch, {accepted} "
                                f"({config.data_dir})")
        if zxid_epoch(last) > current:
            raise RecoveryError(f"the current epoch, {current}, is older than the last zxid, 0x{last:x}")
        return Disk(accepted, current, last, list(recovered.tail)[-COMMITTED_LOG_MAX:])

    # ------------------------------------------------------------------------------------------
    # running

    def prepare(self) -> ZooKeeperServer:
        """Load the disk for the first election; the server clients are handed to meanwhile."""
        self.first_disk = self._load()
        assert self.era is not None
        return self.era.server

    def close_era(self) -> None:
        if self.era is not None and not self.era.closed:
            self.era.closed = True
            self.era.store.close()

    async def run(self, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        disk = self.first_disk
        assert disk is not None and self.era is not None, "prepare() first"
        self.replica = Replica(self.my_id, self.voters, self.observers, tick_ms=self.tick_ms,
                               init_limit=self.config.init_limit_ticks or 10,
                               sync_limit=self.config.sync_limit_ticks or 5, disk=disk,
                               config=self.membership.text())
        try:
            await self.election.start(self.config.election_port_bind_retry)
        except OSError as e:
            log.error("%s", e)
            return 1
        log.info("zkfast server %d looking for a leader among %s (observers %s)", self.my_id,
                 sorted(self.voters), sorted(self.observers))
        self._execute(self.replica.start(mono_ms()))
        timer = loop.create_task(self._timer())
        stopped = loop.create_task(self.stopped.wait())
        asked = loop.create_task(stop.wait())
        try:
            await asyncio.wait([stopped, asked], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (timer, stopped, asked):
                t.cancel()
            era = self.era
            self._end_era()
            if era is not None:
                await era.store.wait_snapshot()
            await self.election.close()
        return 0 if self.failed is None else 1

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(TIMER_MS / 1000)
            replica = self.replica
            if replica is not None:
                self._execute(replica.on_tick(mono_ms()))

    # ------------------------------------------------------------------------------------------
    # effects

    def _execute(self, out: Actions) -> None:
        replica = self.replica
        era = self.era
        assert replica is not None and era is not None
        server, store = era.server, era.store
        if out.truncate_to is not None:
            self._truncate(out.truncate_to)
            server, store = self.era.server, self.era.store  # type: ignore[union-attr]
        if out.snapshot is not None:
            self._install_snapshot(*out.snapshot)
            server, store = self.era.server, self.era.store  # type: ignore[union-attr]
        if out.persist:
            for zxid, data in out.persist:
                txn = decode_txn(data)
                assert txn.zxid == zxid, "a proposal's zxid is its txn's"
                store.commit.append(txn)
                era.decoded[zxid] = txn
            store.commit.flush()
        if out.write_accepted_epoch is not None:
            write_epoch(self.config.data_dir, ACCEPTED_EPOCH, out.write_accepted_epoch)
        if out.write_current_epoch is not None:
            write_epoch(self.config.data_dir, CURRENT_EPOCH, out.write_current_epoch)
        if out.apply:
            for zxid, data in out.apply:
                txn = era.decoded.pop(zxid, None) or decode_txn(data)
                self._apply_committed(era, txn)
            self.turn_applied = True
        if out.commit_upto is not None and isinstance(server.commit, QuorumCommit):
            self.turn_commit_upto = max(self.turn_commit_upto or 0, out.commit_upto)
        if out.activate is not None:
            m = self.pending_memberships.pop(out.activate)
            self.pending_memberships = {z: p for z, p in self.pending_memberships.items() if z > out.activate}
            self._activate(m)
        for sid, p in out.send:
            self._send(era, sid, p)
        for sid, n in out.notify:
            self.election.send(sid, n.encode())
        for sid in out.drop:
            conn = era.learner_conns.pop(sid, None)
            if conn is not None:
                conn.close()
        if out.role is not None and not out.reload:
            self._took_role(out.role)
        if out.connect_leader is not None:
            era.tasks.append(asyncio.get_running_loop().create_task(self._follow(out.connect_leader)))
        if out.serve:
            self._serve()
        if out.reload:
            self._end_turn()  # what the ending role still sends goes out first
            # not from inside whatever called us (the pipeline, a connection): from the loop
            asyncio.get_running_loop().call_soon(self._reload)
        else:
            self.end_turn_soon()

    def end_turn_soon(self) -> None:
        if not self.turn_end_scheduled:
            self.turn_end_scheduled = True
            asyncio.get_running_loop().call_soon(self._end_turn)

    def _end_turn(self) -> None:
        """One write per connection for everything this turn of the loop sent (proposals, commits,
        acks, forwarded requests), and the client replies of the txns it applied."""
        self.turn_end_scheduled = False
        era = self.era
        if era is None or era.closed:
            return
        upto, self.turn_commit_upto = self.turn_commit_upto, None
        if upto is not None and isinstance(era.server.commit, QuorumCommit):
            era.server.commit.committed(upto)
            self._release_syncs(era, upto)
        if self.turn_applied:
            self.turn_applied = False
            era.server.end_batch()
        self._flush_quorum(era)

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
            assert server.tree.last_processed_zxid >= p.zxid, "the tree holds everything committed"
            sessions = {sid_: s.timeout_ms for sid_, s in server.sessions.sessions.items()}
            conn.send_raw(encode_tree_stream(server.tree, sessions))
            conn.out.write_ustring(SNAP_SIGNATURE)
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

    async def _read_only_later(self, era: Era) -> None:
        """readonlymode.enabled: still no quorum after max(2 s, a tick)? Serve reads (Apache's
        ReadOnlyZooKeeperServer) until a role is taken."""
        await asyncio.sleep(max(2000, self.tick_ms) / 1000)
        replica = self.replica
        if era.closed or self.era is not era or replica is None or replica.state != ServerState.LOOKING:
            return
        server = era.server
        era.global_sessions = set(server.sessions.sessions)
        server.set_read_only(True)
        server.serving = True
        log.info("no quorum for %d ms: serving read-only clients", max(2000, self.tick_ms))

    def _leave_read_only(self, era: Era) -> None:
        server = era.server
        server.serving = False
        for conn in list(server.connections):
            conn.close()
        for sid in list(server.sessions.sessions):
            if sid not in era.global_sessions:
                server.sessions.remove(sid)
        server.set_read_only(False)
        server.mode = "looking"
        log.info("leaving read-only mode")

    def _took_role(self, role: ServerState) -> None:
        era = self.era
        assert era is not None and self.replica is not None
        if era.server.read_only:
            self._leave_read_only(era)
        self.mode = MODE_NAMES[role]
        self.role_started_mono_ms = mono_ms()
        log.info("server %d: %s (leader %s)", self.my_id, self.mode.upper(), self.replica.leader_id)
        era.store.commit.on_failure = self._log_failed
        if role == ServerState.LEADING:
            # the leader's pipeline commits through the quorum; its own log's durability is its ack
            server = era.server
            server.commit = QuorumCommit(self, era.store.commit)
            server.commit.start(server.on_commit)
            era.tasks.append(asyncio.get_running_loop().create_task(self._open_quorum_port(era)))
        elif role in (ServerState.FOLLOWING, ServerState.OBSERVING):
            era.store.commit.start(self._learner_durable)

    def _serve(self) -> None:
        era = self.era
        replica = self.replica
        assert era is not None and replica is not None
        server = era.server
        if server.serving:
            return
        server.mode = self.mode
        server.quorum = self
        found = self._tree_membership(server.tree)
        if found is not None and found.version > self.membership.version:
            # a reconfig of the history this server now serves (committed by the new epoch): Apache's
            # leader activates it after NEWLEADER, learners at UPTODATE
            self._activate(found)
            if self.era is not era or replica.leader is None and replica.learner is None:
                return  # it ended the role (this server is no longer a voter)
        epoch = replica.epoch
        if self.config.reconfig_enabled and self.membership.version == 0 and epoch is not None:
            # ZOOKEEPER-1783: with reconfig on, the file's unversioned config takes the version of
            # the first leader's epoch (its zxid 0)
            self.membership = dataclasses.replace(self.membership, version=make_zxid(epoch, 0))
            replica.election.config = self.membership.text()
        if found is None or found.version < self.membership.version:
            # a membership taken since the tree was loaded (from a peer's notification, or the one
            # above): /zookeeper/config shows it
            server.tree.set_config(self.membership.text(), time.time_ns() // 1_000_000, self.membership.version)
        if replica.leader is not None:
            first = replica.first_zxid_of_epoch()
            server.prep.last_zxid = first
            # as Apache's Leader.startZkServer: the tree counts as at the new epoch's zxid 0
            server.tree.last_processed_zxid = max(server.tree.last_processed_zxid, first)
            loop = asyncio.get_running_loop()
            from zkfast.server.containers import run_container_manager
            from zkfast.server.main import expire_sessions_loop

            era.tasks.append(loop.create_task(expire_sessions_loop(server)))
            era.tasks.append(loop.create_task(run_container_manager(
                server, self.config.container_check_interval_ms, self.config.container_max_per_minute,
                self.config.container_max_never_used_interval_ms)))
            if self.config.reconfig_enabled:
                server.prep.reconfig = self._prep_reconfig
            server.prep.track_owners = True
        else:
            server.forward = self._forward
            server.revalidate = self._revalidate
            server.sessions.track_touches()
        server.serving = True
        log.info("server %d serving clients as %s, epoch %s, zxid 0x%x, %d ms after taking the role",
                 self.my_id, self.mode, replica.epoch, server.tree.last_processed_zxid,
                 mono_ms() - self.role_started_mono_ms)

    def _reload(self) -> None:
        self._end_era()
        replica = self.replica
        assert replica is not None
        self.mode = "looking"
        try:
            disk = self._load()
        except (RecoveryError, OSError) as e:
            log.error("cannot reload from disk: %s; stopping", e)
            self.failed = str(e)
            self.stopped.set()
            return
        self._execute(replica.on_reloaded(disk, mono_ms()))

    def _end_era(self) -> None:
        era = self.era
        if era is None or era.closed:
            return
        era.closed = True
        self.turn_commit_upto = None  # commits of this era's pipeline, never of the next one's
        self.turn_applied = False
        server = era.server
        server.serving = False
        server.forward = None
        server.revalidate = None
        for t in era.tasks:
            t.cancel()
        for conn in list(server.connections):
            conn.close()
        if era.leader_conn is not None:
            era.leader_conn.close()
        for conn in era.learner_conns.values():
            conn.close()
        era.learner_conns.clear()
        if self.quorum_server is not None:
            self.quorum_server.close()
            self.quorum_server = None
        # a snapshot still being written finishes on its own thread; the log closes now
        era.store.close()

    # ------------------------------------------------------------------------------------------
    # leader side

    async def _open_quorum_port(self, era: Era) -> None:
        loop = asyncio.get_running_loop()
        attempts = 0
        while not era.closed:
            try:
                self.quorum_server = await loop.create_server(
                    lambda: PacketConnection(self._on_learner_packet, self._on_learner_lost, learner_side=False,
                                             max_packet_bytes=self.max_packet_bytes,
                                             on_drained=self._learner_batch_done),
                    host=self.me.host, port=self.me.quorum_port, reuse_address=True)
                break
            except OSError as e:
                attempts += 1
                log.error("cannot listen for learners on %s:%d: %s", self.me.host, self.me.quorum_port, e)
                if attempts > 20:
                    self._execute(self.replica.stop(f"quorum port: {e}", mono_ms()))  # type: ignore[union-attr]
                    return
                await asyncio.sleep(0.25)
        if era.closed and self.quorum_server is not None:
            self.quorum_server.close()
            self.quorum_server = None
            return
        log.info("leader listening for learners on %s:%d", self.me.host, self.me.quorum_port)

    def _on_learner_packet(self, conn: PacketConnection, p: QuorumPacket) -> None:
        era = self.era
        replica = self.replica
        if era is None or era.closed or replica is None or replica.leader is None:
            conn.close()
            return
        now = mono_ms()
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
            self._execute(replica.on_learner_packet(sid, p, now))
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
        self._execute(replica.on_learner_packet(sid, p, now))

    def _on_learner_lost(self, conn: PacketConnection) -> None:
        era = self.era
        if era is None or conn.sid is None or era.learner_conns.get(conn.sid) is not conn:
            return
        self._count_acks(era, conn.sid)
        del era.learner_conns[conn.sid]
        log.warning("learner %d disconnected", conn.sid)
        if self.replica is not None and not era.closed:
            self._execute(self.replica.on_learner_lost(conn.sid, mono_ms()))

    def _leader_touch(self, era: Era, data: bytes) -> None:
        sessions = era.server.sessions
        for off in range(0, len(data) - 11, 12):
            sid, timeout = struct.unpack_from(">qi", data, off)
            sessions.touch(sid, timeout)

    def _leader_revalidate(self, era: Era, conn: PacketConnection, p: QuorumPacket) -> None:
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

    def _leader_request(self, era: Era, conn: PacketConnection, p: QuorumPacket) -> None:
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
            self._execute(self.replica.on_learner_acks(sid, zxids, mono_ms()))

    def _learner_batch_done(self, conn: PacketConnection) -> None:
        era = self.era
        if era is None or era.closed:
            return
        if conn.sid is not None:
            self._count_acks(era, conn.sid)
        if era.server.serving:
            era.server.end_batch()

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
                membership: tuple[frozenset[int], frozenset[int]] | None = None) -> None:
        replica = self.replica
        assert replica is not None
        self._execute(replica.propose(zxid, data, mono_ms(), membership))

    def on_local_durable(self, zxid: int) -> None:
        replica = self.replica
        if replica is not None and self.era is not None and not self.era.closed:
            self._execute(replica.on_durable(zxid, mono_ms()))

    def _log_failed(self, exc: BaseException, first_zxid: int, permanent: bool) -> None:
        era = self.era
        if era is None or era.closed:
            return
        era.server.on_commit_failed(exc, first_zxid, permanent)
        if self.replica is not None:
            self._execute(self.replica.stop(f"the txn log failed: {exc}", mono_ms()))

    # ------------------------------------------------------------------------------------------
    # learner side

    async def _follow(self, leader_id: int) -> None:
        era = self.era
        assert era is not None
        spec = self.specs.get(leader_id)
        if spec is None:
            self._execute(self.replica.on_leader_lost(f"leader {leader_id} is not in the config", mono_ms()))  # type: ignore[union-attr]
            return
        loop = asyncio.get_running_loop()
        retry_s = LEADER_CONNECT_FIRST_RETRY_S
        while not era.closed:
            try:
                _, conn = await loop.create_connection(
                    lambda: PacketConnection(self._on_leader_packet, self._on_leader_lost, learner_side=True,
                                             on_drained=self._leader_batch_done,
                                             max_packet_bytes=self.max_packet_bytes,
                                             on_snapshot=self._on_leader_snapshot, load_snapshot=self._load_stream),
                    host=spec.host, port=spec.quorum_port, local_addr=(self.me.host, 0))
                break
            except OSError as e:
                log.debug("cannot connect to leader %d at %s:%d: %s", leader_id, spec.host, spec.quorum_port, e)
                await asyncio.sleep(retry_s)
                retry_s = min(2 * retry_s, LEADER_CONNECT_MAX_RETRY_S)
        else:
            return
        if era.closed:
            conn.close()
            return
        era.leader_conn = conn
        log.info("connected to leader %d at %s:%d", leader_id, spec.host, spec.quorum_port)
        self._execute(self.replica.on_leader_connected(mono_ms()))  # type: ignore[union-attr]

    def _load_stream(self, data: bytes) -> tuple[Any, int]:
        tree = self._new_tree()
        sessions, _, end = decode_tree_stream(data, 0, tree)
        return (tree, sessions), end

    def _on_leader_packet(self, conn: PacketConnection, p: QuorumPacket) -> None:
        era = self.era
        if era is None or era.closed or era.leader_conn is not conn or self.replica is None:
            return
        learner = self.replica.learner
        if p.type in BATCHED_FROM_LEADER and learner is not None and learner.phase == "serving":
            # broadcast: the Actions of one read's packets are done together (one log write, one
            # apply pass, one set of client replies)
            out = self.replica.on_leader_packet(p, mono_ms())
            era.leader_batch = out if era.leader_batch is None else era.leader_batch.merge(out)
            return
        self._leader_batch_done(conn)  # what came before this packet is done first (a SYNC's reply
        # must see every commit before it)
        if p.type == PacketType.SYNC:
            self._finish_sync(era)
            return
        if p.type == PacketType.REVALIDATE:
            self._revalidated(era, p)
            return
        self._execute(self.replica.on_leader_packet(p, mono_ms()))

    def _leader_batch_done(self, conn: PacketConnection) -> None:
        era = self.era
        if era is None or era.closed or era.leader_batch is None:
            return
        out, era.leader_batch = era.leader_batch, None
        self._execute(out)

    def _on_leader_snapshot(self, conn: PacketConnection, zxid: int, loaded: Any) -> None:
        era = self.era
        if era is None or era.closed or era.leader_conn is not conn or self.replica is None:
            return
        self._execute(self.replica.on_snapshot(zxid, loaded, mono_ms()))

    def _on_leader_lost(self, conn: PacketConnection) -> None:
        era = self.era
        if era is None or era.closed or era.leader_conn is not conn or self.replica is None:
            return
        self._leader_batch_done(conn)
        self._execute(self.replica.on_leader_lost("the connection to the leader broke", mono_ms()))

    def _learner_durable(self, zxid: int) -> None:
        replica = self.replica
        if replica is not None and self.era is not None and not self.era.closed:
            self._execute(replica.on_durable(zxid, mono_ms()))

    def _truncate(self, zxid: int) -> None:
        """TRUNC: our log went past the leader's history; drop the rest and rebuild the tree."""
        era = self.era
        assert era is not None
        log.warning("the leader says truncate to 0x%x", zxid)
        era.store.close()
        dropped = truncate_after(era.store.snap_dir, era.store.log_dir, zxid)
        log.warning("dropped %d txn(s) after 0x%x", dropped, zxid)
        self._rebuild(era)

    def _rebuild(self, era: Era) -> None:
        store = Store.from_config(self.config)
        recovered = store.recover(self._new_tree)
        era.store = store
        store.attach(era.server)
        era.server.store = store
        self._set_config_node(recovered.tree)
        era.server.replace_state(recovered.tree, recovered.sessions)
        store.commit.start(self._learner_durable)
        store.commit.on_failure = self._log_failed

    def _install_snapshot(self, zxid: int, loaded: Any) -> None:
        """SNAP: the leader's tree becomes ours, durably, before anything is acked."""
        era = self.era
        assert era is not None
        tree, sessions = loaded
        tree.last_processed_zxid = zxid
        era.store.close()
        path = write_apache_snapshot(tree, sessions, era.store.snap_dir)
        truncate_after(era.store.snap_dir, era.store.log_dir, zxid)
        superseded = supersede_logs(era.store.log_dir)
        log.info("installed the leader's snapshot %s (%d sessions); %d older log(s) set aside", path.name,
                 len(sessions), superseded)
        self._rebuild(era)

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
            log.debug("applying %s of session 0x%x at zxid 0x%x",
                      "createSession" if txn.type == OP_CREATE_SESSION else "closeSession",
                      txn.session_id & 0xFFFFFFFFFFFFFFFF, txn.zxid)
        req = era.forwarded.pop((txn.session_id, txn.cxid), None)
        if req is not None and req.conn.queue and req.conn.queue[0] is not req:
            server.answer_reads_ahead(req.conn, req)  # before the txn: they must not see it
        if txn.type == OP_CREATE_SESSION:
            server.sessions.track(txn.session_id, txn.timeout)
        server.apply(txn.type, txn)
        if txn.type == OP_RECONFIG:
            try:
                self._activate(Membership.parse(txn.data))
            except ConfigError as e:
                log.error("reconfig 0x%x carries a config we cannot read: %s", txn.zxid, e)
        if req is not None:
            server.forwarded_done(req)
            req.txn = txn
            server.finish(req)
        elif txn.type == OP_CLOSE_SESSION:
            # the leader expired it (or it was closed through another server): drop its client here
            other = server.by_session.get(txn.session_id)
            if other is not None:
                other.close_after_flush()

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
    # election

    def _on_election_message(self, sid: int, payload: bytes) -> None:
        n = Notification.decode(payload)
        if n is None:
            log.warning("malformed election message from server %d (%d bytes)", sid, len(payload))
            return
        if self.replica is None or self.era is None:
            return
        if n.config:
            self._membership_of_peer(sid, n.config)
        self._execute(self.replica.on_notification(sid, n, mono_ms()))

    def _membership_of_peer(self, sid: int, config: bytes) -> None:
        """A notification carries its sender's membership, one it activated: newer than ours, we
        missed a reconfig (down, or cut off, when it committed) and take it, as Apache's
        FastLeaderElection does, or we could not even recognise the leader it elected."""
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
    # figures

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

    def data_dir(self) -> Path:
        return self.config.data_dir
