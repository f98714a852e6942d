"""Prometheus metrics, as Apache ZooKeeper 3.8's PrometheusMetricsProvider serves them.

Enabled by `metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider`;
`metricsProvider.httpHost` (0.0.0.0), `metricsProvider.httpPort` (7000) and
`metricsProvider.exportJvmInfo` (true: the process metrics the Java client's DefaultExports gives, here
prometheus-client's process, platform and GC collectors) as in Apache. `GET /metrics` answers the text
format 0.0.4, as Apache's (simpleclient 0.9) does.

The figures are read at scrape time from the monitor values (`mntr`, the source of truth) under Apache's
names and types: its gauges (znode_count, watch_count, avg_latency, ...), its counters under their bare
names (simpleclient 0.9 added no `_total`), and its summaries (fsynctime, snapshottime, ...) as
`<name>_count` / `<name>_sum` in milliseconds. zkfast adds `zkfast_*` metrics: group-commit figures from
the txn log and two histograms fed once per log sync (txns per sync, and the commit latency).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from zkfast import quotas
from zkfast.net.admin import HttpRequest, HttpResponse, HttpServer, error_page
from zkfast.net.fourletter import monitor_values
from zkfast.net.serverdata import slices

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from zkfast.config import ServerConfig
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)

PROMETHEUS_PROVIDER = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"
DEFAULT_PROVIDER = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # simpleclient 0.9's TextFormat.CONTENT_TYPE_004
IDLE_TIMEOUT_S = 30.0  # Jetty's default

# ZooKeeperServer/LeaderZooKeeperServer.registerMetrics: gauges read by callback
APACHE_GAUGES = frozenset("""
approximate_data_size auth_failed_count avg_latency connection_drop_probability ephemerals_count global_sessions
last_client_response_size last_proposal_size leader_uptime learners local_sessions max_client_response_size
max_file_descriptor_count max_latency max_proposal_size min_client_response_size min_latency min_proposal_size
non_mtls_local_conn_count non_mtls_remote_conn_count num_alive_connections open_file_descriptor_count
outstanding_requests outstanding_tls_handshake packets_received packets_sent pending_syncs quorum_size
synced_followers synced_non_voting_followers synced_observers uptime watch_count znode_count
""".split())

# ServerMetrics.java: getCounter(...)
APACHE_COUNTERS = frozenset("""
add_dead_watcher_stall_time bytes_received_count cnxn_closed_without_zk_server_running commit_count
connection_drop_count connection_rejected connection_request_count connection_revalidate_count
dead_watchers_cleared dead_watchers_queued diff_count digest_mismatches_count ensemble_auth_fail
ensemble_auth_skip ensemble_auth_success insecure_admin_count large_requests_rejected
learner_commit_received_count learner_proposal_received_count looking_count outstanding_changes_queued
outstanding_changes_removed prep_processor_request_queued proposal_count quit_leading_due_to_disloyal_voter
request_commit_queued request_throttle_wait_count response_bytes response_packet_cache_hits
response_packet_cache_misses response_packet_get_children_cache_hits response_packet_get_children_cache_misses
revalidate_count sessionless_connections_expired skip_learner_request_to_next_processor_count snap_count
stale_replies stale_requests stale_requests_dropped stale_sessions_expired sync_processor_request_queued
throttled_ops tls_handshake_exceeded unrecoverable_error_count unsuccessful_handshake watch_bytes
""".split())

# ServerMetrics.java: getSummary(...) (mntr shows each as avg_/min_/max_/cnt_/sum_<name>)
APACHE_SUMMARIES = frozenset("""
close_session_prep_time commit_commit_proc_req_queued commit_process_time commit_propagation_latency
concurrent_request_processing_in_commit_processor connection_token_deficit dbinittime
dead_watchers_cleaner_latency election_time follower_sync_time fsynctime inflight_diff_count
inflight_snap_count jvm_pause_time_ms leader_unavailable_time learner_request_processor_queue_size
local_write_committed_time_ms netty_queued_buffer_capacity node_changed_watch_count node_children_watch_count
node_created_watch_count node_deleted_watch_count observer_sync_time om_commit_process_time_ms
om_proposal_process_time_ms pending_session_queue_size prep_process_time prep_processor_queue_size
prep_processor_queue_time_ms propagation_latency proposal_ack_creation_latency proposal_latency
proposal_process_time quorum_ack_latency read_commit_proc_issued read_commit_proc_req_queued
read_commitproc_time_ms read_final_proc_time_ms readlatency reads_after_write_in_session_queue
reads_issued_from_session_queue request_throttle_queue_time_ms requests_in_session_queue
server_write_committed_time_ms session_queues_drained snapshottime socket_closing_time startup_snap_load_time
startup_txns_load_time startup_txns_loaded sync_process_time sync_processor_batch_size
sync_processor_queue_and_flush_time_ms sync_processor_queue_flush_time_ms sync_processor_queue_size
sync_processor_queue_time_ms time_waiting_empty_pool_in_commit_processor_read_ms unavailable_time
updatelatency write_batch_time_in_commit_processor write_commit_proc_issued write_commit_proc_req_queued
write_commitproc_time_ms write_final_proc_time_ms
""".split())

ZKFAST_COUNTERS = frozenset({"zkfast_group_commit_batches"})
# mntr keys of zkfast that stand for a part of an Apache summary
MNTR_ALIASES = {"fsync_count": "cnt_fsynctime"}
_SUMMARY_PARTS = ("avg_", "min_", "max_", "cnt_", "sum_")

BATCH_TXNS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
COMMIT_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# ------------------------------------------------------------------------------------------ accumulators

class Histogram:
    """Cumulative buckets, observed from any thread (the txn log's), read at scrape time."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = 0
        while i < len(self.bounds) and value > self.bounds[i]:
            i += 1
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """([(le, cumulative count)], sum), +Inf last."""
        from prometheus_client.utils import floatToGoString

        with self._lock:
            counts = list(self._counts)
            total = self._sum
        out = []
        acc = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            acc += n
            out.append((floatToGoString(bound), float(acc)))
        return out, total


class CommitHistograms:
    """Fed once per txn log sync: how many txns it made durable, and how long the oldest of them waited
    from being handed to the log thread until durable (the group commit's latency)."""

    def __init__(self) -> None:
        self.batch_txns = Histogram(BATCH_TXNS_BUCKETS)
        self.latency_s = Histogram(COMMIT_LATENCY_BUCKETS)

    def observe(self, txns: int, seconds: float) -> None:
        self.batch_txns.observe(txns)
        self.latency_s.observe(seconds)


class SummaryStats:
    """count and sum of a summary zkfast's mntr does not show yet (snapshottime)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value


# ------------------------------------------------------------------------------------------ collection

def classify(values: Sequence[tuple[str, object]]) -> tuple[dict[str, float], dict[str, float],
                                                            dict[str, tuple[float, float]]]:
    """Monitor values → (gauges, counters, summaries name → (count, sum)) under Apache's names."""
    numeric: dict[str, float] = {}
    for key, value in values:
        if isinstance(value, bool):
            numeric[MNTR_ALIASES.get(key, key)] = 1.0 if value else 0.0
        elif isinstance(value, int | float):
            numeric[MNTR_ALIASES.get(key, key)] = float(value)
    stems = {k[4:] for k in numeric if k.startswith("cnt_")} | {
        k[4:] for k in numeric if k.startswith(_SUMMARY_PARTS) and k[4:] in APACHE_SUMMARIES}
    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    summaries: dict[str, tuple[float, float]] = {}
    for stem in stems:
        count = numeric.get("cnt_" + stem, 0.0)
        total = numeric.get("sum_" + stem)
        if total is None:
            total = numeric.get("avg_" + stem, 0.0) * count
        summaries[stem] = (count, total)
    for key, value in numeric.items():
        if key.startswith(_SUMMARY_PARTS) and key[4:] in stems:
            continue
        if key in APACHE_COUNTERS or key in ZKFAST_COUNTERS:
            counters[key] = value
        else:
            gauges[key] = value
    return gauges, counters, summaries


class ZooKeeperCollector:
    """A prometheus-client collector: the server's figures at scrape time (on the event loop)."""

    def __init__(self, server: ZooKeeperServer, histograms: CommitHistograms, snapshots: SummaryStats) -> None:
        self.server = server
        self.histograms = histograms
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric | None]:
        """The families; before them a None per monitor value: the values are computed one step at
        a time (fourletter.monitor_values), and the scrape serves clients between steps."""
        from prometheus_client.metrics_core import HistogramMetricFamily, Metric

        server = self.server
        values: list[tuple[str, object]] = []
        labelled: dict[str, dict[str, object]] = {}  # the quota sets: name → {namespace: value}
        if server.listener is not None:
            for item in monitor_values(server, server.listener):
                split = quotas.split_labelled(item[0])
                if split is None:
                    values.append(item)
                else:
                    labelled.setdefault(split[0], {})[split[1]] = item[1]
                yield None
        gauges, counters, summaries = classify(values)
        for name, by_namespace in labelled.items():  # Apache: a gauge (counter) with the label `key`
            m = Metric(name, _help(name), "counter" if name == quotas.EXCEEDED else "gauge")
            for namespace, value in by_namespace.items():
                m.add_sample(name, {"key": namespace}, float(value))  # type: ignore[arg-type]
            yield m
        if "snapshottime" not in summaries and server.store is not None:
            summaries["snapshottime"] = (float(self.snapshots.count), self.snapshots.total)
        for name, value in gauges.items():
            m = Metric(name, _help(name), "gauge")
            m.add_sample(name, {}, value)
            yield m
        for name, value in counters.items():
            m = Metric(name, _help(name), "counter")
            m.add_sample(name, {}, value)  # the bare name, as simpleclient 0.9 exposed counters
            yield m
        for name, (count, total) in summaries.items():
            m = Metric(name, _help(name), "summary")
            m.add_sample(name + "_count", {}, count)
            m.add_sample(name + "_sum", {}, total)
            yield m
        for name, hist, doc in (
                ("zkfast_group_commit_batch_txns", self.histograms.batch_txns,
                 "txns made durable by one txn log sync (group commit batch size)"),
                ("zkfast_commit_latency_seconds", self.histograms.latency_s,
                 "seconds from handing a batch of txns to the log thread until they are durable")):
            buckets, total = hist.snapshot()
            yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


_ZKFAST_HELP = {
    "zkfast_group_commit_batches": "txn log syncs (group commits) since start",
    "zkfast_group_commit_avg_batch_txns": "average txns per txn log sync since start",
}


def _help(name: str) -> str:
    return _ZKFAST_HELP.get(name, name)  # Apache's provider uses the name as the help text


# ------------------------------------------------------------------------------------------ exposition

def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_fragments(metrics: Iterable[Metric | None]) -> Iterator[str]:
    """Text format 0.0.4, a family per fragment (serverdata.slices cuts a scrape into pieces; a None
    is a step of the collection that shows nothing). Unlike prometheus-client's generate_latest, a
    counter's TYPE line names what its samples are called, so Apache's bare counter names
    (`proposal_count`) stay as they were."""
    from prometheus_client.utils import floatToGoString

    for m in metrics:
        if m is None:
            yield ""
            continue
        name, typ = m.name, m.type
        samples = [s for s in m.samples if s.name not in (name + "_created", name + "_gsum", name + "_gcount")]
        if typ == "counter" and any(s.name == name + "_total" for s in samples):
            name += "_total"
        elif typ == "info":
            name, typ = name + "_info", "gauge"
        elif typ == "stateset":
            typ = "gauge"
        elif typ == "gaugehistogram":
            typ = "histogram"
        elif typ == "unknown":
            typ = "untyped"
        doc = m.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out = [f"# HELP {name} {doc}\n# TYPE {name} {typ}\n"]
        for s in samples:
            labels = ""
            if s.labels:
                labels = "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in s.labels.items()) + "}"
            out.append(f"{s.name}{labels} {floatToGoString(s.value)}\n")
        yield "".join(out)


def render_text(metrics: Iterable[Metric | None]) -> bytes:
    """The whole exposition at once (render_fragments)."""
    return "".join(render_fragments(metrics)).encode("utf-8")


# ------------------------------------------------------------------------------------------ the server

class MetricsServer:
    """`/metrics` over HTTP for one ZooKeeperServer."""

    def __init__(self, server: ZooKeeperServer, host: str, port: int, export_jvm_info: bool) -> None:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        self.server = server
        self.histograms = CommitHistograms()
        self.snapshots = SummaryStats()
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=False)
        self.collector = ZooKeeperCollector(server, self.histograms, self.snapshots)
        self.registry.register(self.collector)  # type: ignore[arg-type]
        if export_jvm_info:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.http = HttpServer(self.handle, host, port, idle_timeout_s=IDLE_TIMEOUT_S, name="metrics")
        self._writer: Any = None

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()
        self._attach()

    def use_server(self, server: ZooKeeperServer) -> None:
        """An ensemble member's next era: its server's figures, and its txn log's and snapshots'."""
        self._detach()
        self.server = server
        self.collector.server = server
        self._attach()

    async def close(self) -> None:
        self._detach()
        await self.http.close()

    def _attach(self) -> None:
        store = self.server.store
        if store is None:
            return
        store.snapshot_done_callbacks.append(self._snapshot_done)
        writer = store.commit.writer
        writer.on_batch = self.histograms.observe
        self._writer = writer

    def _detach(self) -> None:
        store = self.server.store
        if store is not None and self._snapshot_done in store.snapshot_done_callbacks:
            store.snapshot_done_callbacks.remove(self._snapshot_done)
        if self._writer is not None:
            self._writer.on_batch = None
            self._writer = None

    def _snapshot_done(self, stats: Any) -> None:
        if stats is not None:
            self.snapshots.add(stats.seconds * 1000.0)  # Apache's snapshottime is in ms

    def families(self, names: Sequence[str] = ()) -> Iterable[Metric | None]:
        """The metric families (and the collection's steps, ZooKeeperCollector.collect), produced as
        they are read; with `names` (`?name[]=...`), only the families with a sample of such a name."""
        families: Iterable[Metric | None] = self.registry.collect()
        if names:
            wanted = set(names)
            families = (m for m in families if m is None or any(s.name in wanted for s in m.samples))
        return families

    def scrape(self, names: Sequence[str] = ()) -> bytes:
        """The exposition at once."""
        return render_text(self.families(names))

    def handle(self, req: HttpRequest) -> HttpResponse:
        if req.path != "/metrics":
            return error_page(404, req.path)
        if req.method not in ("GET", "HEAD", "POST"):
            return error_page(405, req.path, f"HTTP method {req.method} is not supported by this URL")
        fragments = render_fragments(self.families(req.query.get("name[]", [])))
        return HttpResponse(200, content_type=CONTENT_TYPE, pieces=slices(fragments))


def _java_int(text: str, what: str) -> int:
    """Integer.parseInt: optional sign and ASCII digits, nothing else (no spaces)."""
    if re.fullmatch(r"[+-]?[0-9]+", text) is None or not -(1 << 31) <= int(text) < (1 << 31):
        raise ValueError(f"metricsProvider.{what}: {text!r} is not an integer")
    return int(text)


async def start_metrics_server(server: ZooKeeperServer, config: ServerConfig) -> MetricsServer | None:
    """Serve /metrics when zoo.cfg names the Prometheus provider; None with the default provider, and
    None (logged as an error, the server keeps serving clients) when it cannot: an unknown provider
    class, a bad setting, prometheus-client missing, or the port taken."""
    cls = config.metrics_provider_class_name
    if cls == DEFAULT_PROVIDER:
        return None
    if cls != PROMETHEUS_PROVIDER:
        log.error("Cannot boot MetricsProvider %s: zkfast knows only %s and %s; no metrics endpoint",
                  cls, DEFAULT_PROVIDER, PROMETHEUS_PROVIDER)
        return None
    props = config.metrics_provider_config
    host = props.get("httpHost", "0.0.0.0")
    try:
        port = _java_int(props.get("httpPort", "7000"), "httpPort")
    except ValueError as e:
        log.error("Cannot boot MetricsProvider %s: %s", cls, e)
        return None
    export_jvm_info = props.get("exportJvmInfo", "true").lower() == "true"  # Boolean.parseBoolean
    try:
        metrics = MetricsServer(server, host, port, export_jvm_info)
    except ImportError as e:
        log.error("Cannot boot MetricsProvider %s: %s (pip install prometheus-client)", cls, e)
        return None
    try:
        await metrics.start()
    except OSError as e:
        log.error("Cannot start /metrics server on %s:%d: %s; serving clients without it", host, port, e)
        return None
    log.info("Started /metrics HTTP endpoint at host: %s, port: %d, exportJvmInfo: %s", host, metrics.port,
             export_jvm_info)
    return metrics
