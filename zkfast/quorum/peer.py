"""An ensemble member as a process: the quorum driver (zkfast.quorum.driver) over asyncio sockets and files.

Each role (leading, following, observing) is an era with its own `ZooKeeperServer` and `Store`,
built from disk when the era starts: the client port stays open throughout and hands new connections
to the current era's server, which refuses sessions until the era serves. When a role ends the era's
clients are disconnected (they reconnect, as with Apache ZooKeeper), its log is closed, and the next
era is rebuilt from disk before the election starts.

This module decides nothing: it implements the driver's ports (`FileDisk`, `SocketNet`,
`LoopScheduler`, `LeaderTasks`) and runs its clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zkfast._datatree import DataTree
from zkfast.config import EMBEDDED_SOURCE, ServerConfig, ServerSpec
from zkfast.quorum.auth import load_quorum_auth
from zkfast.quorum.configfiles import back_up_static_config, write_config_files
from zkfast.quorum.driver import Cancel, DiskError, Era, EraStore, QuorumDriver, Recovered, Settings
from zkfast.quorum.membership import Membership
from zkfast.quorum.sockets import Listening, PeerSockets
from zkfast.quorum.tlscontexts import QuorumTls
from zkfast.quorum.transport import ElectionTransport, PacketConnection
from zkfast.server.zkserver import ZooKeeperServer
from zkfast.storage.apache import decode_tree_stream, write_apache_snapshot
from zkfast.storage.quorumdisk import (
    ACTIVE_MEMBERSHIP,
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
# A learner often decides before its leader listens: retry soon, then back off to Apache's
# leaderConnectDelayDuringRetryMs (100 ms).
LEADER_CONNECT_FIRST_RETRY_S = 0.01
LEADER_CONNECT_MAX_RETRY_S = 0.1
# jute.maxbuffer plus room for the packet around a txn
QUORUM_PACKET_SLACK_BYTES = 64 * 1024
# after the leader refused our quorum SASL handshake
LEADER_AUTH_RETRY_S = 1.0
# the leader tries to listen for learners this many times, 0.25 s apart, before it gives up the role
LISTEN_ATTEMPTS = 20


def mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class FileDisk:
    """The driver's disk: dataDir and dataLogDir as Apache ZooKeeper lays them out."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # where Apache's record of a membership change goes too (configfiles.py): the zoo.cfg we run on
        self.config_file = Path(config.source).resolve() if config.source != EMBEDDED_SOURCE else None

    def new_tree(self) -> DataTree:
        return DataTree(extended_types=self.config.extended_types_enabled, skip_acl=self.config.skip_acl)

    def recover(self) -> Recovered:
        config = self.config
        for d in (config.data_dir, config.data_log_dir):
            (d / "version-2").mkdir(parents=True, exist_ok=True)
        recovered = self._reopen()
        if not recovered.had_snapshot:
            # as Apache's loadData: a snapshot to start from, so logs of later epochs never lack a base
            assert isinstance(recovered.store, Store)
            write_apache_snapshot(recovered.tree, recovered.sessions, recovered.store.snap_dir)
        return recovered

    def _reopen(self) -> Recovered:
        store = Store.from_config(self.config)
        try:
            r = store.recover(self.new_tree)
        except RecoveryError as e:
            raise DiskError(str(e)) from e
        return Recovered(store, r.tree, r.sessions, r.last_zxid, list(r.tail), r.snapshot is not None)

    def truncate(self, store: EraStore, zxid: int) -> Recovered:
        assert isinstance(store, Store)
        store.close()
        dropped = truncate_after(store.snap_dir, store.log_dir, zxid)
        log.warning("dropped %d txn(s) after 0x%x", dropped, zxid)
        return self._reopen()

    def install_snapshot(self, store: EraStore, zxid: int, tree: DataTree, sessions: dict[int, int]) -> Recovered:
        assert isinstance(store, Store)
        store.close()
        path = write_apache_snapshot(tree, sessions, store.snap_dir)
        truncate_after(store.snap_dir, store.log_dir, zxid)
        superseded = supersede_logs(store.log_dir)
        log.info("installed the leader's snapshot %s (%d sessions); %d older log(s) set aside", path.name,
                 len(sessions), superseded)
        return self._reopen()

    def read_epoch(self, name: str) -> int | None:
        return read_epoch(self.config.data_dir, name)

    def write_epoch(self, name: str, epoch: int) -> None:
        write_epoch(self.config.data_dir, name, epoch)

    def read_membership(self) -> bytes | None:
        path = self.config.data_dir / ACTIVE_MEMBERSHIP
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("ignoring %s: %s", path, e)
            return None

    def write_membership(self, text: bytes) -> None:
        write_atomically(self.config.data_dir, ACTIVE_MEMBERSHIP, text)
        if self.config_file is not None:
            m = Membership.parse(text)
            try:
                written = write_config_files(self.config_file, m, self.config.server_id)
            except OSError as e:
                # as Apache: logged, and the server goes on (dataDir/membership is what we start from)
                log.error("cannot record the membership in %s's dynamic config file: %s", self.config_file, e)
            else:
                log.info("membership 0x%x written to %s; %s points at it", m.version, written.name,
                         self.config_file.name)

    def back_up_config(self) -> None:
        """Before any reconfig rewrites zoo.cfg (Apache's backupOldConfig, at start-up)."""
        config = self.config
        if self.config_file is not None and config.reconfig_enabled and config.dynamic_config_file is None:
            try:
                back_up_static_config(self.config_file)
            except OSError as e:
                log.error("cannot back up %s: %s", self.config_file, e)


class LoopScheduler:
    """The driver's clock: the event loop's, in monotonic milliseconds."""

    def now_ms(self) -> int:
        return mono_ms()

    def soon(self, fn: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(fn)

    def later(self, delay_ms: int, fn: Callable[[], None]) -> Cancel:
        return asyncio.get_running_loop().call_later(delay_ms / 1000, fn)


class LeaderTasks:
    """A serving leader's background work: session expiry and the container manager."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    def start(self, server: ZooKeeperServer) -> list[Cancel]:
        from zkfast.server.containers import run_container_manager
        from zkfast.server.main import expire_sessions_loop

        loop = asyncio.get_running_loop()
        c = self.config
        return [loop.create_task(expire_sessions_loop(server)),
                loop.create_task(run_container_manager(server, c.container_check_interval_ms,
                                                       c.container_max_per_minute,
                                                       c.container_max_never_used_interval_ms))]


class SocketNet:
    """The driver's network: the election transport, the leader's quorum port, a learner's link."""

    def __init__(self, peer: QuorumPeer, me: ServerSpec, max_packet_bytes: int,
                 election: ElectionTransport, sockets: PeerSockets) -> None:
        self.peer = peer
        self.me = me
        self.max_packet_bytes = max_packet_bytes
        self.election = election
        self.sockets = sockets  # the quorum port's: plaintext, TLS or both (sslQuorum, portUnification)
        self.quorum_server: Listening | None = None

    @property
    def driver(self) -> QuorumDriver:
        return self.peer.driver

    def notify(self, sid: int, payload: bytes) -> None:
        self.election.send(sid, payload)

    def set_election_peers(self, peers: dict[int, tuple[str, int]]) -> None:
        self.election.peers = peers

    def listen_for_learners(self, era: Era) -> None:
        era.tasks.append(asyncio.get_running_loop().create_task(self._listen(era)))

    async def _listen(self, era: Era) -> None:
        driver = self.driver
        attempts = 0
        while not era.closed:
            try:
                self.quorum_server = await self.sockets.listen(
                    lambda: PacketConnection(driver.on_learner_packet, driver.on_learner_lost, learner_side=False,
                                             max_packet_bytes=self.max_packet_bytes,
                                             on_drained=driver.on_learner_read, auth=self.peer.auth,
                                             handshake_timeout_s=self.peer.quorum_handshake_timeout_s),
                    self.me.host, self.me.quorum_port)
                break
            except OSError as e:
                attempts += 1
                log.error("cannot listen for learners on %s:%d: %s", self.me.host, self.me.quorum_port, e)
                if attempts > LISTEN_ATTEMPTS:
                    driver.listen_failed(str(e))
                    return
                await asyncio.sleep(0.25)
        if era.closed:
            self.stop_listening()
            return
        log.info("leader listening for learners on %s:%d", self.me.host, self.me.quorum_port)

    def stop_listening(self) -> None:
        if self.quorum_server is not None:
            self.quorum_server.close()
            self.quorum_server = None

    def connect_to_leader(self, era: Era, leader_id: int, spec: ServerSpec) -> None:
        era.tasks.append(asyncio.get_running_loop().create_task(self._follow(era, leader_id, spec)))

    async def _follow(self, era: Era, leader_id: int, spec: ServerSpec) -> None:
        driver = self.driver
        retry_s = LEADER_CONNECT_FIRST_RETRY_S
        while not era.closed:
            try:
                conn = await self.sockets.connect(
                    lambda: PacketConnection(driver.on_leader_packet, driver.on_leader_lost, learner_side=True,
                                             on_drained=driver.on_leader_read,
                                             max_packet_bytes=self.max_packet_bytes,
                                             on_snapshot=driver.on_leader_snapshot, load_snapshot=self._load_stream,
                                             auth=self.peer.auth,
                                             handshake_timeout_s=self.peer.quorum_handshake_timeout_s),
                    spec.host, spec.quorum_port, self.me.host)
            except OSError as e:
                log.debug("cannot connect to leader %d at %s:%d: %s", leader_id, spec.host, spec.quorum_port, e)
                await asyncio.sleep(retry_s)
                retry_s = min(2 * retry_s, LEADER_CONNECT_MAX_RETRY_S)
                continue
            if conn.ready is None or await conn.ready:
                break
            # refused by quorum SASL (logged): try again, slowly; the role ends after initLimit ticks
            conn.close()
            await asyncio.sleep(LEADER_AUTH_RETRY_S)
        else:
            return
        log.info("connected to leader %d at %s:%d", leader_id, spec.host, spec.quorum_port)
        driver.on_leader_connected(era, conn)

    def _load_stream(self, data: bytes) -> tuple[Any, int]:
        tree = self.peer.disk.new_tree()
        sessions, _, end = decode_tree_stream(data, 0, tree)
        return (tree, sessions), end


def peer_sockets(config: ServerConfig) -> tuple[PeerSockets, PeerSockets]:
    """The election port's and the quorum port's sockets. Handshakes are bounded as Apache's socket
    timeouts bound them: tickTime x syncLimit (QuorumPeer.createCnxnManager), tickTime x initLimit
    (Learner.createSocket, LearnerCnxAcceptor). TlsConfigError if a store cannot be used."""
    tls = None
    if config.ssl_quorum or config.port_unification:
        tls = QuorumTls(config.ssl_properties, config.ssl_quorum_reload_cert_files)
        log.info("quorum TLS: %s; portUnification %s; hostname verification %s", "on" if config.ssl_quorum else
                 "off (TLS peers accepted)", "on" if config.port_unification else "off",
                 "on" if tls.hostname_verification else "off")
    tick_s = config.tick_time_ms / 1000
    assert config.init_limit_ticks and config.sync_limit_ticks

    def sockets(ticks: int) -> PeerSockets:
        return PeerSockets(tls, ssl_quorum=config.ssl_quorum, port_unification=config.port_unification,
                           handshake_timeout_s=tick_s * ticks)
    return sockets(config.sync_limit_ticks), sockets(config.init_limit_ticks)


class QuorumPeer:
    def __init__(self, config: ServerConfig, build_server: Callable[..., ZooKeeperServer]) -> None:
        assert config.is_quorum
        assert config.init_limit_ticks and config.sync_limit_ticks
        self.config = config
        my_id = config.server_id
        me = next(s for s in config.servers if s.server_id == my_id)
        self.disk = FileDisk(config)
        self.disk.back_up_config()
        # client listeners, AdminServer, metrics (zkfast.server.main.ClientSide): they follow the era's server
        self.client_side: Any = None
        self.stopped = asyncio.Event()
        settings = Settings(tick_ms=config.tick_time_ms, init_limit=config.init_limit_ticks or 10,
                            sync_limit=config.sync_limit_ticks or 5, reconfig_enabled=config.reconfig_enabled,
                            standalone_enabled=config.standalone_enabled,
                            read_only_mode_enabled=config.read_only_mode_enabled)
        membership = Membership.of(config.servers, config.quorum_config_version, config.quorum_hierarchy)
        election_sockets, quorum_sockets = peer_sockets(config)
        self.auth = load_quorum_auth(config)  # SaslConfigError: no start
        # Apache's socket timeouts: QuorumCnxManager's tickTime × syncLimit, the leader's tickTime × initLimit
        tick_s = config.tick_time_ms / 1000
        self.quorum_handshake_timeout_s = tick_s * settings.init_limit
        self.election = ElectionTransport(my_id, me.host, me.election_port, {}, self._on_election_message,
                                          election_sockets, auth=self.auth,
                                          handshake_timeout_s=tick_s * settings.sync_limit,
                                          max_handshakes=config.quorum_cnxn_threads_size)
        self.net = SocketNet(self, me, config.jute_max_buffer_bytes + QUORUM_PACKET_SLACK_BYTES, self.election,
                             quorum_sockets)
        self.driver = QuorumDriver(my_id, me, membership, settings, build_server=lambda: build_server(config),
                                   disk=self.disk, net=self.net, clock=LoopScheduler(),
                                   serving_tasks=LeaderTasks(config), on_era=self._on_era)
        self.driver.on_failed = self.stopped.set
        self.election.peers = self.driver.election_peers()

    @property
    def era(self) -> Era | None:
        return self.driver.era

    def _on_era(self, server: ZooKeeperServer) -> None:
        if self.client_side is not None:  # none yet for the first era: it opens on that one
            self.client_side.use_server(server)

    def _on_election_message(self, sid: int, payload: bytes) -> None:
        self.driver.on_notification(sid, payload)

    def prepare(self) -> ZooKeeperServer:
        """Load the disk for the first election; the server clients are handed to meanwhile."""
        return self.driver.prepare()

    def close_era(self) -> None:
        self.driver.close_era()

    async def run(self, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        try:
            await self.election.start(self.config.election_port_bind_retry)
        except OSError as e:
            log.error("%s", e)
            return 1
        self.driver.start()
        timer = loop.create_task(self._timer())
        stopped = loop.create_task(self.stopped.wait())
        asked = loop.create_task(stop.wait())
        try:
            await asyncio.wait([stopped, asked], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (timer, stopped, asked):
                t.cancel()
            era = self.driver.era
            self.driver.stop()
            if era is not None:
                store = era.store
                assert isinstance(store, Store), "FileDisk's eras keep their files in a Store"
                await store.finish_snapshot()  # bounded: the log has what it would hold
            await self.election.close()
        return 0 if self.driver.failed is None else 1

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(TIMER_MS / 1000)
            self.driver.tick()

    def data_dir(self) -> Path:
        return self.config.data_dir
