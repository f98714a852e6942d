"""The ensemble's membership as /zookeeper/config holds it, and what a reconfig request makes of it.

The text is Apache ZooKeeper's QuorumMaj.toString: one `server.N=spec` line per member (by id), then
`version=HEX`, the zxid of the reconfig that made it (0 for the static config). A reconfig is
incremental (joining `server.N=...` entries and leaving ids, comma separated) or not (the whole new
member list); PrepRequestProcessor's rules decide what is a bad argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zkfast.config import ConfigError, ServerSpec, parse_server_entry


class BadReconfig(ValueError):
    """The request does not describe a valid configuration (the client gets BADARGUMENTS)."""


class MalformedReconfig(ValueError):
    """A server id that is not a number: Apache's NumberFormatException, which the client sees as
    MARSHALLINGERROR."""


@dataclass(frozen=True)
class Membership:
    servers: Mapping[int, ServerSpec]
    version: int

    @classmethod
    def of(cls, servers: Iterable[ServerSpec], version: int = 0) -> Membership:
        return cls({s.server_id: s for s in sorted(servers, key=lambda s: s.server_id)}, version)

    @property
    def voters(self) -> frozenset[int]:
        return frozenset(sid for sid, s in self.servers.items() if s.is_voter)

    @property
    def observers(self) -> frozenset[int]:
        return frozenset(sid for sid, s in self.servers.items() if not s.is_voter)

    def text(self) -> bytes:
        lines = [f"server.{sid}={self.servers[sid].value()}" for sid in sorted(self.servers)]
        lines.append(f"version={self.version:x}")
        return "\n".join(lines).encode()

    @classmethod
    def parse(cls, data: bytes) -> Membership:
        """/zookeeper/config's data (ConfigError if it is not a membership)."""
        servers = []
        version = 0
        for line in data.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key.startswith("server."):
                servers.append(parse_server_entry(key, value, "/zookeeper/config"))
            elif key.startswith(HIERARCHICAL_KEYS):
                raise ConfigError("/zookeeper/config", None, key, HIERARCHICAL_REFUSAL)
            elif key == "version":
                try:
                    version = int(value, 16)
                except ValueError:
                    raise ConfigError("/zookeeper/config", None, "version", f"not hexadecimal: {value!r}") from None
        return cls.of(servers, version)

    def reconfigured(self, joining: str | None, leaving: str | None, new_members: str | None,
                     zxid: int, min_voters: int = 2) -> Membership:
        """The membership a reconfig request asks for, at version zxid (BadReconfig if malformed).
        min_voters: 2 with standaloneEnabled (Apache's default), else 1."""
        servers: dict[int, ServerSpec]
        try:
            if new_members is not None:
                servers = {}
                for entry in new_members.replace(",", "\n").splitlines():
                    key, sep, value = entry.partition("=")
                    if not entry.strip():
                        continue
                    if not sep:
                        raise BadReconfig(f"not a key=value entry: {entry!r}")
                    if key.strip().startswith("server."):
                        spec = parse_server_entry(key, value)
                        servers[spec.server_id] = spec
                    elif key.strip().startswith(HIERARCHICAL_KEYS):
                        # running plain majorities instead would change who makes a quorum
                        raise BadReconfig(f"{key.strip()}: {HIERARCHICAL_REFUSAL}")
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
        except ConfigError as e:
            raise BadReconfig(str(e)) from None
        new = Membership.of(servers.values(), zxid)
        if len(new.voters) < min_voters:
            raise BadReconfig(f"Reconfig failed - new configuration must include at least {min_voters} "
                              f"follower{'s' if min_voters > 1 else ''}")
        return new


HIERARCHICAL_KEYS = ("group.", "weight.")
HIERARCHICAL_REFUSAL = "hierarchical quorums (group.N/weight.N) are not implemented by zkfast"


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
