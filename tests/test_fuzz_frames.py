"""Hypothesis throws broken frames at one live zkfast: garbage before the handshake, valid requests
with flipped bytes, truncated frames, bogus and giant lengths, random opcodes, frames cut into
random pieces. After every example the server must still serve (`srvr`, a fresh session) and two
idle clients connected all along (kazoo and a raw one) must be undisturbed: same session, no state
change, no unexpected frame.

Frames are built with `struct` (tests/testbase/rawclient.py), never with zkfast's codec.
Where Apache ZooKeeper's answer is fixed (a length over jute.maxbuffer closes the connection at
once; an unknown opcode gets UNIMPLEMENTED and the connection is closed) the test asserts it.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import fast_retry, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.client import KazooClient, KazooState
from kazoo.security import make_digest_acl
from testbase.process import (
    ApacheZkProcess,
    ServerProcess,
    ZkfastProcess,
    apache_available,
    four_letter,
)
from testbase.rawclient import OPEN, RawSession, connect_request, frame, request, u_acl, u_str

MAX_BUFFER = 0xFFFFF  # Apache's default jute.maxbuffer
PING_XID = -2
UNIMPLEMENTED = -6
# opcodes Apache's Request.isValid accepts, plus those handled before it (auth, sasl)
KNOWN_OPS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
             100, 101, 102, 103, 104, 105, 106, 107, -10, -11}
IDLE_ZONE = "/idle-zone"
IDLE_AUTH = ("digest", "idle:idle-pw")


# ZKFAST_FUZZ_SCALE=10 runs ten times as many examples (a longer hunt than CI's ~20 s)
FUZZ_SCALE = float(os.environ.get("ZKFAST_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max(1, int(max_examples * FUZZ_SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


READ_S = 3.0


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def strings(items: list[str]) -> bytes:
    return i32(len(items)) + b"".join(u_str(x) for x in items)


def create_body(path: str, flags: int = 0) -> bytes:
    return u_str(path) + u_str(b"data") + u_acl(OPEN) + i32(flags)


def multi_body(ops: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack(">i?i", op, False, -1) + body for op, body in ops) + struct.pack(">i?i", -1, True, -1)


P = "/fuzz/n"
EXAMPLE_IDS = itertools.count()


def make_templates(node: str) -> list[tuple[int, bytes]]:
    """One valid request of every kind, about `node` (a child of /fuzz)."""
    return [
        (1, create_body(node)),
        (1, create_body(node + "-", flags=3)),
        (15, create_body(node + "e", flags=1)),
        (19, create_body(node + "c", flags=4)),
        (21, create_body(node + "t", flags=5) + i64(60000)),
        (2, u_str(node) + i32(-1)),
        (3, u_str(node) + b"\1"),
        (4, u_str(node) + b"\1"),
        (5, u_str(node) + u_str(b"new") + i32(-1)),
        (6, u_str(node)),
        (7, u_str(node) + u_acl(OPEN) + i32(-1)),
        (8, u_str("/fuzz") + b"\1"),
        (9, u_str(node)),
        (12, u_str("/fuzz") + b"\0"),
        (13, u_str(node) + i32(0)),
        (14, multi_body([(1, create_body(node + "m")), (5, u_str(node + "m") + u_str(b"x") + i32(0)),
                         (13, u_str(node + "m") + i32(1)), (2, u_str(node + "m") + i32(1))])),
        (22, multi_body([(4, u_str(node) + b"\0"), (8, u_str("/fuzz") + b"\0")])),
        (16, u_str("server.9=127.0.0.1:1:2") + u_str(None) + u_str(None) + i64(-1)),
        (17, u_str(node) + i32(1)),
        (18, u_str(node) + i32(3)),
        (100, i32(0) + u_str("digest") + u_str(b"user:pw")),
        (101, i64(0) + strings([node]) + strings([node + "x"]) + strings([node + "c"])),
        (105, i64(0) + strings([node]) + strings([]) + strings([node + "c"]) + strings([node]) + strings([node + "r"])),
        (103, u_str("/fuzz")),
        (104, u_str("/fuzz")),
        (106, u_str(node) + i32(1)),
        (107, b""),
        (11, b""),
    ]


TEMPLATES = make_templates(P)


# ------------------------------------------------------------------------ server and observers


@dataclass
class Idle:
    """Two clients that stay connected and quiet while the fuzzing goes on."""

    server: ZkfastProcess
    kazoo: KazooClient
    states: list[str]
    session: tuple[int, bytes]
    raw: RawSession
    data_calls: list[bytes | None]
    child_calls: list[list[str]]

    def check(self) -> None:
        assert self.kazoo.state == KazooState.CONNECTED
        assert self.states == []  # no SUSPENDED, no LOST: not a single state change
        assert self.kazoo.client_id == self.session
        self.raw.send(frame(request(PING_XID, 11)))
        f = self.raw.read_frame()
        assert f is not None, "the idle raw session's connection was closed"
        xid, _zxid, err = struct.unpack(">iqi", f[:16])
        assert (xid, err, len(f)) == (PING_XID, 0, 16), f"idle raw session got {f!r}"
        assert self.data_calls == [b"idle"] and self.child_calls == [["raw"]]


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ZkfastProcess]:
    server = ZkfastProcess(cfg={"tickTime": "500", "maxClientCnxns": "0"})
    server.start()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture(scope="module")
def idle(fuzz_server: ZkfastProcess) -> Iterator[Idle]:
    zk = KazooClient(hosts=fuzz_server.address, timeout=10.0, connection_retry=fast_retry(),
                     auth_data=[IDLE_AUTH])
    zk.start(timeout=15)
    try:
        yield from _idle(fuzz_server, zk)
    finally:
        zk.stop()
        zk.close()


def _idle(fuzz_server: ZkfastProcess, zk: KazooClient) -> Iterator[Idle]:
    states: list[str] = []
    zk.add_listener(states.append)
    zk.create("/fuzz")
    # only the idle clients may touch their zone; nothing a fuzzed frame does can fire its watches
    acl = [make_digest_acl("idle", "idle-pw", all=True)]
    zk.create(IDLE_ZONE, b"idle", acl=acl)
    zk.create(f"{IDLE_ZONE}/raw", b"", acl=acl)
    data_calls: list[bytes | None] = []
    child_calls: list[list[str]] = []
    zk.DataWatch(IDLE_ZONE)(lambda data, stat: data_calls.append(data))
    zk.ChildrenWatch(IDLE_ZONE)(lambda kids: child_calls.append(sorted(kids)))
    wait_until(lambda: data_calls and child_calls, what="idle watches set")
    raw = RawSession(fuzz_server.host, fuzz_server.port)
    raw.open(connect_request(timeout_ms=10000))
    raw.send(frame(request(-4, 100, i32(0) + u_str("digest") + u_str(IDLE_AUTH[1].encode()))))
    raw.call(1, 4, u_str(f"{IDLE_ZONE}/raw") + b"\1")  # a data watch that must never fire
    observers = Idle(fuzz_server, zk, states, zk.client_id, raw, data_calls, child_calls)
    observers.check()
    yield observers
    # the end: both idle clients still work, nothing fired for them
    observers.check()
    assert zk.set(IDLE_ZONE, b"idle").version == 1
    wait_until(lambda: data_calls == [b"idle", b"idle"], what="the idle DataWatch sees its own set")
    raw.close()


def assert_serving(idle: Idle) -> None:
    server = idle.server
    assert server.proc is not None and server.proc.poll() is None, server.log_tail()
    assert "Mode: standalone" in four_letter(server.host, server.port, "srvr")
    fresh = RawSession(server.host, server.port)
    try:
        resp = fresh.open(connect_request(timeout_ms=1000))
        assert len(resp) >= 36 and fresh.session_id != 0
        (reply,) = fresh.call(1, 3, u_str("/fuzz") + b"\0")
        assert struct.unpack(">iqi", reply[:16])[2] == 0
        (bye,) = fresh.call(2, -11)
        assert struct.unpack(">iqi", bye[:16])[2] == 0
    finally:
        fresh.close()
    idle.check()


# ------------------------------------------------------------------------------ raw helpers


def connect(server: ServerProcess) -> socket.socket:
    s = socket.create_connection((server.host, server.port), timeout=READ_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def handshake(server: ServerProcess) -> socket.socket:
    s = connect(server)
    s.sendall(frame(connect_request(timeout_ms=1000)))
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
        chunk = s.recv(4096)
        assert chunk, "handshake refused"
        buf += chunk
    assert len(buf) == 4 + struct.unpack(">i", buf[:4])[0] >= 40
    return s


def read_until_eof(s: socket.socket, timeout_s: float = READ_S) -> bytes:
    """Everything the server sends until it closes; fails if it does not close in time."""
    deadline = time.monotonic() + timeout_s
    out = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"server kept the connection open (got {out[:200]!r})"
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        except TimeoutError:
            continue
        if not chunk:
            return out
        out += chunk


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    frames = []
    while len(data) >= 4:
        n = struct.unpack(">i", data[:4])[0]
        assert 0 <= n <= 64 * 1024 * 1024, f"bad frame length {n} from the server"
        if len(data) < 4 + n:
            break
        frames.append(data[4:4 + n])
        data = data[4 + n:]
    return frames, data


def read_until_xid(s: socket.socket, xid: int, timeout_s: float = READ_S) -> tuple[list[bytes], bool]:
    """Frames up to the reply with `xid`; (frames, closed). Fails if neither comes in time."""
    deadline = time.monotonic() + timeout_s
    buf = b""
    got: list[bytes] = []
    while True:
        frames, buf = split_frames(buf)
        for f in frames:
            assert len(f) >= 16, f"short reply frame {f!r}"
            got.append(f)
            if struct.unpack(">i", f[:4])[0] == xid:
                return got, False
        left = deadline - time.monotonic()
        assert left > 0, f"no reply with xid {xid} and no close (got {got!r})"
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            continue
        if not chunk:
            return got, True
        buf += chunk


def abort(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


# ------------------------------------------------------------------------------------ tests


def is_four_letter(length_bytes: bytes) -> bool:
    return all(97 <= b <= 122 for b in length_bytes) or length_bytes == b"\xff\xf4\xff\xfd"


@fuzz(150)
@given(data=st.one_of(st.binary(min_size=1, max_size=300), st.tuples(st.integers(0, 44), st.integers(1, 255))),
       ending=st.sampled_from(["half-close", "abort"]))
def test_garbage_before_the_handshake(idle: Idle, data: object, ending: str) -> None:
    if isinstance(data, tuple):  # a valid ConnectRequest with one byte flipped
        pos, mask = data
        raw = bytearray(frame(connect_request(timeout_ms=1000)))
        raw[pos % len(raw)] ^= mask
        payload = bytes(raw)
    else:
        assert isinstance(data, bytes)
        payload = data
    s = connect(idle.server)
    try:
        s.sendall(payload)
        if ending == "half-close":
            s.shutdown(socket.SHUT_WR)
            read_until_eof(s)  # whatever it answered, the server must close a half-closed client
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed on us mid-send: also fine
    finally:
        abort(s)
    assert_serving(idle)


@fuzz(60)
@given(length=st.one_of(st.integers(MAX_BUFFER + 1, 2**31 - 1), st.integers(-2**31, -1)),
       handshaken=st.booleans())
def test_a_length_beyond_jute_maxbuffer_closes_at_once(idle: Idle, length: int, handshaken: bool) -> None:
    header = i32(length)
    s = handshake(idle.server) if handshaken else connect(idle.server)
    try:
        s.sendall(header + b"\0" * 16)  # no full body: the server must not wait for one
        out = read_until_eof(s)
        if handshaken or not is_four_letter(header):
            assert out == b""
    finally:
        abort(s)
    assert_serving(idle)


@fuzz(400)
@given(template=st.sampled_from(TEMPLATES),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
       xid=st.one_of(st.just(7), st.integers(-2**31, 2**31 - 1)))
def test_valid_requests_with_flipped_bytes(idle: Idle, template: tuple[int, bytes],
                                           flips: list[tuple[int, int]], xid: int) -> None:
    op, body = template
    payload = bytearray(request(xid, op, body))
    for pos, mask in flips:
        payload[pos % len(payload)] ^= mask
    s = handshake(idle.server)
    try:
        # the length prefix stays right; then a ping shows whether the connection still serves
        s.sendall(frame(bytes(payload)) + frame(request(PING_XID, 11)))
        frames, closed = read_until_xid(s, PING_XID)
        sent_op = struct.unpack(">i", payload[4:8])[0]
        if sent_op not in KNOWN_OPS and frames:
            assert struct.unpack(">iqi", frames[0][:16])[2] == UNIMPLEMENTED
            assert closed, "an unknown opcode closes the connection after UNIMPLEMENTED"
    finally:
        abort(s)
    assert_serving(idle)


@pytest.fixture(scope="module")
def apache_fuzz() -> Iterator[ApacheZkProcess]:
    if not apache_available():
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")
    server = ApacheZkProcess(cfg={"tickTime": "500", "maxClientCnxns": "0"})
    server.start()
    try:
        zk = KazooClient(hosts=server.address, connection_retry=fast_retry())
        zk.start(timeout=15)
        zk.create("/fuzz")
        zk.stop()
        zk.close()
        yield server
    finally:
        server.stop()
        server.cleanup()


def answer(server: ServerProcess, payload: bytes) -> tuple[list[tuple[int, int]], bool]:
    """(xid, err) of every reply to `payload` and a ping after it, and whether the server closed."""
    s = handshake(server)
    try:
        s.sendall(frame(payload) + frame(request(PING_XID, 11)))
        frames, closed = read_until_xid(s, PING_XID)
        if not closed:  # end the session now so its ephemerals cannot meet the next example
            s.sendall(frame(request(999, -11)))
            read_until_eof(s)
    finally:
        abort(s)
    return [struct.unpack(">iqi", f[:16])[::2] for f in frames], closed


@fuzz(300)
@given(index=st.sampled_from([i for i, (_, body) in enumerate(TEMPLATES) if body]),
       flips=st.lists(st.tuples(st.integers(8, 10_000), st.integers(1, 255)), min_size=1, max_size=3))
def test_flipped_bytes_are_answered_like_apache(idle: Idle, apache_fuzz: ApacheZkProcess, index: int,
                                                flips: list[tuple[int, int]]) -> None:
    """The same mutated request (its body only: header kept) to both servers: the same error
    codes in the same order, and the connection closed by both or by neither."""
    tag = f"/fuzz/{next(EXAMPLE_IDS):06d}"
    op, body = make_templates(tag)[index]
    payload = bytearray(request(11, op, body))
    for pos, mask in flips:
        payload[8 + (pos - 8) % (len(payload) - 8)] ^= mask
    assert answer(idle.server, bytes(payload)) == answer(apache_fuzz, bytes(payload))
    assert_serving(idle)


@fuzz(200)
@given(op=st.sampled_from(sorted(KNOWN_OPS - {-11, -10, 102, 20})), body=st.binary(max_size=48))
def test_random_bodies_are_answered_like_apache(idle: Idle, apache_fuzz: ApacheZkProcess, op: int,
                                                body: bytes) -> None:
    assert answer(idle.server, request(11, op, body)) == answer(apache_fuzz, request(11, op, body))
    assert_serving(idle)


# ------------------------------------------------------- differences the fuzzing found, pinned down


def test_sasl_request_without_sasl_configured_is_answered_like_apache(idle: Idle,
                                                                     apache_fuzz: ApacheZkProcess) -> None:
    ok = ([(11, 0), (PING_XID, 0)], False)
    for body, apache_answer in ((u_str(b""), ok), (u_str(b"token"), ok), (b"", ([], True))):
        assert answer(apache_fuzz, request(11, 102, body)) == apache_answer
        assert answer(idle.server, request(11, 102, body)) == apache_answer


def test_delete_container_from_a_client_is_answered_like_apache(idle: Idle,
                                                                apache_fuzz: ApacheZkProcess) -> None:
    for server in (apache_fuzz, idle.server):
        node = f"/fuzz/container-{next(EXAMPLE_IDS)}"
        s = RawSession(server.host, server.port)
        s.open()
        try:
            (created,) = s.call(1, 19, create_body(node, flags=4))
            assert struct.unpack(">iqi", created[:16])[2] == 0
            answers = []
            for body in (node.encode(), u_str(node), b"\x01/"):
                (reply,) = s.call(2, 20, body)
                answers.append(struct.unpack(">iqi", reply[:16])[2])
            (exists,) = s.call(3, 3, u_str(node) + b"\0")
        finally:
            s.close()
        assert answers == [-8, -8, -8], server.kind  # BADARGUMENTS
        assert struct.unpack(">iqi", exists[:16])[2] == 0, f"{server.kind} deleted the container"


@fuzz(80)
@given(op=st.integers(-2**31, 2**31 - 1).filter(lambda o: o not in KNOWN_OPS),
       body=st.binary(max_size=64), xid=st.integers(1, 2**31 - 1))
def test_unknown_opcode_gets_unimplemented_and_a_close(idle: Idle, op: int, body: bytes, xid: int) -> None:
    s = handshake(idle.server)
    try:
        s.sendall(frame(request(xid, op, body)) + frame(request(PING_XID, 11)))
        frames, closed = read_until_xid(s, xid)
        assert not closed and len(frames) == 1
        rxid, _zxid, err = struct.unpack(">iqi", frames[0][:16])
        assert (rxid, err, len(frames[0])) == (xid, UNIMPLEMENTED, 16)
        assert read_until_eof(s) == b""  # and then the connection is closed, the ping unanswered
    finally:
        abort(s)
    assert_serving(idle)


@fuzz(120)
@given(op=st.sampled_from(sorted(KNOWN_OPS - {-11})), body=st.binary(max_size=120),
       xid=st.integers(-2**31, 2**31 - 1))
def test_known_opcode_with_random_body(idle: Idle, op: int, body: bytes, xid: int) -> None:
    s = handshake(idle.server)
    try:
        s.sendall(frame(request(xid, op, body)) + frame(request(PING_XID, 11)))
        read_until_xid(s, PING_XID)
    finally:
        abort(s)
    assert_serving(idle)


@fuzz(120)
@given(template=st.sampled_from(TEMPLATES), cut=st.integers(1, 10_000),
       length_delta=st.integers(-64, 64), handshaken=st.booleans())
def test_truncated_frames_and_wrong_lengths(idle: Idle, template: tuple[int, bytes], cut: int,
                                            length_delta: int, handshaken: bool) -> None:
    op, body = template
    payload = request(9, op, body)
    payload = payload[:cut % (len(payload) + 1)]
    declared = max(0, len(payload) + length_delta)
    s = handshake(idle.server) if handshaken else connect(idle.server)
    try:
        s.sendall(i32(declared) + payload)
        s.shutdown(socket.SHUT_WR)  # the rest never comes
        data = read_until_eof(s)
        frames, rest = split_frames(data)
        assert rest == b"" or not handshaken, f"a partial frame from the server: {rest!r}"
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        abort(s)
    assert_serving(idle)


@fuzz(60)
@given(cuts=st.lists(st.integers(1, 200), min_size=1, max_size=40))
def test_valid_frames_cut_into_random_pieces(idle: Idle, cuts: list[int]) -> None:
    """Reassembly: a handshake and pipelined requests sent in arbitrary pieces are answered in order."""
    node = f"/fuzz/pieces-{time.monotonic_ns()}"
    stream = frame(connect_request(timeout_ms=1000))
    reqs = [(1, 1, create_body(node)), (2, 4, u_str(node) + b"\0"),
            (3, 5, u_str(node) + u_str(b"v2") + i32(0)), (4, 4, u_str(node) + b"\0"),
            (5, 2, u_str(node) + i32(1)), (6, 3, u_str(node) + b"\0")]
    stream += b"".join(frame(request(x, op, b)) for x, op, b in reqs)
    s = connect(idle.server)
    try:
        pos, i = 0, 0
        while pos < len(stream):
            n = cuts[i % len(cuts)]
            s.sendall(stream[pos:pos + n])
            pos, i = pos + n, i + 1
        frames, closed = read_until_xid(s, 6)
    finally:
        abort(s)
    assert not closed and len(frames) == 1 + len(reqs)
    replies = [struct.unpack(">iqi", f[:16]) for f in frames[1:]]
    assert [r[0] for r in replies] == [1, 2, 3, 4, 5, 6]
    assert [r[2] for r in replies] == [0, 0, 0, 0, 0, -101]
    assert frames[2][16:16 + 8] == u_str(b"data")
    assert frames[4][16:16 + 6] == u_str(b"v2")
    assert_serving(idle)


def test_a_fresh_kazoo_client_works_after_the_fuzzing(idle: Idle) -> None:
    zk = KazooClient(hosts=idle.server.address, connection_retry=fast_retry())
    zk.start(timeout=15)
    try:
        path = zk.create("/fuzz/after-", b"ok", sequence=True)
        assert zk.get(path)[0] == b"ok"
        assert "fuzz" in zk.get_children("/")
    finally:
        zk.stop()
        zk.close()
    assert_serving(idle)
