"""FastLeaderElection state machine under a seeded simulated network (no sockets, no sleeps)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from zkfast._quorum import QuorumVerifier

from zkfast.quorum.election import Election, Send
from zkfast.quorum.wire import Notification, ServerState


@dataclass
class Net:
    """Messages in flight with a delivery time; loss, delay and reordering from a seeded rng."""

    rng: random.Random
    loss: float = 0.0
    max_delay_ms: int = 5
    inbox: list[tuple[int, int, int, Notification]] = field(default_factory=list)  # (at, from, to, n)
    down: set[int] = field(default_factory=set)

    def send(self, now: int, frm: int, sends: list[Send]) -> None:
        for s in sends:
            if frm in self.down or s.to in self.down:
                continue
            if s.to == frm:  # to itself: the transport loops it back, never lost
                self.inbox.append((now, frm, frm, s.notification))
                continue
            if self.rng.random() < self.loss:
                continue
            self.inbox.append((now + self.rng.randint(0, self.max_delay_ms), frm, s.to, s.notification))

    def due(self, now: int) -> list[tuple[int, int, Notification]]:
        ready = [m for m in self.inbox if m[0] <= now]
        self.inbox = [m for m in self.inbox if m[0] > now]
        self.rng.shuffle(ready)
        return [(f, t, n) for _, f, t, n in ready]


def run_election(peers: dict[int, Election], net: Net, until_ms: int = 120_000) -> int:
    now = 0
    for sid, e in peers.items():
        if sid not in net.down:
            net.send(now, sid, e.start(now))
    while now < until_ms:
        now += 1
        for frm, to, n in net.due(now):
            if to in net.down:
                continue
            net.send(now, to, peers[to].receive(frm, n, now))
        for sid, e in peers.items():
            if sid not in net.down:
                net.send(now, sid, e.tick(now))
        live = [e for s, e in peers.items() if s not in net.down]
        if all(e.decided is not None for e in live):
            return now
    raise AssertionError(f"no decision in {until_ms} ms: {[(s, e.state) for s, e in peers.items()]}")


def make(ids: list[int], zxids: dict[int, int], epochs: dict[int, int] | None = None,
         observers: tuple[int, ...] = (), quorum: QuorumVerifier | None = None) -> dict[int, Election]:
    voters = quorum or QuorumVerifier(i for i in ids if i not in observers)
    return {i: Election(i, voters, i not in observers, zxids.get(i, 0), (epochs or {}).get(i, 0)) for i in ids}


def check(peers: dict[int, Election], net: Net, expected_leader: int) -> None:
    live = {s: e for s, e in peers.items() if s not in net.down}
    leaders = {e.decided.leader for e in live.values() if e.decided}
    assert leaders == {expected_leader}, leaders
    for sid, e in live.items():
        want = ServerState.LEADING if sid == expected_leader else (
            ServerState.FOLLOWING if e.participant else ServerState.OBSERVING)
        assert e.state == want, (sid, e.state)


@pytest.mark.parametrize("seed", range(40))
def test_highest_zxid_then_highest_id_wins_under_loss_and_reordering(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([3, 5])
    ids = list(range(1, n + 1))
    zxids = {i: rng.choice([0x100000005, 0x100000007, 0x200000001]) for i in ids}
    best = max(ids, key=lambda i: (zxids[i] >> 32, zxids[i], i))
    peers = make(ids, zxids, {i: zxids[i] >> 32 for i in ids})
    net = Net(rng, loss=0.2, max_delay_ms=30)
    run_election(peers, net)
    check(peers, net, best)


def test_a_minority_down_still_elects_and_ignores_missing_ones() -> None:
    peers = make([1, 2, 3, 4, 5], {1: 9, 2: 9, 3: 3, 4: 9, 5: 50})
    net = Net(random.Random(1), down={5, 4})
    run_election(peers, net)
    check(peers, net, 2)


def test_observers_do_not_vote_but_learn_the_leader() -> None:
    peers = make([1, 2, 3, 9], {1: 1, 2: 2, 3: 3, 9: 99}, observers=(9,))
    net = Net(random.Random(3))
    run_election(peers, net)
    check(peers, net, 3)


def test_a_late_server_joins_the_established_leader() -> None:
    peers = make([1, 2, 3], {1: 5, 2: 5, 3: 5})
    net = Net(random.Random(4), down={1})
    run_election(peers, net)
    check(peers, net, 3)
    net.down.clear()
    late = peers[1]
    now = 1_000_000
    net.send(now, 1, late.start(now))
    while late.decided is None and now < 1_100_000:
        now += 1
        for frm, to, n in net.due(now):
            net.send(now, to, peers[to].receive(frm, n, now))
        net.send(now, 1, late.tick(now))
    assert late.decided is not None and late.decided.leader == 3 and late.state == ServerState.FOLLOWING


def test_no_quorum_means_no_decision() -> None:
    peers = make([1, 2, 3], {1: 1, 2: 2, 3: 3})
    net = Net(random.Random(5), down={2, 3})
    with pytest.raises(AssertionError, match="no decision"):
        run_election(peers, net, until_ms=5_000)


TWO_GROUPS_OF_THREE = QuorumVerifier(range(1, 7), {1: (1, 2, 3), 2: (4, 5, 6)}, {i: 1 for i in range(1, 7)})


def test_with_groups_a_majority_of_servers_without_a_majority_of_groups_elects_nobody() -> None:
    # 4 of 6 servers up, but group 2 has only one of its three: not a quorum (QuorumHierarchical)
    peers = make(list(range(1, 7)), {i: 5 for i in range(1, 7)}, quorum=TWO_GROUPS_OF_THREE)
    net = Net(random.Random(6), down={5, 6})
    with pytest.raises(AssertionError, match="no decision"):
        run_election(peers, net, until_ms=5_000)
    # one member of each group down: both groups keep a majority, and the best of the rest leads
    peers = make(list(range(1, 7)), {i: 5 for i in range(1, 7)}, quorum=TWO_GROUPS_OF_THREE)
    net = Net(random.Random(6), down={3, 6})
    run_election(peers, net)
    check(peers, net, 5)


def test_a_server_of_weight_zero_is_never_elected() -> None:
    # FastLeaderElection.totalOrderPredicate: a vote for a server of weight 0 never wins, even with the
    # newest zxid; the others elect among themselves, and server 3 follows
    quorum = QuorumVerifier({1, 2, 3}, {1: (1, 2, 3)}, {1: 1, 2: 1, 3: 0})
    peers = make([1, 2, 3], {1: 5, 2: 5, 3: 9}, quorum=quorum)
    run_election(peers, Net(random.Random(7), loss=0.1, max_delay_ms=20))
    check(peers, Net(random.Random(7)), 2)


def test_notification_wire_format_versions() -> None:
    n = Notification(ServerState.LOOKING, 3, 0x100000002, 7, 1, 2, b"server.1=a:1:2:participant\nversion=0")
    raw = n.encode()
    assert len(raw) == 44 + len(n.config)
    assert Notification.decode(raw) == n
    legacy = Notification.decode(raw[:28])
    assert legacy is not None and legacy.peer_epoch == 1 and legacy.version == 0
    assert Notification.decode(raw[:20]) is None
