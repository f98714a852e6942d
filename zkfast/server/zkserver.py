"""The standalone server: the request pipeline from a decoded frame to its reply.

prep (validate against tree + outstanding changes, assign the zxid) → commit stage (in memory,
the txn log, or the quorum) → apply to the DataTree (fires watches) → reply in request order per
connection, releasing the reads that waited behind the write.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from zkfast._datatree import DataTree
from zkfast._jute import (
    OP_ADD_WATCH,
    OP_AUTH,
    OP_CHECK,
    OP_CHECK_WATCHES,
    OP_CLOSE_SESSION,
    OP_CREATE,
    OP_CREATE2,
    OP_CREATE_CONTAINER,
    OP_CREATE_SESSION,
    OP_CREATE_TTL,
    OP_DELETE,
    OP_DELETE_CONTAINER,
    OP_EXISTS,
    OP_GET_ACL,
    OP_GET_ALL_CHILDREN_NUMBER,
    OP_GET_CHILDREN,
    OP_GET_CHILDREN2,
    OP_GET_DATA,
    OP_GET_EPHEMERALS,
    OP_MULTI,
    OP_MULTI_READ,
    OP_PING,
    OP_RECONFIG,
    OP_REMOVE_WATCHES,
    OP_SASL,
    OP_SET_ACL,
    OP_SET_DATA,
    OP_SET_WATCHES,
    OP_SET_WATCHES2,
    OP_SYNC,
    OP_WHO_AM_I,
    Txn,
    decode_connect_request,
    encode_connect_response,
)
from zkfast.server import reads
from zkfast.server.auth import AuthRegistry
from zkfast.server.codes import Code, ZkError
from zkfast.server.commit import CommitStage, ImmediateCommit
from zkfast._prep import Prep, Request
from zkfast.server.session import SessionTracker, session_password

if TYPE_CHECKING:
    from zkfast.net.connection import ClientConnection

log = logging.getLogger(__name__)

# Apache's Request.isValid: anything else is answered UNIMPLEMENTED and the connection closed
VALID_OPS = frozenset((OP_CHECK, OP_CLOSE_SESSION, OP_CREATE, OP_CREATE2, OP_CREATE_TTL,
                       OP_CREATE_CONTAINER, OP_CREATE_SESSION, OP_DELETE, OP_DELETE_CONTAINER,
                       OP_EXISTS, OP_GET_ACL, OP_GET_CHILDREN, OP_GET_ALL_CHILDREN_NUMBER,
                       OP_GET_CHILDREN2, OP_GET_DATA, OP_GET_EPHEMERALS, OP_MULTI, OP_MULTI_READ,
                       OP_PING, OP_RECONFIG, OP_SET_ACL, OP_SET_DATA, OP_SET_WATCHES, OP_SET_WATCHES2,
                       OP_SYNC, OP_CHECK_WATCHES, OP_REMOVE_WATCHES, OP_ADD_WATCH, OP_WHO_AM_I))

# ops that take a zxid and go through the commit stage
TXN_OPS = frozenset((OP_CREATE, OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL, OP_DELETE,
                     OP_DELETE_CONTAINER, OP_SET_DATA, OP_SET_ACL, OP_CHECK, OP_MULTI, OP_RECONFIG,
                     OP_CLOSE_SESSION, OP_CREATE_SESSION))

# the 4-letter `cons` names of the last op of a connection (Apache's FinalRequestProcessor lastOp)
LAST_OP = {OP_PING: "PING", OP_CREATE_SESSION: "SESS", OP_MULTI: "MULT", OP_MULTI_READ: "MLTR",
           OP_CREATE: "CREA", OP_CREATE2: "CREA", OP_CREATE_TTL: "CREA", OP_CREATE_CONTAINER: "CREA",
           OP_DELETE: "DELE", OP_DELETE_CONTAINER: "DELE", OP_SET_DATA: "SETD", OP_RECONFIG: "RECO",
           OP_SET_ACL: "SETA", OP_CLOSE_SESSION: "CLOS", OP_SYNC: "SYNC", OP_CHECK: "CHEC",
           OP_EXISTS: "EXIS", OP_GET_DATA: "GETD", OP_SET_WATCHES: "SETW", OP_SET_WATCHES2: "STW2",
           OP_ADD_WATCH: "ADDW", OP_GET_ACL: "GETA", OP_GET_CHILDREN: "GETC", OP_GET_CHILDREN2: "GETC",
           OP_GET_ALL_CHILDREN_NUMBER: "GETACN", OP_CHECK_WATCHES: "CHKW", OP_REMOVE_WATCHES: "REMW",
           OP_WHO_AM_I: "HOMI", OP_GET_EPHEMERALS: "GETE"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ServerStats:
    """Counters behind srvr/stat/mntr (Apache's ServerStats)."""

    def __init__(self) -> None:
        self.started_ms = now_ms()
        self.reset()

    def reset(self) -> None:
        self.latency_min_ms = -1
        self.latency_max_ms = 0
        self.latency_total_ms = 0
        self.latency_count = 0
        self.packets_received_base = 0
        self.packets_sent_base = 0
        self.fast_replies_base = 0

    def update_latency(self, latency_ms: int) -> None:
        self.latency_total_ms += latency_ms
        self.latency_count += 1
        if latency_ms > self.latency_max_ms:
            self.latency_max_ms = latency_ms
        if self.latency_min_ms < 0 or latency_ms < self.latency_min_ms:
            self.latency_min_ms = latency_ms


class ZooKeeperServer:
    """Sessions, the tree and the pipeline of one server; connections call into it."""

    def __init__(self, *, tick_time_ms: int, min_session_timeout_ms: int, max_session_timeout_ms: int,
                 server_id: int = 0, extended_types: bool = False, skip_acl: bool = False,
                 reconfig_enabled: bool = False, close_session_txn: bool = True,
                 super_digest: str | None = None, digest_enabled: bool = True,
                 global_outstanding_limit: int = 1000, auth_schemes: tuple[str, ...] = (),
                 commit: CommitStage | None = None, read_only: bool = False) -> None:
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.server_id = server_id
        self.read_only = read_only
        self.global_outstanding_limit = global_outstanding_limit
        self.auth = AuthRegistry.create(super_digest=super_digest, digest_enabled=digest_enabled,
                                        extra_schemes=auth_schemes, skip_acl=skip_acl)
        self.tree = DataTree(extended_types=extended_types, skip_acl=skip_acl,
                             acl_checker=self._watcher_acl_check)
        # Apache's standalone session tracker uses id 1 (createSessionTrackerServerId)
        self.sessions = SessionTracker(tick_time_ms, server_id if server_id else 1)
        self.last_zxid = 0  # the last zxid handed out by prep
        self.prep = Prep(self.tree, self.sessions, self.auth, self._next_zxid, now_ms,
                         extended_types=extended_types, reconfig_enabled=reconfig_enabled,
                         close_session_txn=close_session_txn)
        self.commit: CommitStage = commit if commit is not None else ImmediateCommit()
        self.in_flight: deque[Request] = deque()
        self.connections: set[ClientConnection] = set()
        self.by_session: dict[int, ClientConnection] = {}
        self.stats = ServerStats()
        self.paused: list[ClientConnection] = []
        self.serving = False
        self.auth_failed_count = 0
        self.write_failure: str | None = None
        self.store: Any = None
        self.config: Any = None
        self.mode = "read-only" if read_only else "standalone"
        self.trace_mask = 0b100110010  # Apache's default text trace level (306)
        self._dirty_conns: list[ClientConnection] = []
        self.commit.start(self.on_commit)

    # -- zxids

    def _next_zxid(self) -> int:
        self.last_zxid += 1
        return self.last_zxid

    # -- ACL checks with Python providers (the C path handles world:anyone and super)

    def _watcher_acl_check(self, acl: list, perm: int, watcher: Any) -> bool:
        return self.auth.check(acl, perm, watcher.auth_ids)

    # -- connections

    def register(self, conn: ClientConnection) -> None:
        self.connections.add(conn)

    def connection_lost(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        core = conn.core
        self.stats.packets_received_base += core.packets_received
        self.stats.packets_sent_base += core.packets_sent
        self.stats.fast_replies_base += core.fast_replies
        if self.by_session.get(core.session_id) is conn:
            del self.by_session[core.session_id]
        self.tree.remove_watcher(core)
        if conn in self.paused:
            self.paused.remove(conn)

    def on_connect(self, conn: ClientConnection, body: bytes) -> None:
        """A ConnectRequest (Apache's processConnectRequest)."""
        try:
            _, last_zxid, timeout_ms, session_id, passwd, read_only = decode_connect_request(body)
        except ValueError as e:
            log.info("bad ConnectRequest from %s: %s", conn.remote, e)
            conn.close()
            return
        conn.old_client = read_only is None
        if self.read_only and not read_only:
            log.info("refusing session request for not-read-only client %s", conn.remote)
            conn.close()
            return
        if last_zxid > self.tree.last_processed_zxid:
            log.info("refusing session request for client %s as it has seen zxid 0x%x, our last "
                     "zxid is 0x%x; client must try another server", conn.remote, last_zxid,
                     self.tree.last_processed_zxid)
            conn.close()
            return
        timeout_ms = max(timeout_ms, self.min_session_timeout_ms)
        timeout_ms = min(timeout_ms, self.max_session_timeout_ms)
        conn.session_timeout_ms = timeout_ms
        if session_id == 0:
            session_id = self.sessions.new_session_id()
            self.sessions.track(session_id, timeout_ms)
            conn.core.session_id = session_id
            req = Request(session_id, 0, OP_CREATE_SESSION, b"", [], conn, create_ms=now_ms(),
                          extra={"timeout_ms": timeout_ms})
            self.submit(req)
            return
        other = self.by_session.get(session_id)
        if other is not None and other is not conn:
            other.close()  # the client reconnected: its old connection goes
        conn.core.session_id = session_id
        valid = (passwd == session_password(session_id)
                 and self.sessions.touch(session_id, timeout_ms))
        if not valid:
            log.info("invalid session 0x%x for client %s, probably expired",
                     session_id & 0xFFFFFFFFFFFFFFFF, conn.remote)
        self.finish_session_init(conn, valid)

    def finish_session_init(self, conn: ClientConnection, valid: bool) -> None:
        core = conn.core
        sid = core.session_id
        frame = encode_connect_response(
            conn.session_timeout_ms if valid else 0, sid if valid else 0,
            session_password(sid) if valid else bytes(16),
            None if conn.old_client else self.read_only)
        conn.send_raw(frame)
        if valid:
            self.by_session[sid] = conn
            conn.established()
        else:
            conn.close_after_flush()

    # -- requests

    def on_request(self, conn: ClientConnection, xid: int, op: int, body: bytes) -> None:
        """A frame the fast path did not answer (Apache's processPacket)."""
        core = conn.core
        if op == OP_AUTH:
            reads.handle_auth(self, conn, xid, body)
            return
        if op == OP_SASL:
            reads.handle_sasl(self, conn, xid, body)
            return
        if not self.sessions.touch(core.session_id, conn.session_timeout_ms):
            return  # a closing or unknown session: Apache drops the packet
        if op not in VALID_OPS:
            log.warning("received packet of unknown type %d from %s", op, conn.remote)
            core.out.reply(xid, -1, int(Code.UNIMPLEMENTED))
            conn.close_after_flush()
            return
        req = Request(core.session_id, xid, op, body, core.auth_ids, conn, create_ms=now_ms())
        if op in TXN_OPS and self.write_failure is not None:
            req.error = ZkError(Code.SYSTEMERROR)
            op = -1  # answered in its turn, like a read
        if op in TXN_OPS:
            self.submit(req)
            if len(self.in_flight) > self.global_outstanding_limit:
                self.pause(conn)
        elif conn.queue:
            conn.queue.append(req)
            core.queued = len(conn.queue)
        else:
            self.run_read(conn, req)

    def submit(self, req: Request) -> None:
        txn = self.prep.prep(req)
        conn = req.conn
        if txn is None:
            # a read or reconfig that failed before getting a zxid: answered in order
            if conn is not None:
                if conn.queue:
                    conn.queue.append(req)
                    conn.core.queued = len(conn.queue)
                else:
                    self.run_read(conn, req)
            return
        if conn is not None:
            conn.queue.append(req)
            conn.core.queued = len(conn.queue)
        self.in_flight.append(req)
        self.commit.append(txn)

    def run_read(self, conn: ClientConnection, req: Request) -> None:
        """Answer a non-txn request now (nothing of its session is ahead of it)."""
        reads.execute(self, conn, req)

    def end_batch(self) -> None:
        """After a batch of input: let the commit stage make its txns final, flush output."""
        self.commit.flush()
        self.flush_output()

    # -- commit and apply

    def on_commit(self, zxid: int) -> None:
        """Every txn up to zxid is final: apply them in order and answer their clients."""
        tree = self.tree
        while self.in_flight and self.in_flight[0].txn.zxid <= zxid:
            req = self.in_flight.popleft()
            txn = req.txn
            self.apply(req.type, txn)
            self.finish(req)
        if self.paused and len(self.in_flight) <= self.global_outstanding_limit // 2:
            self.resume_paused()
        if tree.dirty_watchers or self._dirty_conns:
            self.flush_output()

    def on_commit_failed(self, exc: BaseException, first_zxid: int, permanent: bool) -> None:
        """The commit stage could not make txns from first_zxid on durable: none of them is
        applied or acknowledged, their clients get SYSTEMERROR, and their zxids are free again."""
        failed = list(self.in_flight)
        self.in_flight.clear()
        assert all(r.txn.zxid >= first_zxid for r in failed), "durable txns were applied first"
        if permanent:
            self.write_failure = f"the txn log cannot be synced: {exc}"
            log.error("%s; refusing writes from now on (restart the server once the disk is fixed)",
                      self.write_failure)
        else:
            log.error("could not write %d txn(s) from zxid 0x%x to the txn log: %s; their clients get "
                      "SYSTEMERROR", len(failed), first_zxid, exc)
        self.prep.reset()
        self.last_zxid = self.tree.last_processed_zxid
        rewind = getattr(self.commit, "rewind", None)
        if rewind is not None:
            rewind(self.last_zxid)
        for req in failed:
            self._fail_request(req)
        if self.paused:
            self.resume_paused()
        self.flush_output()

    def _fail_request(self, req: Request) -> None:
        conn = req.conn
        if req.type == OP_CLOSE_SESSION:
            s = self.sessions.sessions.get(req.session_id)
            if s is not None:
                s.closing = False  # it closes later, once a closeSession can be logged
                self.sessions.track(req.session_id, s.timeout_ms)
        elif req.type == OP_CREATE_SESSION:
            self.sessions.remove(req.session_id)
        if conn is None:
            return
        if conn.queue and conn.queue[0] is req:
            conn.queue.popleft()
        if conn.closed:
            return
        if req.type == OP_CREATE_SESSION:
            conn.close()
            return
        conn.core.out.reply(req.cxid, self.tree.last_processed_zxid, int(Code.SYSTEMERROR))
        self.note_reply(conn, req, self.tree.last_processed_zxid)
        self.drain_queue(conn)

    def install(self, tree: DataTree, sessions: dict[int, int]) -> None:
        """Take over a tree and session table rebuilt from disk (before serving)."""
        tree.acl_checker = self._watcher_acl_check
        self.tree = tree
        self.prep.tree = tree
        self.last_zxid = tree.last_processed_zxid
        for sid, timeout in sessions.items():
            self.sessions.track(sid, timeout)
        if sessions:
            self.sessions.next_id = max(self.sessions.next_id, max(sessions) + 1)

    def apply(self, op: int, txn: Txn) -> None:
        """Apply one final txn (Apache's ZooKeeperServer.processTxn)."""
        if op == OP_CREATE_SESSION:
            pass  # tracked at connect time
        elif op == OP_CLOSE_SESSION:
            self.sessions.remove(txn.session_id)
        self.tree.apply(txn)
        self.prep.applied(txn.zxid)

    def finish(self, req: Request) -> None:
        """Answer a request whose txn was applied (Apache's FinalRequestProcessor)."""
        conn = req.conn
        txn = req.txn
        if conn is None:
            if req.type == OP_CLOSE_SESSION:
                other = self.by_session.get(txn.session_id)
                if other is not None:
                    other.close_after_flush()
            return
        head = conn.queue.popleft() if conn.queue else None
        assert head is req, "writes finish in the order their connection sent them"
        if conn.closed:
            conn.core.queued = len(conn.queue)
            return
        if req.type == OP_CREATE_SESSION:
            self.finish_session_init(conn, True)
        else:
            reads.write_txn_reply(self, conn, req)
            if req.type == OP_CLOSE_SESSION:
                conn.close_after_flush()
                return
        self.drain_queue(conn)

    def drain_queue(self, conn: ClientConnection) -> None:
        """Run the reads that waited behind a finished write, up to the next write."""
        queue = conn.queue
        while queue and queue[0].txn is None:
            self.run_read(conn, queue.popleft())
        conn.core.queued = len(queue)
        self.mark_dirty(conn)

    def mark_dirty(self, conn: ClientConnection) -> None:
        if not conn.dirty_flag:
            conn.dirty_flag = True
            self._dirty_conns.append(conn)

    def note_reply(self, conn: ClientConnection, req: Request, zxid: int) -> None:
        conn.core.note_slow_reply(req.cxid, zxid, req.type)
        latency = now_ms() - req.create_ms
        self.stats.update_latency(latency if latency > 0 else 0)

    def flush_output(self) -> None:
        for w in self.tree.take_dirty():
            w.dirty = False
            w.handler.flush()
        conns = self._dirty_conns
        if conns:
            self._dirty_conns = []
            for conn in conns:
                conn.dirty_flag = False
                conn.flush()

    # -- throttling (globalOutstandingLimit)

    def pause(self, conn: ClientConnection) -> None:
        if not conn.core.paused:
            conn.core.paused = True
            conn.pause_reading()
            self.paused.append(conn)

    def resume_paused(self) -> None:
        paused, self.paused = self.paused, []
        for conn in paused:
            conn.core.paused = False
            conn.resume_reading()

    # -- sessions that time out, containers that empty

    def expire_sessions(self) -> None:
        for sid in self.sessions.poll_expired():
            log.info("expiring session 0x%x, timeout of %d ms exceeded",
                     sid & 0xFFFFFFFFFFFFFFFF, self.sessions.timeout_of(sid) or 0)
            self.submit(Request(sid, 0, OP_CLOSE_SESSION, b"", [], None, create_ms=now_ms()))
        self.end_batch()

    def close_session_from_server(self, session_id: int) -> None:
        self.sessions.set_closing(session_id)
        self.submit(Request(session_id, 0, OP_CLOSE_SESSION, b"", [], None, create_ms=now_ms()))

    def delete_container(self, path: bytes) -> None:
        self.submit(Request(0, 0, OP_DELETE_CONTAINER, path, [], None, create_ms=now_ms()))

    # -- figures for the four-letter words

    def packets(self) -> tuple[int, int]:
        received = self.stats.packets_received_base
        sent = self.stats.packets_sent_base
        for conn in self.connections:
            received += conn.core.packets_received
            sent += conn.core.packets_sent
        return received, sent

    def latency(self) -> tuple[int, float, int]:
        fast = self.stats.fast_replies_base + sum(c.core.fast_replies for c in self.connections)
        count = self.stats.latency_count + fast
        if count == 0:
            return 0, 0.0, 0
        low = 0 if fast else max(self.stats.latency_min_ms, 0)
        return low, self.stats.latency_total_ms / count, self.stats.latency_max_ms

    def reset_stats(self) -> None:
        self.stats.reset()
        for conn in self.connections:
            conn.core.fast_replies = 0

    def node_count(self) -> int:
        """Apache counts the root twice (it is stored under "" and "/")."""
        return self.tree.node_count() + 1

    def extra_metrics(self) -> list[tuple[str, object]]:
        """Figures the commit stage (log, quorum) adds to mntr."""
        extra = getattr(self.commit, "metrics", None)
        return list(extra()) if extra is not None else []

    def outstanding(self) -> int:
        return len(self.in_flight)

    def error_reply(self, conn: ClientConnection, xid: int, err: Code | int) -> None:
        conn.core.out.reply(xid, self.tree.last_processed_zxid, int(err))

    def raise_if_closed(self, conn: ClientConnection) -> None:
        if conn.closed:
            raise ZkError(Code.CONNECTIONLOSS)
