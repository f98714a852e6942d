"""Client connections: the uvloop/asyncio glue around a ConnCore (framing + read hot path).

Input is handled only in `data_received` or in a callback scheduled on the loop, each followed by
one `end_batch` (commit stage flush) and one write per connection that has output.

Memory per connection is bounded by zkfast.limits: the frame loop and the queue drain stop answering
once the unsent output reaches the soft limit, reading pauses while the frame loop is blocked, and
a connection whose output stays above the hard limit for the grace period is aborted.
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
from zkfast._jute import OP_AUTH, OP_SASL
from zkfast.limits import (
    ANSWER_SLICE_BYTES,
    CLOSING_CONNECTION_LINGER_MS,
    CONNECTION_OUTPUT_HARD_LIMIT_BYTES,
    connection_output_soft_limit_bytes,
)

if TYPE_CHECKING:
    from zkfast._pipeline import Request
    from zkfast.net.listener import ClientListener
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)

# how often a connection above its output soft limit is looked at (session touch, wake-up)
OUTPUT_WATCH_INTERVAL_S = 0.2
# the longest a four-letter answer runs in one turn of the event loop
ANSWER_SLICE_S = 0.001


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
        self.core.out_limit = connection_output_soft_limit_bytes(listener.max_frame_bytes)
        self._wake_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._watched_backlog = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.remote_ip = str(peer[0])
        self.remote_port = int(peer[1]) if len(peer) > 1 else 0
        self.remote = f"/{self.remote_ip}:{self.remote_port}"
        self._limit_output(transport)
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
        from zkfast import javaorder
        from zkfast.net.tls import client_cert_id

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
        if core.blocked:
            self._update_reading()

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
        if self._answer is not None:
            self._pump_answer()
            return
        if self.core.stalled or self.core.blocked:
            self.wake()
        else:
            self._update_reading()

    # -- ConnCore handler callbacks

    def on_connect(self, body: bytes) -> None:
        self.server.on_connect(self, body)

    def on_request(self, xid: int, op: int, body: bytes) -> None:
        enforcer = self.server.enforcer
        if enforcer is not None and op != OP_AUTH and op != OP_SASL and not enforcer.check(self.server, self, xid):
            return  # Apache's AuthenticationHelper.enforceAuthentication (auth and sasl are exempt)
        self.server.on_request(self, xid, op, body)

    def on_four_letter(self, cmd: str, rest: bytes) -> None:
        from zkfast.net import fourletter

        self.stream_answer(fourletter.answer_pieces(self.server, self.listener, cmd, rest))

    # -- answers produced in slices (four-letter words)

    def stream_answer(self, pieces: Iterator[bytes]) -> None:
        """Send an answer that `pieces` produces bit by bit, then close: each turn of the event loop
        takes pieces until ANSWER_SLICE_BYTES are out, the transport holds that much (then
        resume_writing continues) or ANSWER_SLICE_S has passed (pieces that write little but
        walk much), so a big answer neither stalls other clients nor piles up here."""
        self._answer = pieces
        self._pump_answer()

    def _pump_answer(self) -> None:
        pieces = self._answer
        transport = self.transport
        if pieces is None or transport is None or self.closed:
            self._answer = None
            return
        produced = 0
        until = time.perf_counter() + ANSWER_SLICE_S
        for piece in pieces:
            transport.write(piece)
            produced += len(piece)
            if produced >= ANSWER_SLICE_BYTES or transport.get_write_buffer_size() >= ANSWER_SLICE_BYTES \
                    or time.perf_counter() >= until:
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
        self.listener.session_established(self)  # no longer sessionless: its expiry timer goes
        self.wake()

    def wake(self) -> None:
        """What stopped this connection (its session being set up, its output, its queue, the
        server's throttle) may have cleared: on a later turn of the loop, answer what waits in its
        queue and take its buffered frames again, then read again if nothing stops it any more."""
        if not self._wake_scheduled and not self.closed:
            self._wake_scheduled = True
            asyncio.get_event_loop().call_soon(self._process_buffered)

    def _process_buffered(self) -> None:
        self._wake_scheduled = False
        if self.closed:
            return
        core = self.core
        core.backlog = self.output_backlog_bytes()
        if self.queue and not core.output_full():
            self.server.drain_queue(self)
        self.in_feed = True
        try:
            core.resume()
        finally:
            self.in_feed = False
        self.server.end_batch()
        self.flush()
        self._update_reading()

    def send_raw(self, frame: bytes) -> None:
        self.core.out.write_raw(frame)
        self.server.mark_dirty(self)

    def flush(self) -> None:
        core = self.core
        out = core.out
        transport = self.transport
        if transport is None:
            return
        if len(out) and not self.closed:
            transport.write(out.take_view())
        elif len(out):
            out.clear()
        if self.closing and not self.closed:
            self.closed = True
            unsent = transport.get_write_buffer_size()
            if unsent >= CONNECTION_OUTPUT_HARD_LIMIT_BYTES:
                transport.abort()
            else:
                transport.close()
                if unsent:
                    # the last reply goes out unless the client never reads it
                    asyncio.get_event_loop().call_later(CLOSING_CONNECTION_LINGER_MS / 1000, transport.abort)
            return
        core.backlog = transport.get_write_buffer_size()
        if core.backlog >= CONNECTION_OUTPUT_HARD_LIMIT_BYTES or core.overflowed:
            log.warning("aborting %s: %d bytes of replies and events wait for it to read them (limit %d)",
                        self.remote, core.backlog, CONNECTION_OUTPUT_HARD_LIMIT_BYTES)
            self.abort()
            return
        if core.backlog >= core.out_limit:
            self._watch_output()
        elif (core.blocked or core.stalled) and not self.write_paused:
            self.wake()  # the socket took what stopped the answers

    def close(self) -> None:
        """Drop the connection now (unsent output is discarded)."""
        if self.closed:
            return
        self.closed = True
        self.core.state = STATE_CLOSED
        self.core.out.clear()
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size():
                transport.abort()  # its buffers go at once, as Apache's NIO close drops its queue
            else:
                transport.close()

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
        if self.core.buffered_bytes or self.core.blocked:
            self.wake()
        else:
            self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        try:
            if self.read_paused or self.write_paused or self.core.blocked:
                transport.pause_reading()
            else:
                transport.resume_reading()
        except (RuntimeError, AttributeError):
            pass

    # -- output limits

    def _limit_output(self, transport: asyncio.BaseTransport) -> None:
        # pause_writing at the soft limit, resume_writing once the client has read half of it
        limit = self.core.out_limit
        transport.set_write_buffer_limits(high=limit, low=limit // 2)  # type: ignore[attr-defined]

    def _watch_output(self) -> None:
        if self._watchdog is None and not self.closed:
            self._watched_backlog = self.output_backlog_bytes()
            self._watchdog = asyncio.get_event_loop().call_later(OUTPUT_WATCH_INTERVAL_S, self._check_output)

    def _check_output(self) -> None:
        """While the output is above the soft limit: a client that reads keeps its session alive
        (its pings wait unread behind its replies), and one whose output drained is woken."""
        self._watchdog = None
        if self.closed:
            return
        backlog = self.output_backlog_bytes() + len(self.core.out)
        if backlog < self._watched_backlog and self.core.state == STATE_OPEN:
            self.server.sessions.touch(self.core.session_id, self.session_timeout_ms)
        if backlog >= self.core.out_limit:
            self._watch_output()
        elif self.core.blocked or self.core.stalled:
            self.wake()

    def abort(self) -> None:
        """Drop the connection and everything buffered for it at once."""
        self.closed = True
        self.core.state = STATE_CLOSED
        self.core.out.clear()
        if self.transport is not None:
            self.transport.abort()

    def output_backlog_bytes(self) -> int:
        t = self.transport
        return 0 if t is None else t.get_write_buffer_size()

