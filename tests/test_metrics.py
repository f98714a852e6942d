"""Prometheus metrics: `/metrics` of a real zkfast process with Apache's PrometheusMetricsProvider
configured answers Apache ZooKeeper 3.8's metric names (and types), and the values follow the writes.
The pieces (classification of the monitor values, the exposition, the histograms) are checked in process.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from testbase.process import ZkfastProcess, free_port

from zkfast.config import load_config_text
from zkfast.net import metrics
from zkfast.net.metrics import PROMETHEUS_PROVIDER, CommitHistograms, MetricsServer, classify, render_text

pytestmark = pytest.mark.timeout(120)

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")

# Apache's names that a standalone zkfast must expose (gauges of ZooKeeperServer.registerMetrics)
APACHE_GAUGES = ("znode_count", "watch_count", "outstanding_requests", "avg_latency", "min_latency", "max_latency",
                 "packets_received", "packets_sent", "num_alive_connections", "ephemerals_count",
                 "approximate_data_size", "global_sessions", "local_sessions", "open_file_descriptor_count",
                 "max_file_descriptor_count", "uptime", "auth_failed_count", "connection_drop_probability",
                 "last_client_response_size", "min_client_response_size", "max_client_response_size",
                 "outstanding_tls_handshake", "non_mtls_local_conn_count", "non_mtls_remote_conn_count")
APACHE_COUNTERS = ("proposal_count", "watch_bytes", "outstanding_changes_removed", "throttled_ops",
                   "stale_requests_dropped", "large_requests_rejected", "connection_rejected",
                   "unrecoverable_error_count")


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.values: dict[str, float] = {}
        self.labelled: dict[str, list[tuple[str, float]]] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ")
                self.types[name] = typ
            elif line and not line.startswith("#"):
                m = SAMPLE.match(line)
                assert m, line
                name, labels, value = m.group(1), m.group(2), float(m.group(3))
                if labels:
                    self.labelled.setdefault(name, []).append((labels, value))
                else:
                    self.values[name] = value


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, Scrape]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8")
        return resp.status, resp.getheader("Content-Type") or "", Scrape(body) if resp.status == 200 else Scrape("")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ZkfastProcess, int]]:
    port = free_port()
    proc = ZkfastProcess(cfg={"metricsProvider.className": PROMETHEUS_PROVIDER,
                              "metricsProvider.httpPort": str(port), "metricsProvider.httpHost": "127.0.0.1"})
    proc.start()
    yield proc, port
    proc.stop()
    proc.cleanup()


def test_metrics_have_apaches_names_and_types(served: tuple[ZkfastProcess, int]) -> None:
    _, port = served
    status, content_type, s = scrape(port)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name in APACHE_GAUGES:
        assert s.types.get(name) == "gauge", name
        assert name in s.values, name
    for name in APACHE_COUNTERS:
        assert s.types.get(name) == "counter", name  # simpleclient 0.9: no _total
        assert name in s.values, name
    for name in ("fsynctime", "snapshottime"):
        assert s.types.get(name) == "summary", name
        assert f"{name}_count" in s.values and f"{name}_sum" in s.values
    deadline = time.monotonic() + 10
    while s.values["snapshottime_count"] < 1 and time.monotonic() < deadline:  # the start-up snapshot
        time.sleep(0.05)
        s = scrape(port)[2]
    assert s.values["snapshottime_count"] >= 1 and s.values["snapshottime_sum"] > 0
    assert s.types.get("zkfast_group_commit_batches") == "counter"
    for name in ("zkfast_group_commit_batch_txns", "zkfast_commit_latency_seconds"):
        assert s.types.get(name) == "histogram"
        assert s.labelled[f"{name}_bucket"][-1][0] == '{le="+Inf"}'
    # exportJvmInfo defaults to true: the process metrics of Prometheus clients
    for name in ("process_cpu_seconds_total", "process_open_fds", "process_resident_memory_bytes",
                 "process_start_time_seconds"):
        assert name in s.values, name
    assert "version" not in s.values and "server_state" not in s.values


def test_metrics_follow_the_writes(served: tuple[ZkfastProcess, int]) -> None:
    proc, port = served
    _, _, before = scrape(port)
    zk = KazooClient(hosts=proc.address)
    zk.start(timeout=30)
    try:
        zk.create("/m", b"")
        for i in range(20):
            zk.create(f"/m/n{i}", b"x" * 10)
        zk.create("/m/eph", b"", ephemeral=True)
        zk.get("/m", watch=lambda e: None)
        _, _, after = scrape(port)
    finally:
        zk.stop()
        zk.close()
    assert after.values["znode_count"] == before.values["znode_count"] + 22
    assert after.values["ephemerals_count"] == before.values["ephemerals_count"] + 1
    assert after.values["watch_count"] == before.values["watch_count"] + 1
    assert after.values["num_alive_connections"] == before.values["num_alive_connections"] + 1
    assert after.values["global_sessions"] == before.values["global_sessions"] + 1
    assert after.values["approximate_data_size"] >= before.values["approximate_data_size"] + 200
    assert after.values["packets_received"] >= before.values["packets_received"] + 23
    assert after.values["fsynctime_count"] > before.values["fsynctime_count"]
    assert after.values["zkfast_group_commit_batches"] > before.values["zkfast_group_commit_batches"]
    assert after.values["uptime"] > before.values["uptime"]
    hist = "zkfast_group_commit_batch_txns_count"
    if after.values[hist] > 0:  # fed once the txn log calls its on_batch hook
        assert after.values[hist] > before.values[hist]


def test_only_metrics_is_served(served: tuple[ZkfastProcess, int]) -> None:
    _, port = served
    assert scrape(port, "/other")[0] == 404
    assert scrape(port, "/")[0] == 404
    status, _, s = scrape(port, "/metrics?name[]=znode_count&name[]=fsynctime_count")
    assert status == 200 and set(s.types) == {"znode_count", "fsynctime"}


# ------------------------------------------------------------------------------ in process

def test_monitor_values_are_classified_as_apache_registers_them() -> None:
    values: list[tuple[str, object]] = [
        ("version", "3.8.0"), ("server_state", "standalone"), ("znode_count", 5), ("avg_latency", 0.5),
        ("min_latency", 0), ("max_latency", 3), ("max_file_descriptor_count", 1024), ("proposal_count", 2),
        ("avg_fsynctime", 2.0), ("max_fsynctime", 4), ("fsync_count", 3), ("avg_readlatency", 1.0),
        ("min_readlatency", 0), ("max_readlatency", 2), ("cnt_readlatency", 4), ("sum_readlatency", 4),
        ("zkfast_group_commit_batches", 3), ("zkfast_group_commit_avg_batch_txns", 1.5),
    ]
    gauges, counters, summaries = classify(values)
    assert set(gauges) == {"znode_count", "avg_latency", "min_latency", "max_latency", "max_file_descriptor_count",
                           "zkfast_group_commit_avg_batch_txns"}
    assert counters == {"proposal_count": 2.0, "zkfast_group_commit_batches": 3.0}
    assert summaries == {"fsynctime": (3.0, 6.0), "readlatency": (4.0, 4.0)}


def test_exposition_keeps_counter_names() -> None:
    from prometheus_client.metrics_core import CounterMetricFamily, Metric

    bare = Metric("proposal_count", "proposal_count", "counter")
    bare.add_sample("proposal_count", {}, 2)
    text = render_text([bare, CounterMetricFamily("x", "help\nme", value=1, labels=None)]).decode()
    assert text == ("# HELP proposal_count proposal_count\n# TYPE proposal_count counter\nproposal_count 2.0\n"
                    "# HELP x_total help\\nme\n# TYPE x_total counter\nx_total 1.0\n")


def test_commit_histograms() -> None:
    h = CommitHistograms()
    for txns, seconds in ((1, 0.0004), (3, 0.002), (3, 0.002), (5000, 10.0)):
        h.observe(txns, seconds)
    buckets, total = h.batch_txns.snapshot()
    assert dict(buckets)["1.0"] == 1 and dict(buckets)["4.0"] == 3 and dict(buckets)["+Inf"] == 4
    assert total == 5007
    buckets, total = h.latency_s.snapshot()
    assert dict(buckets)["0.0005"] == 1 and dict(buckets)["0.0025"] == 3 and dict(buckets)["5.0"] == 3
    assert total == pytest.approx(10.0044)


class _StubServer:
    listener = None
    store = None


def _config(tmp_path: Path, extra: str) -> Any:
    return load_config_text(f"dataDir={tmp_path}\nclientPort=2181\n{extra}", "t")


def test_export_jvm_info_false_leaves_out_process_metrics() -> None:
    text = MetricsServer(_StubServer(), "127.0.0.1", 0, export_jvm_info=False).scrape().decode()  # type: ignore[arg-type]
    assert "process_" not in text and "python_" not in text
    assert "zkfast_commit_latency_seconds_bucket" in text
    text = MetricsServer(_StubServer(), "127.0.0.1", 0, export_jvm_info=True).scrape().decode()  # type: ignore[arg-type]
    assert "process_cpu_seconds_total" in text


def test_provider_choice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def start(extra: str) -> Any:
        handle = await metrics.start_metrics_server(_StubServer(), _config(tmp_path, extra))  # type: ignore[arg-type]
        if handle is not None:
            await handle.close()
        return handle

    assert asyncio.run(start("")) is None  # the default provider serves nothing
    with caplog.at_level(logging.ERROR):
        assert asyncio.run(start("metricsProvider.className=com.example.Nope\n")) is None
        assert asyncio.run(start(f"metricsProvider.className={PROMETHEUS_PROVIDER}\n"
                                 "metricsProvider.httpPort=x\n")) is None
    assert "Cannot boot MetricsProvider com.example.Nope" in caplog.text
    assert "httpPort" in caplog.text
    port = free_port()
    assert asyncio.run(start(f"metricsProvider.className={PROMETHEUS_PROVIDER}\n"
                             f"metricsProvider.httpPort={port}\nmetricsProvider.httpHost=127.0.0.1\n")) is not None


def test_scrape_is_quick(served: tuple[ZkfastProcess, int]) -> None:
    _, port = served
    t0 = time.monotonic()
    for _ in range(20):
        assert scrape(port)[0] == 200
    assert time.monotonic() - t0 < 5
