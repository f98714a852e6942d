"""Loaded into kazoo 2.11.0's own test run (`run_kazoo_suite.py`, the plugin harness) next to
zkfast.testing's pytest plugin: kazoo's KazooTestHarness then starts its servers through zkfast.testing
(ZkServer for one server, ZkCluster for an ensemble) instead of running `java`.

kazoo's harness (kazoo/testing/harness.py) asks `get_global_cluster()` for a cluster made from the
ZOOKEEPER_* variables, which kazoo's own tests change (ZOOKEEPER_JAAS_AUTH for SASL,
ZOOKEEPER_LOCAL_SESSION_RO for read-only mode). This replaces that function with one that reads the same
variables and gives the servers what kazoo's ZookeeperCluster gives them (kazoo/testing/common.py): the
same zoo.cfg entries (tickTime 2000, initLimit 4, syncLimit 2, a secure port with kazoo's own TLS stores,
SASL, reconfig, local sessions), the same JAAS file and the same system properties. What differs is how
they start: zkfast.testing waits until they serve where kazoo's harness sleeps 2 s, and members live on
127.0.0.x with free ports (ZOOKEEPER_PORT_OFFSET is not used). The plugin's --zk-kind and
--zk-zookeeper-path choose the server (kind apache checks this adapter against the Apache baseline).

Environment (set by run_kazoo_suite.py):
  ZKFAST_PYTHON             the interpreter that runs zkfast servers (kazoo's venv lacks their
                            dependencies)
  ZKFAST_KAZOO_SERVERS_LOG  every server's log is appended there when its cluster is torn down
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kazoo.testing.harness as harness
import pytest
from kazoo.testing.common import ZookeeperCluster

from zkfast.testing import ZkCluster, ZkServer, free_port
from zkfast.testing.pytest_plugin import server_options

# kazoo's get_global_cluster reads these, with these defaults
CLUSTER_KEYS = ("ZOOKEEPER_CLUSTER_SIZE", "ZOOKEEPER_OBSERVER_START_ID", "ZOOKEEPER_JAAS_AUTH",
                "ZOOKEEPER_LOCAL_SESSION_RO")
CLUSTER_DEFAULTS = {"ZOOKEEPER_CLUSTER_SIZE": "3", "ZOOKEEPER_OBSERVER_START_ID": "-1",
                    "ZOOKEEPER_LOCAL_SESSION_RO": "false"}
STORE_PASSWORD = "apassword"
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="  # password "test", as kazoo's harness sets it
TICK_TIME_MS = 2000
INIT_LIMIT = 4
SYNC_LIMIT = 2
LOG_LINES = 100
JAAS_DIGEST = """
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="super_secret"
    user_jaasuser="jaas_password";
};"""
JAAS_GSSAPI = """
Server {
  com.sun.security.auth.module.Krb5LoginModule required
  debug=true
  isInitiator=false
  useKeyTab=true
  keyTab="%s"
  storeKey=true
  useTicketCache=false
  principal="zookeeper/127.0.0.1@KAZOOTEST.ORG";
};"""


class HarnessServer:
    """One server as kazoo's tests see it (ManagedZooKeeper's interface)."""

    def __init__(self, cluster: HarnessCluster, index: int) -> None:
        self._cluster = cluster
        self._index = index

    @property
    def member(self) -> ZkServer:
        return self._cluster.members()[self._index]

    @property
    def host(self) -> str:
        return self.member.host

    @property
    def client_port(self) -> int:
        return self.member.port

    @property
    def secure_client_port(self) -> int:
        return int(self.member.config["secureClientPort"])

    @property
    def address(self) -> str:
        return self.member.connect_string

    @property
    def secure_address(self) -> str:
        return f"{self.host}:{self.secure_client_port}"

    @property
    def running(self) -> bool:
        return self.member.running

    def run(self) -> None:
        """Start it without waiting, as kazoo's harness does (a member needs its peers to serve)."""
        self.member.start(wait=False)

    def stop(self) -> None:
        self.member.stop()

    def destroy(self) -> None:
        self.member.close()

    def reset(self) -> None:
        """Stop it and empty its dataDir."""
        member = self.member
        member.stop()
        shutil.rmtree(member.data_dir, ignore_errors=True)
        member.data_dir.mkdir(parents=True)

    def get_logs(self, num_lines: int = LOG_LINES) -> list[str]:
        return self.member.log_text().splitlines(keepends=True)[-num_lines:]


class HarnessCluster:
    """kazoo's ZookeeperCluster interface over a ZkServer (size 1, standalone as kazoo runs it) or a
    ZkCluster. terminate() closes the servers; a start() after it makes fresh ones, as kazoo's harness
    then starts its servers again on emptied directories."""

    def __init__(self, size: int, observer_start_id: int, jaas_config: str | None, local_session_ro: str,
                 options: dict[str, Any]) -> None:
        self.size = size
        self.observers = size - observer_start_id + 1 if observer_start_id != -1 else 0
        self._options = options
        self._dir = Path(tempfile.mkdtemp(prefix="kazoo-harness-"))
        self._ssl_configuration: dict[str, Any] = {}
        ZookeeperCluster.perform_ssl_certs_generation(self)  # type: ignore[arg-type]
        keystore, truststore, jaas = self._dir / "keystore.jks", self._dir / "truststore.jks", self._dir / "jaas.conf"
        self._ssl_configuration["keystore"].save(str(keystore), STORE_PASSWORD)
        self._ssl_configuration["truststore"].save(str(truststore), STORE_PASSWORD)
        jaas.write_text(jaas_config or "")
        self.config = {
            "maxClientCnxns": "0",
            "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
            "authProvider.1": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            "ssl.keyStore.location": str(keystore),
            "ssl.keyStore.password": STORE_PASSWORD,
            "ssl.trustStore.location": str(truststore),
            "ssl.trustStore.password": STORE_PASSWORD,
            "4lw.commands.whitelist": "*",
            "reconfigEnabled": "true",
            "localSessionsEnabled": local_session_ro,
            "localSessionsUpgradingEnabled": local_session_ro,
        }
        self.system_properties = {
            "file.encoding": "UTF-8",
            "readonlymode.enabled": "true",
            "java.awt.headless": "true",
            "java.security.auth.login.config": str(jaas),
            "zookeeper.DigestAuthenticationProvider.superDigest": SUPER_DIGEST,
        }
        self._servers = [HarnessServer(self, i) for i in range(size)]
        self._members: list[ZkServer] | None = None
        self._ensemble: ZkCluster | None = None

    def members(self) -> list[ZkServer]:
        """The servers, made on first use and again after terminate()."""
        if self._members is None:
            common = {"tick_time_ms": TICK_TIME_MS, "config": self.config, "jvm_flags": self.system_properties,
                      "python": os.environ.get("ZKFAST_PYTHON"), **self._options}
            if self.size == 1:
                self._members = [ZkServer(**common)]
            else:
                self._ensemble = ZkCluster(self.size - self.observers, self.observers, init_limit=INIT_LIMIT,
                                           sync_limit=SYNC_LIMIT, **common)
                self._members = self._ensemble.servers
            for member in self._members:
                member.config["secureClientPort"] = str(free_port(member.host))
                member.config["secureClientPortAddress"] = member.host
        return self._members

    def __getitem__(self, k: int) -> HarnessServer:
        return self._servers[k]

    def __iter__(self) -> Iterator[HarnessServer]:
        return iter(self._servers)

    def start(self) -> None:
        """Start every server not running and wait until they serve (kazoo's sleeps 2 s instead)."""
        members = self.members()
        if self._ensemble is not None:
            self._ensemble.start()
        else:
            members[0].start()

    def stop(self) -> None:
        for server in self:
            server.stop()

    def terminate(self) -> None:
        """Stop the servers and remove their directories (their logs go to ZKFAST_KAZOO_SERVERS_LOG)."""
        if self._members is None:
            return
        for member in self._members:
            member.stop()
        self._save_logs()
        for closable in [self._ensemble] if self._ensemble is not None else self._members:
            closable.close()
        self._members = None
        self._ensemble = None

    def close(self) -> None:
        """terminate(), and the TLS stores and JAAS file go too."""
        self.terminate()
        shutil.rmtree(self._dir, ignore_errors=True)

    def reset(self) -> None:
        for server in self:
            server.reset()

    def get_logs(self) -> list[str]:
        return [line for server in self for line in server.get_logs()] if self._members is not None else []

    def get_ssl_client_configuration(self) -> dict[str, bytes]:
        return ZookeeperCluster.get_ssl_client_configuration(self)  # type: ignore[arg-type]

    def _save_logs(self) -> None:
        sink = os.environ.get("ZKFAST_KAZOO_SERVERS_LOG")
        if not sink or self._members is None:
            return
        with open(sink, "a", encoding="utf-8") as out:
            for member in self._members:
                out.write(f"===== {member!r} {member.workdir}\n{member.log_text()}\n")


_cluster: HarnessCluster | None = None
_cluster_conf: dict[str, str | None] | None = None


def get_global_cluster(options: dict[str, Any]) -> HarnessCluster:
    """kazoo's get_global_cluster, over zkfast.testing: one cluster while the variables stay the same."""
    global _cluster, _cluster_conf
    conf = {key: os.environ.get(key, CLUSTER_DEFAULTS.get(key)) for key in CLUSTER_KEYS}
    if _cluster is not None:
        if conf == _cluster_conf:
            return _cluster
        _cluster.close()
        _cluster = None
    jaas = conf["ZOOKEEPER_JAAS_AUTH"]
    jaas_config = (JAAS_DIGEST if jaas == "digest"
                   else JAAS_GSSAPI % os.path.expandvars("${KRB5_TEST_ENV}/server.keytab") if jaas == "gssapi"
                   else None)
    _cluster = HarnessCluster(int(conf["ZOOKEEPER_CLUSTER_SIZE"] or 3),
                              int(conf["ZOOKEEPER_OBSERVER_START_ID"] or -1), jaas_config,
                              conf["ZOOKEEPER_LOCAL_SESSION_RO"] or "false", options)
    _cluster_conf = conf
    atexit.register(_cluster.close)
    return _cluster


def pytest_configure(config: pytest.Config) -> None:
    options = server_options(config)
    options.pop("tick_time_ms")  # kazoo's harness runs its servers with tickTime 2000
    harness.get_global_cluster = lambda: get_global_cluster(options)
