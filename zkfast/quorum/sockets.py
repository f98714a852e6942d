"""How ensemble members open and accept their TCP connections (election port, quorum port): plaintext,
TLS (`sslQuorum=true`), or both on one port (`portUnification=true`), as Apache ZooKeeper 3.8 does it.

- Connecting: TLS when sslQuorum (server/quorum/QuorumCnxManager.java initiateConnection,
  Learner.createSocket); plaintext otherwise.
- Accepting (server/quorum/UnifiedServerSocket.java): with sslQuorum or portUnification, the first 5
  bytes of an accepted socket say whether it speaks TLS (a handshake record); they are waited for at
  most `ssl.quorum.handshakeDetectionTimeoutMillis`. TLS goes on to a handshake; anything else is
  plaintext, accepted only with portUnification (a rolling upgrade: plaintext peers still connect while
  the others turn TLS on) and otherwise closed. Neither: a plain listener, as before.
- Every handshake is bounded (`handshake_timeout_s`: Apache's socket timeouts, tickTime × syncLimit on
  the election port, tickTime × initLimit on the quorum port). After it, with
  `ssl.quorum.hostnameVerification` (the default), the peer's certificate must name its address
  (zkfast.net.peerhost); until then the connection's protocol sees nothing, so nothing an untrusted
  peer sends is read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol, TypeVar

from zkfast.limits import MAX_PENDING_QUORUM_HANDSHAKES
from zkfast.net.listener import listening_sockets
from zkfast.net.peerhost import HostMismatch, check_peer_host
from zkfast.quorum.tlscontexts import QuorumTls

log = logging.getLogger(__name__)

P = TypeVar("P", bound=asyncio.Protocol)
# loop.create_server's default
LISTEN_BACKLOG = 100
# UnifiedSocket.detectMode reads this many bytes: a TLS record header
TLS_SNIFF_BYTES = 5
TLS_HANDSHAKE_RECORD = 0x16
# after a partial read of those bytes, look again this often (a socket with data is always readable)
SNIFF_POLL_S = 0.005
# accept() failing (out of file descriptors, say): pause this long rather than spin
ACCEPT_PAUSE_S = 1.0


class PeerRefused(ConnectionError):
    """A TLS peer whose certificate does not name its address."""


class Listening(Protocol):
    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class PeerSockets:
    """One port kind's way of connecting and accepting (its handshake timeout differs by port)."""

    def __init__(self, tls: QuorumTls | None, *, ssl_quorum: bool, port_unification: bool,
                 handshake_timeout_s: float) -> None:
        assert tls is not None or not (ssl_quorum or port_unification)
        self.tls = tls
        self.ssl_quorum = ssl_quorum
        self.port_unification = port_unification
        self.handshake_timeout_s = handshake_timeout_s

    async def listen(self, factory: Callable[[], asyncio.Protocol], host: str, port: int) -> Listening:
        loop = asyncio.get_running_loop()
        if self.tls is None:
            return await loop.create_server(factory, host=host, port=port, reuse_address=True)
        listener = _SniffingListener(self, factory, listening_sockets(host, port, LISTEN_BACKLOG))
        listener.start()
        return listener

    async def connect(self, factory: Callable[[], P], host: str, port: int, local_host: str) -> P:
        """A connection to a peer, its protocol made once the peer is trusted; OSError if not."""
        loop = asyncio.get_running_loop()
        if not self.ssl_quorum:
            _, protocol = await loop.create_connection(factory, host=host, port=port, local_addr=(local_host, 0))
            return protocol
        assert self.tls is not None
        gate = _Gate()
        try:
            await loop.create_connection(
                lambda: gate, host=host, port=port, local_addr=(local_host, 0), ssl=self.tls.client(),
                server_hostname=host, ssl_handshake_timeout=self.handshake_timeout_s)
        except (ssl.SSLError, ConnectionAbortedError) as e:  # refused, or the handshake timed out
            log.warning("quorum TLS handshake with %s:%d failed: %s", host, port, _reason(e))
            raise
        assert gate.transport is not None
        peer = gate.transport.get_extra_info("peername")
        return await self._admit(gate, factory, str(peer[0]) if peer else host)

    async def _admit(self, gate: _Gate, factory: Callable[[], P], ip: str) -> P:
        """Check the peer's certificate against its address, then hand the connection to its protocol."""
        assert self.tls is not None and gate.transport is not None
        transport = gate.transport
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        # no certificate: the accepting side did not require one (ssl.quorum.clientAuth=want/none), and
        # ZKTrustManager is only asked about certificates
        try:
            if self.tls.hostname_verification and der:
                await asyncio.wait_for(check_peer_host(der, ip), self.handshake_timeout_s)
        except (HostMismatch, TimeoutError) as e:
            transport.close()
            log.warning("refused quorum TLS peer %s (ssl.quorum.hostnameVerification): %s", ip, _reason(e))
            raise PeerRefused(f"{ip}: the certificate does not name the peer") from None
        except BaseException:  # cancelled (the port closes, a connect timeout): the gate holds it open
            transport.close()
            raise
        return gate.hand_over(factory)


class _Gate(asyncio.Protocol):
    """Holds a TLS connection between its handshake and the host check: reading paused, anything that
    arrives kept for the real protocol, which only takes over once the peer is trusted."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def hand_over(self, factory: Callable[[], P]) -> P:
        if self.lost or self.transport is None:
            raise ConnectionResetError("the peer closed the connection during its TLS handshake")
        protocol = factory()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        for data in self.pending:
            protocol.data_received(data)
        self.pending.clear()
        if not self.transport.is_closing():
            self.transport.resume_reading()
        return protocol


class _SniffingListener:
    """UnifiedServerSocket: accepts, tells TLS from plaintext by the first bytes, handshakes TLS."""

    def __init__(self, owner: PeerSockets, factory: Callable[[], asyncio.Protocol],
                 sockets: list[socket.socket]) -> None:
        self.owner = owner
        self.factory = factory
        self.sockets = sockets
        self.admitting: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(LISTEN_BACKLOG):
            try:
                sock, addr = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.error("cannot accept a quorum connection: %s", e)
                loop.remove_reader(listening.fileno())
                loop.call_later(ACCEPT_PAUSE_S, self._resume, listening)
                return
            if len(self.admitting) >= MAX_PENDING_QUORUM_HANDSHAKES:
                log.warning("closing a quorum connection from %s: %d others are not admitted yet", addr[0],
                            len(self.admitting))
                sock.close()
                continue
            sock.setblocking(False)
            task = loop.create_task(self._admit(sock, str(addr[0])))
            self.admitting.add(task)
            task.add_done_callback(self.admitting.discard)

    def _resume(self, listening: socket.socket) -> None:
        if listening in self.sockets:
            asyncio.get_running_loop().add_reader(listening.fileno(), self._accept, listening)

    async def _admit(self, sock: socket.socket, ip: str) -> None:
        owner = self.owner
        assert owner.tls is not None
        loop = asyncio.get_running_loop()
        try:
            head = await _peek(sock, TLS_SNIFF_BYTES, owner.tls.detection_timeout_s)
        except OSError as e:
            log.debug("quorum connection from %s closed before it said anything: %s", ip, e)
            sock.close()
            return
        except asyncio.CancelledError:
            sock.close()
            raise
        if not (len(head) == TLS_SNIFF_BYTES and head[0] == TLS_HANDSHAKE_RECORD and head[1] == 3):
            if owner.port_unification:
                log.info("accepted a plaintext quorum connection from %s (portUnification)", ip)
                await loop.connect_accepted_socket(self.factory, sock)
            else:
                log.warning("blocked a plaintext quorum connection from %s: sslQuorum=true", ip)
                sock.close()
            return
        # from here on the socket is the transport's: it closes it on any failure
        # (uvloop returns its SSL protocol here, not ours: the gate is kept by hand)
        gate = _Gate()
        try:
            await loop.connect_accepted_socket(lambda: gate, sock, ssl=owner.tls.server(),
                                               ssl_handshake_timeout=owner.handshake_timeout_s)
        except OSError as e:  # ssl.SSLError, the handshake timeout, a reset
            log.warning("quorum TLS handshake with %s failed: %s", ip, _reason(e))
            return
        try:
            await owner._admit(gate, self.factory, ip)
        except OSError as e:  # refused (logged), or gone meanwhile
            log.debug("quorum TLS connection from %s not admitted: %s", ip, e)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets = []
        for task in list(self.admitting):
            task.cancel()

    async def wait_closed(self) -> None:
        if self.admitting:
            await asyncio.wait(list(self.admitting))


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


async def _peek(sock: socket.socket, n: int, timeout_s: float) -> bytes:
    """Up to `n` first bytes of `sock`, left in it: fewer at end of stream or after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            head = sock.recv(n, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            head = None
        if head is not None and (len(head) >= n or not head):
            return head
        left = deadline - loop.time()
        if left <= 0:
            return head or b""
        if head:
            await asyncio.sleep(min(SNIFF_POLL_S, left))
            continue
        readable = loop.create_future()
        loop.add_reader(sock.fileno(), _set_once, readable)
        try:
            await asyncio.wait_for(readable, left)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(sock.fileno())


# no TLS at all: loop.create_server and loop.create_connection as they are
PLAIN = PeerSockets(None, ssl_quorum=False, port_unification=False, handshake_timeout_s=0.0)
