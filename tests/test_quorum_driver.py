"""The quorum driver (zkfast.quorum.driver), one responsibility at a time, through the simulator.

Each test is a scripted scenario of tests/quorum/sim.py (production driver, real ZooKeeperServers,
in-memory ports, simulated clients on a quiet network) that needs one thing of the driver: membership
activation, SYNC release, session revalidation and owners (a session moving between servers, also
during a leader change), forwarded-request matching, PING session touches, SNAP streaming, read-only
switching. Each runs clean as it is, and fails with a bug planted in the driver for that responsibility
(a test-only subclass of QuorumDriver in tests/quorum/planted.py), so a pass means something. A
scenario records what it saw (`facts`), checked against what Apache ZooKeeper 3.8 does; the simulator
checks its invariants on top (a prefix of one committed history, no acknowledged write lost,
liveness once healed, equal trees, ...).

Replay one with its trace: Sim(..., trace=True) then "\\n".join(sim.trace).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from quorum.planted import plant as plant_bug
from quorum.sim import Params, Sim, Violation
from quorum.simclient import Op
from zkfast._jute import Code

from zkfast.quorum import zab

# the network is quiet and quick: the script's faults are the only ones
QUIET = Params(elect_loss=0.0, elect_dup=0.0, elect_delay=5, conn_delay=5, fsync_max=10, chaos_ms=0,
               fault_every=0, write_every=0, torn=0.0, commit_log_max=zab.COMMITTED_LOG_MAX, crash_point=0.0)

Script = Callable[[Sim], Iterator[Callable[[], bool]]]


@dataclasses.dataclass
class Run:
    sim: Sim
    violation: Violation | None
    facts: dict[str, Any]

    def explain(self) -> str:
        return f"{self.violation}\n{self.facts}\n" + "\n".join(list(self.sim.trace or [])[-120:])


def run(script: Callable[[Sim, dict[str, Any]], Iterator[Callable[[], bool]]], bug: str | None, *, nodes: int = 3,
        observers: int = 0, seed: int = 0, read_only: bool = False, **params: Any) -> Run:
    """The scenario on a quiet network, with `bug` planted in the driver (None: none)."""
    facts: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if bug is not None:
            stack.enter_context(plant_bug(bug))
        sim = Sim(seed, nodes, observers, trace=True, params=dataclasses.replace(QUIET, **params),
                  script=lambda s: script(s, facts), read_only=read_only)
        v = sim.run()
    return Run(sim, v, facts)


def acked(op: Op) -> Callable[[], bool]:
    return lambda: op.done


def exists(sim: Sim, sid: int, path: bytes) -> bool:
    proc = sim.nodes[sid].proc
    return proc is not None and proc.server is not None and proc.server.tree.get_data(path) is not None


# ------------------------------------------------------------------------------------------------ membership


def logged_reconfig(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """L logs a reconfig (removing a follower) and is cut off before its PROPOSAL leaves: L steps down
    and reloads its disk, which holds the reconfig. Only a committed reconfig may be activated (Apache
    activates at COMMITANDACTIVATE, or when it serves a history holding it): L keeps its membership,
    the others elect without L, and when L is back the uncommitted reconfig is truncated away."""
    lid, c = yield from sim.settled()
    leader = sim.nodes[lid].proc
    assert leader is not None
    before = leader.driver.membership
    gone = min(set(sim.nodes) - {lid})
    x = sim.reconfig(c, (frozenset(sim.nodes) - {gone}, frozenset()))
    sim.partition({lid})
    assert x.logged is not None
    yield lambda: (r := sim.replica(lid)) is not None and r.leader is None and not r.reloading
    proc = sim.nodes[lid].proc
    assert proc is not None
    # on disk: nothing, or the membership the first leader established (ZOOKEEPER-1783's version)
    facts["kept"] = proc.driver.membership == before and proc.node_disk.membership in (None, before.text())
    sim.crash(lid)
    sim.unpartition()
    w = yield from sim.write_at_new_leader(lid)
    facts["written"] = w.acked
    sim.restart(lid)
    # the run heals and settles: every member must hold the committed membership


@pytest.mark.parametrize("bug", [None, "activate-logged-reconfig"])
def test_membership_activation_waits_for_the_commit(bug: str | None) -> None:
    r = run(logged_reconfig, bug)
    if bug is None:
        assert r.violation is None and r.facts == {"kept": True, "written": True}, r.explain()
    else:
        assert not r.facts.get("kept", True), r.explain()
        # the uncommitted membership spreads through L's notifications or stays L's alone: either way
        # the ensemble does not settle on the committed one
        assert r.violation is not None and r.violation.kind == "liveness", r.explain()


# ------------------------------------------------------------------------------------------------ sync


def sync_behind_a_proposal(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """A client at the leader writes /s while both followers' disks stall (no quorum can ack it);
    a client at a follower then sends sync and a read of /s. Apache's leader answers a learner's
    SYNC once the proposals in flight when it came are committed (Leader.processSync), so the read
    after the sync sees /s."""
    lid, c = yield from sim.settled()
    fid = min(set(sim.nodes) - {lid})
    reader = yield from sim.session(fid)
    for sid in set(sim.nodes) - {lid}:
        sim.stall_disk(sid)
    w = sim.write(c)
    sync, read = reader.sync(), reader.get(w.path)
    sent = sim.now
    yield lambda: sim.now >= sent + 100
    facts["answered while stalled"] = sync.done
    for sid in set(sim.nodes) - {lid}:
        sim.stall_disk(sid, False)
    yield acked(read)
    facts["sync"] = sync.err
    facts["read"] = (read.err, read.value == w.data)


@pytest.mark.parametrize("bug", [None, "sync-at-once"])
def test_sync_is_released_after_the_proposals_in_flight(bug: str | None) -> None:
    r = run(sync_behind_a_proposal, bug)
    assert r.violation is None, r.explain()
    if bug is None:
        assert r.facts == {"answered while stalled": False, "sync": 0, "read": (0, True)}, r.explain()
    else:
        assert r.facts["read"] == (Code.NONODE, False), r.explain()


# ------------------------------------------------------------------------------------------------ sessions


def moving_session(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """tests/test_session_move.py's script, as Apache does it: a session created on a follower moves
    to the other follower, to the leader, and back to a follower. Where it is, its writes land; a
    write still sent through the connection it left gets SESSIONMOVED (the server closes that
    connection) and does not land."""
    lid, _ = yield from sim.settled()
    f1, f2 = sorted(set(sim.nodes) - {lid})
    here = yield from sim.session(f1)
    w = sim.write(here)
    yield acked(w)
    facts["on 1"] = w.acked
    for step, sid in enumerate((f2, lid, f1), 2):
        moved = sim.client(timeout_ms=here.timeout_ms)
        moved.take_session(here)
        moved = yield from sim.session(sid, moved)
        w = sim.write(moved)
        yield acked(w)
        facts[f"on {step}"] = (moved.session_id == here.session_id, w.acked)
        if not here.established:
            facts[f"left {step}"] = "gone"
            break
        left = sim.write(here)
        yield acked(left)
        facts[f"left {step}"] = (left.lost, here.conn is None, exists(sim, lid, left.path))
        here = moved


MOVED = {"on 1": True, **{f"on {i}": (True, True) for i in (2, 3, 4)},
         **{f"left {i}": (True, True, False) for i in (2, 3, 4)}}


@pytest.mark.parametrize("bug", [None, "learner-skips-revalidate", "leader-ignores-revalidate", "owners-untracked"])
def test_a_moving_session_writes_where_it_is(bug: str | None) -> None:
    """The bug fixed in a3aa62e, in both halves (a learner that accepts a reconnecting session by
    itself, a leader that does not answer REVALIDATE), and the leader's owners."""
    r = run(moving_session, bug)
    if bug is None:
        assert r.violation is None and r.facts == MOVED, r.explain()
        return
    assert r.facts != MOVED, r.explain()
    if bug == "learner-skips-revalidate":
        # SESSIONMOVED for the write where the session now is: the leader still has it on n1
        assert "on 2" not in r.facts and r.violation is not None and r.violation.kind == "session-moved", \
            r.explain()
    elif bug == "leader-ignores-revalidate":
        assert r.violation is not None and r.violation.kind == "script", r.explain()  # never answered
    else:
        assert r.facts["left 2"] == (False, False, True), r.explain()  # the abandoned connection's write lands


def move_during_a_leader_change(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """A session on a follower; the leader dies and another one takes over; the client, cut off
    with the old role, reconnects to the observer, then moves to the other follower. The new
    leader found the session on disk (no owner yet): the observer's REVALIDATE makes it the
    owner, the follower's takes it over, and every write of the session lands where it is."""
    lid, _ = yield from sim.settled()
    observer = max(sim.nodes)
    follower = min(set(sim.nodes) - {lid, observer})
    c = yield from sim.session(follower)
    w = sim.write(c)
    yield acked(w)
    facts["before"] = w.acked
    sim.crash(lid)
    yield lambda: c.conn is None and sim.established_leader() not in (None, lid) and all(
        sim.serving(s) for s in sim.nodes if s != lid)
    new = sim.established_leader()
    assert new is not None
    rest = min(set(sim.nodes) - {lid, observer, new})
    for name, sid in (("observer", observer), ("follower", rest)):
        here = c
        c = sim.client(timeout_ms=here.timeout_ms)
        c.take_session(here)
        c = yield from sim.session(sid, c)
        w = sim.write(c)
        yield acked(w)
        facts[name] = (c.session_id == here.session_id, w.acked)
    sim.restart(lid)


@pytest.mark.parametrize("bug", [None, "learner-skips-revalidate"])
def test_a_session_moves_during_a_leader_change(bug: str | None) -> None:
    r = run(move_during_a_leader_change, bug, nodes=4, observers=1)
    if bug is None:
        assert r.violation is None, r.explain()
        assert r.facts == {"before": True, "observer": (True, True), "follower": (True, True)}, r.explain()
    else:
        # the observer's first write claimed the session for it; the follower's gets SESSIONMOVED
        assert r.facts["observer"] == (True, True) and "follower" not in r.facts, r.explain()
        assert r.violation is not None and r.violation.kind == "session-moved", r.explain()


# ------------------------------------------------------------------------------------------------ forwarding


def equal_xids(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """Two clients of one follower send writes with the same xid at once (each counts its own xids):
    a committed txn is matched to the request it answers by session and cxid, so each client gets
    its own answer."""
    lid, _ = yield from sim.settled()
    fid = min(set(sim.nodes) - {lid})
    a = yield from sim.session(fid)
    b = yield from sim.session(fid)
    wa, wb = sim.write(a, now=False), sim.write(b, now=False)
    facts["same xid"] = wa.xid == wb.xid
    yield lambda: wa.done and wb.done
    facts["answered"] = (wa.acked, wb.acked)


@pytest.mark.parametrize("bug", [None, "forwarded-by-cxid"])
def test_forwarded_writes_are_answered_to_their_own_client(bug: str | None) -> None:
    r = run(equal_xids, bug)
    if bug is None:
        assert r.violation is None and r.facts == {"same xid": True, "answered": (True, True)}, r.explain()
    else:
        # one client gets the other's answer (the create names the other's path)
        assert r.facts["same xid"] and r.violation is not None and r.violation.kind == "replies", r.explain()


# ------------------------------------------------------------------------------------------------ touches


def quiet_session(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """A client on a follower only pings, for five times its session timeout: the follower tells the
    leader of its session in each PING, so the leader, which alone expires sessions, keeps it."""
    lid, _ = yield from sim.settled()
    fid = min(set(sim.nodes) - {lid})
    c = sim.client(timeout_ms=600)
    c = yield from sim.session(fid, c)
    since = sim.now
    yield lambda: sim.now >= since + 5 * c.timeout_ms
    facts["connected"] = c.established and c.sid == fid and c.expired == 0
    if c.established:
        w = sim.write(c)
        yield acked(w)
        facts["written"] = w.acked


@pytest.mark.parametrize("bug", [None, "ping-without-touches"])
def test_pings_keep_a_learners_sessions_alive(bug: str | None) -> None:
    r = run(quiet_session, bug)
    assert r.violation is None, r.explain()
    if bug is None:
        assert r.facts == {"connected": True, "written": True}, r.explain()
    else:
        assert r.facts["connected"] is False, r.explain()  # the leader expired it, the follower closed it


# ------------------------------------------------------------------------------------------------ snap


def snap_sync(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """n2 is down while more writes commit than the leader keeps for a DIFF (commitLogCount, here 3):
    it comes back and syncs by SNAP, the leader's tree and sessions streamed as Apache's snapshot
    stream. The leader (n3) then dies and n2 leads (same history as n1, larger id): the client's
    session, made before n2's SNAP, is still valid there, and so is its ephemeral znode."""
    lid, c = yield from sim.settled()
    snapped = 2
    assert lid == 3
    e = c.create(b"/mine", b"ephemeral", ephemeral=True)
    yield acked(e)
    sim.crash(snapped)
    ws = [sim.write(c) for _ in range(6)]
    yield lambda: all(w.done for w in ws)
    snaps = sim.stats["snaps"]
    sim.restart(snapped)
    yield lambda: sim.serving(snapped) and (h := sim.history(snapped)) is not None and h.last >= (ws[-1].zxid or 0)
    facts["snap"] = sim.stats["snaps"] > snaps
    proc = sim.nodes[snapped].proc
    assert proc is not None and proc.server is not None
    facts["sessions"] = c.session_id in proc.server.sessions.sessions
    sim.crash(lid)
    yield lambda: sim.established_leader() == snapped
    moved = sim.client(timeout_ms=c.timeout_ms)
    moved.take_session(c)
    yield lambda: moved.conn is not None or moved.connect(snapped)
    yield lambda: moved.established or moved.conn is None
    facts["valid"] = moved.established
    sim.restart(lid)


@pytest.mark.parametrize("bug", [None, "snap-without-sessions"])
def test_a_snap_carries_the_tree_and_its_sessions(bug: str | None) -> None:
    r = run(snap_sync, bug, commit_log_max=3)
    if bug is None:
        assert r.violation is None and r.facts == {"snap": True, "sessions": True, "valid": True}, r.explain()
    else:
        assert r.facts["snap"] and not r.facts["sessions"] and not r.facts["valid"], r.explain()
        # and n2 dropped the ephemeral of a session it never heard of when it loaded its disk
        assert r.violation is not None and r.violation.kind == "digest", r.explain()


# ------------------------------------------------------------------------------------------------ read-only


def read_only(sim: Sim, facts: dict[str, Any]) -> Iterator[Callable[[], bool]]:
    """readonlymode.enabled: every server is cut off from the others; after max(2 s, a tick) each
    serves read-only clients (reads answered, writes NOTREADONLY, sessions of its own). When they
    meet again n3 leads: it leaves read-only mode, its clients are disconnected, and the sessions it
    made alone are not the ensemble's: one coming back is told it expired."""
    lid, c = yield from sim.settled()
    assert lid == 3
    w = sim.write(c)
    yield acked(w)
    sim.partition({1}, {2}, {3})
    yield lambda: (r := sim.replica(lid)) is not None and r.leader is None and sim.serving(lid)
    ro = sim.client(read_only=True)
    yield lambda: (ro.conn is not None or ro.connect(lid)) and ro.established
    read, refused = ro.get(w.path), ro.create(b"/ro", b"no")
    yield lambda: read.done and refused.done
    facts["read-only"] = (read.err, read.value == w.data, refused.err)
    sim.unpartition()
    yield lambda: ro.conn is None and sim.established_leader() == lid and all(sim.serving(s) for s in sim.nodes)
    back = sim.client(read_only=True)
    back.take_session(ro)
    yield lambda: back.conn is not None or back.connect(lid)
    yield lambda: back.conn is None or back.established
    facts["session after"] = "valid" if back.established else "expired" if back.expired else "closed"


@pytest.mark.parametrize("bug", [None, "read-only-sessions-kept"])
def test_read_only_mode_comes_and_goes(bug: str | None) -> None:
    r = run(read_only, bug, read_only=True)
    assert r.violation is None, r.explain()
    if bug is None:
        assert r.facts == {"read-only": (0, True, Code.NOTREADONLY), "session after": "expired"}, r.explain()
    else:
        assert r.facts["session after"] == "valid", r.explain()
