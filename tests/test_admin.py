"""The AdminServer over real HTTP: every command of Apache ZooKeeper 3.8's Commands.java, against a real
zkfast process and, side by side, a real Apache ZooKeeper 3.8 brought to the same state (one session
with an ephemeral node and data watches). Key sets (and their order) are compared, and the values
that must agree; bodies whose values cannot differ are compared byte for byte (Jackson's layout).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from testbase.process import (
    JAVA_DIR,
    ApacheZkProcess,
    ServerProcess,
    ZkfastProcess,
    apache_available,
    apache_classpath,
    free_port,
)

from zkfast.config import load_config_text
from zkfast.net import admin
from zkfast.net.admin import BY_NAME, COMMANDS, jackson_json, parse_java_long

pytestmark = pytest.mark.timeout(120)

ADMIN_JARS = ("jetty9-server.jar", "jetty9-servlet.jar", "jetty9-util.jar", "jetty9-io.jar", "jetty9-http.jar",
              "jetty9-security.jar", "servlet-api.jar", "jackson-databind.jar", "jackson-core.jar",
              "jackson-annotations.jar")

# every name and alias of Apache 3.8's Commands.java, primary first
ALL_NAMES = [name for cmd in COMMANDS for name in cmd.names]

# zkfast's monitor keys Apache's has not (zkfast's own figures, and the fsync count of its txn log)
ZKFAST_ONLY_MONITOR_KEYS = {"fsync_count", "zkfast_group_commit_batches", "zkfast_group_commit_avg_batch_txns"}


class ApacheAdminProcess(ApacheZkProcess):
    """Apache ZooKeeper with Jetty and Jackson on the class path, so its AdminServer starts."""

    def command(self) -> list[str]:
        cp = ":".join([apache_classpath(), *(str(JAVA_DIR / j) for j in ADMIN_JARS)])
        return ["java", "-cp", cp, *self.jvm_flags, "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(self.cfg_path)]


def admin_available() -> bool:
    return apache_available() and all((JAVA_DIR / j).exists() for j in ADMIN_JARS)


class Served:
    """A server process with its admin port and a client that set up the compared state."""

    def __init__(self, proc: ServerProcess, admin_port: int) -> None:
        self.proc = proc
        self.admin_port = admin_port
        self.client: KazooClient | None = None

    def populate(self) -> None:
        zk = KazooClient(hosts=self.proc.address, timeout=30.0)
        zk.start(timeout=30)
        zk.create("/eph", b"x", ephemeral=True)
        zk.create("/p", b"abc")
        zk.get("/p", watch=lambda e: None)
        zk.get_children("/", watch=lambda e: None)
        zk.exists("/nope", watch=lambda e: None)
        self.client = zk

    def request(self, method: str, path: str, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, name: str) -> dict[str, Any]:
        status, headers, body = self.request("GET", f"/commands/{name}")
        assert status == 200, (name, status, body)
        assert headers.get("content-type") == "application/json"
        return json.loads(body)

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
            self.client.close()
        self.proc.stop()
        self.proc.cleanup()


def _start(kind: type[ServerProcess]) -> Served:
    port = free_port()
    proc = kind(cfg={"admin.enableServer": "true", "admin.serverPort": str(port),
                     "admin.serverAddress": "127.0.0.1"})
    proc.start()
    served = Served(proc, port)
    served.populate()
    return served


@pytest.fixture(scope="module")
def zk() -> Iterator[Served]:
    served = _start(ZkfastProcess)
    yield served
    served.close()


@pytest.fixture(scope="module")
def apache() -> Iterator[Served]:
    if not admin_available():
        pytest.skip("Apache ZooKeeper 3.8 with Jetty (Debian's zookeeper package) is not installed")
    served = _start(ApacheAdminProcess)
    yield served
    served.close()


def _keys(d: dict[str, Any]) -> list[str]:
    return list(d.keys())


# ------------------------------------------------------------------------------ the command listing

def test_command_listing_is_apaches(zk: Served, apache: Served) -> None:
    for path in ("/commands", "/commands/"):
        status, headers, body = zk.request("GET", path)
        a_status, _, a_body = apache.request("GET", path)
        assert status == a_status == 200
        assert body == a_body
        assert "content-type" not in headers  # Jetty's page names none either
    assert b'<a href="/commands/monitor">monitor</a>\n<br/>\n' in body


def test_unknown_command_is_answered_as_apache_does(zk: Served, apache: Served) -> None:
    for name in ("nope", "digest", "snapshot", "ruok/"):
        status, _, body = zk.request("GET", f"/commands/{name}")
        a_status, _, a_body = apache.request("GET", f"/commands/{name}")
        assert status == a_status == 200
        assert body == a_body
        assert json.loads(body) == {"command": name, "error": f"Unknown command: {name}"}


# ------------------------------------------------------------------------------ every command

@pytest.mark.parametrize("name", ALL_NAMES)
def test_command_keys_match_apache(zk: Served, apache: Served, name: str) -> None:
    ours = zk.get_json(name)
    theirs = apache.get_json(name)
    primary = BY_NAME[name].primary
    assert ours["command"] == primary and theirs["command"] == primary
    assert ours["error"] == theirs["error"]
    if primary == "system_properties":
        assert set(ours) <= set(theirs)
        assert {k for k in ours if k.startswith("zookeeper.")} == {k for k in theirs if k.startswith("zookeeper.")}
    elif primary == "monitor":
        assert _keys(ours)[:2] == _keys(theirs)[:2] == ["version", "server_state"]
        assert set(ours) - set(theirs) <= ZKFAST_ONLY_MONITOR_KEYS
    elif primary in ("dump", "watches", "watches_by_path"):
        assert _keys(ours) == _keys(theirs)  # the inner keys are session ids / paths: compared below
    else:
        assert _keys(ours) == _keys(theirs)
    for key in ("server_stats", "client_response"):
        if key in theirs:  # Jackson orders a bean's getters as the JVM lists them: not the same every run
            assert set(ours[key]) == set(theirs[key])
            assert set(ours[key].get("client_response_stats", {})) == set(theirs[key].get("client_response_stats", {}))
    for key in ("connections", "secure_connections"):
        if key in theirs:
            assert [_keys(c) for c in ours[key]] == [_keys(c) for c in theirs[key]]


def _both(zk: Served, apache: Served, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return zk.get_json(name), apache.get_json(name)


def test_fixed_answers_are_byte_for_byte_apaches(zk: Served, apache: Served) -> None:
    for path in ("ruok", "leader", "voting_view", "zabstate", "observers", "hash", "watch_summary", "isro",
                 "set_trace_mask", "set_trace_mask?traceMask=abc", "set_trace_mask?traceMask",
                 "set_trace_mask?traceMask=99999999999999999999", "set_trace_mask?traceMask=306",
                 "get_trace_mask", "crst", "orst"):
        _, _, ours = zk.request("GET", f"/commands/{path}")
        _, _, theirs = apache.request("GET", f"/commands/{path}")
        assert ours == theirs, path


def test_server_stats_values_agree(zk: Served, apache: Served) -> None:
    for name in ("srvr", "stat"):
        ours, theirs = _both(zk, apache, name)
        assert ours["version"].startswith("3.8.0-") and theirs["version"].startswith("3.8.0-")
        for key in ("read_only", "node_count"):
            assert ours[key] == theirs[key], key
        for key in ("provider_null", "server_state", "last_processed_zxid", "outstanding_requests",
                    "num_alive_client_connections", "auth_failed_count"):
            assert ours["server_stats"][key] == theirs["server_stats"][key], key
        assert ours["server_stats"]["uptime"] > 0
    ours, theirs = _both(zk, apache, "stat")
    assert len(ours["connections"]) == len(theirs["connections"]) == 1
    assert ours["connections"][0]["remote_socket_address"].startswith("127.0.0.1:")
    assert ours["secure_connections"] == theirs["secure_connections"] == []


def test_connections_agree(zk: Served, apache: Served) -> None:
    ours, theirs = _both(zk, apache, "cons")
    assert len(ours["connections"]) == len(theirs["connections"]) == 1
    mine, apaches = ours["connections"][0], theirs["connections"][0]
    for key in ("interest_ops", "session_timeout", "last_zxid", "last_cxid"):
        assert mine[key] == apaches[key], key  # the same on both, reset to -1 or not by a crst
    assert zk.client is not None
    assert mine["session_id"] == zk.client.client_id[0]
    assert mine["remote_socket_address"].startswith("127.0.0.1:")


def test_configuration_agrees(zk: Served, apache: Served) -> None:
    ours, theirs = _both(zk, apache, "conf")
    for key in ("tick_time", "max_client_cnxns", "min_session_timeout", "max_session_timeout", "server_id",
                "client_port_listen_backlog"):
        assert ours[key] == theirs[key], key
    assert ours["client_port"] == zk.proc.port
    assert ours["data_dir"] == str((zk.proc.data_dir / "version-2").resolve())


def test_sessions_ephemerals_and_watches_agree(zk: Served, apache: Served) -> None:
    ours, theirs = _both(zk, apache, "dump")
    assert zk.client is not None and apache.client is not None
    for d, client in ((ours, zk.client), (theirs, apache.client)):
        sid = client.client_id[0]
        assert d["session_id_to_ephemeral_paths"] == {str(sid): ["/eph"]}
        assert list(d["expiry_time_to_session_ids"].values()) == [[sid]]
    ours, theirs = _both(zk, apache, "wchs")
    assert ours == theirs
    ours, theirs = _both(zk, apache, "wchc")
    assert [sorted(p) for p in ours["session_id_to_watched_paths"].values()] == \
        [sorted(p) for p in theirs["session_id_to_watched_paths"].values()]
    assert list(ours["session_id_to_watched_paths"]) == [str(zk.client.client_id[0])]
    ours, theirs = _both(zk, apache, "wchp")
    assert sorted(ours["path_to_session_ids"]) == sorted(theirs["path_to_session_ids"]) == ["/nope", "/p"]
    assert all(v == [zk.client.client_id[0]] for v in ours["path_to_session_ids"].values())


def test_monitor_values_agree(zk: Served, apache: Served) -> None:
    ours, theirs = _both(zk, apache, "mntr")
    for key in ("server_state", "znode_count", "ephemerals_count", "watch_count", "global_sessions",
                "approximate_data_size", "num_alive_connections", "outstanding_requests", "local_sessions"):
        assert ours[key] == theirs[key], key
    assert isinstance(ours["avg_latency"], float)


def test_the_rest_agrees(zk: Served, apache: Served) -> None:
    ours, theirs = _both(zk, apache, "lsnp")
    assert ours["zxid"] == theirs["zxid"] == "0"  # both snapshot at start-up
    assert isinstance(ours["timestamp"], int) and ours["timestamp"] > 1_000_000_000
    for served in (zk, apache):
        icfg = served.get_json("icfg")
        assert icfg["initial_configuration"] == served.proc.cfg_path.read_text()
    ours, theirs = _both(zk, apache, "envi")
    assert _keys(ours) == _keys(theirs)
    assert ours["os.name"] == theirs["os.name"] and ours["user.name"] == theirs["user.name"]
    ours, theirs = _both(zk, apache, "sysp")
    assert ours["zookeeper.4lw.commands.whitelist"] == theirs["zookeeper.4lw.commands.whitelist"] == "*"
    assert ours["zookeeper.admin.serverPort"] == str(zk.admin_port)
    props = _keys(ours)[:-2]
    assert props == sorted(props) and _keys(ours)[-2:] == ["command", "error"]
    ours, theirs = _both(zk, apache, "dirs")
    assert ours["datadir_size"] > 0 and ours["logdir_size"] > 0


def test_stat_reset_and_connection_stat_reset(zk: Served) -> None:
    assert zk.client is not None
    for _ in range(3):
        zk.client.get("/p")
    before = zk.get_json("cons")["connections"][0]["packets_received"]
    assert before > 2
    total = zk.get_json("srvr")["server_stats"]["packets_received"]
    assert zk.get_json("connection_stat_reset") == {"command": "connection_stat_reset", "error": None}
    conn = zk.get_json("cons")["connections"][0]
    assert conn["packets_received"] <= 1  # 1: a ping just then
    assert conn["last_operation"] in ("NA", "PING") and conn["last_cxid"] in (-1, -2)
    assert zk.get_json("srvr")["server_stats"]["packets_received"] >= total  # the server's count stays
    assert zk.get_json("stat_reset") == {"command": "stat_reset", "error": None}
    assert zk.get_json("srvr")["server_stats"]["max_latency"] == 0


def test_set_trace_mask_changes_the_mask(zk: Served) -> None:
    assert zk.get_json("stmk?traceMask=-5")["tracemask"] == -5
    assert zk.get_json("gtmk")["tracemask"] == -5
    assert zk.get_json("stmk?traceMask=306")["tracemask"] == 306
    assert zk.proc.four_letter("gtmk") == "306"


# ------------------------------------------------------------------------------ HTTP

def test_http_answers_as_jetty_does(zk: Served, apache: Served) -> None:
    for method, path in (("GET", "/other"), ("GET", "/commandsX"), ("POST", "/commands/ruok"),
                         ("PUT", "/commands"), ("TRACE", "/commands/ruok"), ("OPTIONS", "/commands/ruok"),
                         ("GET", "/commands/../commands/ruok")):
        status, headers, body = zk.request(method, path)
        a_status, a_headers, a_body = apache.request(method, path)
        assert status == a_status, (method, path)
        assert headers.get("allow") == a_headers.get("allow")
    status, headers, body = zk.request("HEAD", "/commands/ruok")
    assert status == 200 and body == b"" and headers["content-length"] == "42"


def test_request_size_is_bounded(zk: Served) -> None:
    status, _, _ = zk.request("GET", "/commands/ruok", headers={"X-Big": "a" * 20000})
    assert status == 431
    with socket.create_connection(("127.0.0.1", zk.admin_port), timeout=5) as s:
        s.sendall(b"GET /commands/ruok HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413 ")


def test_keep_alive_serves_several_requests_on_one_connection(zk: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", zk.admin_port, timeout=5)
    try:
        for name in ("ruok", "isro", "monitor"):
            conn.request("GET", f"/commands/{name}")
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["error"] is None
    finally:
        conn.close()


def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        cfg = load_config_text(f"dataDir={tmp_path}\nclientPort=2181\nadmin.serverPort={free_port()}\nadmin.serverAddress=127.0.0.1\n"
                               "admin.idleTimeout=200\n", "t")
        server = _StubServer(cfg)
        srv = await admin.start_admin_server(server, cfg)  # type: ignore[arg-type]
        assert srv is not None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            data = await asyncio.wait_for(reader.read(), 5)  # the server closes without a word
            writer.close()
            return data
        finally:
            await srv.close()

    assert asyncio.run(scenario()) == b""


# ------------------------------------------------------------------------------ in-process pieces

class _StubServer:
    """Enough of ZooKeeperServer for commands that do not touch the tree."""

    def __init__(self, config: Any, serving: bool = True) -> None:
        self.config = config
        self.serving = serving
        self.listener = object() if serving else None
        self.read_only = False
        self.trace_mask = 306
        self.store = None


def test_commands_needing_a_server_say_it_is_not_serving() -> None:
    cfg = load_config_text("dataDir=/tmp/x\nclientPort=2181\n", "t")
    ctx = admin.CommandContext(_StubServer(cfg, serving=False), "")  # type: ignore[arg-type]
    assert admin.run_command("ruok", ctx, {}) == {
        "command": "ruok", "error": "This ZooKeeper instance is not currently serving requests"}
    assert admin.run_command("stats", ctx, {})["command"] == "stats"  # the name asked for, as Apache
    assert admin.run_command("gtmk", ctx, {}) == {"tracemask": 306, "command": "get_trace_mask", "error": None}
    assert admin.run_command("env", ctx, {})["command"] == "environment"


def test_a_taken_port_leaves_the_server_without_admin(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> object:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            cfg = load_config_text(f"dataDir={tmp_path}\nclientPort=2181\nadmin.serverPort={port}\n"
                                   "admin.serverAddress=127.0.0.1\n", "t")
            return await admin.start_admin_server(_StubServer(cfg), cfg)  # type: ignore[arg-type]

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) is None
    assert "Unable to start AdminServer" in caplog.text


def test_disabled_admin_server_is_not_started(tmp_path: Path) -> None:
    cfg = load_config_text(f"dataDir={tmp_path}\nclientPort=2181\nadmin.enableServer=false\n", "t")
    assert asyncio.run(admin.start_admin_server(_StubServer(cfg), cfg)) is None  # type: ignore[arg-type]


def test_zkfast_with_a_taken_admin_port_still_serves() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = ZkfastProcess(cfg={"admin.enableServer": "true", "admin.serverPort": str(port),
                                  "admin.serverAddress": "127.0.0.1"})
        try:
            proc.start()
            assert "Mode: standalone" in proc.four_letter("srvr")
            assert "Unable to start AdminServer" in proc.log_tail()
        finally:
            proc.stop()
            proc.cleanup()


def test_jackson_layout() -> None:
    value = {"a": 1, "b": [{"x": 1.5, "y": []}, {}], "c": {}, "d": None, "e": 'q"\n\x01', "f": [1, 2],
             "g": 1e-4, "h": True, "i": "ü"}
    assert jackson_json(value) == (
        '{\n  "a" : 1,\n  "b" : [ {\n    "x" : 1.5,\n    "y" : [ ]\n  }, { } ],\n  "c" : { },\n  "d" : null,\n'
        '  "e" : "q\\"\\n\\u0001",\n  "f" : [ 1, 2 ],\n  "g" : 1.0E-4,\n  "h" : true,\n  "i" : "ü"\n}')


def test_parse_java_long() -> None:
    assert parse_java_long("+5") == 5 and parse_java_long("-9223372036854775808") == -(1 << 63)
    for bad in ("", " 5", "5 ", "0x10", "9223372036854775808", "1_0", "５"):
        with pytest.raises(ValueError):
            parse_java_long(bad)
