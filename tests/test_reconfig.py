"""Dynamic reconfiguration (the reconfig op, /zookeeper/config, COMMITANDACTIVATE) on real 3-node
ensembles used by kazoo: the same requests against Apache ZooKeeper 3.8 and zkfast give the same
answers, errors and /zookeeper/config text and stat; a voter removed and added back; a reconfig
survives a restart of the whole ensemble."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    KazooException,
    NewConfigNoQuorumError,
    NoAuthError,
    ReconfigDisabledError,
)
from testbase.ensemble import Ensemble
from testbase.process import apache_available

pytestmark = pytest.mark.timeout(240)

# "super:test", as kazoo's own test harness sets it
SUPER = {"zookeeper.DigestAuthenticationProvider.superDigest": "super:D/InIHSb7yEEbrWz8b9l71RjZJU="}
RECONFIG = {"reconfigEnabled": "true"}


def client(hosts: str, superuser: bool = False) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0, auth_data=[("digest", "super:test")] if superuser else None)
    c.start(timeout=30)
    return c


@contextlib.contextmanager
def session(hosts: str, superuser: bool = False) -> Iterator[KazooClient]:
    c = client(hosts, superuser)
    try:
        yield c
    finally:
        c.stop()


def config_lines(data: bytes, ens: Ensemble) -> list[str]:
    """/zookeeper/config with each member's ports named, so two ensembles compare."""
    text = data.decode()
    for i in ens.ids:
        q, el = ens.peer_ports(i)
        text = text.replace(f":{q}:{el}:", f":Q{i}:E{i}:")
    return text.split("\n")


def stat_of(st: Any) -> tuple[int, ...]:
    return (st.czxid, st.mzxid, st.version, st.aversion, st.cversion, st.ephemeralOwner, st.dataLength,
            st.numChildren, st.pzxid)


def scenario(kind: str) -> list[Any]:
    """A sequence of reconfig requests and what each one answered."""
    seen: list[Any] = []
    with Ensemble(kind, 3, cfg=RECONFIG, system_properties=SUPER) as e:
        e.start()
        e.wait_leader()
        admin = client(e.hosts(), superuser=True)
        plain = client(e.hosts())
        try:
            data, st = admin.get("/zookeeper/config")
            seen.append(("initial", config_lines(data, e), stat_of(st)))
            joining = "server.100=0.0.0.0:1:2:observer;0.0.0.0:3"
            servers = ",".join(line for line in data.decode().split("\n") if line.startswith("server."))
            calls: list[tuple[str, KazooClient, dict[str, Any]]] = [
                ("no super", plain, dict(joining=joining, leaving=None, new_members=None)),
                ("bad input", admin, dict(joining="some thing", leaving=None, new_members=None)),
                ("bad id", admin, dict(joining=None, leaving="x", new_members=None)),
                ("two ports", admin, dict(joining="server.100=0.0.0.0:1:2:observer", leaving=None, new_members=None)),
                ("add observer", admin, dict(joining=joining, leaving=None, new_members=None)),
                ("future version", admin, dict(joining=None, leaving="100", new_members=None, from_config=1 << 40)),
                ("remove observer", admin, dict(joining=None, leaving="100", new_members=None)),
                # hierarchical quorums: Apache's QuorumHierarchical checks, then the groups rule
                ("groups, a server in none", admin, dict(joining=None, leaving=None,
                                                         new_members=f"{servers},group.1=1:2")),
                ("groups, a bad id", admin, dict(joining=None, leaving=None,
                                                 new_members=f"{servers},group.1=1:2:x")),
                ("groups, no weight", admin, dict(joining=None, leaving=None,
                                                  new_members=f"{servers},group.1=1:2:3:7")),
                ("to groups", admin, dict(joining=None, leaving=None,
                                          new_members=f"{servers},group.1=1:2,group.2=3,weight.1=2")),
                ("incremental with groups", admin, dict(joining=joining, leaving=None, new_members=None)),
                ("back to a majority", admin, dict(joining=None, leaving=None, new_members=servers)),
                ("one voter left", admin, dict(joining=None, leaving="2,3", new_members=None)),
            ]
            for what, c, args in calls:
                try:
                    data, st = c.reconfig(**args)
                    seen.append((what, config_lines(data, e), stat_of(st)))
                except KazooException as ex:
                    seen.append((what, type(ex).__name__))
            # every member ends with the same config
            configs = set()
            for i in e.ids:
                with session(e.address(i)) as c:
                    c.sync("/zookeeper/config")
                    configs.add(c.get("/zookeeper/config")[0])
            seen.append(("members agree", len(configs)))
        finally:
            admin.stop()
            plain.stop()
    return seen


@pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")
def test_reconfig_answers_as_apache() -> None:
    ours = scenario("zkfast")
    theirs = scenario("apache")
    assert ours == theirs
    # and the sequence did what it says
    outcomes = dict((s[0], s[1:]) for s in ours)
    assert outcomes["no super"] == (NoAuthError.__name__,)
    assert outcomes["bad input"] == (BadArgumentsError.__name__,)
    assert outcomes["future version"] == (BadVersionError.__name__,)
    assert "server.100=0.0.0.0:1:2:observer;0.0.0.0:3" in outcomes["add observer"][0]
    assert outcomes["groups, a server in none"] == outcomes["incremental with groups"] == (BadArgumentsError.__name__,)
    assert "group.1=1:2" in outcomes["to groups"][0] and "weight.1=2" in outcomes["to groups"][0]
    assert outcomes["members agree"] == (1,)


def test_reconfig_is_refused_unless_enabled() -> None:
    with Ensemble("zkfast", 3, system_properties=SUPER) as e:
        e.start()
        with session(e.hosts(), superuser=True) as c:
            with pytest.raises(ReconfigDisabledError):
                c.reconfig(joining=None, leaving="1", new_members=None)


@pytest.fixture
def ensemble() -> Iterator[Ensemble]:
    with Ensemble("zkfast", 3, cfg=RECONFIG, system_properties=SUPER) as e:
        e.start()
        yield e


def voters_of(data: bytes) -> list[int]:
    return sorted(int(m) for m in re.findall(r"^server\.(\d+)=\S+:participant", data.decode(), re.M))


def test_a_voter_removed_then_added_back(ensemble: Ensemble) -> None:
    e = ensemble
    leader = e.wait_leader()
    gone, stays = [i for i in e.ids if i != leader]
    with session(e.address(leader), superuser=True) as admin:
        data, _ = admin.get("/zookeeper/config")
        line = next(ln for ln in data.decode().split("\n") if ln.startswith(f"server.{gone}="))
        line += f";{e.address(gone)}"  # a joiner names its client address too
        data, _ = admin.reconfig(joining=None, leaving=str(gone), new_members=None)
        assert voters_of(data) == sorted([leader, stays])
        e.kill9(gone)
        admin.create("/without", b"x")
    # the removal counts: with `stays` down too, the leader alone is no quorum of {leader, stays}
    # (under the old config, leader + `gone` would have been one)
    e.kill9(stays)
    e.launch(gone)
    deadline = time.monotonic() + e.failover_bound_s()
    while e.mode(leader) == "leader" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert e.mode(leader) != "leader"
    time.sleep(e.failover_bound_s())  # room for an election that must not succeed
    assert e.leader() is None, "leader + a removed server made a quorum"
    e.restart(stays)
    leader = e.wait_leader()
    with session(e.hosts([leader]), superuser=True) as admin:
        assert admin.exists("/no-quorum") is None
        # put `gone` back: a quorum of the new config (leader and `stays`) is synced
        data, _ = admin.reconfig(joining=line, leaving=None, new_members=None)
        assert voters_of(data) == sorted(e.ids)
    e.kill9(gone)
    e.restart(gone)
    with session(e.address(gone)) as back:
        back.sync("/")
        assert back.exists("/without") is not None
        assert voters_of(back.get("/zookeeper/config")[0]) == sorted(e.ids)
    # and it votes again: with the other follower down, the leader and `gone` are a quorum
    other = next(i for i in e.ids if i not in (leader, gone))
    e.kill9(other)
    with session(e.address(leader)) as c:
        c.create("/with", b"y")


def test_a_reconfig_survives_a_restart_of_everything(ensemble: Ensemble) -> None:
    e = ensemble
    leader = e.wait_leader()
    gone = next(i for i in e.ids if i != leader)
    rest = [i for i in e.ids if i != gone]
    with session(e.hosts(rest), superuser=True) as admin:
        config, _ = admin.reconfig(joining=None, leaving=str(gone), new_members=None)
    for i in e.ids:
        e.kill9(i)
    # the two that remain are the whole ensemble now: their zoo.cfg still lists three servers, their
    # data says two, and two of two elect a leader without the third
    e.start(rest)
    e.wait_leader()
    with session(e.hosts(rest)) as c:
        c.sync("/zookeeper/config")
        assert c.get("/zookeeper/config")[0] == config
        c.create("/two-of-two", b"z")


def test_a_reconfig_without_a_synced_quorum_is_refused(ensemble: Ensemble) -> None:
    e = ensemble
    leader = e.wait_leader()
    follower = next(i for i in e.ids if i != leader)
    with session(e.address(leader), superuser=True) as admin:
        e.kill9(follower)
        # {leader, the other} of a new 2-voter config {leader, follower}: only the leader is synced
        other = next(i for i in e.ids if i not in (leader, follower))
        with pytest.raises(NewConfigNoQuorumError):
            admin.reconfig(joining=None, leaving=str(other), new_members=None)


def _dynamic_file(member: Any) -> tuple[Path, bytes]:
    """The dynamic config file member's zoo.cfg points at, and its content."""
    text = member.cfg_path.read_text("latin-1")
    pointer = [ln for ln in text.splitlines() if ln.startswith("dynamicConfigFile=")]
    assert len(pointer) == 1, text
    assert not any(ln.startswith("server.") for ln in text.splitlines()), text
    path = Path(pointer[0].split("=", 1)[1])
    return path, path.read_bytes()


@pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")
def test_apache_starts_on_the_config_a_reconfig_left(ensemble: Ensemble) -> None:
    """As Apache's QuorumPeer: once a membership is active (the first leader's, ZOOKEEPER-1783;
    each reconfig's) zoo.cfg points at zoo.cfg.dynamic.<version>, zoo.cfg.bak keeps the file as
    first written. Apache started on the files and dataDirs a zkfast reconfig left runs the new
    membership (the way back from a migration)."""
    e = ensemble
    leader = e.wait_leader()
    for i in e.ids:
        member = e.members[i]
        assert member.cfg_path.with_name("zoo.cfg.bak").read_text().count("server.") == 3
        path, data = _dynamic_file(member)
        assert re.fullmatch(r"zoo\.cfg\.dynamic\.[0-9a-f]+00000000", path.name), path.name
        assert voters_of(data) == sorted(e.ids)
    gone = next(i for i in e.ids if i != leader)
    rest = [i for i in e.ids if i != gone]
    with session(e.hosts(rest), superuser=True) as admin:
        config, stat = admin.reconfig(joining=None, leaving=str(gone), new_members=None)
    version = int(re.search(rb"^version=([0-9a-f]+)$", config, re.M).group(1), 16)
    for i in rest:
        path, data = _dynamic_file(e.members[i])
        assert path.name == f"zoo.cfg.dynamic.{version:x}"
        assert data == b"\n".join(ln for ln in config.split(b"\n") if ln.startswith(b"server."))
    e.stop(gone)
    for i in rest:
        e.replace(i, "apache", config_on_disk=True)
    e.start(rest)
    e.wait_leader()
    with session(e.hosts(rest)) as c:
        c.sync("/zookeeper/config")
        assert c.get("/zookeeper/config")[0] == config
        c.create("/on-apache", b"a")
