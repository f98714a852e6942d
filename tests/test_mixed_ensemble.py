"""Mixed ensembles: zkfast and Apache ZooKeeper 3.8 (Debian) servers in one ensemble, electing and
replicating over Apache's election and quorum protocols, so an operator can migrate node by node.

- zkfast follows an Apache leader, and Apache followers follow a zkfast leader: writes through every
  member are seen, with the same Stat, by every member; a watch set on one kind fires for a write
  through the other;
- an all-Apache ensemble under write load becomes an all-zkfast one, one member at a time on its own
  dataDir (followers first, then the leader): no acknowledged write is lost and writes never stop for
  longer than the failover bound;
- and back: zkfast members replaced by Apache servers that join with empty dataDirs (a SNAP from the
  leader, whichever kind it is).
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.retry import KazooRetry
from testbase.ensemble import Ensemble
from testbase.process import apache_available

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")]


def client(hosts: str) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0,
                    connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5))
    c.start(timeout=30)
    return c


def stats_everywhere(e: Ensemble, paths: list[str]) -> dict[int, list[tuple[bytes, tuple[int, ...]]]]:
    seen = {}
    for i in e.running():
        c = client(e.address(i))
        try:
            c.sync("/")
            out = []
            for p in paths:
                data, st = c.get(p)
                out.append((data, (st.czxid, st.mzxid, st.pzxid, st.version, st.cversion, st.numChildren)))
            seen[i] = out
        finally:
            c.stop()
    return seen


@pytest.mark.parametrize("leader_kind", ["apache", "zkfast"])
def test_one_kind_follows_a_leader_of_the_other(leader_kind: str) -> None:
    other = "zkfast" if leader_kind == "apache" else "apache"
    with Ensemble(leader_kind, 3, kinds={1: other}) as e:
        # 2 and 3 elect 3 (the larger id); 1, of the other kind, joins it
        e.start([2, 3])
        assert e.wait_leader() == 3
        e.start([1])
        assert e.mode(1) == "follower"
        assert e.kinds[3] == leader_kind and e.kinds[1] == other
        paths = []
        watcher = client(e.address(1))
        fired = threading.Event()
        try:
            watcher.exists("/through3", watch=lambda event: fired.set())
            for i in e.ids:
                c = client(e.address(i))
                try:
                    paths.append(c.create(f"/through{i}", e.kinds[i].encode()))
                    c.set(f"/through{i}", b"again")
                    paths.append(c.create("/seq-", b"", sequence=True))
                finally:
                    c.stop()
            assert fired.wait(10), "a watch on one kind did not fire for a write through the other"
        finally:
            watcher.stop()
        seen = stats_everywhere(e, ["/", *paths])
        assert sorted(seen) == e.ids
        first = seen[e.ids[0]]
        assert all(v == first for v in seen.values()), seen
        # the leader going away: the two of different kinds elect one of them and go on
        e.kill9(3)
        new = e.wait_leader(exclude=3)
        assert new in (1, 2)
        c = client(e.hosts([1, 2]))
        try:
            c.create("/after-failover", b"x")
        finally:
            c.stop()
        e.restart(3)
        seen = stats_everywhere(e, ["/after-failover", *paths])
        assert all(v == seen[3] for v in seen.values())


class Writer:
    """Creates /w/N in order through the whole ensemble until stopped; remembers what was acked and
    the longest time between two acks."""

    def __init__(self, hosts: str) -> None:
        self.zk = client(hosts)
        self.zk.ensure_path("/w")
        self.acked: list[str] = []
        self.longest_gap_s = 0.0
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        last = time.monotonic()
        while not self.stop.is_set():
            path = f"/w/{n:08d}"
            try:
                self.zk.create(path, b"v")
            except KazooException:
                self.errors += 1  # the leader changed under it: done, or try the same path again
                try:
                    done = self.zk.exists(path) is not None
                except KazooException:
                    done = False
                if not done:
                    time.sleep(0.02)
                    continue
            now = time.monotonic()
            self.longest_gap_s = max(self.longest_gap_s, now - last)
            last = now
            self.acked.append(path)
            n += 1
            time.sleep(0.005)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        self.zk.stop()


def wait_acks(w: Writer, more: int, timeout_s: float = 30.0) -> None:
    target = len(w.acked) + more
    deadline = time.monotonic() + timeout_s
    while len(w.acked) < target:
        assert time.monotonic() < deadline, f"writes stalled at {len(w.acked)}"
        time.sleep(0.02)


def every_member_holds(e: Ensemble, acked: list[str]) -> None:
    for i in e.running():
        c = client(e.address(i))
        try:
            c.sync("/w")
            children = set(c.get_children("/w"))
        finally:
            c.stop()
        missing = [p for p in acked if p.rsplit("/", 1)[1] not in children]
        assert not missing, f"member {i} ({e.kinds[i]}) lacks {len(missing)} acked writes, e.g. {missing[:3]}"


def migrate(e: Ensemble, kind: str, fresh_data: bool, bound_s: float) -> list[str]:
    """Under write load, replace every member by a server of `kind`, followers first, the leader
    last; the kind of the leader after each step."""
    with Writer(e.hosts()) as w:
        wait_acks(w, 50)
        leader = e.wait_leader()
        leaders = []
        for i in [*(i for i in e.ids if i != leader), leader]:
            e.replace(i, kind, fresh_data=fresh_data)
            e.restart(i)
            wait_acks(w, 50)
            leaders.append(e.kinds[e.wait_leader()])
            if kind == "zkfast" and not fresh_data:
                started = re.search(r"recovered zxid 0x([0-9a-f]+)", e.members[i].log_tail(1_000_000))
                assert started and int(started.group(1), 16) > 0, "zkfast did not start from Apache's data"
        assert set(e.kinds.values()) == {kind}
        wait_acks(w, 50)
    print(f"{len(w.acked)} writes acked, {w.errors} retried, longest pause {w.longest_gap_s:.2f} s")
    assert w.longest_gap_s < bound_s, f"writes stopped for {w.longest_gap_s:.2f} s (bound {bound_s:.1f} s)"
    every_member_holds(e, w.acked)
    return leaders


def test_apache_to_zkfast_node_by_node_under_load() -> None:
    with Ensemble("apache", 3) as e:
        e.start()
        # the same dataDirs: zkfast reads Apache's epochs, snapshot and logs
        leaders = migrate(e, "zkfast", fresh_data=False, bound_s=e.failover_bound_s())
        # zkfast followed an Apache leader (twice), then led
        assert leaders == ["apache", "apache", "zkfast"], leaders


def test_zkfast_to_apache_node_by_node_under_load() -> None:
    with Ensemble("zkfast", 3) as e:
        e.start()
        # Apache servers join empty: the leader sends a SNAP. The last step is an election between
        # Apache servers, which took 3.3 s here (bound 5 s): room for a loaded CI machine
        leaders = migrate(e, "apache", fresh_data=True, bound_s=2 * e.failover_bound_s())
        assert leaders == ["zkfast", "zkfast", "apache"], leaders
