"""Server limits and request ordering, each test run against zkfast and against Apache ZooKeeper 3.8
with the same expectations: maxClientCnxns per IP, jute.maxbuffer, globalOutstandingLimit, and
pipelined requests answered in request order with reads seeing the session's earlier writes.

zkfast reads `jute.maxbuffer` from zoo.cfg; Apache only from `-Djute.maxbuffer`, so Apache gets
both (its zoo.cfg key is harmless to it).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import wait_until
from testbase.process import (
    ApacheZkProcess,
    ServerProcess,
    ZkfastProcess,
    apache_available,
    four_letter,
)
from testbase.rawclient import OPEN, RawSession, connect_request, frame, request, u_acl, u_str

KINDS = ["zkfast", "apache"]
MAX_CNXNS = 3
MAX_BUFFER = 10_000
OUTSTANDING = 2
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_CHILDREN, MULTI, CLOSE = 1, 2, 3, 4, 5, 8, 14, -11
OK, NONODE, BADVERSION, SESSIONEXPIRED = 0, -101, -103, -112
PING_XID = -2

CONFIGS: dict[str, dict[str, str]] = {
    "cnxns": {"maxClientCnxns": str(MAX_CNXNS)},
    "buffer": {"jute.maxbuffer": str(MAX_BUFFER), "globalOutstandingLimit": str(OUTSTANDING)},
    "plain": {},
    "short-sessions": {"tickTime": "500"},  # sessions of 1 s at least
}

ServerFor = Callable[[str, str], ServerProcess]


@pytest.fixture(scope="module")
def server_for() -> Iterator[ServerFor]:
    """`server_for(kind, config)`: one server per (kind, config) for the module, started on demand."""
    started: dict[tuple[str, str], ServerProcess] = {}

    def get(kind: str, config: str) -> ServerProcess:
        key = (kind, config)
        if key not in started:
            cfg = CONFIGS[config]
            if kind == "apache":
                if not apache_available():
                    pytest.skip("Apache ZooKeeper (Debian package) is not installed")
                flags = tuple(f"-D{k}={v}" for k, v in cfg.items() if k == "jute.maxbuffer")
                server: ServerProcess = ApacheZkProcess(cfg=cfg, jvm_flags=flags)
            else:
                server = ZkfastProcess(cfg=cfg)
            try:
                server.start()
            except BaseException:
                server.cleanup()
                raise
            started[key] = server
        return started[key]

    yield get
    for server in started.values():
        server.stop()
        server.cleanup()


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def create_body(path: str, data: bytes = b"", flags: int = 0) -> bytes:
    return u_str(path) + u_str(data) + u_acl(OPEN) + i32(flags)


def set_body(path: str, data: bytes, version: int = -1) -> bytes:
    return u_str(path) + u_str(data) + i32(version)


def header(f: bytes) -> tuple[int, int, int]:
    xid, zxid, err = struct.unpack(">iqi", f[:16])
    return xid, zxid, err


def session(server: ServerProcess, source_ip: str | None = None) -> RawSession:
    s = RawSession(server.host, server.port)
    if source_ip is None:
        s.open(connect_request(timeout_ms=10000))
        return s
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.bind((source_ip, 0))
    sock.connect((server.host, server.port))
    s.sock = sock
    s.send(frame(connect_request(timeout_ms=10000)))
    resp = s.read_frame()
    assert resp is not None and len(resp) >= 36, f"handshake from {source_ip} refused"
    s.session_id = struct.unpack(">q", resp[8:16])[0]
    return s


def ping(s: RawSession) -> bool:
    """True if the session's connection answers a ping."""
    try:
        s.send(frame(request(PING_XID, 11)))
        f = s.read_frame()
    except OSError:
        return False
    return f is not None and header(f)[0] == PING_XID and header(f)[2] == OK


def four_letter_or_refused(server: ServerProcess, cmd: str) -> str:
    try:
        return four_letter(server.host, server.port, cmd)
    except (ConnectionResetError, BrokenPipeError):
        return ""


def refused(server: ServerProcess) -> bool:
    """Connect and handshake from 127.0.0.1; True if the server closes without a ConnectResponse."""
    s = RawSession(server.host, server.port)
    try:
        resp = s.open(connect_request(timeout_ms=10000))
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()
    return resp == b""


# ------------------------------------------------------------------------------ maxClientCnxns


@pytest.mark.parametrize("kind", KINDS)
def test_max_client_cnxns_closes_only_the_connection_over_the_limit(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "cnxns")
    held = [session(server) for _ in range(MAX_CNXNS)]
    other_ip: RawSession | None = None
    try:
        assert refused(server), "connection #4 from 127.0.0.1 was served"
        assert refused(server), "and so was #5"
        assert four_letter_or_refused(server, "ruok") == ""  # a 4lw connection counts too
        assert all(ping(s) for s in held), "connections within the limit were disturbed"
        other_ip = session(server, source_ip="127.0.0.2")  # the limit is per client IP
        assert ping(other_ip)
        # one of 127.0.0.1's connections goes away: a new one is admitted again
        held.pop().close()
        replacement: list[RawSession] = []

        def admitted() -> bool:
            s = RawSession(server.host, server.port)
            try:
                if s.open(connect_request(timeout_ms=10000)):
                    replacement.append(s)
                    return True
            except OSError:
                pass
            s.close()
            return False

        wait_until(admitted, timeout_s=10, what="a connection admitted after one closed", interval_s=0.05)
        held += replacement
        assert refused(server)
        assert all(ping(s) for s in held)
    finally:
        for s in held:
            s.close()
        if other_ip is not None:
            other_ip.close()


# ------------------------------------------------------------------------------- jute.maxbuffer


def set_data_of_frame_length(path: str, length: int, xid: int) -> bytes:
    """A setData frame whose length prefix is exactly `length`."""
    fixed = len(request(xid, SET_DATA, set_body(path, b"")))
    data = b"x" * (length - fixed)
    payload = request(xid, SET_DATA, set_body(path, data))
    assert len(payload) == length
    return frame(payload)


@pytest.mark.parametrize("kind", KINDS)
def test_jute_maxbuffer_limits_frames_per_connection(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "buffer")
    path = f"/maxbuffer-{kind}"
    bystander, writer = session(server), session(server)
    try:
        (created,) = writer.call(1, CREATE, create_body(path))
        assert header(created)[2] == OK
        (watch,) = bystander.call(1, GET_DATA, u_str(path) + b"\1")
        assert header(watch)[2] == OK

        # one byte over: the connection is closed and nothing is applied
        over = RawSession(server.host, server.port)
        over.open(connect_request(timeout_ms=10000))
        over.send(set_data_of_frame_length(path, MAX_BUFFER + 1, xid=2))
        assert over.read_frame() is None, "a frame over jute.maxbuffer was answered"
        over.close()
        assert ping(bystander) and ping(writer)

        # exactly at the limit: served; the bystander's watch fires
        writer.send(set_data_of_frame_length(path, MAX_BUFFER, xid=3))
        reply = writer.read_frame()
        assert reply is not None and header(reply)[::2] == (3, OK)
        version = struct.unpack(">i", reply[16 + 32:16 + 36])[0]  # Stat.version
        assert version == 1  # only the setData at the limit was applied
        note = bystander.read_frame()
        assert note is not None and header(note)[0] == -1
        assert struct.unpack(">i", note[16:20])[0] == 3  # NodeDataChanged

        # just under: stored and read back whole (the reply itself is bigger than the limit)
        data = bytes(range(256)) * ((MAX_BUFFER - 200) // 256)
        (ok,) = writer.call(4, SET_DATA, set_body(path, data))
        assert header(ok)[2] == OK
        (got,) = writer.call(5, GET_DATA, u_str(path) + b"\0")
        assert header(got)[2] == OK and got[16:20 + len(data)] == u_str(data)
    finally:
        bystander.close()
        writer.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_giant_length_closes_the_connection_without_reading_a_body(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "buffer")
    s = session(server)
    try:
        s.send(i32(0x7FFFFFF0))  # no body follows: the server must not wait for 2 GiB
        assert s.read_frame() is None
    finally:
        s.close()
    assert "Mode: standalone" in four_letter(server.host, server.port, "srvr")


# ---------------------------------------------------------------------- globalOutstandingLimit


def pipeline_writes(server: ServerProcess, tag: str, n: int) -> None:
    """n pipelined rounds of setData + getData on one connection, sent at once; checks every reply."""
    s = session(server)
    try:
        (created,) = s.call(1, CREATE, create_body(tag, b"v0"))
        assert header(created)[2] == OK
        burst = b""
        for i in range(n):
            burst += frame(request(10 + 2 * i, SET_DATA, set_body(tag, f"v{i + 1}".encode(), version=i)))
            burst += frame(request(11 + 2 * i, GET_DATA, u_str(tag) + b"\0"))
        sender = threading.Thread(target=s.send, args=(burst,), daemon=True)
        sender.start()  # the server may stop reading while it is over its limit
        last_zxid = header(created)[1]
        for i in range(n):
            w, r = s.read_frame(), s.read_frame()
            assert w is not None and r is not None, f"connection closed at round {i}"
            wxid, wzxid, werr = header(w)
            rxid, _rzxid, rerr = header(r)
            assert (wxid, werr, rxid, rerr) == (10 + 2 * i, OK, 11 + 2 * i, OK), f"round {i}"
            assert wzxid > last_zxid  # (other connections' writes come in between)
            last_zxid = wzxid
            value = f"v{i + 1}".encode()
            assert r[16:20 + len(value)] == u_str(value)  # the read sees the write before it
        sender.join(10)
        assert not sender.is_alive()
    finally:
        s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_global_outstanding_limit_loses_and_reorders_nothing(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "buffer")
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            pipeline_writes(server, f"/outstanding-{kind}-{i}", 300)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a pipelining client hung"
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------- pipelined order


def multi_body(ops: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack(">i?i", op, False, -1) + b for op, b in ops) + struct.pack(">i?i", -1, True, -1)


@pytest.mark.parametrize("kind", KINDS)
def test_pipelined_requests_are_answered_in_order_and_reads_see_earlier_writes(
        server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "plain")
    p = f"/pipeline-{kind}"
    script = [
        (CREATE, create_body(p, b"one"), OK),
        (GET_DATA, u_str(p) + b"\0", OK),
        (SET_DATA, set_body(p, b"two", 0), OK),
        (GET_DATA, u_str(p) + b"\0", OK),
        (SET_DATA, set_body(p, b"stale", 0), BADVERSION),
        (CREATE, create_body(f"{p}/kid"), OK),
        (GET_CHILDREN, u_str(p) + b"\0", OK),
        (MULTI, multi_body([(SET_DATA, set_body(p, b"three", 1)), (DELETE, u_str(f"{p}/kid") + i32(0))]), OK),
        (GET_DATA, u_str(p) + b"\0", OK),
        (GET_CHILDREN, u_str(p) + b"\0", OK),
        (DELETE, u_str(p) + i32(2), OK),
        (EXISTS, u_str(p) + b"\0", NONODE),
        (GET_DATA, u_str(p) + b"\0", NONODE),
    ]
    s = session(server)
    try:
        s.send(b"".join(frame(request(100 + i, op, body)) for i, (op, body, _) in enumerate(script)))
        replies = [s.read_frame() for _ in script]
    finally:
        s.close()
    assert all(r is not None for r in replies)
    got = [header(r)[::2] for r in replies if r is not None]
    assert got == [(100 + i, err) for i, (_, _, err) in enumerate(script)]
    data = [r[16:] for r in replies if r is not None]
    assert data[1].startswith(u_str(b"one")) and data[3].startswith(u_str(b"two"))
    assert data[6] == i32(1) + u_str("kid")
    assert data[8].startswith(u_str(b"three")) and data[9] == i32(0)


@pytest.mark.parametrize("kind", ["zkfast", "apache"])
def test_reads_pipelined_before_close_session_are_answered(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "plain")
    p = f"/before-close-{kind}"
    s = session(server)
    try:
        s.send(frame(request(1, CREATE, create_body(p, b"x"))) + frame(request(2, GET_DATA, u_str(p) + b"\0"))
               + frame(request(3, EXISTS, u_str("/") + b"\0")) + frame(request(4, CLOSE)))
        replies = [s.read_frame() for _ in range(4)]
        assert s.read_frame() is None  # closed after the closeSession reply
    finally:
        s.close()
    assert [header(r)[::2] if r else None for r in replies] == [(1, OK), (2, OK), (3, OK), (4, OK)]


# ---------------------------------------------------------------------------- output past the limit

BIG_BYTES = 1_000_000  # a reply just under jute.maxbuffer: a few of them pass the output soft limit
MULTI_READ = 22


def small_window_session(server: ServerProcess) -> RawSession:
    """A session whose socket takes little at a time: replies pile up on the server's side."""
    s = RawSession(server.host, server.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((server.host, server.port))
    s.sock = sock
    s.send(frame(connect_request(timeout_ms=10000)))
    resp = s.read_frame()
    assert resp is not None and len(resp) >= 36
    return s


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("big_already", [False, True], ids=["grows-in-pipeline", "big-already"])
def test_a_pipeline_past_the_output_limit_is_answered_in_order(server_for: ServerFor, kind: str,
                                                                 big_already: bool) -> None:
    """Reads of a big node pipelined around writes of it, by a client that reads nothing for a while:
    once it reads, every reply is there, in order, each read seeing exactly the writes sent before
    it. zkfast stops answering at its output limit; a write behind reads whose replies will not fit
    waits for them (big-already), one behind reads that looked small when they came is prepared at
    once and the reads are answered before it applies (grows-in-pipeline)."""
    server = server_for(kind, "plain")
    p = f"/output-order-{kind}-{big_already}"
    old, new = b"a" * BIG_BYTES, b"b" * BIG_BYTES
    reads = 12
    script: list[tuple[int, bytes]] = [(CREATE, create_body(p, b"")), (SET_DATA, set_body(p, old))]
    if big_already:
        setup = session(server)
        try:
            setup.call(1, CREATE, create_body(p, old))
        finally:
            setup.close()
        script[0] = (SET_DATA, set_body(p, old))
    script += [(GET_DATA, u_str(p) + b"\0")] * reads
    script += [(SET_DATA, set_body(p, new))]
    script += [(GET_DATA, u_str(p) + b"\0")] * reads
    script += [(DELETE, u_str(p) + i32(-1)), (EXISTS, u_str(p) + b"\0")]
    s = small_window_session(server)
    try:
        s.send(b"".join(frame(request(1 + i, op, body)) for i, (op, body) in enumerate(script)))
        probe = session(server)
        try:
            for _ in range(5):  # meanwhile, other clients are served
                assert ping(probe)
        finally:
            probe.close()
        replies = [s.read_frame(timeout_s=20) for _ in script]
    finally:
        s.close()
    assert all(r is not None for r in replies)
    heads = [header(r) for r in replies if r is not None]
    assert [h[0] for h in heads] == list(range(1, len(script) + 1))
    assert [h[2] for h in heads] == [OK] * (len(script) - 1) + [NONODE]
    bodies = [r[16:] for r in replies if r is not None]
    first, second = bodies[2:2 + reads], bodies[3 + reads:3 + 2 * reads]
    assert all(b.startswith(u_str(old)) for b in first)
    assert all(b.startswith(u_str(new)) for b in second)
    zxids = [h[1] for h in heads]
    assert zxids == sorted(zxids)


@pytest.mark.parametrize("kind", KINDS)
def test_a_client_that_stops_reading_loses_nothing_when_it_reads_again(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "plain")
    p = f"/never-read-{kind}"
    writer = session(server)
    try:
        writer.call(1, CREATE, create_body(p, b"z" * BIG_BYTES))
    finally:
        writer.close()
    n = 200
    s = small_window_session(server)
    try:
        s.send(b"".join(frame(request(1 + i, GET_DATA, u_str(p) + b"\0")) for i in range(n)))
        probe = session(server)
        try:
            for _ in range(10):
                assert ping(probe)
        finally:
            probe.close()
        got = [s.read_frame(timeout_s=20) for _ in range(n)]
    finally:
        s.close()
    assert [header(r)[::2] if r else None for r in got] == [(1 + i, OK) for i in range(n)]


def multi_read_body(paths: list[str]) -> bytes:
    return multi_body([(GET_DATA, u_str(path) + b"\0") for path in paths])


def test_a_multi_read_too_big_to_answer_closes_its_connection(server_for: ServerFor) -> None:
    """A small frame naming one big node again and again: zkfast refuses to build a reply past its
    output hard limit and closes that connection (a deliberate difference: Apache builds it)."""
    from zkfast.limits import CONNECTION_OUTPUT_HARD_LIMIT_BYTES

    server = server_for("zkfast", "plain")
    p = "/multi-read-big"
    s = session(server)
    try:
        s.call(1, CREATE, create_body(p, b"m" * BIG_BYTES))
        fits = s.call(2, MULTI_READ, multi_read_body([p] * 3))
        assert header(fits[-1])[::2] == (2, OK) and len(fits[-1]) > 3 * BIG_BYTES
        too_many = CONNECTION_OUTPUT_HARD_LIMIT_BYTES // BIG_BYTES + 1
        assert s.call(3, MULTI_READ, multi_read_body([p] * too_many)) == [b"<closed>"]
    finally:
        s.close()
    assert ping(session(server))  # the server goes on


ADD_WATCH, PERSISTENT_RECURSIVE = 106, 1


def connections_from(server: ServerProcess, port: int) -> int:
    """How many of the server's connections `cons` lists with this client port."""
    return four_letter(server.host, server.port, "cons").count(f":{port}[")


def test_clients_that_never_read_are_dropped_at_the_hard_limit_or_after_the_linger_time(server_for: ServerFor) -> None:
    """Output a client is owed but never reads: watch events past the output hard limit (the
    connection is aborted at once), and replies left unsent when its session expires (dropped
    CLOSING_CONNECTION_LINGER_MS after the close)."""
    from zkfast.limits import CLOSING_CONNECTION_LINGER_MS, CONNECTION_OUTPUT_HARD_LIMIT_BYTES

    server = server_for("zkfast", "short-sessions")
    root = "/never-reads"
    writer = session(server)
    watcher = small_window_session(server)
    expiring = RawSession(server.host, server.port)
    try:
        writer.call(1, CREATE, create_body(root, b"d" * BIG_BYTES))
        watcher.call(1, ADD_WATCH, u_str(root) + i32(PERSISTENT_RECURSIVE))
        expiring.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        expiring.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        expiring.sock.connect((server.host, server.port))
        expiring.send(frame(connect_request(timeout_ms=1000)))
        assert expiring.read_frame() is not None
        expiring.send(b"".join(frame(request(1 + i, GET_DATA, u_str(root) + b"\0")) for i in range(20)))
        # each event carries its path: long names make the watcher's events pass the hard limit
        name_bytes = 400_000
        kernel_bytes = 8 * 1024 * 1024  # what the sockets' kernel buffers may take off the server's hands
        names = (CONNECTION_OUTPUT_HARD_LIMIT_BYTES + kernel_bytes) // name_bytes + 1
        for i in range(names):
            path = f"{root}/{i:03d}" + "n" * name_bytes
            assert header(writer.call(10 + i, CREATE, create_body(path))[-1])[2] == OK
        ports = [watcher.sock.getsockname()[1], expiring.sock.getsockname()[1]]
        assert connections_from(server, ports[0]) == 0  # aborted as its events passed the limit
        assert connections_from(server, ports[1]) == 1
        limit_s = (CLOSING_CONNECTION_LINGER_MS + 8000) / 1000
        wait_until(lambda: all(connections_from(server, port) == 0 for port in ports), timeout_s=limit_s,
                   what=f"the server to drop both connections {ports}: "
                        f"{four_letter(server.host, server.port, 'cons')}", interval_s=0.2)
        assert ping(session(server))  # others go on
    finally:
        for s in (writer, watcher, expiring):
            s.close()


def test_reads_past_the_hard_limit_ahead_of_a_write_abort_the_connection(server_for: ServerFor) -> None:
    """Reads that looked small when they came, made big by a write ahead of them, then a write
    behind them, from a client that reads nothing: they must be answered before that write applies,
    and more than CONNECTION_OUTPUT_HARD_LIMIT_BYTES of them aborts the connection (Apache answers
    them all: a deliberate difference)."""
    from zkfast.limits import CONNECTION_OUTPUT_HARD_LIMIT_BYTES

    server = server_for("zkfast", "plain")
    p = "/reads-past-hard"
    reads = CONNECTION_OUTPUT_HARD_LIMIT_BYTES // BIG_BYTES + 4
    script = [(CREATE, create_body(p, b"")), (SET_DATA, set_body(p, b"g" * BIG_BYTES))]
    script += [(GET_DATA, u_str(p) + b"\0")] * reads + [(SET_DATA, set_body(p, b"after"))]
    s = small_window_session(server)
    try:
        s.send(b"".join(frame(request(1 + i, op, body)) for i, (op, body) in enumerate(script)))
        wait_until(lambda: s.sock is not None and s.sock.getsockname()[1] not in
                   [int(line.split(":")[1].split("[")[0]) for line in
                    four_letter(server.host, server.port, "cons").splitlines() if "[" in line],
                   timeout_s=5, what="the connection to be aborted (sooner than the hard limit's grace)")
    finally:
        s.close()
    check = session(server)
    try:
        reply = check.call(1, GET_DATA, u_str(p) + b"\0")[-1]
        assert header(reply)[2] == OK and reply[16:].startswith(u_str(b"after"))  # the write applied
    finally:
        check.close()


AUTH, AUTHFAILED = 100, -115


def test_a_connection_holds_at_most_max_auth_ids(server_for: ServerFor) -> None:
    """Every ACL check walks the connection's auth ids: past MAX_AUTH_IDS_PER_CONNECTION an addauth
    fails as a bad one does (AUTHFAILED, closed); Apache keeps adding them (a deliberate difference)."""
    from zkfast.limits import MAX_AUTH_IDS_PER_CONNECTION

    server = server_for("zkfast", "plain")
    s = session(server)
    try:
        # the connection starts with its ip id; then digests, one new id each
        for i in range(MAX_AUTH_IDS_PER_CONNECTION - 1):
            reply = s.call(-4, AUTH, i32(0) + u_str("digest") + u_str(f"user{i}:pw"))[-1]
            assert header(reply)[2] == OK, i
        again = s.call(-4, AUTH, i32(0) + u_str("digest") + u_str("user0:pw"))[-1]
        assert header(again)[2] == OK  # an id it holds already adds nothing
        refused = s.call(-4, AUTH, i32(0) + u_str("digest") + u_str("one-too-many:pw"))[-1]
        assert header(refused)[2] == AUTHFAILED
        assert s.read_frame() is None  # closed after it
    finally:
        s.close()


# ------------------------------------------------------------------------------ watches of closed connections

@pytest.mark.parametrize("kind", KINDS)
def test_watches_of_connections_closing_together_all_go(server_for: ServerFor, kind: str) -> None:
    """Two connections holding more watches than zkfast forgets in one loop turn
    (WATCHES_DROPPED_PER_TURN) close at once: the server answers meanwhile, and every watch goes."""
    server = server_for(kind, "plain")
    watches = 15_000
    holders = [session(server) for _ in range(2)]
    for s in holders:
        s.send(b"".join(frame(request(xid, EXISTS, u_str(f"/gone/w{xid}") + b"\x01"))
                        for xid in range(1, watches + 1)))
        for xid in range(1, watches + 1):
            f = s.read_frame()
            assert f is not None and header(f)[0] == xid and header(f)[2] == NONODE
    assert f"watching {watches} paths" in four_letter(server.host, server.port, "wchs")
    probe = session(server)
    try:
        for s in holders:
            s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a reset: the server learns of both at once
        assert ping(probe)
        wait_until(lambda: "watching 0 paths" in four_letter(server.host, server.port, "wchs"), timeout_s=30)
        assert "Total watches:0" in four_letter(server.host, server.port, "wchs")
        assert ping(probe)
    finally:
        probe.close()
