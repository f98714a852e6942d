"""Client connections: the uvloop/asyncio glue around a ConnCore (framing + read hot path).

Input is handled only in `data_received` or in a callback scheduled on the loop, each followed by
one `end_batch` (commit stage flush) and one write per connection that has output.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from zkfast._fastpath import STATE_CLOSED, STATE_OPEN, ConnCore
from zkfast.limits import ANSWER_SLICE_BYTES, MAX_CONNECTION_OUTPUT_BYTES

if TYPE_CHECKING:
    from zkfast._pipeline import Request
    from zkfast.net.listener import ClientListener
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Small replies go out at once (no Nagle delay)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class ClientConnection(asyncio.Protocol):
    """One client socket."""

    def __init__(self, server: ZooKeeperServer, listener: ClientListener) -> None:
        self.server = server
        self.listener = listener
        self.core = ConnCore(server.tree, self, listener.max_frame_bytes)
        self.queue: deque[Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.closing = False
        self.old_client = False
        self.session_timeout_ms = 0
        self.dirty_flag = False
        self.remote = "?"
        self.remote_ip = ""
        self.remote_port = 0
        self.established_ms = 0
        self.in_feed = False
        self.write_paused = False
        self.read_paused = False
        self._answer: Iterator[bytes] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.remote_ip = str(peer[0])
        self.remote_port = int(peer[1]) if len(peer) > 1 else 0
        self.remote = f"/{self.remote_ip}:{self.remote_port}"
        transport.set_write_buffer_limits(high=MAX_CONNECTION_OUTPUT_BYTES // 4)  # type: ignore[attr-defined]
        set_nodelay(transport)
        if not self.listener.admit(self):
            self.closed = True
            self.core.state = STATE_CLOSED
            transport.abort()
            return
        self.core.auth_ids = [("ip", self.remote_ip)]
        if self.listener.tls:
            self._x509_auth(transport)
        if self.server.enforcer is not None:
            self.server.enforcer.refresh(self.core)
        self.server.register(self)

    def _x509_auth(self, transport: asyncio.BaseTransport) -> None:
        # a client certificate authenticates the connection (Apache's X509AuthenticationProvider)
        from zkfast.net.tls import client_cert_id
        from zkfast.server import javaorder

        dn = client_cert_id(transport.get_extra_info("ssl_object"))
        if dn is None:
            return
        ids = [("x509", dn)]
        if dn == self.listener.x509_super_user:
            ids.insert(0, ("super", dn))
            self.core.is_super = True
        self.core.auth_ids = javaorder.auth_set_order([*self.core.auth_ids, *ids])

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        core = self.core
        if core.state == STATE_OPEN:
            # any packet from the client keeps its session alive (Apache touches per request;
            # once per batch gives the same expiry, tickTime-rounded)
            self.server.sessions.touch(core.session_id, self.session_timeout_ms)
        self.in_feed = True
        try:
            self.core.feed(data)
        finally:
            self.in_feed = False
        self.server.end_batch()
        self.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.core.state = STATE_CLOSED
        self.core.closed = True
        self.listener.release(self)
        self.server.connection_lost(self)

    def pause_writing(self) -> None:
        # the client is not reading its replies: stop reading its requests until it does
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()
        if self._answer is not None:
            self._pump_answer()

    # -- ConnCore handler callbacks

    def on_connect(self, body: bytes) -> None:
        self.server.on_connect(self, body)

    def on_request(self, xid: int, op: int, body: bytes) -> None:
        enforcer = self.server.enforcer
        if enforcer is not None and op != 100 and op != 102 and not enforcer.check(self.server, self, xid):
            return  # Apache's AuthenticationHelper.enforceAuthentication (auth and sasl are exempt)
        self.server.on_request(self, xid, op, body)

    def on_four_letter(self, cmd: str, rest: bytes) -> None:
        from zkfast.net import fourletter

        self.stream_answer(fourletter.answer_pieces(self.server, self.listener, cmd, rest))

    # -- answers produced in slices (four-letter words)

    def stream_answer(self, pieces: Iterator[bytes]) -> None:
        """Send an answer that `pieces` produces bit by bit, then close: each turn of the event loop
        takes pieces until ANSWER_SLICE_BYTES are out or the transport holds that much (then
        resume_writing continues), so a big answer neither stalls other clients nor piles up here."""
        self._answer = pieces
        self._pump_answer()

    def _pump_answer(self) -> None:
        pieces = self._answer
        transport = self.transport
        if pieces is None or transport is None or self.closed:
            self._answer = None
            return
        produced = 0
        for piece in pieces:
            transport.write(piece)
            produced += len(piece)
            if produced >= ANSWER_SLICE_BYTES or transport.get_write_buffer_size() >= ANSWER_SLICE_BYTES:
                break
        else:
            self._answer = None
            self.close_after_flush()
            self.flush()
            return
        if not self.write_paused:
            asyncio.get_running_loop().call_soon(self._pump_answer)

    def on_bad_frame(self, length: int) -> None:
        log.warning("Len error. A message from %s with advertised length of %d is either a malformed "
                    "message or too large to process (length is greater than jute.maxbuffer=%d)",
                    self.remote, length, self.listener.max_frame_bytes)
        self.close()

    # -- used by the server

    def established(self) -> None:
        """The ConnectResponse is out: requests buffered meanwhile may now run."""
        self.core.state = STATE_OPEN
        self.established_ms = int(time.time() * 1000)
        if not self.in_feed and self.core.buffered_bytes:
            asyncio.get_event_loop().call_soon(self._process_buffered)

    def _process_buffered(self) -> None:
        if self.closed:
            return
        self.in_feed = True
        try:
            self.core.resume()
        finally:
            self.in_feed = False
        self.server.end_batch()
        self.flush()

    def send_raw(self, frame: bytes) -> None:
        self.core.out.write_raw(frame)
        self.server.mark_dirty(self)

    def flush(self) -> None:
        out = self.core.out
        transport = self.transport
        if transport is None:
            return
        if len(out) and not self.closed:
            transport.write(out.take())
            if transport.get_write_buffer_size() > MAX_CONNECTION_OUTPUT_BYTES:
                # a client that reads nothing (not even its watch events) must not grow us forever
                log.warning("closing %s: %d bytes of replies and events wait for it to read",
                            self.remote, transport.get_write_buffer_size())
                self.close()
                return
        elif len(out):
            out.clear()
        if self.closing and not self.closed:
            self.closed = True
            transport.close()

    def close(self) -> None:
        """Drop the connection now (unsent output is discarded)."""
        if self.closed:
            return
        self.closed = True
        self.core.state = STATE_CLOSED
        self.core.out.clear()
        if self.transport is not None:
            self.transport.close()

    def close_after_flush(self) -> None:
        if self.closed:
            return
        self.closing = True
        self.core.state = STATE_CLOSED
        self.server.mark_dirty(self)

    def pause_reading(self) -> None:
        self.read_paused = True
        self._update_reading()

    def resume_reading(self) -> None:
        self.read_paused = False
        self._update_reading()
        if not self.closed and self.core.buffered_bytes:
            asyncio.get_event_loop().call_soon(self._process_buffered)

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        try:
            if self.read_paused or self.write_paused:
                transport.pause_reading()
            else:
                transport.resume_reading()
        except (RuntimeError, AttributeError):
            pass

    def output_backlog_bytes(self) -> int:
        t = self.transport
        return 0 if t is None else t.get_write_buffer_size()

