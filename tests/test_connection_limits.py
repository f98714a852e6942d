"""Apache ZooKeeper's connection limits on zkfast.

* `nio.sessionlessCnxnTimeout`: a socket that has no session within the timeout is closed, beside
  Apache ZooKeeper 3.8 (which closes it between one and two timeouts later: its expiry queue rounds up to
  the next interval). zkfast counts from the accept and does not restart the clock when the client sends a
  byte, so a client that trickles its ConnectRequest is closed too (Apache keeps it as long as it trickles).
* On secureClientPort, TLS handshakes count against maxClientCnxns from their accept, at most
  `netty.server.outstandingHandshake.limit` run at once, and they have the sessionless timeout to finish,
  as does a TLS socket that never sends its ConnectRequest. zkfast only: Apache's Netty counts a socket
  only once its handshake is done, gives a handshake Netty's own 10 s and keeps a TLS socket without a
  session open indefinitely.
* `connection_throttle_*` (Apache's BlueThrottle): its arithmetic with a fake clock and random source,
  then the same token budget on zkfast and Apache refusing the same ConnectRequests.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_tls import pki, tls_cfg  # noqa: F401  (pki is a fixture)
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available, free_port
from testbase.rawclient import RawSession, connect_request, frame

from zkfast.net.throttle import ConnectionThrottle, ThrottleSettings

KINDS = ["zkfast", "apache"]
TIMEOUT_MS = 1000
TIMEOUT_S = TIMEOUT_MS / 1000
MAX_PER_IP = 20
PING, PING_XID = 11, -2
# connection_throttle_weight_enabled: the budget is 4 global sessions = 12 tokens; a new global session
# costs 3, a reconnect 2
THROTTLE_CFG = {"connection_throttle_tokens": "4", "connection_throttle_fill_time": "600000",
                "connection_throttle_weight_enabled": "true"}
CONFIGS: dict[str, dict[str, str]] = {
    "idle": {"maxClientCnxns": str(MAX_PER_IP), "nio.sessionlessCnxnTimeout": str(TIMEOUT_MS)},
    "throttle": THROTTLE_CFG,
}

ServerFor = Callable[[str, str], ServerProcess]


@pytest.fixture(scope="module")
def server_for() -> Iterator[ServerFor]:
    """`server_for(kind, config)`: one server per (kind, config) for the module, started on demand."""
    started: dict[tuple[str, str], ServerProcess] = {}

    def get(kind: str, config: str) -> ServerProcess:
        if (kind, config) not in started:
            if kind == "apache" and not apache_available():
                pytest.skip("Apache ZooKeeper (Debian package) is not installed")
            cls = ApacheZkProcess if kind == "apache" else ZkfastProcess
            server = cls(cfg=CONFIGS[config])
            try:
                server.start()
            except BaseException:
                server.cleanup()
                raise
            started[(kind, config)] = server
        return started[(kind, config)]

    yield get
    for server in started.values():
        server.stop()
        server.cleanup()


def closing_times(socks: list[socket.socket], limit_s: float) -> dict[int, float]:
    """Seconds after which the server closed each socket (index → time), watching for limit_s."""
    start = time.monotonic()
    selector = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, i)
    closed: dict[int, float] = {}
    while len(closed) < len(socks) and time.monotonic() - start < limit_s:
        for key, _ in selector.select(0.05):
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except ssl.SSLWantReadError:
                continue
            except OSError:
                data = b""
            if not data:
                closed[key.data] = time.monotonic() - start
                selector.unregister(key.fileobj)
    selector.close()
    return closed


def connect_from(ip: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(ip, 0))


def ping(s: RawSession) -> bool:
    replies = s.call(PING_XID, PING)
    return replies[-1] != b"<closed>" and struct.unpack(">i", replies[-1][:4])[0] == PING_XID


# ------------------------------------------------------------------------- sessionless connections

@pytest.mark.parametrize("kind", KINDS)
def test_sockets_without_a_session_are_closed_after_the_timeout(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "idle")
    socks = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(MAX_PER_IP + 5)]
    try:
        closed = closing_times(socks, 2 * TIMEOUT_S + 3)
    finally:
        for s in socks:
            s.close()
    at_once = sorted(t for t in closed.values() if t < TIMEOUT_S / 2)
    expired = sorted(t for t in closed.values() if t >= TIMEOUT_S / 2)
    print(f"{kind}: {len(at_once)} refused at once, {len(expired)} expired after "
          f"{expired[0] if expired else 0:.2f}-{expired[-1] if expired else 0:.2f} s, "
          f"{len(socks) - len(closed)} still open")
    assert len(closed) == len(socks)  # nobody keeps a socket that never asked for a session
    assert all(t >= TIMEOUT_S * 0.95 for t in expired)  # and none is closed before its time
    if kind == "zkfast":
        # Apache counts a burst loosely (its selector threads register sockets after the check)
        assert len(at_once) == 5
    # the limit is free again: a real client from the same address gets its session
    fresh = RawSession(server.host, server.port)
    try:
        assert fresh.open(connect_request(timeout_ms=10000))
    finally:
        fresh.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_outlives_the_sessionless_timeout(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "idle")
    s = RawSession(server.host, server.port)
    try:
        assert s.open(connect_request(timeout_ms=10000))
        time.sleep(2 * TIMEOUT_S + 0.5)
        assert ping(s)
    finally:
        s.close()


def test_a_client_trickling_its_connect_request_is_closed_too(server_for: ServerFor) -> None:
    server = server_for("zkfast", "idle")
    body = frame(connect_request(timeout_ms=10000))
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.settimeout(0.2)
        for byte in body:
            try:
                s.sendall(bytes([byte]))
                if not s.recv(1):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        else:
            pytest.fail(f"the server answered or kept a {len(body)}-byte trickle for {time.monotonic() - start:.1f} s")
    assert TIMEOUT_S * 0.95 <= time.monotonic() - start < TIMEOUT_S + 1.5


# ------------------------------------------------------------------------------ TLS on the secure port

def test_tls_handshakes_count_and_are_bounded_and_timed(pki: dict[str, Path]) -> None:  # noqa: F811
    port = free_port()
    cfg = {**tls_cfg(pki, port), "maxClientCnxns": "2", "nio.sessionlessCnxnTimeout": str(TIMEOUT_MS),
           "netty.server.outstandingHandshake.limit": "3"}
    d = pki["dir"]
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    with ZkfastProcess(cfg=cfg):
        # a client that finishes its handshake and never sends its ConnectRequest
        silent_tls = ctx.wrap_socket(connect_from("127.0.0.3", port), server_hostname="localhost")
        # two silent handshakes from .1 fill its maxClientCnxns; a third is refused
        pending = [connect_from("127.0.0.1", port) for _ in range(3)]
        # 127.0.0.2 may still connect, but only once: three handshakes are in progress then
        pending += [connect_from("127.0.0.2", port) for _ in range(2)]
        socks = [silent_tls, *pending]
        try:
            closed = closing_times(socks, TIMEOUT_S + 3)
        finally:
            for s in socks:
                s.close()
        print("closed after", {i: round(t, 2) for i, t in sorted(closed.items())})
        assert len(closed) == len(socks)
        assert closed[3] < TIMEOUT_S / 2 and closed[5] < TIMEOUT_S / 2  # per IP, then the pending bound
        assert all(TIMEOUT_S * 0.8 <= closed[i] < TIMEOUT_S + 1 for i in (0, 1, 2, 4))  # timed out
        # all of that is released: a client with a certificate gets its session over TLS
        s = RawSession("127.0.0.1", port)
        s.sock = ctx.wrap_socket(connect_from("127.0.0.1", port), server_hostname="localhost")
        try:
            s.send(frame(connect_request(timeout_ms=10000)))
            assert s.read_frame() and ping(s)
        finally:
            s.close()


# -------------------------------------------------------------------------------- connection throttle

class Clock:
    def __init__(self) -> None:
        self.now_ms = 5000

    def __call__(self) -> int:
        return self.now_ms


def throttle(local_sessions: bool = False, rolls: list[float] | None = None,
             **settings: object) -> tuple[ConnectionThrottle, Clock]:
    clock = Clock()
    dice = iter(rolls or [])
    return ConnectionThrottle(ThrottleSettings(**settings), local_sessions=local_sessions,  # type: ignore[arg-type]
                              clock=clock, rng=lambda: next(dice)), clock


def test_the_throttle_is_off_by_default() -> None:
    bucket, _ = throttle()
    assert all(bucket.allow(0) for _ in range(10_000))


def test_the_bucket_refills_every_fill_time_up_to_its_size() -> None:
    bucket, clock = throttle(tokens=3, fill_time_ms=100, fill_count=2)
    assert [bucket.allow(0) for _ in range(4)] == [True, True, True, False]
    clock.now_ms += 100  # Apache refills only once more than fill_time has passed
    assert not bucket.allow(0)
    clock.now_ms += 1
    assert [bucket.allow(0) for _ in range(3)] == [True, True, False]
    clock.now_ms += 149  # 149 ms → 2 tokens; Apache forgets the remaining 49 ms
    assert bucket.allow(0) and bucket.allow(0) and not bucket.allow(0)
    clock.now_ms += 60_000
    assert [bucket.allow(0) for _ in range(4)] == [True, True, True, False]  # never more than its size
    assert bucket.deficit == 3


@pytest.mark.parametrize(("local_sessions", "costs"), [(False, {0: 3, 7: 2}), (True, {0: 1, 7: 2})])
def test_weights_price_sessions_by_kind(local_sessions: bool, costs: dict[int, int]) -> None:
    bucket, clock = throttle(local_sessions, tokens=2, fill_time_ms=10, fill_count=1, weight_enabled=True)
    assert (bucket.max_tokens, bucket.fill_count) == (6, 3)  # the settings count global sessions
    for session_id, cost in costs.items():
        assert bucket.tokens_needed(session_id) == cost
        taken = 0
        while bucket.allow(session_id):
            taken += cost
        assert taken == 6 - 6 % cost
        clock.now_ms += 100  # refills the whole bucket


def test_blue_drops_at_random_while_the_bucket_is_empty() -> None:
    bucket, clock = throttle(rolls=[0.2] * 7 + [0.9], tokens=2, fill_time_ms=1_000_000, freeze_time_ms=10,
                             drop_increase=0.25, drop_decrease=0.1, decrease_ratio=0.5)
    assert bucket.allow(0)  # within the freeze time: the drop chance stays 0
    clock.now_ms += 20
    assert bucket.allow(0) and bucket.drop_chance == 0  # deficit 1 <= 2 x 0.5, but nothing to decrease
    clock.now_ms += 20
    assert not bucket.allow(0) and bucket.drop_chance == 0.25  # empty: rises; the roll 0.2 drops it
    clock.now_ms += 5
    assert not bucket.allow(0) and bucket.drop_chance == 0.25  # frozen for 10 ms
    clock.now_ms += 20
    assert not bucket.allow(0) and bucket.drop_chance == 0.5
    clock.now_ms += 2_000_001  # the bucket is full again and the chance falls, but not to 0 at once
    assert not bucket.allow(0) and bucket.drop_chance == 0.4
    assert bucket.tokens == 2  # dropped before the bucket was asked
    clock.now_ms += 20
    assert not bucket.allow(0) and bucket.drop_chance == pytest.approx(0.3)
    assert bucket.allow(0)  # a roll of 0.9 passes


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_token_budget_refuses_the_same_connect_requests(server_for: ServerFor, kind: str) -> None:
    server = server_for(kind, "throttle")
    sessions: list[RawSession] = []

    def connect(session_id: int = 0, passwd: bytes = b"\0" * 16) -> bool:
        s = RawSession(server.host, server.port)
        sessions.append(s)
        return bool(s.open(connect_request(timeout_ms=10000, session_id=session_id, passwd=passwd)))

    try:
        outcome = [connect(), connect()]  # 12 tokens - 3 - 3
        first = sessions[0]
        outcome.append(connect(first.session_id, first.passwd))  # a reconnect: - 2
        outcome.append(connect())  # - 3: 1 token left
        second = sessions[1]
        outcome.append(connect(second.session_id, second.passwd))  # a reconnect needs 2
        burst = [connect() for _ in range(10)]
        mntr = server.four_letter("mntr")
    finally:
        for s in sessions:
            s.close()
    rejected = next(line.split("\t")[1] for line in mntr.splitlines() if line.startswith("zk_connection_rejected"))
    print(f"{kind}: {outcome} then {sum(burst)} of a burst of {len(burst)}; connection_rejected {rejected}")
    assert outcome == [True, True, True, True, False]
    assert not any(burst)
    assert int(rejected) == 1 + len(burst)
