"""The ensemble under the deterministic simulator of tests/quorum/sim.py: zkfast's own quorum driver
(zkfast.quorum.driver, what zkfast.quorum.peer runs over sockets and files) with real ZooKeeperServers,
over in-memory ports (tests/quorum/simports.py), with clients that write, read and move their
sessions between servers (tests/quorum/simclient.py).

Seeded runs of 3 or 5 voters (and observers) through crashes with torn logs, power cuts, partitions,
broken connections and a lossy, duplicating election network, each checked for Zab's invariants as it
goes and once it has healed and settled (see CHECKS in the simulator). Then every checker is shown to
catch a bug planted on purpose in a Zab core (tests/quorum/planted.py) within a bounded number of
seeds, so a quiet run means something; a bug that only a chain of faults too unlikely for random seeds
brings out (ZOOKEEPER-3911 in a core; a reconfig committed by the old voters alone, in the driver) is
shown caught by a scripted scenario instead. tests/test_quorum_driver.py shows each of the driver's own
responsibilities caught when broken.

A share of the seeds (quorum.sim.RECONFIG_SHARE) has clients ask for reconfigs now and then; the
reconfig tests force it on for every seed.

A failure names its seed; replay it with its trace (the driver's log included):

    python -m tests.quorum.sim --start SEED --seeds 1 [--nodes 5] [--observers 2] [--reconfig on] --verbose

Long runs: python -m tests.quorum.sim --seeds 100000 [--nodes 3|5] [--observers N] --jobs 2
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from quorum.planted import active as planted_bugs
from quorum.planted import plant as plant_bug
from quorum.sim import CHECKS, Params, Sim, run_seed
from quorum.simports import SYNC_LIMIT, TICK_MS
from zkfast._quorum import QuorumVerifier

from zkfast.quorum import zab

BATCH = 100


def run_batch(start: int, count: int, nodes: int, observers: int, reconfig: bool | None = None) -> None:
    assert not planted_bugs(), "a planted bug leaked out of its test"
    failures: list[str] = []
    flag = {None: "", True: " --reconfig on", False: " --reconfig off"}[reconfig]
    for seed in range(start, start + count):
        v = run_seed(seed, nodes, observers, reconfig=reconfig)
        if v is not None:
            failures.append(f"{v}\n    replay: python -m tests.quorum.sim --start {seed} --seeds 1 --nodes {nodes} "
                            f"--observers {observers}{flag} --verbose")
    assert not failures, f"{len(failures)} of {count} seeds failed:\n" + "\n".join(failures[:5])


@pytest.mark.parametrize("start", range(0, 2000, BATCH))
def test_three_voters(start: int) -> None:
    run_batch(start, BATCH, 3, 0)


@pytest.mark.parametrize("start", range(0, 400, BATCH))
def test_five_voters(start: int) -> None:
    run_batch(start, BATCH, 5, 0)


@pytest.mark.parametrize("start", range(0, 400, BATCH))
def test_three_voters_two_observers(start: int) -> None:
    run_batch(start, BATCH, 3, 2)


@pytest.mark.parametrize(("nodes", "observers", "start", "count"),
                         [(3, 0, 0, 300), (5, 0, 0, 150), (3, 2, 0, 150)])
def test_reconfig(nodes: int, observers: int, start: int, count: int) -> None:
    """Every seed reconfigures now and then (voters removed, added back, observers promoted, voters
    demoted, several at once), under every fault."""
    run_batch(start, count, nodes, observers, reconfig=True)


@pytest.mark.parametrize("reconfig", [False, True], ids=["plain", "reconfig"])
def test_a_seed_replays_exactly(reconfig: bool) -> None:
    runs = []
    for _ in range(2):
        s = Sim(1234, 3, 1, trace=True, reconfig=reconfig)
        assert s.run() is None
        runs.append((list(s.trace or []), s.stats, s.now, sorted((z, op.path) for z, op in s.acked.items())))
    assert runs[0] == runs[1]


def test_reconfigs_are_exercised() -> None:
    """Not vacuous: reconfigs commit and take effect, and runs end in memberships other than the
    static one."""
    total: Counter[str] = Counter()
    moved = 0
    for seed in range(60):
        s = Sim(seed, 3, 2, reconfig=True)
        v = s.run()
        assert v is None, v
        total.update(s.stats)
        moved += s.committed_members != (s.voters, s.observers)
    assert total["activations"] > 60 and total["reconfigs"] > 40, total
    assert moved > 8, moved
    # and some were refused for want of a synced quorum of the new voters (NEWCONFIGNOQUORUM)
    assert total["no-synced-quorum"] > 0, total


def test_the_faults_and_sync_paths_are_exercised() -> None:
    """Not vacuous: over a hundred seeds every kind of fault and of sync happens, writes commit through
    leaders and learners, sessions move between servers and expire."""
    total: Counter[str] = Counter()
    acked = 0
    for seed in range(100):
        s = Sim(seed, 3, 0, reconfig=False)
        assert s.run() is None
        total.update(s.stats)
        acked += len(s.acked)
    for key in ("crashes", "partitions", "breaks", "leaders", "snaps", "truncs", "moves", "expired", "forwarded",
                "reads"):
        assert total[key] > 0, (key, total)
    assert acked > 100 * 10, acked


Plant = Callable[[str], None]


@pytest.fixture
def plant() -> Iterator[Plant]:
    """plant(bug): the bug is in the cores (or the driver) until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda bug: stack.enter_context(plant_bug(bug))


# (planted bug, the check that must report it, voters, seeds allowed); each check is run alone, so
# it is that checker, not another one, that catches the bug
CAUGHT = [
    ("reuse-epoch", "one-leader-per-epoch", 3, 20),          # a new leader keeps the accepted epoch
    ("reuse-epoch", "zxid-conflict", 3, 20),                 # ... so two leaders hand out the same zxids
    ("commit-without-quorum", "prefix", 3, 150),             # the leader commits on its own ack
    ("commit-without-quorum", "acked-lost", 3, 150),
    ("skip-trunc", "prefix", 3, 300),                        # a learner ignores TRUNC
    ("apply-on-proposal", "order", 3, 20),                   # a learner applies at PROPOSAL and at COMMIT
    ("ignore-ping", "liveness", 3, 20),                      # a learner never answers PINGs
    # in the driver (the rest of its planted bugs need scripted scenarios: tests/test_quorum_driver.py)
    ("learner-skips-revalidate", "session-moved", 3, 200),   # a3aa62e: a moved session's writes refused
    ("forwarded-by-cxid", "replies", 3, 100),                # a learner answers the wrong client
    # ack-newleader-before-durable (ZOOKEEPER-3911/4643) needs a chain of faults no random seed
    # brings: see test_zookeeper_3911 below; reconfig-old-quorum (the driver commits a reconfig with
    # the old voters alone): one reconfig at a time changes few voters, so old and new majorities
    # almost always share a node holding the txn: see test_a_reconfig_committed_by_the_old_quorum_alone
]


@pytest.mark.parametrize(("bug", "check", "nodes", "seeds"), CAUGHT, ids=[f"{b}-{c}" for b, c, _, _ in CAUGHT])
def test_a_planted_bug_is_caught(plant: Plant, bug: str, check: str, nodes: int, seeds: int) -> None:
    assert check in CHECKS
    plant(bug)
    others = []
    for seed in range(seeds):
        v = run_seed(seed, nodes, 0, checks=(check,))
        if v is None:
            continue
        if v.kind == check:
            return
        others.append(str(v))  # an always-on report (a core raised): keep looking
    pytest.fail(f"{bug}: no {check} violation in {seeds} seeds; other reports: {others[:3]}")


# the network is quiet and quick: the script's faults are the only ones
QUIET = Params(elect_loss=0.0, elect_dup=0.0, elect_delay=5, conn_delay=5, fsync_max=10, chaos_ms=0,
               fault_every=0, write_every=0, torn=0.0, commit_log_max=zab.COMMITTED_LOG_MAX, crash_point=0.0)


@dataclasses.dataclass
class Facts:
    """What the ZOOKEEPER-3911 script saw happen, so a quiet run is not a vacuous one."""

    x: int = 0                          # the proposal only the old leader logged
    f_synced_x_unsynced: bool = False   # F got NEWLEADER with x logged but not yet durable
    l_established_with_x: bool = False  # L served the new epoch, its tree ending at x
    f_lost_x: bool = False              # F's crash took x away: not in its log once restarted
    diverging_acked: bool = False       # the write of F and T's leader after that was acknowledged


def zookeeper_3911(facts: Facts) -> Callable[[Sim], Iterator[Callable[[], bool]]]:
    """ZOOKEEPER-3911: a learner that ACKs NEWLEADER before the txns of its sync are durable lets a
    leader count it for a txn it may lose; a crash then, and a quorum without that txn goes on.

    L leads 3 voters (L, F, T); a client's write x reaches L, which logs it, and L is cut off before
    its PROPOSAL leaves; L and F alone then elect (L, holding x, leads again) and F's disk stalls, so x
    is in F's log but not durable when F gets NEWLEADER. With the bug F ACKs at once, L establishes the
    epoch with x in its state; F and L crash; F restarts without x and with T elects a leader whose next
    txn takes x's place. Without the bug F's ACK waits for its disk, so L never establishes with x."""

    def script(sim: Sim) -> Iterator[Callable[[], bool]]:
        # 1. a leader establishes, everyone serves, and a few writes commit everywhere
        lid, c = yield from sim.settled()
        fid, tid = sorted(set(sim.nodes) - {lid})
        L, F = sim.nodes[lid], sim.nodes[fid]  # noqa: N806 (the names of the bug report)
        # 2. L logs x and is cut off at once: its PROPOSAL, not yet sent, is lost; everyone is alone,
        # so nobody leads (L steps down, its role's end flushing x to its disk)
        x = sim.write(c)
        assert x.logged is not None
        facts.x = x.logged
        sim.partition({lid}, {fid}, {tid})
        yield lambda: (r := sim.replica(lid)) is not None and r.leader is None and not r.reloading
        assert facts.x in dict(L.disk.durable()) and facts.x not in dict(F.disk.log)
        # 3. L and F meet again (T stays away) and F's disk stalls: F's sync logs x, not durably
        sim.stall_disk(fid)
        sim.partition({lid, fid}, {tid})
        yield lambda: (r := sim.replica(fid)) is not None and r.learner is not None and r.learner.phase == "synced"
        fr = sim.replica(fid)
        facts.f_synced_x_unsynced = (fr is not None and fr.leader_id == lid and facts.x in dict(F.disk.log) and
                                     facts.x not in dict(F.disk.durable()))
        # F's ACK, if it sends one, reaches L within a few conn delays; L waits initLimit for it
        synced_at = sim.now
        yield lambda: sim.established_leader() == lid or sim.now >= synced_at + 200
        lh = sim.history(lid)
        facts.l_established_with_x = sim.established_leader() == lid and lh is not None and lh.last == facts.x
        # 4. F crashes before its disk catches up, L crashes and stays down; F restarts and T is back
        sim.crash(fid)
        sim.crash(lid)
        sim.stall_disk(fid, False)
        sim.restart(fid)
        facts.f_lost_x = facts.x not in dict(F.disk.log)
        sim.unpartition()
        w = yield from sim.write_at_new_leader(lid)
        facts.diverging_acked = w.acked
        # the run heals now: L restarts and must drop x, everyone converges, and is checked

    return script


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("planted", [True, False], ids=["planted", "absent"])
def test_zookeeper_3911(plant: Plant, planted: bool, seed: int) -> None:
    """The prefix check catches ack-newleader-before-durable in that chain; without it the same
    script runs clean (every check, liveness and acked-lost included)."""
    if planted:
        plant("ack-newleader-before-durable")
    facts = Facts()
    sim = Sim(seed, 3, 0, trace=True, params=dataclasses.replace(QUIET), script=zookeeper_3911(facts))
    v = sim.run()
    trace = "\n".join(list(sim.trace or [])[-80:])
    assert facts.f_synced_x_unsynced and facts.f_lost_x, (facts, v, trace)
    if planted:
        assert facts.l_established_with_x, (facts, trace)
        assert v is not None and v.kind == "prefix", (v, trace)
        assert f"0x{facts.x:x}" in v.message, v.message  # the divergence is at x's position
    else:
        assert not facts.l_established_with_x, (facts, trace)
        assert v is None, (v, trace)
        assert facts.diverging_acked


def test_synced_quorum_counts_followers_only() -> None:
    """Voters {1, 2}, observer 3 serving: {1, 3} has no synced quorum (3 never gets a PROPOSAL, so a
    reconfig to voters {1, 3} could never commit, and every txn after it would wait), as Apache's
    isQuorumSynced."""
    core = zab.LeaderCore(1, QuorumVerifier({1, 2}), frozenset({3}), 0, 0, 0, (), 10, 5)
    core.learners[3] = zab.LearnerState(3, observer=True, phase="serving", forwarding=True)
    assert not core.synced_quorum_of(QuorumVerifier({1, 3}))
    core.learners[2] = zab.LearnerState(2, observer=False, phase="serving", forwarding=True)
    assert core.synced_quorum_of(QuorumVerifier({1, 2}))


@dataclasses.dataclass
class ReconfigFacts:
    """What the old-quorum reconfig script saw happen."""

    x: int = 0                       # the reconfig, removing the two voters the leader can still reach
    acked_cut_off: bool = False      # x was acknowledged while the voters it keeps were cut off
    after_acked: bool = False        # the first write once the leader was gone was acknowledged


def reconfig_old_quorum(facts: ReconfigFacts) -> Callable[[Sim], Iterator[Callable[[], bool]]]:
    """A reconfig needs a quorum of the old voters and one of the new (Apache's two-quorum commit).

    L leads 5 voters; a client asks L for voters {L} + K (K: two voters), which L's checks let through
    (K are synced), and at once a partition leaves L with the two voters D the reconfig removes (3 of
    5, so L still leads) and cuts off K before the PROPOSAL leaves. Committed with the old quorum alone
    (L + D), it is acknowledged and activated (by L and D) although no new voter but L holds it; L
    crashes, the network heals, and K, a quorum of the new config they learn from D's notifications,
    go on without it. With the rule, it waits for a new quorum that cannot answer, and nothing
    acknowledged is lost."""

    def script(sim: Sim) -> Iterator[Callable[[], bool]]:
        lid, c = yield from sim.settled()
        others = sorted(set(sim.nodes) - {lid})
        keep, drop = others[:2], others[2:]
        x = sim.reconfig(c, (frozenset({lid, *keep}), frozenset()))
        sim.partition({lid, *drop}, keep)
        assert x.logged is not None, x
        facts.x = x.logged
        proposed_at = sim.now
        # acknowledged, and applied by D (which activates it there, and tells K in its notifications)
        yield lambda: (x.acked and all((h := sim.history(d)) is not None and h.last >= facts.x for d in drop)
                       or sim.now >= proposed_at + 500)
        facts.acked_cut_off = x.acked
        sim.crash(lid)
        sim.unpartition()
        w = yield from sim.write_at_new_leader(lid)
        facts.after_acked = w.acked

    return script


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("planted", [True, False], ids=["planted", "absent"])
def test_a_reconfig_committed_by_the_old_quorum_alone_is_caught(plant: Plant, planted: bool, seed: int) -> None:
    if planted:
        plant("reconfig-old-quorum")
    facts = ReconfigFacts()
    sim = Sim(seed, 5, 0, trace=True, params=dataclasses.replace(QUIET), script=reconfig_old_quorum(facts))
    v = sim.run()
    trace = "\n".join(list(sim.trace or [])[-80:])
    if planted:
        assert facts.acked_cut_off, (facts, v, trace)
        # K's leader put its own txn where the committed reconfig was
        assert v is not None and v.kind == "prefix", (v, trace)
        assert f"0x{facts.x:x}" in v.message, v.message
    else:
        assert not facts.acked_cut_off, (facts, trace)
        assert v is None, (v, trace)
        assert facts.after_acked


# ------------------------------------------------------------------------------------------------ hierarchical quorums

# two groups of three (a quorum: both groups, by 2 of 3 each) and three groups of two (2 groups whole)
GROUPINGS = {"2x3": ((1, 2, 3), (4, 5, 6)), "3x2": ((1, 2), (3, 4), (5, 6))}


@pytest.mark.parametrize("grouping", GROUPINGS)
def test_hierarchical_quorums_under_faults(grouping: str) -> None:
    """6 voters in groups (group.N, weights 1) through the random seeds' faults, every check on."""
    failures = [f"{v}\n    replay: python -m tests.quorum.sim --start {seed} --seeds 1 --nodes 6 --groups "
                f"{'/'.join(','.join(map(str, g)) for g in GROUPINGS[grouping])} --verbose"
                for seed in range(40) if (v := run_seed(seed, 6, 0, groups=GROUPINGS[grouping])) is not None]
    assert not failures, "\n".join(failures[:3])


@dataclasses.dataclass
class GroupFacts:
    """What the lose-the-groups script saw happen."""

    hierarchical: bool = False          # the replicas ran the groups' rule
    survived: bool = False              # a write was acknowledged with one group member down
    acked_without_groups: bool = False  # ... and one with a majority of servers up but not of groups
    leader_without_groups: bool = False  # a leader still served then


def lose_the_groups(facts: GroupFacts) -> Callable[[Sim], Iterator[Callable[[], bool]]]:
    """The leader's ensemble loses one server, which leaves a quorum of groups: a write commits. It
    loses more, so that a majority of the servers is still up but not a majority of groups (each
    with a majority of its own): a write must not commit, and no leader serve."""

    def script(sim: Sim) -> Iterator[Callable[[], bool]]:
        lid, c = yield from sim.settled()
        quorum = sim.static.quorum
        r = sim.replica(lid)
        facts.hierarchical = quorum.hierarchical and r is not None and r.quorum == quorum
        everyone = set(sim.nodes)
        # the fewest servers to crash (never the leader) that leave a majority of servers and no quorum
        victims = next(set(v) for n in range(1, 4) for v in itertools.combinations(sorted(everyone - {lid}), n)
                       if 2 * len(everyone - set(v)) > len(everyone) and not quorum.contains_quorum(everyone - set(v)))
        first = next(v for v in sorted(victims) if quorum.contains_quorum(everyone - {v}))
        sim.crash(first)
        w = sim.write(c)
        yield lambda: w.done
        facts.survived = w.acked
        for v in victims - {first}:
            sim.crash(v)
        w = sim.write(c)
        started = sim.now
        yield lambda: sim.now >= started + 4 * SYNC_LIMIT * TICK_MS
        facts.acked_without_groups = w.acked
        facts.leader_without_groups = sim.established_leader() is not None
        # the run heals now: the servers restart, a leader is elected, everything is checked

    return script


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("planted", [True, False], ids=["planted", "absent"])
def test_a_majority_of_servers_without_a_majority_of_groups_commits_nothing(
        plant: Plant, planted: bool, grouping: str) -> None:
    """With the groups' rule a write waits and the leader steps down; with a plain majority planted
    (in the election and the leader: tests/quorum/planted.py) the same script commits the write."""
    if planted:
        plant("majority-rule")
    facts = GroupFacts()
    sim = Sim(1, 6, 0, trace=True, params=dataclasses.replace(QUIET), script=lose_the_groups(facts),
              groups=GROUPINGS[grouping])
    v = sim.run()
    trace = "\n".join(list(sim.trace or [])[-80:])
    assert facts.hierarchical and facts.survived, (facts, v, trace)
    assert facts.acked_without_groups == planted, (facts, trace)
    assert facts.leader_without_groups == planted, (facts, trace)
    assert v is None, (v, trace)
