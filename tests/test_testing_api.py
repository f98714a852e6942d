"""zkfast.testing, the public API test suites start servers with: ZkServer's life cycle and guarantees
(its own port and dataDir, bounded starts, reaping at exit and on SIGTERM/SIGHUP), ZkCluster's faults,
session expiry and the TCP proxy, and the pytest plugin (run in a separate pytest, as a user's project
runs it)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.security import make_digest_acl

from zkfast.testing import (
    PartitionUnavailable,
    ServerExited,
    ZkCluster,
    ZkServer,
    apache_available,
    expire_session,
    free_port,
    iptables_unavailable,
)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "testing_startup.py"
KINDS = ["zkfast", pytest.param("apache", marks=pytest.mark.skipif(not apache_available(),
                                                                     reason="Apache ZooKeeper is not installed"))]


def gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether process `pid` has ended (polled until `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists():
        status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}/status").exists() else ""
        if "State:\tZ" in status:
            return True  # dead, waiting for a parent that is not us to reap it
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def server() -> Iterator[ZkServer]:
    with ZkServer() as srv:
        yield srv


def stopped(client: KazooClient) -> None:
    try:
        client.stop()
    finally:
        client.close()


# ------------------------------------------------------------------------------------------ ZkServer


def test_a_server_serves_on_loopback_and_close_removes_everything() -> None:
    srv = ZkServer()
    assert not srv.running and srv.mode is None
    srv.start()
    pid, workdir = srv.pid, srv.workdir
    assert pid is not None
    assert srv.connect_string == f"127.0.0.1:{srv.port}"
    assert srv.mode == "standalone"
    assert f"tickTime={srv.config['tickTime']}" in srv.four_letter("conf")
    srv.close()
    assert gone(pid) and not workdir.exists() and not srv.running
    with pytest.raises(RuntimeError, match="closed"):
        srv.start()


def test_restart_keeps_port_and_data_and_kill_is_a_crash(server: ZkServer) -> None:
    client = server.client()
    client.create("/kept", b"v")
    stopped(client)
    port, pid = server.port, server.pid
    server.restart()
    assert server.port == port and server.pid != pid
    server.kill()
    assert not server.running and gone(pid or 0)
    server.start()
    client = server.client()
    try:
        assert client.get("/kept")[0] == b"v"
    finally:
        stopped(client)


def test_a_paused_server_answers_nothing_until_resumed(server: ZkServer) -> None:
    server.pause()
    assert server.running and server.mode is None
    server.resume()
    assert server.mode == "standalone"
    server.pause()
    started = time.monotonic()
    assert server.stop() is not None  # a paused server still stops, at once
    assert time.monotonic() - started < 10


def test_a_port_taken_before_the_server_binds_it_is_replaced() -> None:
    srv = ZkServer()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", srv.port))
        squatter.listen()
        taken = srv.port
        with srv:
            assert srv.port != taken and srv.mode == "standalone"
            assert f"clientPort={srv.port}" in srv.four_letter("conf")


def test_another_server_on_the_port_is_never_taken_for_this_one(server: ZkServer) -> None:
    # a port given explicitly is not replaced: the start fails, rather than return on the other's srvr
    with pytest.raises(ServerExited, match="address already in use"):
        ZkServer(port=server.port, start_timeout_s=30).start()
    late = ZkServer()
    with ZkServer(port=late.port) as first:  # another server took late's port before late started
        with late:
            assert late.port != first.port and late.mode == "standalone"
            assert str(late.data_dir) in late.four_letter("conf")


def test_a_start_that_cannot_serve_is_bounded_and_kills_the_process() -> None:
    # a member whose peers never come: no quorum, no Mode
    peers = {f"server.{i}": f"127.0.0.{i}:{free_port(f'127.0.0.{i}')}:{free_port(f'127.0.0.{i}')}" for i in (1, 2, 3)}
    lonely = ZkServer(server_id=1, start_timeout_s=3, config={"initLimit": 5, "syncLimit": 2, **peers})
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not serve within 3 s"):
        lonely.start()
    assert time.monotonic() - started < 10
    assert not lonely.running
    lonely.close()


def test_a_server_that_exits_says_why() -> None:
    with pytest.raises(ServerExited, match="tickTime"):
        ZkServer(config={"tickTime": "not-a-number"}).start()


@pytest.mark.parametrize("ending", ["exit", "SIGTERM", "SIGHUP"])
def test_servers_are_reaped_when_the_test_process_ends(tmp_path: Path, ending: str) -> None:
    # default dispositions, as a terminal or a CI runner gives them (under nohup SIGHUP is ignored, and
    # the reaper rightly leaves an ignored signal alone)
    script = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from zkfast.testing import ZkServer, ZkCluster
        s = ZkServer().start()
        print(s.pid, s.workdir, flush=True)
        if sys.argv[1] != "exit":
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, ending], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        pid_text, workdir = proc.stdout.readline().split()
        if ending != "exit":
            proc.send_signal(getattr(signal, ending))
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert gone(int(pid_text)), f"server {pid_text} outlived its test process ({ending})"
    assert not Path(workdir).exists()
    if ending != "exit":  # it still dies of the signal, as it would have without the reaper
        assert proc.returncode == -getattr(signal, ending)


def test_reset_deletes_everything_but_zookeeper_whatever_the_acls() -> None:
    with ZkServer(super_password="s3cret") as srv:
        client = srv.client(auth_data=[("digest", "owner:pw")])
        try:
            owner_only = [make_digest_acl("owner", "pw", all=True)]
            client.create("/app/locked/deep", b"", makepath=True, acl=owner_only)
            client.set_acls("/app/locked", owner_only)
            client.set_acls("/app", owner_only)
            client.create("/other", b"")
        finally:
            stopped(client)
        srv.reset()
        client = srv.client()
        try:
            assert client.get_children("/") == ["zookeeper"]
        finally:
            stopped(client)


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("kind", KINDS)
def test_expire_session_ends_the_session_and_the_client_gets_a_new_one(kind: str) -> None:
    with ZkServer(kind=kind) as srv:
        client = srv.client()
        try:
            states: list[KazooState] = []
            client.add_listener(states.append)
            client.create("/eph", b"", ephemeral=True)
            old = client.client_id
            expire_session(client)
            assert KazooState.LOST in states
            assert client.client_id != old
            assert client.exists("/eph") is None
        finally:
            stopped(client)


def test_the_proxy_drops_connections_not_sessions(server: ZkServer) -> None:
    proxy = server.proxy()
    client = KazooClient(hosts=proxy.connect_string)
    client.start(timeout=15)
    try:
        states: list[KazooState] = []
        client.add_listener(states.append)
        client.create("/through-proxy", b"", ephemeral=True)
        session = client.client_id
        assert proxy.connections == 1
        assert proxy.drop_connections() == 1
        client.retry(client.get, "/through-proxy")
        assert states[:2] == [KazooState.SUSPENDED, KazooState.CONNECTED]
        assert client.client_id == session
        proxy.refuse()
        refused = KazooClient(hosts=proxy.connect_string)
        with pytest.raises(KazooTimeoutError):
            refused.start(timeout=1)
        refused.close()
        proxy.refuse(False)
        assert client.exists("/through-proxy") is not None
    finally:
        stopped(client)
    server.close()
    assert proxy.connections == 0  # the server closed its proxies


# ------------------------------------------------------------------------------------------ ZkCluster


def test_a_cluster_serves_survives_its_leader_and_takes_members_back() -> None:
    cluster = ZkCluster(2, observers=1)
    squatter = socket.socket()  # another process took member 2's election port after it was picked
    squatter.bind(("127.0.0.3", cluster.peer_ports[2][1]))
    squatter.listen()
    taken = cluster.peer_ports[2]
    with squatter, cluster:
        assert cluster.peer_ports[2] != taken  # picked again, in every member's zoo.cfg
        assert f"127.0.0.3:{cluster.peer_ports[2][0]}:{cluster.peer_ports[2][1]}" in cluster[1].cfg_path.read_text()
        assert sorted(m.host for m in cluster) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        assert sorted(cluster.modes().values()) == ["follower", "leader", "observer"]
        assert cluster.observers == [cluster[3]]
        client = KazooClient(hosts=cluster.connect_string)
        client.start(timeout=15)
        try:
            client.create("/c", b"1")
            cluster.pause(3)
            assert cluster[3].mode is None and 3 not in cluster.modes()
            cluster.resume(3)
            old = cluster.leader
            assert old is not None
            cluster.kill(old)
            with pytest.raises(TimeoutError):  # one voter of two: no quorum
                cluster.wait_leader(timeout_s=2, other_than=old)
            cluster.restart(old, wait=False)
            new = cluster.wait_serving()
            assert sorted(cluster.modes().values()) == ["follower", "leader", "observer"]
            assert new in cluster and client.retry(client.get, "/c")[0] == b"1"
        finally:
            stopped(client)


def test_a_one_voter_cluster_has_a_leader() -> None:
    """A quorum of one (standaloneEnabled=false) leads and serves past initLimit, as on Apache (zkfast
    used to step down after initLimit: 'a quorum did not sync')."""
    tick_ms, init_limit = 50, 4
    with ZkCluster(1, tick_time_ms=tick_ms, init_limit=init_limit, start_timeout_s=10) as cluster:
        assert cluster.modes() == {1: "leader"}
        time.sleep(3 * init_limit * tick_ms / 1000)
        assert cluster.modes() == {1: "leader"}
        client = KazooClient(hosts=cluster.connect_string, timeout=5)
        client.start(timeout=5)
        try:
            client.create("/one", b"1")
            assert client.get("/one")[0] == b"1"
        finally:
            stopped(client)


def test_partitions_cut_a_member_off_from_its_peers() -> None:
    with ZkCluster(3) as cluster:
        old = cluster.leader
        assert old is not None
        reason = iptables_unavailable()
        if reason is not None:
            with pytest.raises(PartitionUnavailable, match="iptables"):
                cluster.partition(old)
            pytest.skip(f"the error is clear; partitions themselves need iptables: {reason}")
        cluster.partition(old)
        try:
            new = cluster.wait_leader(timeout_s=20, other_than=old)
            assert new is not old
            deadline = time.monotonic() + 20
            while old.mode is not None:  # it cannot reach a quorum: it stops serving
                assert time.monotonic() < deadline, f"the cut-off leader still serves as {old.mode}"
                time.sleep(0.05)
        finally:
            cluster.heal()
        cluster.wait_serving()
        assert old.mode == "follower"


def test_apache_comes_from_zookeeper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kind="apache" finds a release where kazoo's harness does: zookeeper_path=, else $ZOOKEEPER_PATH."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "zookeeper-3.8.0.jar").touch()
    monkeypatch.setenv("ZOOKEEPER_PATH", str(tmp_path))
    command = ZkServer(kind="apache").command()
    assert command[0] == "java" and str(tmp_path / "lib" / "zookeeper-3.8.0.jar") in command[2]
    assert apache_available() == (shutil.which("java") is not None)
    monkeypatch.setenv("ZOOKEEPER_PATH", str(tmp_path / "nothing"))
    assert not apache_available()


def test_partitions_refuse_apache_members_clearly() -> None:
    cluster = ZkCluster(3, kind="apache")  # never started: the refusal comes first
    with pytest.raises(PartitionUnavailable, match="127.0.0.1"):
        cluster.partition(1)
    cluster.close()


# ------------------------------------------------------------------------------------------ the plugin


def run_pytest(project: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    return output


def test_the_plugin_is_inert_until_a_fixture_is_used(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(textwrap.dedent("""
        import os, signal, sys

        def test_nothing_started():
            assert "zkfast.testing.pytest_plugin" in sys.modules  # loaded through its entry point
            assert "kazoo.client" not in sys.modules
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the reaper is not even set up
            children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
            assert children == []
    """))
    assert "1 passed" in run_pytest(tmp_path)


def test_the_plugin_fixtures_and_options(tmp_path: Path) -> None:
    (tmp_path / "test_fixtures.py").write_text(textwrap.dedent("""
        import pytest

        def test_server_and_client(zk_server, zk_client):
            assert zk_client.connected and zk_client.hosts == [(zk_server.host, zk_server.port)]
            assert "tickTime=200" in zk_server.four_letter("conf")  # --zk-tick-time
            zk_client.create("/a/b", makepath=True)

        def test_reset_on_request(zk_server, zk_client):
            assert zk_client.exists("/a/b")
            zk_server.reset()
            assert zk_client.get_children("/") == ["zookeeper"]

        def test_default_cluster(zk_cluster):
            assert len(zk_cluster) == 3 and zk_cluster.leader is not None

        @pytest.mark.zk_cluster(size=1, observers=1)
        def test_marked_cluster(zk_cluster):
            assert sorted(zk_cluster.modes().values()) == ["leader", "observer"]

        @pytest.mark.parametrize("zk_cluster", [2, {"size": 1, "observers": 1}], indirect=True)
        def test_parametrised_cluster(zk_cluster):
            assert len(zk_cluster) == 2 and zk_cluster.leader is not None
    """))
    output = run_pytest(tmp_path, "--zk-tick-time=200", "--zk-keep-data")
    assert "6 passed" in output
    kept = output.split("servers' directories kept (--zk-keep-data)")[1]
    dirs = [Path(p.strip(",")) for p in kept.split() if p.startswith("/tmp") or p.startswith(os.sep)]
    assert dirs and all((d / "zoo.cfg").exists() for d in dirs), kept
    for d in dirs:
        shutil.rmtree(d)


def test_the_startup_bench_runs() -> None:
    """bench/testing_startup.py on one round, so that it cannot rot (its figures are not asserted)."""
    proc = subprocess.run([sys.executable, str(BENCH), "--rounds", "1"], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ZkServer()" in proc.stdout and "ZkCluster(3)" in proc.stdout

