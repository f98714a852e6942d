"""Sockets between ensemble members: the election port and the quorum (Zab) port.

Election port (Apache's QuorumCnxManager): one connection per pair of servers, kept by the one with
the larger id. The connecting side sends an initial message; a server that receives a connection from
a smaller id closes it and connects back, so a smaller id that wants to talk connects (which makes the
larger one call back) and queues its messages until the connection it keeps comes up. Messages are
`int length + payload`. Messages to ourselves are looped back, never sent.

With quorum SASL (zkfast.quorum.auth) each connection first runs its handshake: the connecting side
as the learner, the accepting side as the server, right after the initial message on the election port
and at once on the quorum port. Until it ends, nothing received reaches the election or Zab; it is
bounded in time (syncLimit ticks on the election port, initLimit ticks on the quorum port, Apache's
socket timeouts there), and accepted election connections still in their handshake are bounded in
number (`quorum.cnxn.threads.size`, Apache's connection thread pool).

Quorum port: QuorumPackets back to back (`PacketConnection`). After a SNAP packet the leader writes its
tree (`encode_tree_stream`) and the string "BenWasHere"; the learner side reads that stream whole
before it parses packets again.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from zkfast._datatree import DataTree
from zkfast._jute import Reader, WriteBuffer
from zkfast._quorum import SPLIT_MALFORMED, SPLIT_STOP, SPLIT_TOO_BIG
from zkfast.net.connection import set_nodelay
from zkfast.quorum.auth import LearnerHandshake, Outcome, QuorumAuth, ServerHandshake
from zkfast.quorum.sockets import PLAIN, Listening, PeerSockets
from zkfast.quorum.wire import (
    MAX_ELECTION_MESSAGE_BYTES,
    MAX_INITIAL_HOST_BYTES,
    PROTOCOL_VERSION_V1,
    PROTOCOL_VERSION_V2,
    InitialMessage,
    PacketType,
    QuorumPacket,
    split_packets,
)
from zkfast.storage.apache import encode_tree_stream

log = logging.getLogger(__name__)

# election messages queued for a peer we are not connected to: only the newest few matter
ELECTION_QUEUE_MAX = 16
CONNECT_TIMEOUT_S = 5.0
SNAP_SIGNATURE = b"BenWasHere"
# a learner whose unsent packets pass this is too slow to follow: the leader drops it
MAX_LEARNER_BACKLOG_BYTES = 512 * 1024 * 1024


class _Stream(asyncio.Protocol):
    """A TCP connection of the ensemble: its transport, its SASL handshake, and closing it once."""

    transport: asyncio.Transport | None = None
    closed = False
    remote = "?"
    auth: ServerHandshake | LearnerHandshake | None = None  # the handshake in progress
    deadline: asyncio.TimerHandle | None = None
    # the connecting side's handshake: True once through, False if the connection ends first (a
    # learner's quorum connection without SASL has none)
    ready: asyncio.Future[bool] | None = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()  # after what is buffered: an ERROR status still goes out

    def _made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"

    def _bound_handshake(self, timeout_s: float, what: str) -> None:
        """A peer that has not finished its handshake by then is closed (a silent probe costs only itself)."""
        def expire() -> None:
            if not self.closed:
                log.warning("%s %s did not complete its handshake within %d ms: closing", what, self.remote,
                            timeout_s * 1000)
                self.close()
        self.deadline = asyncio.get_running_loop().call_later(timeout_s, expire)

    def _end_handshake(self, through: bool) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.auth = None
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(through)

    def _authenticate(self, buf: bytearray) -> Outcome:
        """Feed the handshake in progress, send what it answers; closed if it refuses the peer."""
        assert self.auth is not None
        out, outcome = self.auth.feed(buf)
        if out and self.transport is not None and not self.closed:
            self.transport.write(out)
        if outcome is Outcome.REFUSED:
            self._end_handshake(False)
            self.close()
        return outcome


# ------------------------------------------------------------------------------------------------
# election


class ElectionConnection(_Stream):
    def __init__(self, owner: ElectionTransport, sid: int | None, initiator: bool) -> None:
        self.owner = owner
        self.sid = sid            # None until the initial message of an accepted connection arrives
        self.initiator = initiator
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.admitted = False     # through the initial message and the handshake: messages flow
        self.counted = False      # one of owner.handshaking
        if initiator:
            self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made(transport)
        owner = self.owner
        if not self.initiator:
            if len(owner.handshaking) >= owner.max_handshakes:
                log.warning("election connection from %s refused: %d others are still in their handshake "
                            "(quorum.cnxn.threads.size)", self.remote, len(owner.handshaking))
                self.close()
                return
            owner.handshaking.add(self)
            self.counted = True
        self._bound_handshake(owner.handshake_timeout_s, "election connection")
        if self.initiator:
            transport.write(InitialMessage(owner.my_id, (owner.my_address,)).encode())
            self.auth = owner.auth.learner_handshake(self.remote) if owner.auth is not None else None
            if self.auth is not None:
                transport.write(self.auth.start())
            else:
                self._admit()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        if not self.admitted and not self._handshake():
            return
        while len(self.buf) >= 4 and not self.closed:
            (n,) = struct.unpack_from(">i", self.buf)
            if n < 0 or n > MAX_ELECTION_MESSAGE_BYTES:
                log.warning("election message of %d bytes from server %s: closing", n, self.sid)
                self.close()
                return
            if len(self.buf) < 4 + n:
                return
            payload = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            assert self.sid is not None
            self.owner.on_message(self.sid, payload)

    def _handshake(self) -> bool:
        """The initial message, then quorum SASL: True once the connection carries messages."""
        if self.sid is None:
            if not self._read_initial():
                return False
            if self.owner.auth is not None:
                self.auth = self.owner.auth.server_handshake(self.remote)
        if self.auth is not None and self._authenticate(self.buf) in (Outcome.PENDING, Outcome.REFUSED):
            return False
        return self._admit()

    def _admit(self) -> bool:
        self.admitted = True
        self._uncount()
        self._end_handshake(True)
        return self.initiator or self.owner.accepted(self)

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.owner.handshaking.discard(self)

    def _read_initial(self) -> bool:
        """The first bytes of an accepted connection: who is calling."""
        if len(self.buf) < 8:
            return False
        (first,) = struct.unpack_from(">q", self.buf)
        if first >= 0:  # before 3.5: just the sid
            sid, used = first, 8
        elif first in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
            if len(self.buf) < 20:
                return False
            sid, n = struct.unpack_from(">qi", self.buf, 8)
            if n < 0 or n > MAX_INITIAL_HOST_BYTES:
                log.warning("election connection with a %d-byte address: closing", n)
                self.close()
                return False
            if len(self.buf) < 20 + n:
                return False
            used = 20 + n
        else:
            log.warning("election connection with unknown protocol version %d: closing", first)
            self.close()
            return False
        del self.buf[:used]
        self.sid = sid
        return True

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(struct.pack(">i", len(payload)) + payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._uncount()
        auth = self.auth
        self._end_handshake(False)
        if (isinstance(auth, ServerHandshake) and not auth.started and auth.lets_unauthenticated_in
                and self.sid is not None and self.sid < self.owner.my_id):
            # A smaller id that does not authenticate called and hung up before 8 bytes told us so: it
            # wants us to call it, as without SASL (Apache, still waiting for those bytes, does not).
            self.owner.call_back(self.sid)
        self.owner.lost(self)


class ElectionTransport:
    """The election port of one server and its connections to the others."""

    def __init__(self, my_id: int, host: str, port: int, peers: dict[int, tuple[str, int]],
                 on_message: Callable[[int, bytes], None], sockets: PeerSockets = PLAIN, *,
                 auth: QuorumAuth | None = None, handshake_timeout_s: float = CONNECT_TIMEOUT_S,
                 max_handshakes: int = 20) -> None:
        """sockets: plaintext, TLS or both (sslQuorum, portUnification). auth: quorum SASL (None: off).
        handshake_timeout_s: how long a connection may take from its TCP connect (after TLS, when on)
        to its first message (initial message and SASL). max_handshakes: accepted connections in that
        phase at once."""
        self.my_id = my_id
        self.sockets = sockets
        self.auth = auth
        self.handshake_timeout_s = handshake_timeout_s
        self.max_handshakes = max_handshakes
        self.handshaking: set[ElectionConnection] = set()
        self.last_sent: dict[int, bytes] = {}  # the newest message for each peer, sent or queued
        self.host = host
        self.port = port
        self.my_address = f"{host}:{port}"
        self.peers = peers
        self.on_message = on_message
        self.conns: dict[int, ElectionConnection] = {}
        self.queues: dict[int, deque[bytes]] = {}
        self.connecting: set[int] = set()
        self.server: Listening | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def start(self, bind_retries: int = 3) -> None:
        self.loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                self.server = await self.sockets.listen(lambda: ElectionConnection(self, None, False),
                                                        self.host, self.port)
                break
            except OSError as e:
                attempt += 1
                if bind_retries and attempt >= bind_retries:
                    raise OSError(e.errno, f"cannot listen for elections on {self.my_address}: {e.strerror}") from e
                log.error("cannot listen for elections on %s: %s; retrying", self.my_address, e)
                await asyncio.sleep(1.0)
        log.info("election port listening on %s", self.my_address)

    def send(self, sid: int, payload: bytes) -> None:
        if sid == self.my_id:
            assert self.loop is not None
            self.loop.call_soon(self.on_message, sid, payload)
            return
        self.last_sent[sid] = payload
        conn = self.conns.get(sid)
        if conn is not None and not conn.closed:
            conn.send(payload)
            return
        q = self.queues.setdefault(sid, deque(maxlen=ELECTION_QUEUE_MAX))
        q.append(payload)
        self._connect(sid)

    def _connect(self, sid: int) -> None:
        if self.closed or sid in self.connecting or sid not in self.peers:
            return
        self.connecting.add(sid)
        assert self.loop is not None
        self.loop.create_task(self._connect_one(sid))

    async def _connect_one(self, sid: int) -> None:
        host, port = self.peers[sid]
        assert self.loop is not None
        try:
            conn = await asyncio.wait_for(self.sockets.connect(
                lambda: ElectionConnection(self, sid, True), host, port, self.host), CONNECT_TIMEOUT_S)
            assert conn.ready is not None
            through = await conn.ready  # as Apache, authenticate even a connection we then drop
        except (TimeoutError, OSError) as e:
            log.debug("cannot open election connection to server %d at %s:%d: %s", sid, host, port, e)
            return
        finally:
            self.connecting.discard(sid)
        if self.closed or not through:
            conn.close()
            return
        if sid > self.my_id:
            # the larger id keeps the connection: ours only told it to call us back
            conn.close()
            return
        self._keep(sid, conn)

    def accepted(self, conn: ElectionConnection) -> bool:
        sid = conn.sid
        assert sid is not None
        if sid < self.my_id:
            conn.close()
            self.call_back(sid)
            return False
        self._keep(sid, conn)
        return True

    def call_back(self, sid: int) -> None:
        """A smaller id called: we have the larger id, so we are the one that connects."""
        if sid in self.peers:
            self._connect(sid)

    def _keep(self, sid: int, conn: ElectionConnection) -> None:
        old = self.conns.get(sid)
        if old is not None and old is not conn:
            old.close()
        self.conns[sid] = conn
        q = self.queues.pop(sid, None)
        if not q and sid in self.last_sent:
            # As Apache's SendWorker: a new connection with nothing queued repeats the last message, so
            # the peer hears from us at once (with quorum SASL on and not required, it reads 8 bytes
            # before it knows that we do not authenticate, and would otherwise wait out its timeout).
            q = deque((self.last_sent[sid],))
        while q:
            conn.send(q.popleft())

    def lost(self, conn: ElectionConnection) -> None:
        if conn.sid is not None and self.conns.get(conn.sid) is conn:
            del self.conns[conn.sid]

    async def close(self) -> None:
        self.closed = True
        for conn in [*self.conns.values(), *self.handshaking]:
            conn.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# ------------------------------------------------------------------------------------------------
# quorum port

STAT_PERSISTED_BYTES = 60


class TreeStreamScanner:
    """Finds where a SNAP's tree stream (and its signature) ends while it arrives, resuming where the
    last call stopped, so a large tree is walked once however it is split into reads."""

    def __init__(self) -> None:
        self.pos = 0
        self.phase = "sessions"
        self.left = 0

    def _int(self, buf: bytearray) -> int | None:
        if len(buf) < self.pos + 4:
            return None
        (v,) = struct.unpack_from(">i", buf, self.pos)
        self.pos += 4
        return v

    def _skip_buffer(self, buf: bytearray, at: int) -> int | None:
        """Where the jute buffer/ustring at `at` ends, None if not all there."""
        if len(buf) < at + 4:
            return None
        (n,) = struct.unpack_from(">i", buf, at)
        end = at + 4 + max(n, 0)
        return end if len(buf) >= end else None

    def feed(self, buf: bytearray) -> int | None:
        while True:
            if self.phase == "sessions":
                n = self._int(buf)
                if n is None:
                    return None
                self.left, self.phase = max(n, 0), "session"
            elif self.phase == "session":
                need = self.pos + 12 * self.left
                if len(buf) < need:
                    return None
                self.pos, self.phase = need, "acls"
            elif self.phase == "acls":
                n = self._int(buf)
                if n is None:
                    return None
                self.left, self.phase = max(n, 0), "acl"
            elif self.phase == "acl":
                if self.left == 0:
                    self.phase = "node"
                    continue
                end = self._acl_entry_end(buf, self.pos)
                if end is None:
                    return None
                self.pos, self.left = end, self.left - 1
            elif self.phase == "node":
                path_end = self._skip_buffer(buf, self.pos)
                if path_end is None:
                    return None
                if path_end - self.pos == 5 and buf[self.pos + 4] == 0x2F:  # "/": the node list ends
                    self.pos, self.phase = path_end, "signature"
                    continue
                data_end = self._skip_buffer(buf, path_end)
                if data_end is None or len(buf) < data_end + 8 + STAT_PERSISTED_BYTES:
                    return None
                self.pos = data_end + 8 + STAT_PERSISTED_BYTES
            else:
                return self._skip_buffer(buf, self.pos)

    def _acl_entry_end(self, buf: bytearray, at: int) -> int | None:
        # long ref, int count, then (int perms, ustring scheme, ustring id) each
        if len(buf) < at + 12:
            return None
        (count,) = struct.unpack_from(">i", buf, at + 8)
        pos = at + 12
        for _ in range(max(count, 0)):
            if len(buf) < pos + 4:
                return None
            end = self._skip_buffer(buf, pos + 4)
            if end is None:
                return None
            end = self._skip_buffer(buf, end)
            if end is None:
                return None
            pos = end
        return pos


class PacketConnection(_Stream):
    """One Zab connection (leader ↔ learner), from either end."""

    def __init__(self, on_packet: Callable[[PacketConnection, QuorumPacket], None],
                 on_lost: Callable[[PacketConnection], None], *, learner_side: bool,
                 max_packet_bytes: int, on_snapshot: Callable[[PacketConnection, int, Any], None] | None = None,
                 load_snapshot: Callable[[bytes], tuple[Any, int]] | None = None,
                 on_made: Callable[[PacketConnection], None] | None = None,
                 on_drained: Callable[[PacketConnection], None] | None = None,
                 auth: QuorumAuth | None = None, handshake_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """auth: quorum SASL (None: off); the leader's side then checks the learner, a learner's side
        authenticates when learnerRequireSasl is on, both within handshake_timeout_s."""
        self.quorum_auth = auth
        self.handshake_timeout_s = handshake_timeout_s
        self.on_packet = on_packet
        self.on_lost = on_lost
        self.on_snapshot = on_snapshot
        self.load_snapshot = load_snapshot  # data → (what it loaded, end offset); ValueError if cut short
        self.on_made = on_made
        self.on_drained = on_drained  # after the packets of one read: end of a batch
        self.learner_side = learner_side
        self.max_packet_bytes = max_packet_bytes
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out = WriteBuffer(64 * 1024)
        self.closed = False
        self.sid: int | None = None
        self.snap_zxid: int | None = None   # reading the tree that follows a SNAP packet
        self.scanner: TreeStreamScanner | None = None
        self.remote = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made(transport)
        auth = self.quorum_auth
        if auth is not None:
            remote = self.remote
            self.auth = auth.learner_handshake(remote) if self.learner_side else auth.server_handshake(remote)
        if self.auth is not None:
            self._bound_handshake(self.handshake_timeout_s, "leader" if self.learner_side else "learner")
            if isinstance(self.auth, LearnerHandshake):
                self.ready = asyncio.get_running_loop().create_future()
                transport.write(self.auth.start())
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        if self.auth is not None:
            if self._authenticate(self.buf) in (Outcome.PENDING, Outcome.REFUSED):
                return
            self._end_handshake(True)
        while not self.closed:
            if self.snap_zxid is not None:
                if not self._read_snapshot():
                    break
                continue
            if not self._read_packets():
                break
        if self.on_drained is not None and not self.closed:
            self.on_drained(self)

    def _read_packets(self) -> bool:
        """Every whole packet buffered, split in C and dropped from the buffer at once; True if a
        SNAP's tree stream follows them."""
        stop_after = PacketType.SNAP if self.learner_side else -1
        packets, used, stopped = split_packets(self.buf, self.max_packet_bytes, stop_after)
        if used:
            del self.buf[:used]
        if stopped == SPLIT_STOP:
            *packets, snap = packets
        for p in packets:
            if self.closed:
                return False
            self.on_packet(self, p)
        if stopped == SPLIT_STOP:
            self.snap_zxid = snap.zxid
            self.scanner = None
            return not self.closed
        if stopped == SPLIT_TOO_BIG:
            (n,) = struct.unpack_from(">i", self.buf, 12)
            log.warning("quorum packet of %d bytes from %s: closing", n, self.remote)
            self.close()
        elif stopped == SPLIT_MALFORMED:
            log.warning("malformed quorum packet from %s: closing", self.remote)
            self.close()
        return False

    def _read_snapshot(self) -> bool:
        """Wait for the whole tree stream (scanned as it arrives), then load it once."""
        assert self.on_snapshot is not None and self.load_snapshot is not None and self.snap_zxid is not None
        if self.scanner is None:
            self.scanner = TreeStreamScanner()
        end = self.scanner.feed(self.buf)
        if end is None:
            return False
        data = bytes(self.buf[:end])
        try:
            loaded, tree_end = self.load_snapshot(data)
            sig = Reader(data, tree_end).read_ustring()
        except (ValueError, EOFError) as e:
            log.error("the leader's snapshot stream is malformed (%s): closing", e)
            self.close()
            return False
        if sig != SNAP_SIGNATURE:
            log.error("the leader's snapshot stream ends with %r, not %r: closing", sig, SNAP_SIGNATURE)
            self.close()
            return False
        zxid = self.snap_zxid
        self.snap_zxid = None
        self.scanner = None
        del self.buf[:end]
        self.on_snapshot(self, zxid, loaded)
        return True

    def send(self, p: QuorumPacket) -> None:
        p.encode_into(self.out)

    def send_snapshot(self, tree: DataTree, sessions: dict[int, int]) -> None:
        """A SNAP's tree stream, after the SNAP packet, and the signature that ends it."""
        self.out.write_raw(encode_tree_stream(tree, sessions))
        self.out.write_ustring(SNAP_SIGNATURE)

    def flush(self) -> None:
        if self.closed or self.transport is None or len(self.out) == 0:
            return
        self.transport.write(self.out.take())
        if self.transport.get_write_buffer_size() > MAX_LEARNER_BACKLOG_BYTES:
            log.warning("%s is not reading its packets (%d bytes queued): closing", self.remote,
                        self.transport.get_write_buffer_size())
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end_handshake(False)
        self.on_lost(self)
