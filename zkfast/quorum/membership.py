"""The ensemble's membership as /zookeeper/config holds it, and what a reconfig request makes of it.

The text is Apache ZooKeeper's QuorumMaj.toString: one `server.N=spec` line per member (by id), then
`version=HEX`, the zxid of the reconfig that made it (0 for the static config); with hierarchical
quorums QuorumHierarchical.toString's `group.N` and `weight.N` lines (every weight, defaulted ones too)
come between. A reconfig is incremental (joining `server.N=...` entries and leaving ids, comma
separated) or not (the whole new member list, which may set groups and weights); PrepRequestProcessor's
rules decide what is a bad argument: an incremental one is refused once the quorums are hierarchical.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from zkfast._quorum import QuorumVerifier
from zkfast.config import ConfigError, Origin, ServerSpec, parse_server_entry
from zkfast.config.hierarchy import Hierarchy, MalformedHierarchy, is_hierarchy_key
from zkfast.config.quorum import hierarchy_of
from zkfast.config.setting import Setting


class BadReconfig(ValueError):
    """The request does not describe a valid configuration (the client gets BADARGUMENTS)."""


class MalformedReconfig(ValueError):
    """A server id that is not a number: Apache's NumberFormatException, which the client sees as
    MARSHALLINGERROR (also a group member or weight that is not one, or a grouped server without a
    weight: Apache's NullPointerException)."""


@dataclass(frozen=True)
class Membership:
    servers: Mapping[int, ServerSpec]
    version: int
    hierarchy: Hierarchy | None = None  # group.N/weight.N; None: a plain majority

    @classmethod
    def of(cls, servers: Iterable[ServerSpec], version: int = 0, hierarchy: Hierarchy | None = None) -> Membership:
        return cls({s.server_id: s for s in sorted(servers, key=lambda s: s.server_id)}, version, hierarchy)

    @cached_property
    def quorum(self) -> QuorumVerifier:
        """The quorum rule of this membership: who must agree to elect, establish and commit."""
        h = self.hierarchy
        return QuorumVerifier(self.voters, None if h is None else h.groups, None if h is None else h.weights)

    @property
    def voters(self) -> frozenset[int]:
        return frozenset(sid for sid, s in self.servers.items() if s.is_voter)

    @property
    def observers(self) -> frozenset[int]:
        return frozenset(sid for sid, s in self.servers.items() if not s.is_voter)

    def lines(self) -> list[str]:
        """The `key=value` lines of toString, without the version."""
        lines = [f"server.{sid}={self.servers[sid].value()}" for sid in sorted(self.servers)]
        return lines + (self.hierarchy.lines() if self.hierarchy is not None else [])

    def text(self) -> bytes:
        return "\n".join([*self.lines(), f"version={self.version:x}"]).encode()

    @classmethod
    def parse(cls, data: bytes) -> Membership:
        """/zookeeper/config's data (ConfigError if it is not a membership)."""
        servers = []
        version = 0
        hierarchical: dict[str, Setting] = {}
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key.startswith("server."):
                servers.append(parse_server_entry(key, value, "/zookeeper/config"))
            elif is_hierarchy_key(key):
                hierarchical[key] = Setting(value, Origin("/zookeeper/config", number, key))
            elif key == "version":
                try:
                    version = int(value, 16)
                except ValueError:
                    raise ConfigError("/zookeeper/config", None, "version", f"not hexadecimal: {value!r}") from None
        return cls.of(servers, version, hierarchy_of(hierarchical, servers, "/zookeeper/config"))

    def reconfigured(self, joining: str | None, leaving: str | None, new_members: str | None,
                     zxid: int, min_voters: int = 2) -> Membership:
        """The membership a reconfig request asks for, at version zxid (BadReconfig if malformed).
        min_voters: 2 with standaloneEnabled (Apache's default), else 1."""
        servers: dict[int, ServerSpec]
        hierarchy = None
        try:
            if new_members is not None:
                servers = {}
                hierarchical: dict[str, Setting] = {}
                for entry in new_members.replace(",", "\n").splitlines():
                    key, sep, value = entry.partition("=")
                    if not entry.strip():
                        continue
                    if not sep:
                        raise BadReconfig(f"not a key=value entry: {entry!r}")
                    if key.strip().startswith("server."):
                        spec = parse_server_entry(key, value)
                        servers[spec.server_id] = spec
                    elif is_hierarchy_key(key.strip()):
                        hierarchical[key.strip()] = Setting(value.strip(), Origin("reconfig", None, key.strip()))
                hierarchy = hierarchy_of(hierarchical, servers.values(), "reconfig")
            elif self.hierarchy is not None:
                raise BadReconfig("Incremental reconfiguration requested but last configuration seen has a "
                                  "non-majority quorum system")
            else:
                servers = dict(self.servers)
                for sid in _split(leaving):
                    servers.pop(_server_id(sid), None)
                for joiner in _split(joining):
                    key, sep, value = joiner.partition("=")
                    if not sep or "=" in value:
                        raise BadReconfig("Wrong format of server string")
                    # as Apache: the id is whatever follows the key's last '.'
                    spec = parse_server_entry(f"server.{_server_id(key[key.rfind('.') + 1:])}", value)
                    if spec.client_port is None:
                        raise BadReconfig("Wrong format of server string - each server should have 3 ports specified")
                    for other in servers.values():
                        if other.server_id != spec.server_id and _clash(spec, other):
                            raise BadReconfig(f"server.{spec.server_id} uses an address of server.{other.server_id}")
                    servers[spec.server_id] = spec
        except MalformedHierarchy as e:
            raise MalformedReconfig(str(e)) from None
        except ConfigError as e:
            raise BadReconfig(str(e)) from None
        new = Membership.of(servers.values(), zxid, hierarchy)
        if len(new.voters) < min_voters:
            raise BadReconfig(f"Reconfig failed - new configuration must include at least {min_voters} "
                              f"follower{'s' if min_voters > 1 else ''}")
        return new


def _server_id(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise MalformedReconfig(f"not a server id: {text!r}") from None


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _clash(a: ServerSpec, b: ServerSpec) -> bool:
    """QuorumServer.checkAddressDuplicate: the same quorum or election address."""
    mine = {(x.host, x.quorum_port) for x in a.addresses} | {(x.host, x.election_port) for x in a.addresses}
    theirs = {(x.host, x.quorum_port) for x in b.addresses} | {(x.host, x.election_port) for x in b.addresses}
    return bool(mine & theirs)
