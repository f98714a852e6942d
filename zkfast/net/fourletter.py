"""Four-letter words with Apache ZooKeeper 3.8's text formats
(zookeeper-server/src/main/java/org/apache/zookeeper/server/command/*.java)."""

from __future__ import annotations

import datetime
import decimal
import getpass
import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from zkfast import quotas
from zkfast._datatree import digest_mismatches_count
from zkfast.net import serverdata
from zkfast.net.serverdata import U64, Vanished, dir_size
from zkfast.version import version_line

if TYPE_CHECKING:
    from zkfast.net.connection import ClientConnection
    from zkfast.net.listener import ClientListener
    from zkfast.server.zkserver import ZooKeeperServer

NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
KNOWN = ("conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
         "wchc", "wchp", "wchs", "mntr", "isro", "hash")


def java_double(v: float) -> str:
    """Double.toString: plain between 1e-3 and 1e7, scientific (1.0E-4) outside."""
    if v == 0:
        return "0.0"
    if v != v:
        return "NaN"
    a = abs(v)
    if 1e-3 <= a < 1e7:
        s = repr(float(v))
        return s if "." in s or "e" in s else s + ".0"
    mantissa, exp = f"{v:.16e}".split("e")
    digits = repr(float(mantissa)).rstrip("0")
    if digits.endswith("."):
        digits += "0"
    return f"{digits}E{int(exp)}"


def rounded_avg(total: float, count: int) -> float:
    """AvgMinMaxCounter.getAvg: HALF_UP to 4 decimals."""
    if count <= 0:
        return 0.0
    q = decimal.Decimal(total / count).quantize(decimal.Decimal("0.0001"), rounding=decimal.ROUND_HALF_UP)
    return float(q)


def answer_pieces(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> Iterator[bytes]:
    """The answer to a four-letter word, in pieces of bounded work (serverdata.slices) that the
    connection streams between request batches (ClientConnection.stream_answer), closing after the
    last. The big answers (wchp, wchc, dump, cons, stat) walk the server a few entries per piece."""
    cfg = server.config
    if cmd == "telnetclose":
        return
    allowed = cfg is None or cfg.four_letter_word_allowed(cmd) or cmd == "srvr" or (
        cmd == "isro" and getattr(cfg, "read_only_mode_enabled", False))
    if not allowed:
        yield f"{cmd} is not executed because it is not in the whitelist.\n".encode()
        return
    handler = _COMMANDS.get(cmd)
    if handler is None:
        return
    if not server.serving and cmd not in ("ruok", "envi", "gtmk", "stmk", "isro"):
        yield (NOT_SERVING if cmd == "hash" else NOT_SERVING + "\n").encode()
        return
    text = handler(server, listener, cmd, rest)
    yield from serverdata.slices((text,) if isinstance(text, str) else text)


def _stats_block(server: ZooKeeperServer) -> str:
    low, avg, high = server.latency()
    received, sent = server.packets()
    lines = [
        f"Latency min/avg/max: {low}/{java_double(round(avg, 4) if avg else 0.0)}/{high}",
        f"Received: {received}",
        f"Sent: {sent}",
        f"Connections: {len(server.connections)}",
        f"Outstanding: {server.outstanding()}",
        f"Zxid: 0x{server.tree.last_processed_zxid & U64:x}",
        f"Mode: {server.mode}",
    ]
    return "\n".join(lines) + "\n"


def _srvr(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> Iterator[str]:
    yield f"Zookeeper version: {version_line()}\n"
    if server.read_only:
        yield "READ-ONLY mode; serving only read-only clients\n"
    if cmd == "stat":
        yield "Clients:\n"
        for conn in serverdata.live_connections(server):
            yield _conn_info(conn, brief=True) + "\n"
        yield "\n"
    yield _stats_block(server)
    yield f"Node count: {server.node_count()}\n"
    sizes = server.proposal_sizes()
    if sizes is not None:
        yield "Proposal sizes last/min/max: {}/{}/{}\n".format(*sizes)


def _conn_info(conn: ClientConnection, brief: bool) -> str:
    """ServerCnxn.dumpConnectionInfo, from the figures the admin server's `cons` shows."""
    i = serverdata.connection_info(conn, brief or conn.core.session_id == 0)
    ops = i["interest_ops"]
    s = (f" {conn.remote}[{f'{ops:x}' if ops else 0}](queued={i['outstanding_requests']},"
         f"recved={i['packets_received']},sent={i['packets_sent']}")
    if "session_id" in i:
        s += (f",sid=0x{i['session_id'] & U64:x},lop={i['last_operation']},"
              f"est={i['established']},to={i['session_timeout']}")
        if i["last_cxid"] >= 0:
            s += f",lcxid=0x{i['last_cxid'] & 0xFFFFFFFF:x}"
        s += (f",lzxid=0x{i['last_zxid'] & U64:x},lresp={i['last_response_time']},"
              f"llat={i['last_latency']},minlat={i['min_latency']},avglat={int(i['avg_latency'])},"
              f"maxlat={i['max_latency']}")
    return s + ")"


def _cons(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> Iterator[str]:
    for conn in serverdata.live_connections(server):
        yield _conn_info(conn, brief=False) + "\n"
    yield "\n"


def _crst(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    serverdata.reset_connection_stats(server)
    return "Connection stats reset.\n"


def _srst(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    server.reset_stats()
    return "Server stats reset.\n"


def _conf(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    cfg = server.config
    data_dir = cfg.data_dir / "version-2"
    log_dir = cfg.data_log_dir / "version-2"
    lines = [
        f"clientPort={listener.port}",
        f"secureClientPort={cfg.secure_client_port if cfg.secure_client_port else -1}",
        f"dataDir={data_dir.resolve()}",
        f"dataDirSize={dir_size(cfg.data_dir)}",
        f"dataLogDir={log_dir.resolve()}",
        f"dataLogSize={dir_size(cfg.data_log_dir)}",
        f"tickTime={cfg.tick_time_ms}",
        f"maxClientCnxns={cfg.max_client_cnxns}",
        f"minSessionTimeout={cfg.min_session_timeout_ms}",
        f"maxSessionTimeout={cfg.max_session_timeout_ms}",
        f"clientPortListenBacklog={cfg.client_port_listen_backlog}",
        f"serverId={cfg.server_id}",
    ]
    return "\n".join(lines) + "\n"


def environment() -> list[tuple[str, str]]:
    """Apache's Environment.list, with the Python runtime where Java's stands."""
    try:
        host = socket.getfqdn()
    except OSError:
        host = "<NA>"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "<NA>"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return [
        ("zookeeper.version", version_line()),
        ("host.name", host),
        ("java.version", platform.python_version()),
        ("java.vendor", "zkfast (CPython)"),
        ("java.home", sys.prefix),
        ("java.class.path", os.pathsep.join(p for p in sys.path if p)),
        ("java.library.path", "<NA>"),
        ("java.io.tmpdir", os.environ.get("TMPDIR", "/tmp")),
        ("java.compiler", "<NA>"),
        ("os.name", platform.system()),
        ("os.arch", {"x86_64": "amd64"}.get(platform.machine(), platform.machine())),
        ("os.version", platform.release()),
        ("user.name", user),
        ("user.home", os.path.expanduser("~")),
        ("user.dir", os.getcwd()),
        ("os.memory.free", "0MB"),
        ("os.memory.max", f"{rss_mb}MB"),
        ("os.memory.total", f"{rss_mb}MB"),
    ]


def _envi(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    return "Environment:\n" + "".join(f"{k}={v}\n" for k, v in environment())


def _dirs(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    cfg = server.config
    return f"datadir_size: {dir_size(cfg.data_dir)}\nlogdir_size: {dir_size(cfg.data_log_dir)}\n"


def _isro(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    if not server.serving:
        return "null"
    return "ro" if server.read_only else "rw"


def _ruok(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    return "imok"


def _gtmk(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    return str(server.trace_mask)


def _stmk(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    if len(rest) >= 8:
        server.set_trace_mask(int.from_bytes(rest[:8], "big", signed=True))
    return str(server.trace_mask)


def _hash(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> str:
    # DigestCommand: the tree digest at every 128th zxid (DataTree.getDigestLog)
    return "".join(f"{zxid:x}: {digest}\n" for zxid, digest in list(server.tree.digest_log))


def _date(mono_ms: int) -> str:
    """Apache prints expiry times as java.util.Date.toString (local time)."""
    wall = time.time() * 1000 + mono_ms - time.monotonic() * 1000
    dt = datetime.datetime.fromtimestamp(wall / 1000).astimezone()
    return dt.strftime("%a %b %d %H:%M:%S %Z %Y")


def _dump(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> Iterator[str]:
    yield "SessionTracker dump:\n"
    count, buckets = serverdata.session_expiry(server)
    yield f"Session Sets ({count})/({len(server.sessions)}):\n"
    for t, sids in buckets:
        yield f"{len(sids)} expire at {_date(t)}:\n"
        for sid in sids:
            yield f"\t0x{sid & U64:x}\n"
    yield "ephemeral nodes dump:\n"
    count, owners = serverdata.ephemerals(server)
    yield f"Sessions with Ephemerals ({count}):\n"
    for entry in owners:
        if isinstance(entry, Vanished):
            yield ""
            continue
        sid, paths = entry
        yield f"0x{sid & U64:x}:\n"
        for path in paths:
            yield f"\t{path}\n"
    yield "Connections dump:\n"
    yield f"Connections Sets (0)/({len(server.connections)}):\n"


def _watches(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> Iterator[str]:
    if cmd == "wchs":
        w = serverdata.watch_summary(server)
        yield (f"{w['num_connections']} connections watching {w['num_paths']} paths\n"
               f"Total watches:{w['num_total_watches']}\n")
        return
    if cmd == "wchp":
        for entry in serverdata.watches_by_path(server):
            if isinstance(entry, Vanished):
                yield ""
                continue
            path, sids = entry
            yield path + "\n"
            for sid in sids:
                yield f"\t0x{sid & U64:x}\n"
    else:
        for sid, paths in serverdata.watches_by_session(server):
            yield f"0x{sid & U64:x}\n"
            for path in paths:
                yield f"\t{path}\n"
    yield "\n"


def monitor_values(server: ZooKeeperServer, listener: ClientListener) -> Iterator[tuple[str, object]]:
    """The monitor values in Apache's order (`mntr`, the admin server's `monitor`, the Prometheus
    scrape), each computed when its turn comes: the passes over the connections (latencies, packets,
    watches) and the count of open files are steps of their own, so that a caller producing its
    answer in slices (serverdata.slices) serves clients between them."""
    tree = server.tree
    yield "version", version_line()
    yield "server_state", server.mode
    yield "ephemerals_count", tree.ephemerals_count()
    yield "num_alive_connections", len(server.connections)
    low, avg, high = server.latency()
    yield "avg_latency", float(round(avg, 4))
    yield "outstanding_requests", server.outstanding()
    yield "znode_count", server.node_count()
    yield "global_sessions", len(server.sessions)
    yield "non_mtls_remote_conn_count", 0
    yield "last_client_response_size", -1
    received, sent = server.packets()
    yield "packets_sent", sent
    yield "packets_received", received
    yield "max_client_response_size", -1
    yield "connection_drop_probability", listener.throttle.drop_chance if listener.throttle is not None else 0.0
    yield "watch_count", serverdata.watch_count(server)
    yield "auth_failed_count", server.auth_failed_count
    yield "min_latency", low
    yield "max_file_descriptor_count", resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    yield "approximate_data_size", tree.approximate_data_size()
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = 0
    yield "open_file_descriptor_count", open_fds
    yield "local_sessions", 0
    yield "uptime", int(time.time() * 1000) - server.stats.started_ms
    yield "max_latency", high
    secure = server.secure_listener
    yield "outstanding_tls_handshake", len(secure.handshaking) if secure is not None else 0
    yield "min_client_response_size", -1
    yield "non_mtls_local_conn_count", 0
    yield from quotas.gauge_values(tree)  # the gauge sets follow the gauges
    yield "proposal_count", 0
    yield "watch_bytes", 0
    yield "outstanding_changes_removed", 0
    yield "throttled_ops", 0
    yield "stale_requests_dropped", 0
    yield "large_requests_rejected", 0
    yield "connection_rejected", listener.rejected
    yield "digest_mismatches_count", digest_mismatches_count()
    yield "unrecoverable_error_count", 0
    yield from quotas.exceeded_values(server.prep)
    yield from server.quorum_values()
    yield from server.extra_metrics()


def mntr_values(server: ZooKeeperServer, listener: ClientListener) -> list[tuple[str, object]]:
    """monitor_values at once."""
    return list(monitor_values(server, listener))


def _mntr(server: ZooKeeperServer, listener: ClientListener, cmd: str, rest: bytes) -> Iterator[str]:
    for key, value in monitor_values(server, listener):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            text = java_double(value)
        else:
            text = str(value)
        yield f"zk_{key}\t{text}\n"


# a handler answers with its text, or with the fragments of a long answer (serverdata.slices)
Handler = Callable[["ZooKeeperServer", "ClientListener", str, bytes], str | Iterator[str]]

_COMMANDS: dict[str, Handler] = {
    "ruok": _ruok, "srvr": _srvr, "stat": _srvr, "cons": _cons, "crst": _crst, "srst": _srst,
    "conf": _conf, "envi": _envi, "dirs": _dirs, "isro": _isro, "gtmk": _gtmk, "stmk": _stmk,
    "hash": _hash, "dump": _dump, "wchs": _watches, "wchp": _watches, "wchc": _watches, "mntr": _mntr,
}
