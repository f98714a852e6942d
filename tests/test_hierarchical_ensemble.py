"""Hierarchical quorums between real processes: 6 zkfast servers in 2 groups of 3 (`group.1=1:2:3`,
`group.2=4:5:6`, weights 1), and the same config with Apache ZooKeeper members.

As Apache's QuorumHierarchical counts them, a quorum is more than half of the groups, each by more than
half of its weight: with 2 groups, both groups, by 2 of 3 servers each. So the ensemble survives the
loss of any one server (each group keeps 2 of 3), and loses its quorum when a second member of the same
group goes, although 4 of 6 servers (a plain majority) are still up: then it refuses writes and
nobody leads. 3 groups of 2 would show the same (tests/test_zab_sim.py runs both in the simulator)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry
from testbase.ensemble import Ensemble

pytestmark = pytest.mark.timeout(240)

GROUPS = {"group.1": "1:2:3", "group.2": "4:5:6"}


def group_of(sid: int) -> set[int]:
    return {1, 2, 3} if sid <= 3 else {4, 5, 6}


def client(hosts: str) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0, connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5))
    c.start(timeout=30)
    return c


def write_refused(c: KazooClient, path: str, wait_s: float) -> bool:
    """The write gets no success within wait_s (no reply, or a connection loss)."""
    try:
        c.create_async(path, b"x").get(timeout=wait_s)
    except (KazooTimeoutError, KazooException):
        return True
    return False


def lose_a_member_then_a_group(e: Ensemble) -> None:
    leader = e.wait_leader()
    # kill in the other group, so the leader and the client stay: the loss of quorum is the groups'
    other = sorted(group_of(5 if leader <= 3 else 1))
    c = client(e.address(leader))
    try:
        c.create("/before", b"1")
        e.kill9(other[0])
        # one member of a group down: both groups keep 2 of 3, a quorum
        c.create("/one-down", b"2")
        assert c.get("/one-down")[0] == b"2"
        e.kill9(other[1])
        # 4 of 6 servers up (a plain majority) but group `other` has 1 of 3: no quorum of groups
        sync_s = e.sync_limit * e.tick_ms / 1000
        assert write_refused(c, "/no-groups", 3 * sync_s + 1.0)
        time.sleep(sync_s)
        assert not any(e.mode(i) == "leader" for i in e.running()), {i: e.mode(i) for i in e.running()}
        assert all(e.mode(i) is None for i in e.running())  # nobody serves
    finally:
        c.stop()
        c.close()
    # the group gets its majority back: a leader again, and every acknowledged write is there
    e.restart(other[1])
    e.wait_leader(timeout_s=60)
    c = client(e.hosts(e.running()))
    try:
        assert c.get("/before")[0] == b"1" and c.get("/one-down")[0] == b"2"
        c.create("/after", b"3")
    finally:
        c.stop()
        c.close()


def test_six_zkfast_servers_in_two_groups_of_three() -> None:
    with Ensemble("zkfast", 6, cfg=GROUPS) as e:
        e.start()
        text = Path(e.members[1].cfg_path).read_text()
        assert "group.1=1:2:3" in text and "group.2=4:5:6" in text
        lose_a_member_then_a_group(e)


def config_at(e: Ensemble, i: int) -> str:
    c = client(e.address(i))
    try:
        return c.get("/zookeeper/config")[0].decode()
    finally:
        c.stop()
        c.close()


@pytest.mark.skipif(shutil.which("java") is None or not Path("/usr/share/java/zookeeper.jar").exists(),
                    reason="needs java and Apache ZooKeeper's jar")
@pytest.mark.parametrize("apache", [(3, 6), (1, 4)], ids=["apache-6-leads", "zkfast-6-leads"])
def test_apache_and_zkfast_members_agree_on_the_groups(apache: tuple[int, int]) -> None:
    """Two members are Apache ZooKeeper 3.8, one in each group; server 6 (the highest id, so the
    first leader as a rule) is Apache's or zkfast's. They count the groups alike, and print them
    alike in /zookeeper/config (QuorumHierarchical.toString, every weight listed)."""
    cfg = {**GROUPS, "weight.2": "2"}
    with Ensemble("zkfast", 6, cfg=cfg, kinds=dict.fromkeys(apache, "apache")) as e:
        e.start()
        texts = {i: config_at(e, i) for i in (apache[0], 2, 5)}
        assert len(set(texts.values())) == 1, texts
        assert "\ngroup.1=1:2:3\ngroup.2=4:5:6\nweight.1=1\nweight.2=2\nweight.3=1\n" in texts[2], texts
        lose_a_member_then_a_group(e)
