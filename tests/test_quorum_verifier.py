"""The one quorum rule (zkfast._quorum.QuorumVerifier, applied by quorum_of): a plain majority as
Apache's QuorumMaj, or groups and weights as its QuorumHierarchical.containsQuorum
(zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/flexible/QuorumHierarchical.java):
more than half of the groups of positive weight, each by more than half of its weight."""

from __future__ import annotations

import itertools
import pickle
import random

import pytest
from zkfast._quorum import QuorumVerifier, quorum_of


def hierarchical(groups: dict[int, tuple[int, ...]], weights: dict[int, int] | None = None,
                 voters: set[int] | None = None) -> QuorumVerifier:
    members = {sid for g in groups.values() for sid in g}
    return QuorumVerifier(voters or members, groups, {sid: 1 for sid in members} | (weights or {}))


TWO_BY_THREE = hierarchical({1: (1, 2, 3), 2: (4, 5, 6)})
THREE_BY_TWO = hierarchical({1: (1, 2), 2: (3, 4), 3: (5, 6)})

CASES = [
    # (verifier, ids, a quorum?)
    (QuorumVerifier({1, 2, 3}), {1, 2}, True),
    (QuorumVerifier({1, 2, 3}), {1, 9}, False),              # 9 votes in nothing
    (QuorumVerifier({1, 2, 3, 4}), {1, 2}, False),           # half is not more than half
    (QuorumVerifier({1, 2, 3}), set(), False),
    # 2 groups: both, each by 2 of 3
    (TWO_BY_THREE, {1, 2, 4, 5}, True),
    (TWO_BY_THREE, {1, 2, 3, 4}, False),                     # 4 of 6 servers, group 2 by 1 of 3
    (TWO_BY_THREE, {1, 2, 3, 4, 5}, True),
    # 3 groups: 2 of them, each whole (more than half of weight 2)
    (THREE_BY_TWO, {1, 2, 3, 4}, True),
    (THREE_BY_TWO, {1, 3, 5, 6}, False),                     # 4 of 6 servers, one group whole
    (THREE_BY_TWO, {1, 2, 3, 5}, False),
    # weights: a heavy server is its group's majority alone (3 of 5); one group, so it is the quorum
    (hierarchical({1: (1, 2, 3)}, {1: 3}), {1}, True),
    (hierarchical({1: (1, 2, 3)}, {1: 3}), {2, 3}, False),
    # weight 0: the server counts for nothing, its group weighs 2
    (hierarchical({1: (1, 2, 3)}, {3: 0}), {1, 2}, True),
    (hierarchical({1: (1, 2, 3)}, {3: 0}), {1, 3}, False),
    # a group of weight 0 is not counted among the groups: the other two are the quorum
    (hierarchical({1: (1, 2), 2: (3, 4), 3: (5,)}, {5: 0}), {1, 2, 3, 4}, True),
    (hierarchical({1: (1, 2), 2: (3, 4), 3: (5,)}, {5: 0}), {1, 2, 5}, False),
    # every group of weight 0: nothing is a quorum
    (hierarchical({1: (1,), 2: (2,)}, {1: 0, 2: 0}), {1, 2}, False),
    # an observer with a weight in a group counts there, as Apache counts it (it never acks, though)
    (hierarchical({1: (1, 2, 3)}, voters={1, 2}), {1, 3}, True),
    (hierarchical({1: (1, 2, 3)}, voters={1, 2}), {1}, False),
]


@pytest.mark.parametrize(("verifier", "ids", "expected"), CASES)
def test_cases_of_quorum_hierarchical(verifier: QuorumVerifier, ids: set[int], expected: bool) -> None:
    assert verifier.contains_quorum(ids) is expected
    assert quorum_of(verifier, frozenset(ids)) is expected


def containsQuorum(groups: dict[int, tuple[int, ...]], weights: dict[int, int], ids: set[int]) -> bool:  # noqa: N802
    """QuorumHierarchical.containsQuorum, said again in the test: integer halves, groups of weight 0
    left out of the count."""
    counted = sum(1 for g in groups.values() if sum(weights[s] for s in g) != 0)
    whole = sum(1 for g in groups.values()
                if sum(weights[s] for s in g if s in ids) > sum(weights[s] for s in g) // 2)
    return bool(ids) and whole > counted // 2


@pytest.mark.parametrize("seed", range(5))
def test_random_groups_and_weights_against_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        ids = list(range(1, rng.randint(2, 9)))
        rng.shuffle(ids)
        cuts = sorted(rng.sample(range(1, len(ids)), rng.randint(0, min(3, len(ids) - 1))))
        groups = {g + 1: tuple(ids[a:b]) for g, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(ids)], strict=True))}
        weights = {sid: rng.choice([0, 1, 1, 1, 2, 5]) for sid in ids}
        verifier = QuorumVerifier(ids, groups, weights)
        for n in range(len(ids) + 1):
            for subset in itertools.combinations(ids, n):
                assert verifier.contains_quorum(set(subset)) == containsQuorum(groups, weights, set(subset)), \
                    (groups, weights, subset)


def test_weights_equality_and_pickling() -> None:
    h = hierarchical({1: (1, 2, 3)}, {3: 0})
    assert h.weight(3) == 0 and h.weight(1) == 1 and h.weight(9) == 0 and h.hierarchical
    assert QuorumVerifier({1, 2}).weight(1) == 1 and not QuorumVerifier({1, 2}).hierarchical  # QuorumMaj
    assert h == hierarchical({1: (3, 2, 1)}, {3: 0}) and h != hierarchical({1: (1, 2, 3)})
    assert h != QuorumVerifier({1, 2, 3}) and len({h, hierarchical({1: (1, 2, 3)}, {3: 0})}) == 1
    assert pickle.loads(pickle.dumps(h)) == h
    with pytest.raises(ValueError, match="server 3 of group 1 has no weight"):
        QuorumVerifier({1, 2}, {1: (1, 2, 3)}, {1: 1, 2: 1})
