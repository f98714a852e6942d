"""Memberships from reconfig requests, /zookeeper/config and peers: hierarchical quorums (group.N,
weight.N) are read, checked and written back as Apache's QuorumHierarchical does, never read as plain
majorities (which would change who makes a quorum)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zkfast.config import ConfigError, load_config
from zkfast.quorum.configfiles import dynamic_config_text, write_config_files
from zkfast.quorum.membership import BadReconfig, MalformedReconfig, Membership

THREE = b"server.1=127.0.0.2:2888:3888:participant;127.0.0.2:2181\n" \
        b"server.2=127.0.0.3:2888:3888:participant;127.0.0.3:2181\n" \
        b"server.3=127.0.0.4:2888:3888:participant;127.0.0.4:2181\nversion=100000000"
SERVERS = THREE.decode().replace("\nversion=100000000", "")


def test_a_plain_membership_is_read() -> None:
    m = Membership.parse(THREE)
    assert m.voters == {1, 2, 3} and m.version == 0x100000000 and not m.quorum.hierarchical


def test_a_hierarchical_membership_reads_and_prints_as_apaches_to_string() -> None:
    # QuorumHierarchical.toString: servers, groups, then every weight (defaulted ones too), version
    m = Membership.parse(SERVERS.encode() + b"\ngroup.2=3\ngroup.1=2:1\nweight.1=2\nversion=100000000")
    assert m.text().decode().split("\n")[3:] == ["group.1=1:2", "group.2=3", "weight.1=2", "weight.2=1",
                                                 "weight.3=1", "version=100000000"]
    assert Membership.parse(m.text()) == m and m.quorum.hierarchical
    assert m.quorum.contains_quorum({1, 3}) and not m.quorum.contains_quorum({1, 2})
    # writeDynamicConfig: the same lines sorted as strings, without the version
    assert dynamic_config_text(m).decode().split("\n")[:3] == ["group.1=1:2", "group.2=3", "server.1=127.0.0.2:"
                                                               "2888:3888:participant;127.0.0.2:2181"]


@pytest.mark.parametrize(("lines", "problem"), [
    (b"group.1=1:2", "server 3 is not in a group"),
    (b"weight.2=3", "server 1 is not in a group"),
    (b"group.1=1:2:3\ngroup.2=3", "server 3 is in multiple groups"),
    (b"group.1=1:2:3\nweight.2=-1", "must be 0 or more"),
    (b"group.1=1:2:3:9", "server 9 is not a participant and has no weight.9"),
])
def test_a_bad_hierarchical_membership_is_an_error(lines: bytes, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Membership.parse(SERVERS.encode() + b"\n" + lines)


def test_a_reconfig_to_hierarchical_quorums_works_as_on_apache() -> None:
    m = Membership.parse(THREE)
    new = m.reconfigured(None, None, SERVERS + "\ngroup.1=1:2\ngroup.2=3\nweight.3=0", 0x100000005)
    assert new.hierarchy is not None and dict(new.hierarchy.weights) == {1: 1, 2: 1, 3: 0}
    # PrepRequestProcessor: incremental reconfigs need a majority quorum system
    with pytest.raises(BadReconfig, match="non-majority quorum system"):
        new.reconfigured(None, "3", None, 0x100000006)
    # a whole member list without groups is a plain majority again
    assert not new.reconfigured(None, None, SERVERS, 0x100000007).quorum.hierarchical
    # ConfigException → BADARGUMENTS; NumberFormatException or Apache's NullPointerException → MARSHALLINGERROR
    with pytest.raises(BadReconfig, match="not in a group"):
        m.reconfigured(None, None, SERVERS + "\ngroup.1=1:2", 0x100000005)
    for bad in ("group.1=1:2:x", "group.1=1:2:3:9", "group.1=1:2:3\nweight.1=heavy"):
        with pytest.raises(MalformedReconfig):
            m.reconfigured(None, None, SERVERS + "\n" + bad, 0x100000005)


def test_a_dynamic_config_file_with_groups_loads_back(tmp_path: Path) -> None:
    """What write_config_files leaves (zoo.cfg pointing at zoo.cfg.dynamic.N) starts a server with the
    same groups and weights: the way back to Apache, and zkfast's own restart from its config."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "myid").write_text("1\n")
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path / 'data'}\ntickTime=2000\ninitLimit=5\nsyncLimit=2\n{SERVERS}\n")
    m = Membership.parse(SERVERS.encode() + b"\ngroup.1=1:2\ngroup.2=3\nweight.3=0\nversion=100000003")
    dynamic = write_config_files(cfg, m, 1)
    loaded = load_config(cfg, {}, {})
    assert loaded.dynamic_config_file == dynamic.resolve() and loaded.quorum_config_version == 0x100000003
    assert Membership.of(loaded.servers, loaded.quorum_config_version, loaded.quorum_hierarchy).text() == m.text()
