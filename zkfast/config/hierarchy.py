"""Hierarchical quorums: `group.N=a:b:c` and `weight.N=w`, read and checked as Apache ZooKeeper's
QuorumHierarchical.parse does (zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/
flexible/QuorumHierarchical.java).

A config with any group or weight key is hierarchical (QuorumPeerConfig.parseDynamicConfig): then
every participant must be in exactly one group, and a participant without `weight.N` weighs 1. The
rule that uses them is zkfast._quorum.QuorumVerifier. The same checks run on zoo.cfg, a dynamic config
file, /zookeeper/config, a peer's notification and a reconfig's new member list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from zkfast.config.setting import ConfigError, Origin, Setting
from zkfast.config.values import parse_java_int


class MalformedHierarchy(ConfigError):
    """Where Apache fails with a runtime exception rather than a ConfigException (a number
    Long.parseLong refuses; a grouped server with no weight, a NullPointerException): a reconfig
    carrying it gets MARSHALLINGERROR there, not BADARGUMENTS."""


@dataclass(frozen=True)
class Hierarchy:
    """Groups by id (their members in order) and every weight, the defaulted ones included, as
    QuorumHierarchical holds them after parse."""

    groups: Mapping[int, tuple[int, ...]]
    weights: Mapping[int, int]

    def lines(self) -> list[str]:
        """QuorumHierarchical.toString's group and weight lines (its HashMaps iterate small ids in
        order; zkfast orders every id so, as it does the server lines)."""
        return [*(f"group.{gid}={':'.join(map(str, members))}" for gid, members in self.groups.items()),
                *(f"weight.{sid}={weight}" for sid, weight in self.weights.items())]


def is_hierarchy_key(key: str) -> bool:
    # QuorumPeerConfig.parseDynamicConfig: startsWith("group") || startsWith("weight")
    return key.startswith(("group", "weight"))


def numbered_key(key: str, prefix: str, origin: Origin) -> int:
    """N of `prefix.N` (server.N, group.N, weight.N), N decimal digits."""
    match = re.fullmatch(re.escape(prefix) + r"\.([0-9]+)", key)
    if not match:
        raise ConfigError.at(origin, f"malformed key: expected {prefix}.<number>")
    return int(match.group(1))


def _long(text: str, origin: Origin, what: str) -> int:
    try:
        return parse_java_int(text, 64)
    except ValueError as e:
        raise MalformedHierarchy.at(origin, f"{what}: {e}") from None


def parse_hierarchy(settings: Mapping[str, Setting], participants: Mapping[int, Origin]) -> Hierarchy | None:
    """The groups and weights among `settings` (None if there are none: a plain majority);
    participants: the voters' ids, with where each is listed."""
    entries = [(key, s) for key, s in settings.items() if is_hierarchy_key(key)]
    if not entries:
        return None
    group_of: dict[int, int] = {}
    groups: dict[int, tuple[int, ...]] = {}
    explicit: dict[int, int] = {}
    group_origin: dict[int, Origin] = {}
    for key, setting in entries:
        origin = setting.origin
        if key.startswith("group"):
            gid = numbered_key(key, "group", origin)
            if gid in groups:
                # Apache would count this group twice towards the majority of groups
                raise ConfigError.at(origin, f"names group {gid} again (as group.{gid} does)")
            members = tuple(_long(part, origin, "a server id") for part in setting.value.split(":"))
            for sid in members:
                if sid in group_of:
                    raise ConfigError.at(origin, f"server {sid} is in multiple groups (also in group."
                                                 f"{group_of[sid]})")
                group_of[sid] = gid
            groups[gid] = tuple(sorted(members))
            group_origin[gid] = origin
        else:
            sid = numbered_key(key, "weight", origin)
            weight = _long(setting.value, origin, "the weight")
            if weight < 0:
                # zkfast refuses what Apache would sum as is: a negative weight makes no quorum sense
                raise ConfigError.at(origin, f"must be 0 or more, got {weight}")
            explicit[sid] = weight
    first = entries[0][1].origin
    for sid, where in participants.items():
        if sid not in group_of:
            raise ConfigError.at(where if groups else first,
                                 f"server {sid} is not in a group (with group.N or weight.N set, every "
                                 "participant must be in one group.N)")
    weights = {sid: explicit.get(sid, 1) for sid in participants}
    weights.update(explicit)
    for sid, gid in group_of.items():
        if sid not in weights:
            raise MalformedHierarchy.at(group_origin[gid], f"server {sid} is not a participant and has no "
                                                           f"weight.{sid} (Apache fails on this)")
    return Hierarchy(dict(sorted(groups.items())), dict(sorted(weights.items())))

