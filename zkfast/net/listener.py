"""The client ports: accept connections and hold Apache ZooKeeper's connection limits.

* maxClientCnxns per client IP and maxCnxns overall count every socket from its accept on, those still
  in their TLS handshake included (Apache's Netty counts a TLS socket only once its handshake is done).
* A socket that has not had its ConnectRequest answered within `nio.sessionlessCnxnTimeout` of its
  accept is closed (Apache's NIO connection expirer; Apache resets that clock whenever the socket
  reads or writes, zkfast does not, so a client that trickles its handshake byte by byte is closed too).
  On secureClientPort that time includes the TLS handshake.
* At most `netty.server.outstandingHandshake.limit` TLS handshakes run at once (zkfast's
  MAX_PENDING_TLS_HANDSHAKES when it is not set; Apache has no limit by default).
* The connection throttle (`connection_throttle_*`, Apache's BlueThrottle) answers each ConnectRequest.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from typing import TYPE_CHECKING

from zkfast._fastpath import STATE_HANDSHAKE, STATE_WAIT_SESSION
from zkfast.limits import DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS, MAX_PENDING_TLS_HANDSHAKES
from zkfast.net.connection import ClientConnection
from zkfast.net.throttle import ConnectionThrottle

if TYPE_CHECKING:
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)


class ClientListener:
    """One listening socket (clientPort or secureClientPort) and the connections it accepted."""

    def __init__(self, server: ZooKeeperServer, host: str | None, port: int, *,
                 max_client_cnxns: int = 60, max_cnxns: int = 0, backlog: int = -1,
                 max_frame_bytes: int = 0xFFFFF, tls: ssl.SSLContext | None = None,
                 x509_super_user: str | None = None,
                 sessionless_timeout_ms: int = DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS,
                 max_pending_handshakes: int = MAX_PENDING_TLS_HANDSHAKES,
                 throttle: ConnectionThrottle | None = None) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.max_client_cnxns = max_client_cnxns
        self.max_cnxns = max_cnxns
        self.backlog = backlog if backlog > 0 else 100
        self.max_frame_bytes = max_frame_bytes
        self.per_ip: Counter[str] = Counter()  # admitted sockets per client IP, handshakes included
        self.live: set[ClientConnection] = set()
        self.handshaking: set[TlsHandshake] = set()
        self.tls = tls
        self.x509_super_user = x509_super_user
        self.sessionless_timeout_s = sessionless_timeout_ms / 1000
        self.max_pending_handshakes = max_pending_handshakes
        self.throttle = throttle
        # Apache's counters: connection_rejected, sessionless_connections_expired,
        # tls_handshake_exceeded, unsuccessful_handshake
        self.rejected = 0
        self.sessionless_expired = 0
        self.handshakes_exceeded = 0
        self.handshakes_failed = 0
        self._deadlines: dict[ClientConnection, asyncio.TimerHandle] = {}
        self._handshake_of: dict[ClientConnection, TlsHandshake] = {}  # until connection_made
        self._server: asyncio.base_events.Server | None = None
        self._tls_sockets: list[socket.socket] = []

    def use_server(self, server: ZooKeeperServer) -> None:
        """An ensemble member's next era: new connections go to its server."""
        self.server = server

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.host if self.host not in (None, "", "0.0.0.0") else None
        if self.tls is None:
            self._server = await loop.create_server(lambda: ClientConnection(self.server, self), host=host,
                                                    port=self.port, backlog=self.backlog, reuse_address=True)
            sockets = list(self._server.sockets)
        else:
            # accepted here rather than by create_server(ssl=...), which shows nothing of a socket
            # before its handshake is done: a handshake counts against the limits from its accept on
            self._tls_sockets = listening_sockets(host, self.port, self.backlog)
            for sock in self._tls_sockets:
                loop.add_reader(sock.fileno(), self._accept_tls, sock)
            sockets = self._tls_sockets
        self.port = sockets[0].getsockname()[1]
        log.info("binding to %sport %s:%d", "secure " if self.tls else "", self.host or "0.0.0.0", self.port)

    # -- admission

    def _refusal(self, ip: str) -> str | None:
        """Why one more socket from `ip` would pass maxCnxns or maxClientCnxns (None: it would not)."""
        if self.max_cnxns > 0 and len(self.live) + len(self.handshaking) >= self.max_cnxns:
            return f"Too many connections - max is {self.max_cnxns}"
        if self.max_client_cnxns > 0 and self.per_ip[ip] >= self.max_client_cnxns:
            return f"Too many connections from {ip} - max is {self.max_client_cnxns}"
        return None

    def _admitted(self, ip: str) -> bool:
        refusal = self._refusal(ip)
        if refusal is not None:
            log.warning("%s", refusal)
            self.rejected += 1
            return False
        self.per_ip[ip] += 1
        return True

    def _forget_ip(self, ip: str) -> None:
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    def admit(self, conn: ClientConnection) -> bool:
        """A connection is made (on secureClientPort: its TLS handshake is done): count it and give it
        the sessionless timeout, or refuse it."""
        loop = asyncio.get_running_loop()
        handshake = self._handshake_of.pop(conn, None)
        if handshake is not None and handshake in self.handshaking:
            self.handshaking.discard(handshake)  # its place in the counts passes to the connection
            accepted_at = handshake.started_at
        elif self._admitted(conn.remote_ip):
            accepted_at = loop.time()
        else:
            return False
        self.live.add(conn)
        self._deadlines[conn] = loop.call_at(accepted_at + self.sessionless_timeout_s, self._expire, conn)
        return True

    def release(self, conn: ClientConnection) -> None:
        self._cancel_deadline(conn)
        if conn in self.live:
            self.live.discard(conn)
            self._forget_ip(conn.remote_ip)

    # -- sessionless connections (Apache's nio.sessionlessCnxnTimeout)

    def session_established(self, conn: ClientConnection) -> None:
        """The ConnectResponse is out: the connection now lives as long as its session."""
        self._cancel_deadline(conn)

    def _cancel_deadline(self, conn: ClientConnection) -> None:
        deadline = self._deadlines.pop(conn, None)
        if deadline is not None:
            deadline.cancel()

    def _expire(self, conn: ClientConnection) -> None:
        self._deadlines.pop(conn, None)
        state = conn.core.state
        if conn.closed or state not in (STATE_HANDSHAKE, STATE_WAIT_SESSION):
            return  # a session, or a four-letter word's answer (which has its own limits)
        if state == STATE_WAIT_SESSION and conn.session_timeout_ms > 0:
            # the ConnectRequest is being answered (a commit, the leader's revalidation): as Apache,
            # the connection's clock becomes the session's timeout
            loop = asyncio.get_running_loop()
            self._deadlines[conn] = loop.call_later(conn.session_timeout_ms / 1000, self._expire, conn)
            return
        self.sessionless_expired += 1
        log.debug("closing %s: no session within nio.sessionlessCnxnTimeout (%d ms)", conn.remote,
                  round(self.sessionless_timeout_s * 1000))
        transport = conn.transport
        conn.close()
        if transport is not None:
            transport.abort()  # nothing is owed to it: no TLS close_notify wait, no lingering

    # -- the connection throttle (Apache's BlueThrottle, asked in processConnectRequest)

    def admit_session(self, conn: ClientConnection, session_id: int) -> bool:
        """Whether the throttle lets this ConnectRequest through; refused ones count as rejected."""
        if self.throttle is None or self.throttle.allow(session_id):
            return True
        self.rejected += 1
        log.warning("Closing connection from %s: connection throttle (zookeeper.connection_throttle_tokens)",
                    conn.remote)
        return False

    # -- TLS handshakes on secureClientPort

    def _accept_tls(self, listening: socket.socket) -> None:
        for _ in range(self.backlog):
            try:
                sock, addr = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # out of file descriptors, say: pause a second rather than spin (as asyncio's servers do)
                log.error("cannot accept on secure port %d: %s", self.port, e)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listening.fileno())
                loop.call_later(1.0, self._resume_accepting, listening)
                return
            self._begin_handshake(sock, str(addr[0]))

    def _resume_accepting(self, listening: socket.socket) -> None:
        if listening in self._tls_sockets:
            asyncio.get_running_loop().add_reader(listening.fileno(), self._accept_tls, listening)

    def _begin_handshake(self, sock: socket.socket, ip: str) -> None:
        loop = asyncio.get_running_loop()
        handshake = TlsHandshake(ip, loop.time())
        if not self._reserve_handshake(handshake):
            sock.close()
            return
        sock.setblocking(False)
        handshake.task = loop.create_task(self._handshake(sock, handshake))

    def _reserve_handshake(self, handshake: TlsHandshake) -> bool:
        if not self._admitted(handshake.ip):
            return False
        if len(self.handshaking) >= self.max_pending_handshakes:
            self._forget_ip(handshake.ip)
            self.handshakes_exceeded += 1
            log.debug("refusing %s: %d TLS handshakes in progress", handshake.ip, len(self.handshaking))
            return False
        self.handshaking.add(handshake)
        return True

    async def _handshake(self, sock: socket.socket, handshake: TlsHandshake) -> None:
        def connection() -> ClientConnection:
            # made now, connected (admit) when the handshake is done
            conn = ClientConnection(self.server, self)
            handshake.conn = conn
            self._handshake_of[conn] = handshake
            return conn

        assert self.tls is not None
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                connection, sock, ssl=self.tls, ssl_handshake_timeout=self.sessionless_timeout_s)
        except OSError as e:  # ssl.SSLError, a reset, the handshake timeout; the socket is closed
            self._end_handshake(handshake, e)

    def _end_handshake(self, handshake: TlsHandshake, failure: BaseException | None = None) -> None:
        if handshake.conn is not None:
            self._handshake_of.pop(handshake.conn, None)
        if handshake in self.handshaking:
            self.handshaking.discard(handshake)
            self._forget_ip(handshake.ip)
            if failure is not None:
                self.handshakes_failed += 1
                log.debug("TLS handshake with %s failed: %s", handshake.ip, failure)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._tls_sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._tls_sockets = []
        if self._server is not None:
            self._server.close()
        for handshake in list(self.handshaking):
            if handshake.task is not None:
                handshake.task.cancel()
            self._end_handshake(handshake)
        for conn in list(self.live):
            conn.close()
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class TlsHandshake:
    """A socket on secureClientPort from its accept until its TLS handshake is done."""

    def __init__(self, ip: str, started_at: float) -> None:
        self.ip = ip
        self.started_at = started_at  # loop.time()
        self.task: asyncio.Task[None] | None = None
        self.conn: ClientConnection | None = None  # the connection that takes over once it is done


def listening_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets as loop.create_server binds them: one per address of `host` (None: every
    interface), SO_REUSEADDR, IPv6 ones IPv6-only; OSError if one cannot be bound."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
