"""The standalone server: the request pipeline from a decoded frame to its reply.

prep (validate against tree + outstanding changes, assign the zxid) → commit stage (in memory,
the txn log, or the quorum) → apply to the DataTree (fires watches) → reply in request order per
connection, releasing the reads that waited behind the write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zkfast._datatree import DataTree, Watcher
from zkfast._jute import (
    LAST_OP_NAMES,
    OP_CLOSE_SESSION,
    OP_CREATE_SESSION,
    OP_DELETE_CONTAINER,
    Code,
    decode_connect_request,
    encode_connect_response,
)
from zkfast._pipeline import THIS_SERVER, PipelineCore, Prep, Request, now_ms
from zkfast.limits import EXPIRED_SESSIONS_PER_TURN, WATCHES_DROPPED_PER_TURN
from zkfast.server import reads, roles
from zkfast.server.auth import AuthRegistry
from zkfast.server.commit import CommitStage, ImmediateCommit
from zkfast.server.roles import Role
from zkfast.server.session import SessionTracker, session_password

if TYPE_CHECKING:
    from zkfast.net.connection import ClientConnection
    from zkfast.net.listener import ClientListener
    from zkfast.server.sasl import AuthEnforcer, SaslServer
    from zkfast.storage.store import Store

log = logging.getLogger(__name__)

# net/serverdata.py reads the `cons` names from here
LAST_OP = LAST_OP_NAMES


class ServerStats:
    """Counters behind srvr/stat/mntr kept across connections (Apache's ServerStats); latencies are
    PipelineCore's, the per-connection counters ConnCore's."""

    def __init__(self) -> None:
        self.started_ms = now_ms()
        self.reset()

    def reset(self) -> None:
        self.packets_received_base = 0
        self.packets_sent_base = 0
        self.fast_replies_base = 0


class ZooKeeperServer(PipelineCore):
    """Sessions, the tree and the pipeline of one server; connections call into it.

    The per-request path (on_request, submit, on_commit, apply, finish, replies) is PipelineCore's,
    in Cython; this class holds what runs once per session or less, and the hooks the core declares."""

    # PipelineCore's hooks that zkfast.server.reads answers: each takes the server first
    run_read = reads.execute
    handle_auth = reads.handle_auth
    handle_sasl = reads.handle_sasl

    def __init__(self, *, tick_time_ms: int, min_session_timeout_ms: int, max_session_timeout_ms: int,
                 server_id: int = 0, extended_types: bool = False, skip_acl: bool = False,
                 reconfig_enabled: bool = False, close_session_txn: bool = True,
                 super_digest: str | None = None, digest_enabled: bool = True,
                 global_outstanding_limit: int = 1000, auth_schemes: tuple[str, ...] = (),
                 commit: CommitStage | None = None, role: Role = roles.STANDALONE, config: Any = None,
                 clock_ms: Callable[[], int] | None = None, wall_ms: Callable[[], int] | None = None) -> None:
        """clock_ms/wall_ms: the session tracker's monotonic and wall clocks (a simulator's)."""
        PipelineCore.__init__(self, commit if commit is not None else ImmediateCommit())
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.server_id = server_id
        self.config = config  # the ServerConfig it runs on, for the operator's commands (None in tests)
        self.global_outstanding_limit = global_outstanding_limit
        self.auth = AuthRegistry.create(super_digest=super_digest, digest_enabled=digest_enabled,
                                        extra_schemes=auth_schemes, skip_acl=skip_acl)
        self.tree = DataTree(extended_types=extended_types, skip_acl=skip_acl,
                             acl_checker=self._watcher_acl_check)
        # Apache's standalone session tracker uses id 1 (createSessionTrackerServerId)
        self.sessions = SessionTracker(tick_time_ms, server_id if server_id else 1, clock_ms=clock_ms,
                                       wall_ms=wall_ms)
        self.prep = Prep(self.tree, self.sessions, self.auth,
                         extended_types=extended_types, reconfig_enabled=reconfig_enabled,
                         close_session_txn=close_session_txn)
        self.connections: set[ClientConnection] = set()
        self.stats = ServerStats()
        self.auth_failed_count = 0
        self.expiring: deque[int] = deque()  # timed out, closeSession not submitted yet (expire_sessions)
        self.closed_watchers: deque[Watcher] = deque()  # closed connections whose watches remain
        self.store: Store | None = None                     # its txn log and snapshots (attach_store)
        self.listener: ClientListener | None = None         # the client port's (attach_listeners)
        self.secure_listener: ClientListener | None = None  # secureClientPort's, if any
        self.sasl: SaslServer | None = None                 # (attach_sasl)
        self.enforcer: AuthEnforcer | None = None           # when enforcement is on
        self.role = role
        self.take_role(role)
        self.trace_mask = 0b100110010  # Apache's default text trace level (306)
        self.commit.start(self.on_commit)

    # -- what it is given once built

    def attach_sasl(self, sasl: SaslServer) -> None:
        self.sasl = sasl
        self.enforcer = sasl.enforcer if sasl.enforcer.enabled else None

    def attach_store(self, store: Store) -> None:
        self.store = store

    def attach_listeners(self, plain: ClientListener | None, secure: ClientListener | None) -> None:
        self.listener = plain
        self.secure_listener = secure

    def set_trace_mask(self, mask: int) -> None:
        self.trace_mask = mask

    # -- its role

    def take_role(self, role: Role) -> None:
        """Play `role` from now on (zkfast.server.roles): at start-up and at each role change."""
        PipelineCore.take_role(self, role)
        self.role = role
        if role.forward is not None:
            self.sessions.track_touches()  # a learner reports its clients' sessions in each PING

    def stop_serving(self) -> None:
        self.take_role(roles.stopped(self.role))

    @property
    def mode(self) -> str:
        return self.role.mode

    @property
    def serving(self) -> bool:
        return self.role.serving

    @property
    def read_only(self) -> bool:
        return self.role.read_only

    # -- zxids

    @property
    def last_zxid(self) -> int:
        """The last zxid handed out by prep."""
        return int(self.prep.last_zxid)

    @last_zxid.setter
    def last_zxid(self, zxid: int) -> None:
        self.prep.last_zxid = zxid

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
        self.closed_watchers.append(core)
        if len(self.closed_watchers) == 1:
            self.drop_closed_watches()
        if conn in self.paused:
            self.paused.remove(conn)

    def drop_closed_watches(self) -> None:
        """Forget the watches of closed connections, at most WATCHES_DROPPED_PER_TURN per loop turn:
        a thousand connections with 10,000 watches each, closing together, would otherwise hold the
        loop for seconds. A closed connection gets no event meanwhile."""
        budget = WATCHES_DROPPED_PER_TURN
        while self.closed_watchers and budget > 0:
            core = self.closed_watchers[0]
            held = core.data_watch_count + core.child_watch_count
            left = self.tree.remove_watcher(core, budget)
            budget -= held - left
            if not left:
                self.closed_watchers.popleft()
        if self.closed_watchers:
            asyncio.get_event_loop().call_soon(self.drop_closed_watches)

    def on_connect(self, conn: ClientConnection, body: bytes) -> None:
        """A ConnectRequest (Apache's processConnectRequest)."""
        try:
            _, last_zxid, timeout_ms, session_id, passwd, read_only = decode_connect_request(body)
        except ValueError as e:
            log.info("bad ConnectRequest from %s: %s", conn.remote, e)
            conn.close()
            return
        conn.old_client = read_only is None
        if not self.serving:
            # Apache: "ZooKeeperServer not running"; an ensemble member between roles, or starting
            log.info("refusing session request from %s: not serving", conn.remote)
            conn.close()
            return
        if not conn.listener.admit_session(conn, session_id):
            conn.close()  # Apache's ClientCnxnLimitException: closed without an answer
            return
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
            if self.read_only:
                # a read-only server's sessions are its own: nothing to log or replicate
                self.finish_session_init(conn, True)
                return
            req = Request(session_id, 0, OP_CREATE_SESSION, b"", [], conn, create_ms=now_ms(),
                          extra={"timeout_ms": timeout_ms})
            self.submit(req)
            return
        other = self.by_session.get(session_id)
        if other is not None and other is not conn:
            other.close()  # the client reconnected: its old connection goes
        conn.core.session_id = session_id
        if passwd != session_password(session_id):
            valid = False
        elif self.role.revalidate is not None:
            self.role.revalidate(conn, session_id, timeout_ms)  # the leader's answer finishes it
            return
        else:
            # Apache's LeaderZooKeeperServer.revalidateSession: a client back on the leader is its own
            valid = self.sessions.reopen(session_id, timeout_ms, THIS_SERVER if self.prep.track_owners else None)
        self.finish_session_init(conn, valid)

    def close_local_session(self, conn: ClientConnection, xid: int) -> None:
        """closeSession on a read-only server: its sessions own no ephemerals and log nothing."""
        self.sessions.remove(conn.core.session_id)
        self.by_session.pop(conn.core.session_id, None)
        conn.core.out.reply(xid, self.tree.last_processed_zxid, 0)
        conn.core.packets_sent += 1
        conn.close_after_flush()
        self.mark_dirty(conn)

    def finish_session_init(self, conn: ClientConnection, valid: bool) -> None:
        core = conn.core
        sid = core.session_id
        frame = encode_connect_response(
            conn.session_timeout_ms if valid else 0, sid if valid else 0,
            session_password(sid) if valid else bytes(16),
            None if conn.old_client else self.read_only)
        conn.send_raw(frame)
        conn.core.packets_sent += 1
        if valid:
            self.by_session[sid] = conn
            conn.established()
        else:
            log.info("invalid session 0x%x for client %s, probably expired", sid & 0xFFFFFFFFFFFFFFFF,
                     conn.remote)
            conn.close_after_flush()

    # -- commit failures

    def on_commit_failed(self, exc: BaseException, first_zxid: int, permanent: bool) -> None:
        """The commit stage could not make txns from first_zxid on durable: none of them is
        applied or acknowledged, their clients get SYSTEMERROR, and their zxids are free again."""
        failed = list(self.in_flight)
        self.in_flight.clear()
        self.in_flight_bytes = 0
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
        self.commit.rewind(self.last_zxid)
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
        if not self.answer_reads_ahead(conn, req):
            return
        self.dequeue(conn, req)
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
        # never hand out an id of ours still in use; ids of other servers (their id is the high
        # byte) are theirs to count on: following them would give two servers the same next id
        tracker = self.sessions
        mine = [sid for sid in sessions if (sid >> 56) & 0xFF == (tracker.next_id >> 56) & 0xFF]
        if mine:
            tracker.next_id = max(tracker.next_id, max(mine) + 1)

    def replace_state(self, tree: DataTree, sessions: dict[int, int]) -> None:
        """A learner's tree after TRUNC or SNAP (before serving): the old one and its sessions go."""
        assert not self.in_flight and not self.serving
        for sid in list(self.sessions.sessions):
            self.sessions.remove(sid)
        self.prep.reset()
        self.install(tree, sessions)

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

    def expire_sessions(self) -> bool:
        """Submit the closeSessions of sessions that timed out, at most EXPIRED_SESSIONS_PER_TURN at
        a time; True while some wait for the next turn (call again soon, not at the next bucket)."""
        self.expiring.extend(self.sessions.poll_expired())
        for _ in range(min(len(self.expiring), EXPIRED_SESSIONS_PER_TURN)):
            sid = self.expiring.popleft()
            if sid not in self.sessions.sessions:
                continue  # its client closed it while it waited here
            log.info("expiring session 0x%x, timeout of %d ms exceeded",
                     sid & 0xFFFFFFFFFFFFFFFF, self.sessions.timeout_of(sid) or 0)
            self.submit(Request(sid, 0, OP_CLOSE_SESSION, b"", [], None, create_ms=now_ms()))
        self.end_batch()
        return bool(self.expiring)

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
        count = self.latency_count + fast
        if count == 0:
            return 0, 0.0, 0
        low = 0 if fast else max(self.latency_min_ms, 0)
        return low, self.latency_total_ms / count, self.latency_max_ms

    def reset_stats(self) -> None:
        self.stats.reset()
        self.reset_latency()
        for conn in self.connections:
            conn.core.fast_replies = 0

    def node_count(self) -> int:
        """Apache counts the root twice (it is stored under "" and "/")."""
        return self.tree.node_count() + 1

    def extra_metrics(self) -> list[tuple[str, object]]:
        """Figures the commit stage (log, quorum) adds to mntr."""
        return list(self.commit.metrics())

    def quorum_values(self) -> list[tuple[str, object]]:
        """A leader's mntr lines about its learners and proposals (Apache's LeaderZooKeeperServer)."""
        figures = self.role.figures
        if figures is None:
            return []
        values = figures.quorum_metrics()
        if values:
            last, low, high = figures.proposal_sizes()
            values += [("last_proposal_size", last), ("max_proposal_size", high), ("min_proposal_size", low)]
        return values

    def proposal_sizes(self) -> tuple[int, int, int] | None:
        """(last, min, max) bytes of the leader's proposals, None unless this server leads."""
        figures = self.role.figures
        return None if figures is None else figures.proposal_sizes()

    def outstanding(self) -> int:
        return len(self.in_flight)
