"""The benchmark scripts under bench/ run end to end on tiny counts, so they cannot rot.

Not a measurement: compare.py runs one round of tiny phases, zk_latencies.py a few dozen znodes,
admin_stall.py a few hundred watches, sessions.py a hundred sessions, watches.py a few thousand watches,
big_tree.py two thousand znodes, snapshot_stall.py a 300-znode tree, the micro benchmarks once each
(--benchmark-disable).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_admin import admin_available
from testbase.process import ZkfastProcess, apache_available

BENCH = Path(__file__).resolve().parent.parent / "bench"
LINE = re.compile(r"^(created|set|get|deleted|watched|notif) +\d+ .* in +\d+ ms \((\S+ ms/op \S+/sec|included in prior)\)$")


def run(args: list[str], timeout_s: float = 120, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout_s,
                          cwd=BENCH.parent, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def server() -> Iterator[ZkfastProcess]:
    srv = ZkfastProcess({"maxClientCnxns": "0"})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_zk_latencies(server: ZkfastProcess, mode: str) -> None:
    args = [str(BENCH / "zk_latencies.py"), "--znode_count", "30", "--watch_multiple", "2",
            "--root_znode", f"/zk-latencies-{mode}"]
    if mode == "sync":
        args += ["--synchronous", "--config", str(server.cfg_path)]
    else:
        args += ["--servers", server.address]
    out = run(args).splitlines()
    assert out[-1] == "Latency test complete"
    timed = [line for line in out if LINE.match(line)]
    assert [t.split()[0] for t in timed] == ["created", "set", "get", "deleted", "created", "watched",
                                             "deleted", "notif"], out
    assert any("Testing latencies on server" in line for line in out)


def test_zk_latencies_refuses_existing_root(server: ZkfastProcess) -> None:
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=server.address)
    zk.start(timeout=15)
    try:
        zk.create("/zk-latencies-busy", b"")
        proc = subprocess.run([sys.executable, str(BENCH / "zk_latencies.py"), "--servers", server.address,
                               "--root_znode", "/zk-latencies-busy", "--znode_count", "5", "-q"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "already exists" in proc.stderr
        out = run([str(BENCH / "zk_latencies.py"), "--servers", server.address, "--root_znode",
                   "/zk-latencies-busy", "--znode_count", "5", "--force", "-q"])
        assert out.splitlines()[-1] == "Latency test complete"
        assert zk.exists("/zk-latencies-busy") is None
    finally:
        zk.stop()
        zk.close()


def test_loadgen(server: ZkfastProcess) -> None:
    assert server.proc is not None
    out = run([str(BENCH / "loadgen.py"), "--server", server.address, "--server-pid", str(server.proc.pid),
               "--keys", "40", "--duration", "0.05", "--procs", "2", "--conns", "2", "--depth", "4", "--json"])
    res = json.loads(out)
    assert list(res) == ["create", "set", "get", "exists", "getChildren", "multi", "watch", "delete", "session"]
    for phase, r in res.items():
        assert r["ops"] > 0 and r["errors"] == {} and r["missing_events"] == 0, (phase, r)
        assert r["p50_ms"] > 0 and r["server_cpu_s"] is not None


def test_compare(tmp_path: Path) -> None:
    servers = "zkfast,apache" if apache_available() else "zkfast"
    out = run([str(BENCH / "compare.py"), "--servers", servers, "--rounds", "1", "--no-warmup",
               "--duration", "0.05", "--lat-keys", "20", "--thr-keys", "100", "--znodes", "200",
               "--snap-count", "40", "--snap-duration", "0.1", "--conns", "2", "--depth", "4",
               "--out", str(tmp_path)], timeout_s=180)
    for phase in ("create", "getChildren", "watch", "session"):
        assert re.search(rf"^1x1 +{phase} ", out, re.M) and re.search(rf"^2x2x4 +{phase} ", out, re.M), out
    assert "start-up with 200 znodes" in out and "RSS per znode" in out
    [js] = tmp_path.glob("compare-*.json")
    doc = json.loads(js.read_text())
    for kind in servers.split(","):
        assert doc["load"]["thr"]["get"][kind]["ops_per_s"] > 0
        assert doc["big_tree"][kind]["startup_s_median"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert js.with_suffix(".png").stat().st_size > 10_000


def test_ensemble_bench(tmp_path: Path) -> None:
    out = run([str(BENCH / "ensemble.py"), "--servers", "zkfast", "--rounds", "1", "--no-warmup",
               "--duration", "0.05", "--lat-keys", "20", "--thr-keys", "100", "--read-keys", "100",
               "--conns", "2", "--depth", "4", "--observers", "0,1", "--failover-rounds", "1",
               "--tick", "200", "--no-plot", "--out", str(tmp_path)], timeout_s=240)
    for row in (r"1x1 +create", r"2x2x4 +set", r"2x2x4 +get, 0 obs", r"2x2x4 +get, 1 obs",
                r"new leader serving", r"first write acknowledged"):
        assert re.search(rf"^{row} ", out, re.M), (row, out)
    [js] = tmp_path.glob("ensemble-*.json")
    doc = json.loads(js.read_text())
    assert doc["failover"]["zkfast"]["rounds"], doc["failover"]


def test_admin_stall(tmp_path: Path) -> None:
    servers = "apache,zkfast" if admin_available() else "zkfast"
    out = run([str(BENCH / "admin_stall.py"), "--servers", servers, "--sessions", "20", "--watches", "400",
               "--rounds", "1", "--idle", "0.1", "--json", str(tmp_path / "stall.json")], timeout_s=60)
    for row in ("1 idle", "1 operator", "all operator", "4lw wchp", "http watches_by_path"):
        assert re.search(rf"^{row} ", out, re.M), (row, out)
    doc = json.loads((tmp_path / "stall.json").read_text())
    for kind in servers.split(","):
        r = doc["servers"][kind]
        assert r["total_watches"] == 400
        assert r["phases"]["all operator"]["requests"] > 0 and r["phases"]["all operator"]["worst_ms"] > 0
        assert r["commands"]["4lw wchp"]["bytes"] > 400 * 10 and r["commands"]["http watches"]["bytes"] > 400 * 10
    if servers == "zkfast":
        return
    ours, theirs = doc["servers"]["zkfast"]["commands"], doc["servers"]["apache"]["commands"]
    assert ours["4lw wchc"]["bytes"] == theirs["4lw wchc"]["bytes"]  # the same watches, the same text


def test_sessions(tmp_path: Path) -> None:
    out = run([str(BENCH / "sessions.py"), "--kinds", "zkfast", "--sessions", "100", "--processes", "2",
               "--steady", "0.5", "--timeout-ms", "4000", "--json", str(tmp_path / "sessions.json")], timeout_s=60)
    for row in ("RSS per session", "CPU while only pings flow", "probe p99 during expiry"):
        assert re.search(rf"^\| {row} \| [\d,.]+", out, re.M), (row, out)
    (r,) = json.loads((tmp_path / "sessions.json").read_text())
    assert r["sessions"] == 100 and r["rss_open_bytes"] > r["rss_before_bytes"] > 0 and r["expiry_s"] > 0, r


def test_watches(tmp_path: Path) -> None:
    out = run([str(BENCH / "watches.py"), "--kinds", "zkfast", "--sessions", "20", "--paths", "200", "--fan", "50",
               "--rounds", "1", "--processes", "2", "--settle-s", "0.1", "--json", str(tmp_path / "watches.json")], timeout_s=60)
    for row in ("RSS per watch", "register them all", "fan-out last watcher", "RSS given back on close"):
        assert re.search(rf"^\| {row} \| [\d,.-]+", out, re.M), (row, out)
    (r,) = json.loads((tmp_path / "watches.json").read_text())
    assert r["watches"] == 20 * 200 + 20 and r["register_s"] > 0 and len(r["fan_last_ms"]) == 1, r


def test_big_tree(tmp_path: Path) -> None:
    out = run([str(BENCH / "big_tree.py"), "--kinds", "zkfast", "--znodes", "2000", "--json",
               str(tmp_path / "big_tree.json")], timeout_s=90)
    for row in ("RSS per znode, restarted", "snapshot on disk", "start-up from the snapshot"):
        assert re.search(rf"^\| {row} \| [\d,.]+", out, re.M), (row, out)
    (r,) = json.loads((tmp_path / "big_tree.json").read_text())
    assert r["completed"] and r["snapshot_bytes"] > 0 and r["startup_from_log_s"] > 0, r


def test_micro_benchmarks() -> None:
    out = run(["-m", "pytest", str(BENCH / "test_micro.py"), "--benchmark-disable", "-q", "-p",
               "no:cacheprovider"], env={"ZKBENCH_TREE_ZNODES": "5000"})
    assert re.search(r"\b\d+ passed\b", out) and "failed" not in out and "error" not in out, out


def test_tree_memory() -> None:
    r = json.loads(run([str(BENCH / "tree_memory.py"), "--znodes", "2000", "--json"]))
    assert r["znodes"] == 2000 and r["bytes_per_znode"] > 0


def test_abuse_bench() -> None:
    out = run([str(BENCH / "abuse.py"), "--servers", "zkfast", "--scale", "0.05", "--cases", "idle,slowloris",
               "--hold", "0.2"], timeout_s=120)
    for case in ("idle", "slowloris"):
        assert re.search(rf"^{case} +zkfast ", out, re.M), (case, out)


def test_snapshot_stall(tmp_path: Path) -> None:
    out = run([str(BENCH / "snapshot_stall.py"), "--servers", "zkfast", "--znodes", "300", "--rounds", "1",
               "--snap-count", "20", "--duration", "0.3", "--warmup", "0.1", "--conns", "2", "--depth", "4",
               "--out", str(tmp_path)], timeout_s=60)
    for row in ("set 1x1 p99 ms, no snapshot", "set 1x1 p99 ms, snapshots back to back",
                "p99 ms during snapshots / without"):
        assert re.search(rf"^{row} +[\d.]+", out, re.M), (row, out)
    [js] = tmp_path.glob("snapshot-stall-*.json")
    rounds = json.loads(js.read_text())["servers"]["zkfast"]["rounds"]
    assert rounds["no_snapshot"][0]["ops"] > 0 and rounds["snapshots"][0]["ops"] > 0, rounds
    assert rounds["no_snapshot"][0]["snapshots"] == 0, rounds  # snapCount so large that none runs
