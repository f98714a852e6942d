"""What a running server reports about itself, as plain data (dicts, lists, numbers).

One builder per figure, shared by the two ways an operator reads them: the four-letter words render
these as Apache's text, the AdminServer (zkfast/net/admin.py) as Apache's JSON. Keys are the JSON keys
of Apache ZooKeeper 3.8's admin commands (Commands.java, ServerCnxn.getConnectionInfo,
ZooKeeperServerConf.toMap, ServerStats as Jackson names its getters).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zkfast.limits import ANSWER_SLICE_BYTES

if TYPE_CHECKING:
    from zkfast.net.connection import ClientConnection
    from zkfast.server.zkserver import ZooKeeperServer

U64 = 0xFFFFFFFFFFFFFFFF


def _signed64(v: int) -> int:
    """A Java long: session ids and zxids print signed in JSON."""
    v &= U64
    return v - (1 << 64) if v >= 1 << 63 else v


def socket_address(ip: str, port: int) -> str:
    """Jackson's InetSocketAddress: `127.0.0.1:2181`, `[::1]:2181` (no leading slash, unlike toString)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def connection_info(conn: ClientConnection, brief: bool) -> dict[str, Any]:
    """ServerCnxn.getConnectionInfo: the brief form for `stat`, the long one for `cons`."""
    from zkfast.server.zkserver import LAST_OP

    core = conn.core
    info: dict[str, Any] = {
        "remote_socket_address": socket_address(conn.remote_ip, conn.remote_port),
        "interest_ops": 0 if conn.closed else 1,
        "outstanding_requests": len(conn.queue),
        "packets_received": core.packets_received,
        "packets_sent": core.packets_sent,
    }
    if not brief:
        info.update({
            "session_id": _signed64(core.session_id),
            "last_operation": LAST_OP.get(core.last_op, "NA"),
            "established": conn.established_ms,
            "session_timeout": conn.session_timeout_ms,
            "last_cxid": core.last_cxid,
            "last_zxid": _signed64(core.last_zxid),
            "last_response_time": int(time.time() * 1000),  # zkfast keeps no per-connection reply time
            "last_latency": 0,  # nor per-connection latencies
            "min_latency": 0,
            "avg_latency": 0,
            "max_latency": 0,
        })
    return info


def live_connections(server: ZooKeeperServer) -> Iterator[ClientConnection]:
    """The connections open when it started, one per step, leaving out those closed since."""
    live = server.connections
    for conn in list(live):
        if conn in live:
            yield conn


def connections_info(server: ZooKeeperServer, brief: bool, secure: bool = False) -> Iterator[dict[str, Any]]:
    """The connections of the plain (or the secure) client port, as getAllConnectionInfo, lazily."""
    secure_listener = server.secure_listener
    for conn in live_connections(server):
        on_secure = secure_listener is not None and conn.listener is secure_listener
        if on_secure == secure:
            yield connection_info(conn, brief)


def reset_connection_stats(server: ZooKeeperServer) -> None:
    """`crst` (ServerCnxn.resetStats): every connection's counters and last-request figures start over.
    The server's totals (srvr's Received/Sent) are not reset: they keep what the connections counted."""
    stats = server.stats
    for conn in server.connections:
        core = conn.core
        stats.packets_received_base += core.packets_received
        stats.packets_sent_base += core.packets_sent
        core.packets_received = 0
        core.packets_sent = 0
        core.last_op = 0  # "NA"
        core.last_cxid = -1
        core.last_zxid = -1


def dir_size(path: Path | None) -> int:
    """Bytes in the regular files directly inside version-2 (Apache's getDataDirSize)."""
    import os

    if path is None:
        return 0
    total = 0
    try:
        for entry in os.scandir(path / "version-2"):
            if entry.is_file(follow_symlinks=False):
                total += entry.stat().st_size
    except OSError:
        return 0
    return total


def client_response_stats(mntr: dict[str, Any]) -> dict[str, Any]:
    """BufferStats of the replies (`client_response`), from the monitor values."""
    return {
        "last_buffer_size": mntr.get("last_client_response_size", -1),
        "min_buffer_size": mntr.get("min_client_response_size", -1),
        "max_buffer_size": mntr.get("max_client_response_size", -1),
    }


def fsync_threshold_exceed_count(server: ZooKeeperServer) -> int:
    """Txn log syncs slower than fsync.warningthresholdms, in every role (a server without a txn
    log has none)."""
    store = server.store
    return store.commit.writer.fsync_threshold_exceed_count if store is not None else 0


def server_stats(server: ZooKeeperServer, mntr: dict[str, Any]) -> dict[str, Any]:
    """ServerStats as Jackson writes the bean (its order, and its odd `non_mtlsremote_...` names).

    `mntr` is dict(mntr_values(...)): the figures come from there so both surfaces agree."""
    cfg = server.config
    return {
        "packets_sent": mntr.get("packets_sent", 0),
        "packets_received": mntr.get("packets_received", 0),
        "fsync_threshold_exceed_count": fsync_threshold_exceed_count(server),
        "client_response_stats": client_response_stats(mntr),
        "data_dir_size": dir_size(cfg.data_dir) if cfg is not None else 0,
        "log_dir_size": dir_size(cfg.data_log_dir) if cfg is not None else 0,
        "provider_null": False,
        "server_state": server.mode,
        "last_processed_zxid": _signed64(server.tree.last_processed_zxid),
        "outstanding_requests": mntr.get("outstanding_requests", 0),
        "avg_latency": float(mntr.get("avg_latency", 0.0)),
        "max_latency": mntr.get("max_latency", 0),
        "min_latency": mntr.get("min_latency", 0),
        "num_alive_client_connections": mntr.get("num_alive_connections", 0),
        "uptime": mntr.get("uptime", 0),
        "auth_failed_count": mntr.get("auth_failed_count", 0),
        "non_mtlsremote_conn_count": mntr.get("non_mtls_remote_conn_count", 0),
        "non_mtlslocal_conn_count": mntr.get("non_mtls_local_conn_count", 0),
    }


def server_conf(server: ZooKeeperServer) -> dict[str, Any]:
    """ZooKeeperServerConf.toMap (the admin `configuration` command of a standalone server)."""
    cfg = server.config
    listener = server.listener
    port = listener.port if listener is not None else (cfg.client_port or 0)
    return {
        "client_port": port,
        "data_dir": str((cfg.data_dir / "version-2").resolve()),
        "data_log_dir": str((cfg.data_log_dir / "version-2").resolve()),
        "tick_time": cfg.tick_time_ms,
        "max_client_cnxns": cfg.max_client_cnxns,
        "min_session_timeout": cfg.min_session_timeout_ms,
        "max_session_timeout": cfg.max_session_timeout_ms,
        "server_id": cfg.server_id,
        "client_port_listen_backlog": cfg.client_port_listen_backlog,
    }


# -- watches (Apache's wchs/wchc/wchp report data watches only)
#
# Every Watcher in the tree's tables is the ConnCore of a connection in server.connections (a closed
# connection's watches go with it), and each Watcher counts the watches it holds: what
# concerns watchers is counted from there, in O(connections) rather than O(watched paths). A
# Watcher's session_id is a C int64: signed already, as Java prints it.

def watch_summary(server: ZooKeeperServer) -> dict[str, int]:
    """WatchesSummary.toMap: watching connections, watched paths, watches."""
    connections = watches = 0
    for conn in list(server.connections):
        n = conn.core.data_watch_count
        connections += n > 0
        watches += n
    return {"num_connections": connections, "num_paths": len(server.tree.data_watches),
            "num_total_watches": watches}


def watch_count(server: ZooKeeperServer) -> int:
    """zk_watch_count: data and child watches."""
    return sum(c.core.data_watch_count + c.core.child_watch_count for c in list(server.connections))


def watches_by_session(server: ZooKeeperServer) -> Iterator[tuple[int, Iterator[str]]]:
    """WatchesReport.toMap: session id → watched paths, lazily: one step per connection, then per
    path. Each connection's paths are copied when its turn comes (a C-speed copy of references), so a
    watch that fires meanwhile neither breaks the walk nor is missed. A session on two connections
    for a moment (moving from one to the other) is listed once, with the paths of the first."""
    listed: set[int] = set()
    for conn in live_connections(server):
        w = conn.core
        if w.data_watch_count and w.session_id not in listed:
            listed.add(w.session_id)
            yield w.session_id, (p.decode("utf-8", "replace") for p in server.tree.watched_paths(w, False))


def watches_by_path(server: ZooKeeperServer) -> Iterator[tuple[str, list[int]] | Vanished]:
    """WatchesPathReport.toMap: path → ids of the sessions watching it, lazily: one step per path.

    The walk is over the paths watched when it started (a copy of the table's keys: 8 bytes and a
    few ns per path); a path whose watches have all fired since yields VANISHED."""
    table = server.tree.data_watches
    for path in list(table):
        d = table.get(path)
        if not d:
            yield VANISHED
            continue
        yield path.decode("utf-8", "replace"), [w.session_id for w in d]


# -- sessions

def session_expiry(server: ZooKeeperServer) -> tuple[int, Iterator[tuple[int, list[int]]]]:
    """(how many expiry times, then each (expiry time in ms of the monotonic clock, session ids)
    soonest first), as getSessionExpiryMap. A touch moves a session to another bucket, so the
    buckets are copied at once (C speed, a few ns per session); each is sorted when its turn comes."""
    copied = sorted((t, list(sids)) for t, sids in server.sessions.buckets.items())
    return len(copied), ((t, [_signed64(s) for s in sorted(sids)]) for t, sids in copied)


def ephemerals(server: ZooKeeperServer) -> tuple[int, Iterator[tuple[int, Iterator[str]] | Vanished]]:
    """(how many sessions, then each (session id, its ephemeral paths)) for every session that owns
    one (getEphemerals), a session at a time; one that closed since yields VANISHED."""
    table = server.tree.ephemerals
    sids = list(table)

    def walk() -> Iterator[tuple[int, Iterator[str]] | Vanished]:
        for sid in sids:
            paths = table.get(sid)
            if paths is None:
                yield VANISHED
                continue
            yield _signed64(sid), (p.decode("utf-8", "replace") for p in list(paths))

    return len(sids), walk()


# -- answers produced in slices
#
# The commands above hand out lazy iterators; the four-letter words (fourletter.py) and the
# AdminServer (admin.py) render them as fragments of text, one per entry, and `slices` joins the
# fragments into pieces of bounded work. Between pieces the event loop serves the clients.

SLICE_STEPS = 1000  # fragments (watches, paths, sessions, connection fields) rendered per piece, at most
SLICE_SECONDS = 0.001  # and about this much work


class Vanished:
    """An entry that went away during a walk: a step of work with nothing to show."""

    def __repr__(self) -> str:
        return "VANISHED"


VANISHED = Vanished()


def slices(fragments: Iterable[str], steps: int = SLICE_STEPS, max_bytes: int = ANSWER_SLICE_BYTES,
           seconds: float = SLICE_SECONDS) -> Iterator[bytes]:
    """The fragments joined into pieces, UTF-8 encoded; a piece ends after `steps` fragments, about
    max_bytes of text, or the fragment that made it take `seconds` (a step may cost more than
    others: a pass over the connections). An empty fragment is a step that wrote nothing."""
    part: list[str] = []
    size = 0
    clock = time.perf_counter
    deadline = clock() + seconds
    for fragment in fragments:
        part.append(fragment)
        size += len(fragment)
        if len(part) >= steps or size >= max_bytes or clock() >= deadline:
            yield "".join(part).encode("utf-8")
            part = []
            size = 0
            deadline = clock() + seconds
    if part:
        yield "".join(part).encode("utf-8")


def last_snapshot(server: ZooKeeperServer) -> tuple[int, int]:
    """(zxid, mtime in seconds) of the newest finished snapshot; (-1, -1) if none (getLastSnapshotInfo)."""
    from zkfast.storage.snapshot import snapshot_dirs

    store = server.store
    if store is None:
        return -1, -1
    for zxid, path in snapshot_dirs(store.snap_dir):
        try:
            return zxid, int(path.stat().st_mtime)
        except OSError:
            continue
    return -1, -1
