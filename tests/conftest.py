"""Shared fixtures: one zkfast server (and, when a test asks for it, one Apache ZooKeeper 3.8) per test
session, kazoo clients that are always stopped, unique root paths, and a helper that runs the same
kazoo function against both servers and compares normalised results.

The shared servers run with tickTime=500 (sessions of 1 s to 10 s) and a super digest, so tests
of session expiry and of the `super` scheme need no server of their own.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.states import WatchedEvent, ZnodeStat
from kazoo.retry import KazooRetry
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available

from zkfast.testing import digest

SUPER_USER = "super"
SUPER_PASSWORD = "super-secret"
digest_id = digest  # the name the tests import

SHARED_CFG = {
    "tickTime": "500",  # min/max session timeout 1 s / 10 s
    "DigestAuthenticationProvider.superDigest": digest_id(SUPER_USER, SUPER_PASSWORD),
}


def wait_until(cond: Callable[[], object], timeout_s: float = 10.0, what: str = "condition",
               interval_s: float = 0.01) -> None:
    """Poll `cond` until it is truthy; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


@pytest.fixture(scope="session")
def zkfast_server() -> Iterator[ZkfastProcess]:
    with ZkfastProcess(cfg=SHARED_CFG) as server:  # a start that fails kills it; exit reaps the rest
        yield server


@pytest.fixture(scope="session")
def apache_server() -> Iterator[ApacheZkProcess]:
    if not apache_available():
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")
    with ApacheZkProcess(cfg=SHARED_CFG) as server:
        yield server


@pytest.fixture(params=["zkfast", "apache"])
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    """The shared zkfast server, then the shared Apache one: for tests whose expectations must hold
    on both (a failure only on 'apache' means the test's expectation is wrong)."""
    return request.getfixturevalue(f"{request.param}_server")


def fast_retry() -> KazooRetry:
    """Reconnect quickly and forever (until stop())."""
    return KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.3)


class KazooFactory(Protocol):
    def __call__(self, server: ServerProcess | None = None, *, hosts: str | None = None,
                 start: bool = True, **kwargs: Any) -> KazooClient: ...


@pytest.fixture
def kazoo_client(request: pytest.FixtureRequest) -> Iterator[KazooFactory]:
    """`kazoo_client(server=None, hosts=None, start=True, **KazooClient kwargs)`: a started client
    (of the shared zkfast server unless told otherwise); every client is stopped at teardown."""
    clients: list[KazooClient] = []

    def make(server: ServerProcess | None = None, *, hosts: str | None = None, start: bool = True,
             **kwargs: Any) -> KazooClient:
        if hosts is None:
            if server is None:
                server = request.getfixturevalue("zkfast_server")
            hosts = server.address
        kwargs.setdefault("connection_retry", fast_retry())
        client = KazooClient(hosts=hosts, **kwargs)
        clients.append(client)
        if start:
            client.start(timeout=15)
        return client

    yield make
    for client in clients:
        try:
            client.stop()
            client.close()
        except (KazooException, OSError):
            pass


_counter = itertools.count()


def unique_root(name: str) -> str:
    """A znode path no other test uses: /t-<sanitised name>-<random>."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:60]
    return f"/t-{clean}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def zk_root(request: pytest.FixtureRequest) -> str:
    """This test's own root path (not created): tests sharing one server never collide."""
    return unique_root(request.node.name)


# ------------------------------------------------------------------------ differential helper


class Normaliser:
    """Turns kazoo results into plain data that does not depend on which server answered:
    zxids become offsets from a base zxid, times are dropped, session ids become names, and the
    test's root path at the start of a string becomes "ROOT"."""

    def __init__(self, base_zxid: int, sessions: dict[int, str], root: str) -> None:
        self.base = base_zxid
        self.sessions = sessions
        self.root = root

    def zxid(self, z: int) -> int | str:
        return z - self.base if z >= self.base else f"old:{z}" if z else 0

    def __call__(self, value: Any) -> Any:
        if isinstance(value, ZnodeStat):
            return {
                "czxid": self.zxid(value.czxid), "mzxid": self.zxid(value.mzxid),
                "pzxid": self.zxid(value.pzxid), "version": value.version,
                "cversion": value.cversion, "aversion": value.aversion,
                "ephemeralOwner": self.sessions.get(value.ephemeralOwner, value.ephemeralOwner),
                "dataLength": value.dataLength, "numChildren": value.numChildren,
            }
        if isinstance(value, WatchedEvent):
            return ("event", value.type, value.state, value.path)
        if isinstance(value, BaseException):
            return ("error", type(value).__name__)
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, set | frozenset):
            return sorted(self(v) for v in value)
        if isinstance(value, str) and (value == self.root or value.startswith(self.root + "/")):
            return "ROOT" + value[len(self.root):]
        return value


class DiffContext:
    """What a differential function gets: its first client, a way to open more, and a root."""

    def __init__(self, server: ServerProcess, factory: KazooFactory, root: str) -> None:
        self.server = server
        self.root = root
        self._factory = factory
        self.clients: list[KazooClient] = []
        self.sessions: dict[int, str] = {}
        self.zk = self.client()

    def client(self, **kwargs: Any) -> KazooClient:
        zk = self._factory(self.server, **kwargs)
        self.clients.append(zk)
        self.sessions[zk.client_id[0]] = f"session{len(self.sessions) + 1}"
        return zk

    def stop(self) -> None:
        for zk in self.clients:
            try:
                zk.stop()
            except KazooException:
                pass


DiffFn = Callable[[DiffContext], Any]


class Differential(Protocol):
    def __call__(self, fn: DiffFn) -> Any: ...


@pytest.fixture
def on_both(kazoo_client: KazooFactory, zkfast_server: ZkfastProcess, apache_server: ApacheZkProcess,
            zk_root: str) -> Differential:
    """`on_both(fn)` runs `fn(ctx)` against Apache ZooKeeper and against zkfast (each with a fresh
    client, the same root path created first), asserts the normalised results are equal and returns
    zkfast's. Exceptions raised by `fn` are part of the result."""

    def run(fn: DiffFn) -> Any:
        results = {}
        for kind, server in (("apache", apache_server), ("zkfast", zkfast_server)):
            ctx = DiffContext(server, kazoo_client, zk_root)
            try:
                _, stat = ctx.zk.create(zk_root, b"root", include_data=True)
                try:
                    out: Any = fn(ctx)
                except (KazooException, ValueError) as e:
                    out = e
                results[kind] = Normaliser(stat.czxid, ctx.sessions, zk_root)(out)
            finally:
                ctx.stop()
        assert results["zkfast"] == results["apache"]
        return results["zkfast"]

    return run
