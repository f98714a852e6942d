"""The pytest plugin of zkfast.testing, registered through the `pytest11` entry point as `zkfast`.

Inert until a test asks for one of its fixtures: loading it starts nothing and imports nothing
beyond pytest.

Fixtures:
  zk_server   one ZkServer for the whole session; `zk_server.reset()` deletes every znode but
              /zookeeper, when a test wants a clean tree
  zk_client   a started KazooClient of zk_server, stopped and closed after the test
  zk_cluster  a ZkCluster of 3 voters, started for the test and closed after it; another size with
              `@pytest.mark.zk_cluster(size=5, observers=1)` or
              `@pytest.mark.parametrize("zk_cluster", [3, 5], indirect=True)`

Options:
  --zk-tick-time=MS      the servers' tickTime (default 500: sessions of 1 s to 10 s)
  --zk-keep-data         keep the servers' directories (config, log, dataDir) after the run
  --zk-kind=KIND         zkfast (default) or apache: the same fixtures on Apache ZooKeeper 3.8
  --zk-zookeeper-path=P  kind apache: an Apache ZooKeeper release directory (default:
                         $ZOOKEEPER_PATH, else Debian's package in /usr/share/java)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from zkfast.testing import ZkCluster, ZkServer

DEFAULT_CLUSTER_SIZE = 3
KEPT_DIRS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zkfast", "ZooKeeper servers for tests (zkfast.testing)")
    group.addoption("--zk-tick-time", type=int, default=None, metavar="MS",
                    help="tickTime of the zk_server and zk_cluster servers (default 500)")
    group.addoption("--zk-keep-data", action="store_true", default=False,
                    help="keep the servers' directories (zoo.cfg, log, dataDir) after the run")
    group.addoption("--zk-kind", choices=("zkfast", "apache"), default="zkfast",
                    help="which server the fixtures start (default zkfast; apache needs java)")
    group.addoption("--zk-zookeeper-path", default=None, metavar="PATH",
                    help="with --zk-kind=apache: an Apache ZooKeeper release directory "
                         "(default: $ZOOKEEPER_PATH, else Debian's zookeeper package)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "zk_cluster(size=3, observers=0, **options): the zk_cluster "
                                       "fixture's size, observers and other ZkCluster options")
    config.stash[KEPT_DIRS] = []


def server_options(config: pytest.Config) -> dict[str, Any]:
    """The ZkServer / ZkCluster options the command line asks for."""
    from zkfast.testing.server import DEFAULT_TICK_TIME_MS

    tick = config.getoption("zk_tick_time")
    return {
        "kind": config.getoption("zk_kind"),
        "zookeeper_path": config.getoption("zk_zookeeper_path"),
        "tick_time_ms": DEFAULT_TICK_TIME_MS if tick is None else tick,
        "keep_data": config.getoption("zk_keep_data"),
    }


def _skip_unless_runnable(options: dict[str, Any]) -> None:
    from zkfast.testing.kinds import launcher_for

    reason = launcher_for(options["kind"], zookeeper_path=options["zookeeper_path"]).unavailable()
    if reason is not None:
        pytest.skip(f"--zk-kind={options['kind']}: {reason}")


def _keep(config: pytest.Config, what: str) -> None:
    if config.getoption("zk_keep_data"):
        config.stash[KEPT_DIRS].append(what)


@pytest.fixture(scope="session")
def zk_server(pytestconfig: pytest.Config) -> Iterator[ZkServer]:
    """One server for the test session, with a `super` user (its `super_auth`) so that `reset()`
    can delete znodes whatever their ACLs."""
    from zkfast.testing import ZkServer

    options = server_options(pytestconfig)
    _skip_unless_runnable(options)
    server = ZkServer(super_password=secrets.token_hex(8), **options)
    try:
        server.start()
        yield server
    finally:
        server.close()
        _keep(pytestconfig, f"zk_server: {server.workdir}")


@pytest.fixture
def zk_client(zk_server: ZkServer) -> Iterator[KazooClient]:
    """A started kazoo client of zk_server; stopped and closed after the test."""
    client = zk_server.client()
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def zk_cluster(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Iterator[ZkCluster]:
    """A started ensemble for one test: 3 voters unless the test says otherwise (a `zk_cluster`
    mark, or an indirect parameter: a size, or a dict of ZkCluster options)."""
    from zkfast.testing import ZkCluster

    options = server_options(pytestconfig)
    _skip_unless_runnable(options)
    marker = request.node.get_closest_marker("zk_cluster")
    if marker is not None:
        marked = dict(marker.kwargs)  # the mark is shared by every test it decorates: not popped from
        options["n"] = marked.pop("size", marker.args[0] if marker.args else DEFAULT_CLUSTER_SIZE)
        options.update(marked)
    param = getattr(request, "param", None)
    if isinstance(param, int):
        options["n"] = param
    elif isinstance(param, dict):
        options.update(param)
        if "size" in options:
            options["n"] = options.pop("size")
    cluster = ZkCluster(**options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
        _keep(pytestconfig, f"{request.node.nodeid}: zk_cluster {', '.join(str(m.workdir) for m in cluster)}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(KEPT_DIRS, [])
    if kept:
        terminalreporter.write_sep("-", "zkfast.testing: servers' directories kept (--zk-keep-data)")
        for line in kept:
            terminalreporter.write_line(line)
