"""Durable storage against real processes: Apache's own tools read zkfast's logs, data moves between
Apache ZooKeeper and zkfast in both directions, sessions survive a restart, the tools work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl
from testbase.process import JAVA_DIR, ApacheZkProcess, ZkfastProcess, apache_available

pytestmark = pytest.mark.skipif(not apache_available() and os.environ.get("CI") != "true",
                                reason="Apache ZooKeeper (Debian package) is not installed")

TOOLKIT_CP = ":".join(str(JAVA_DIR / j) for j in ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar",
                                                  "slf4j-nop.jar"))


def dump_tree(zk: KazooClient) -> dict[str, tuple]:
    """Every znode's data, Stat and ACL, as a client sees them."""
    out: dict[str, tuple] = {}

    def walk(path: str) -> None:
        data, stat = zk.get(path)
        acl, _ = zk.get_acls(path)
        out[path] = (data, tuple(stat), sorted(str(a) for a in acl))
        for child in zk.get_children(path):
            walk(path.rstrip("/") + "/" + child)

    walk("/")
    return out


def write_workload(zk: KazooClient) -> None:
    zk.add_auth("digest", "user:pw")
    zk.create("/app", b"root")
    for i in range(40):
        zk.create(f"/app/n{i}", b"data-%d" % i)
    zk.create("/app/seq-", b"", sequence=True)
    zk.create("/app/secret", b"s", acl=[make_digest_acl("user", "pw", all=True)])
    zk.set("/app/n1", b"changed")
    zk.set_acls("/app/n2", [make_digest_acl("user", "pw", read=True, admin=True)])
    zk.delete("/app/n3")
    t = zk.transaction()
    t.create("/app/m1", b"m")
    t.set_data("/app/n4", b"in-multi")
    t.commit()
    t = zk.transaction()
    t.create("/app/m2")
    t.check("/app/n5", 99)
    t.commit()
    try:
        zk.create("/app/n6", b"dup")
    except Exception:  # noqa: BLE001 - NodeExists: an error txn, logged like the rest
        pass


def client(address: str) -> KazooClient:
    zk = KazooClient(hosts=address, timeout=10)
    zk.start(timeout=15)
    return zk


def test_apache_txn_log_toolkit_reads_zkfast_logs() -> None:
    with ZkfastProcess() as z:
        zk = client(z.address)
        write_workload(zk)
        zk.stop()
        zk.close()
        logs = sorted((z.data_dir / "version-2").glob("log.*"))
        assert logs, "zkfast wrote no txn log"
        ours = subprocess.run([sys.executable, "-m", "zkfast", "log-dump", "--json", str(logs[0])],
                              capture_output=True, text=True, check=True)
        txns = [json.loads(line) for line in ours.stdout.splitlines() if line.startswith("{")]
        apache = subprocess.run(["java", "-cp", TOOLKIT_CP,
                                 "org.apache.zookeeper.server.persistence.TxnLogToolkit", str(logs[0])],
                                capture_output=True, text=True, timeout=60)
    lines = [ln for ln in apache.stdout.splitlines() if " zxid 0x" in ln]
    assert "CRC ERROR" not in apache.stdout, apache.stdout
    assert len(lines) == len(txns) > 40
    for line, txn in zip(lines, txns, strict=True):
        assert f" zxid 0x{txn['zxid']:x} " in line, (line, txn)
        assert f" {txn['type']} " in line, (line, txn)


def test_apache_datadir_is_imported_exactly_and_exported_back(tmp_path: Path) -> None:
    apache = ApacheZkProcess(cfg={"snapCount": "20"})
    apache.start()
    try:
        zk = client(apache.address)
        write_workload(zk)
        before = dump_tree(zk)
        zk.stop()
        zk.close()
        apache.stop()
        # the drop-in case: zkfast started on Apache's zoo.cfg and dataDir
        z = ZkfastProcess(cfg={"dataDir": str(apache.data_dir)}, port=apache.port)
        z.start()
        try:
            zk = client(z.address)
            zk.add_auth("digest", "user:pw")
            assert dump_tree(zk) == before
            zk.create("/after-migration", b"z")
            before = dump_tree(zk)
            zk.stop()
            zk.close()
        finally:
            z.stop()
        assert any(p.name.startswith("snapshot.") for p in (apache.data_dir / "version-2").iterdir()), \
            "Apache's own files stay"
        # the way back: export, then Apache starts on the exported dataDir
        out_dir = tmp_path / "exported"
        r = subprocess.run([sys.executable, "-m", "zkfast", "export-zk", str(out_dir), str(z.cfg_path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        back = ApacheZkProcess(cfg={"dataDir": str(out_dir)})
        with back:
            zk = client(back.address)
            zk.add_auth("digest", "user:pw")
            assert dump_tree(zk) == before
            zk.stop()
            zk.close()
    finally:
        apache.cleanup()


def test_sessions_and_ephemerals_survive_kill_9() -> None:
    z = ZkfastProcess(cfg={"tickTime": "200"})
    z.start()
    try:
        keeper = KazooClient(hosts=z.address, timeout=8)
        keeper.start(timeout=15)
        keeper.create("/kept", b"", ephemeral=True)
        quitter = KazooClient(hosts=z.address, timeout=1)
        quitter.start(timeout=15)
        quitter.create("/dropped", b"", ephemeral=True)
        sid_before = keeper.client_id[0]
        z.kill9()
        quitter.stop()  # this client never comes back: its session must expire after the restart
        z.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not keeper.connected:
            time.sleep(0.05)
        assert keeper.connected, "the client did not reconnect"
        assert keeper.client_id[0] == sid_before
        assert keeper.exists("/kept") is not None, "a live session's ephemeral was lost"
        stat = keeper.exists("/kept")
        assert stat.ephemeralOwner == sid_before
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and keeper.exists("/dropped") is not None:
            time.sleep(0.1)
        assert keeper.exists("/dropped") is None, "a dead session's ephemeral outlived its timeout"
        keeper.stop()
        keeper.close()
        quitter.close()
    finally:
        z.stop()
        z.cleanup()


def test_snap_dump_cleanup_and_restart_from_snapshots() -> None:
    z = ZkfastProcess(cfg={"snapCount": "10", "preAllocSize": "64"})
    z.start()
    try:
        zk = client(z.address)
        for i in range(120):
            zk.create(f"/s{i}", b"x" * i)
        before = dump_tree(zk)
        zk.stop()
        zk.close()
        deadline = time.monotonic() + 10
        snap_dir = z.data_dir / "version-2"
        while time.monotonic() < deadline and not list(snap_dir.glob("zkfast-snap.*")):
            time.sleep(0.05)
        z.stop()
        snaps = sorted(snap_dir.glob("zkfast-snap.*"))
        assert len(snaps) > 3
        dumped = subprocess.run([sys.executable, "-m", "zkfast", "snap-dump", "--json", str(snaps[-1])],
                                capture_output=True, text=True, check=True, timeout=60)
        doc = json.loads(dumped.stdout)
        assert {"/", "/zookeeper", "/s0"} <= {n["path"] for n in doc["nodes"]}
        r = subprocess.run([sys.executable, "-m", "zkfast", "cleanup", str(z.cfg_path), "-n", "3"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert len(list(snap_dir.glob("zkfast-snap.*"))) == 3
        z.start()
        zk = client(z.address)
        assert dump_tree(zk) == before
        zk.stop()
        zk.close()
    finally:
        z.stop()
        z.cleanup()
