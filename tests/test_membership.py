"""Memberships from reconfig requests, /zookeeper/config and peers: hierarchical quorums are refused,
never read as plain majorities (which would change who makes a quorum)."""

from __future__ import annotations

import pytest

from zkfast.config import ConfigError
from zkfast.quorum.membership import BadReconfig, Membership

THREE = b"server.1=127.0.0.2:2888:3888:participant;127.0.0.2:2181\n" \
        b"server.2=127.0.0.3:2888:3888:participant;127.0.0.3:2181\n" \
        b"server.3=127.0.0.4:2888:3888:participant;127.0.0.4:2181\nversion=100000000"


def test_a_plain_membership_is_read() -> None:
    m = Membership.parse(THREE)
    assert m.voters == {1, 2, 3} and m.version == 0x100000000


@pytest.mark.parametrize("line", [b"group.1=1:2:3", b"weight.2=3"])
def test_a_hierarchical_membership_is_refused(line: bytes) -> None:
    with pytest.raises(ConfigError, match="hierarchical"):
        Membership.parse(THREE + b"\n" + line)


def test_a_reconfig_to_hierarchical_quorums_is_refused() -> None:
    m = Membership.parse(THREE)
    members = THREE.decode().replace("\nversion=100000000", "") + "\ngroup.1=1:2:3\nweight.1=1"
    with pytest.raises(BadReconfig, match="group.1"):
        m.reconfigured(None, None, members, 0x100000005)
    assert m.reconfigured(None, None, members.split("\ngroup")[0], 0x100000005).voters == {1, 2, 3}
