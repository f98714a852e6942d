"""Run a server from a ServerConfig until SIGTERM/SIGINT: what `zkfast start-foreground` calls."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import signal
import ssl
import sys
from typing import TYPE_CHECKING, Any

from zkfast._datatree import DataTree, set_digest_enabled
from zkfast.limits import MAX_PENDING_TLS_HANDSHAKES
from zkfast.net.admin import start_admin_server
from zkfast.net.listener import ClientListener
from zkfast.net.metrics import start_metrics_server
from zkfast.net.throttle import ConnectionThrottle
from zkfast.server import roles
from zkfast.server.containers import run_container_manager
from zkfast.server.roles import Role
from zkfast.server.sasl import SaslConfigError, build_sasl_server
from zkfast.server.zkserver import ZooKeeperServer
from zkfast.storage.recovery import RecoveryError
from zkfast.storage.store import Store
from zkfast.version import version_line

GIL_SWITCH_INTERVAL_S = 0.0005

if TYPE_CHECKING:
    from zkfast.config import ServerConfig

log = logging.getLogger("zkfast")


_quota_enforcement_logged: list[bool] = []  # Apache logs it once, when its class loads


def build_server(config: ServerConfig, commit: Any = None, role: Role = roles.LOOKING) -> ZooKeeperServer:
    auth_schemes = []
    for cls in config.auth_providers.values():
        if cls.endswith("SASLAuthenticationProvider"):
            auth_schemes.append("sasl")
    server = ZooKeeperServer(
        tick_time_ms=config.tick_time_ms,
        min_session_timeout_ms=config.min_session_timeout_ms,
        max_session_timeout_ms=config.max_session_timeout_ms,
        server_id=config.server_id,
        extended_types=config.extended_types_enabled,
        skip_acl=config.skip_acl,
        reconfig_enabled=config.reconfig_enabled,
        close_session_txn=config.close_session_txn_enabled,
        super_digest=config.super_digest,
        digest_enabled=config.property("zookeeper.DigestAuthenticationProvider.enabled", "true") != "false",
        global_outstanding_limit=config.global_outstanding_limit,
        auth_schemes=tuple(auth_schemes),
        commit=commit,
        role=role,
        config=config,
    )
    if config.enforce_quota:  # Apache's ZooKeeperServer.enforceQuota (zookeeper.enforceQuota)
        server.prep.enforce_quota = True
        if not _quota_enforcement_logged:
            _quota_enforcement_logged.append(True)
            log.info("zookeeper.enforceQuota = true, Quota Enforce enables")
    server.attach_sasl(build_sasl_server(config.system_properties, server.auth))  # SaslConfigError: no start
    sasl_provider = server.auth.get("sasl")
    if sasl_provider is not None:
        sasl_provider.let_any_sasl_user = config.property("zookeeper.letAnySaslUserDoX")
    return server


def _purge_interval_s(config: ServerConfig) -> float:
    return config.autopurge_purge_interval_hours * 3600.0


async def _autopurge(store: Store, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.get_running_loop().run_in_executor(None, store.purge)
        except OSError as e:
            log.error("purge failed: %s", e)


class ClientSide:
    """What clients and operators connect to: client ports, AdminServer, metrics."""

    def __init__(self) -> None:
        self.listener: ClientListener | None = None
        self.secure: ClientListener | None = None
        self.admin: Any = None
        self.metrics: Any = None

    def use_server(self, server: ZooKeeperServer) -> None:
        """An ensemble member's next era: clients and operators reach its server from now on."""
        for holder in (self.listener, self.secure, self.admin, self.metrics):
            if holder is not None:
                holder.use_server(server)
        server.attach_listeners(self.listener, self.secure)

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.listener is not None:
            await self.listener.close()
        if self.secure is not None:
            await self.secure.close()


def connection_throttle(config: ServerConfig) -> ConnectionThrottle | None:
    """One bucket for both client ports, as Apache's lives in its ZooKeeperServer (None: no throttle)."""
    settings = config.connection_throttle
    if not settings.enabled:
        return None
    return ConnectionThrottle(settings, local_sessions=config.local_sessions_enabled)


def client_listener(server: ZooKeeperServer, config: ServerConfig, host: str | None, port: int,
                    throttle: ConnectionThrottle | None, tls: ssl.SSLContext | None = None,
                    x509_super_user: str | None = None) -> ClientListener:
    handshakes = config.outstanding_handshake_limit
    return ClientListener(server, host, port, max_client_cnxns=config.max_client_cnxns, max_cnxns=config.max_cnxns,
                          backlog=config.client_port_listen_backlog, max_frame_bytes=config.jute_max_buffer_bytes,
                          tls=tls, x509_super_user=x509_super_user,
                          sessionless_timeout_ms=config.sessionless_cnxn_timeout_ms,
                          max_pending_handshakes=handshakes if handshakes > 0 else MAX_PENDING_TLS_HANDSHAKES,
                          throttle=throttle)


async def open_client_side(server: ZooKeeperServer, config: ServerConfig) -> tuple[ClientSide, int]:
    """Listen for clients and operators; (side, 0) or (side, exit code) after closing what opened."""
    side = ClientSide()
    # as Apache: the metrics endpoint and the AdminServer listen before the client port does
    side.metrics = await start_metrics_server(server, config)
    side.admin = await start_admin_server(server, config)
    assert config.client_port is not None
    throttle = connection_throttle(config)
    listener = client_listener(server, config, config.client_port_address, config.client_port, throttle)
    try:
        await listener.start()
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", config.client_port_address or "0.0.0.0",
                  config.client_port, e)
        await side.close()
        return side, 1
    side.listener = listener
    if config.secure_client_port:
        from zkfast.net.tls import TlsConfigError, server_context

        try:
            ctx = server_context(config.ssl_properties)
        except TlsConfigError as e:
            log.error("cannot serve TLS on secureClientPort: %s", e)
            await side.close()
            return side, 2
        server.auth.add_x509(config.property("zookeeper.X509AuthenticationProvider.superUser"))
        secure = client_listener(server, config, config.secure_client_port_address or config.client_port_address,
                                 config.secure_client_port, throttle, tls=ctx,
                                 x509_super_user=config.property("zookeeper.X509AuthenticationProvider.superUser"))
        try:
            await secure.start()
        except OSError as e:
            log.error("cannot listen on secureClientPort %s: %s", config.secure_client_port, e)
            await side.close()
            return side, 1
        side.secure = secure
    server.attach_listeners(side.listener, side.secure)
    return side, 0


def _freeze_heap() -> None:
    # everything loaded so far lives for the whole run: keep the cycle collector off it, and let
    # it run less often (requests make many short-lived objects, few cycles)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass


async def run(config: ServerConfig, stop: asyncio.Event | None = None,
              truncate_log_at: tuple[str, int] | None = None) -> int:
    """Serve until `stop` is set (or a signal arrives); returns the exit code."""
    stop = stop or asyncio.Event()
    _on_signals(stop)
    if config.client_port is None:
        log.error("no clientPort configured: nothing to serve")
        return 2
    # before any tree is built or loaded, as Apache's static initializer reads it
    set_digest_enabled(config.digest_enabled)
    log.info("zookeeper.digest.enabled = %s", "true" if config.digest_enabled else "false")
    if config.is_quorum:
        return await run_quorum(config, stop)
    log.info("zkfast %s starting (standalone)", version_line())
    for d in (config.data_dir, config.data_log_dir):
        (d / "version-2").mkdir(parents=True, exist_ok=True)
    store = Store.from_config(config)
    try:
        recovered = store.recover(lambda: DataTree(extended_types=config.extended_types_enabled,
                                                   skip_acl=config.skip_acl), truncate_log_at)
    except (RecoveryError, OSError) as e:
        log.error("cannot start: %s", e)
        return 3
    try:
        server = build_server(config, commit=store.commit)
    except SaslConfigError as e:
        log.error("cannot start: %s", e)
        store.close()
        return 2
    server.install(recovered.tree, recovered.sessions)
    store.attach(server)
    server.attach_store(store)
    server.take_role(roles.STANDALONE)
    side, code = await open_client_side(server, config)
    if code:
        store.close()
        return code
    _freeze_heap()
    if recovered.replayed or recovered.snapshot is None:
        store.take_snapshot()  # as Apache's loadData: start-up ends with a snapshot
    tasks = [
        asyncio.create_task(expire_sessions_loop(server)),
        asyncio.create_task(run_container_manager(
            server, config.container_check_interval_ms, config.container_max_per_minute,
            config.container_max_never_used_interval_ms)),
    ]
    if config.autopurge_purge_interval_hours > 0:
        tasks.append(asyncio.create_task(_autopurge(store, _purge_interval_s(config))))
    assert side.listener is not None
    log.info("serving clients on %s:%d", config.client_port_address or "0.0.0.0", side.listener.port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        server.stop_serving()
        for t in tasks:
            t.cancel()
        await side.close()
        await store.finish_snapshot()  # bounded: the log has what it would hold
        store.close()
    return 0


async def run_quorum(config: ServerConfig, stop: asyncio.Event) -> int:
    """An ensemble member: QuorumPeer runs the roles, the client side follows its current server."""
    from zkfast.quorum.driver import DiskError
    from zkfast.quorum.peer import QuorumPeer

    log.info("zkfast %s starting as server %d of an ensemble", version_line(), config.server_id)
    from zkfast.net.tls import TlsConfigError

    try:
        peer = QuorumPeer(config, build_server)
        first = peer.prepare()
    except (SaslConfigError, TlsConfigError) as e:
        log.error("cannot start: %s", e)
        return 2
    except (RecoveryError, DiskError, OSError) as e:
        log.error("cannot start: %s", e)
        return 3
    side, code = await open_client_side(first, config)
    if code:
        peer.close_era()
        return code
    peer.client_side = side
    _freeze_heap()
    purge = None
    if config.autopurge_purge_interval_hours > 0:
        purge = asyncio.create_task(_autopurge_quorum(peer, _purge_interval_s(config)))
    try:
        code = await peer.run(stop)
    finally:
        log.info("shutting down")
        if purge is not None:
            purge.cancel()
        await side.close()
    return code


async def _autopurge_quorum(peer: Any, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        era = peer.era
        if era is None:
            continue
        try:
            await asyncio.get_running_loop().run_in_executor(None, era.store.purge)
        except OSError as e:
            log.error("purge failed: %s", e)


async def expire_sessions_loop(server: ZooKeeperServer) -> None:
    sessions = server.sessions
    more = False
    while True:
        # sessions still to expire go on the next turn, after what clients sent meanwhile
        await asyncio.sleep(0 if more else max(sessions.wait_ms(), 1) / 1000)
        more = server.expire_sessions()


def serve(config: ServerConfig, truncate_log_at: tuple[str, int] | None = None) -> int:
    """Run the server on uvloop until SIGTERM/SIGINT; the exit code."""
    import uvloop

    # The txn log and snapshot threads hold the GIL in turns with the event loop; by default a thread
    # that wants it back waits up to 5 ms, which is what a request waited behind a snapshot's LMDB
    # writes. 0.5 ms bounds that wait for a few more switches.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    _return_big_buffers_to_the_system()
    return uvloop.run(run(config, truncate_log_at=truncate_log_at))


# glibc's M_MMAP_THRESHOLD
_M_MMAP_THRESHOLD = -3
BIG_BUFFER_BYTES = 128 * 1024


def _return_big_buffers_to_the_system() -> None:
    """Buffers of big replies, events and log batches are mapped on their own and unmapped when
    freed. By default glibc raises that threshold to the largest buffer freed so far, after which
    such buffers come from the heap, whose holes it keeps: a burst of 1 MB replies then left the
    process tens of MiB bigger than its output limits allow. Elsewhere than glibc, nothing to do."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    if not mallopt(_M_MMAP_THRESHOLD, BIG_BUFFER_BYTES):
        log.warning("mallopt(M_MMAP_THRESHOLD) failed: big buffers may stay in the heap once freed")
