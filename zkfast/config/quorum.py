"""The ensemble part of a config: `server.N` and `version` (in zoo.cfg or in a dynamic config file),
myid, and what this server's own `server.N` line decides (its role, its client address)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from zkfast.config.hierarchy import Hierarchy, numbered_key, parse_hierarchy
from zkfast.config.keys import is_quorum_key
from zkfast.config.model import MAX_EXTENDED_SERVER_ID, PeerType, QuorumAddress, ServerSpec
from zkfast.config.properties import PropertiesSyntaxError, java_trim, parse_properties
from zkfast.config.setting import ConfigError, Origin, Setting
from zkfast.config.values import parse_java_int, parse_port, split_host_port

if TYPE_CHECKING:
    from zkfast.config.loader import Loader


def load_quorum(loader: Loader) -> None:
    """server.N and version, inline or in the dynamic config file; then myid."""
    dynamic = loader.path("dynamicConfigFile")
    loader.fields["dynamic_config_file"] = dynamic
    if dynamic is not None:
        for key, setting in loader.settings.items():
            if is_quorum_key(key):
                raise ConfigError.at(setting.origin, f"must be in the dynamic config file {dynamic}, "
                                                     "not here")
        quorum = QuorumParser(loader, *read_dynamic_file(dynamic, loader.settings["dynamicConfigFile"]))
    else:
        quorum = QuorumParser(loader, loader.source, loader.settings)
    quorum.parse()
    _load_myid(loader)


def _check_quorum_limits(loader: Loader) -> None:
    """checkValidity: a quorum needs initLimit and syncLimit (ticks); they have no default."""
    for key, name, meaning in (
        ("initLimit", "init_limit_ticks", "ticks a follower may take to connect and sync to the leader"),
        ("syncLimit", "sync_limit_ticks", "ticks a follower may lag behind the leader"),
    ):
        value = loader.fields[name]
        if value is None:
            raise loader.missing(key, f"is required in quorum mode ({meaning})")
        if value <= 0:
            raise ConfigError.at(loader.settings[key].origin,
                                 f"must be a positive number of ticks in quorum mode, got {value}")


def _load_myid(loader: Loader) -> None:
    servers: tuple[ServerSpec, ...] = loader.fields["servers"]
    if not servers:
        return
    quorum = loader.is_quorum()
    if quorum:
        _check_quorum_limits(loader)
    data_dir: Path = loader.fields["data_dir"]
    myid_file = data_dir / "myid"
    if not myid_file.is_file():
        if quorum:
            raise ConfigError(str(myid_file), 0, "myid",
                              f"missing; a quorum member needs its server id (one of "
                              f"{_ids(servers)}) alone on the first line of this file")
        return
    server_id = _read_myid(myid_file)
    loader.fields["server_id"] = server_id
    loader.fields["myid_file"] = myid_file
    spec = next((s for s in servers if s.server_id == server_id), None)
    if spec is None:
        if quorum:
            raise ConfigError(str(myid_file), 1, "myid", f"{server_id} is not one of the servers in "
                                                        f"{loader.source} ({_ids(servers)})")
        return
    if loader.fields["extended_types_enabled"] and server_id > MAX_EXTENDED_SERVER_ID:
        raise ConfigError(str(myid_file), 1, "myid", f"{server_id} is too large: with "
                          f"extendedTypesEnabled=true server ids must be <= {MAX_EXTENDED_SERVER_ID}")
    _apply_own_spec(loader, spec)


def _apply_own_spec(loader: Loader, spec: ServerSpec) -> None:
    """QuorumPeerConfig.setupClientPort / setupPeerType: this server's own server.N line wins."""
    role = spec.role
    peer = loader.get("peerType")
    if peer is not None and loader.fields.get("peer_type", PeerType.PARTICIPANT) is not role:
        loader.warn(peer.origin, f"says {peer.value!r} but server.{spec.server_id} is a {role.value}; "
                                 "the server list wins")
    loader.fields["peer_type"] = role
    if spec.client_port is None:
        return
    port, host = loader.fields["client_port"], loader.fields["client_port_address"]
    if port is not None and not _same_client_address(host, port, spec.client_host, spec.client_port):
        origin = (loader.get("clientPortAddress") or loader.settings["clientPort"]).origin
        raise ConfigError.at(origin, f"{host or '0.0.0.0'}:{port} differs from the client address "
                                     f"{spec.client_host}:{spec.client_port} of server.{spec.server_id} "
                                     f"(line {spec.line})")
    loader.fields["client_port"] = spec.client_port
    loader.fields["client_port_address"] = spec.client_host


def _ids(servers: Iterable[ServerSpec]) -> str:
    return ", ".join(str(s.server_id) for s in servers)


def _read_myid(path: Path) -> int:
    """setupMyId: the first line, as Long.parseLong reads it (no trimming)."""
    try:
        with open(path, encoding="latin-1", newline=None) as f:
            first = f.readline().rstrip("\n")
    except OSError as e:
        raise ConfigError(str(path), 0, "myid", f"cannot be read: {e.strerror}") from None
    try:
        return parse_java_int(first, 64)
    except ValueError:
        raise ConfigError(str(path), 1, "myid", f"{first!r} is not a server id (a decimal number alone on "
                                                "the first line)") from None


def _same_client_address(host: str | None, port: int, other_host: str | None, other_port: int) -> bool:
    if port != other_port:
        return False
    if host in (None, "0.0.0.0", "::") or host == other_host:
        return True  # Apache compares only the port when the static address is a wildcard
    try:
        mine = {a[4][0] for a in socket.getaddrinfo(host, port)}
        theirs = {a[4][0] for a in socket.getaddrinfo(other_host, other_port)}
    except OSError:
        return False
    return bool(mine & theirs)

def read_dynamic_file(path: Path, pointer: Setting) -> tuple[str, dict[str, Setting]]:
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as e:
        raise ConfigError.at(pointer.origin, f"cannot read {path}: {e.strerror}") from None
    try:
        entries = parse_properties(text)
    except PropertiesSyntaxError as e:
        raise ConfigError(str(path), e.line, e.key, e.problem) from None
    settings: dict[str, Setting] = {}
    for entry in entries:
        key, value = java_trim(entry.key), java_trim(entry.value)
        origin = Origin(str(path), entry.line, key)
        if key == "version":
            raise ConfigError.at(origin, "must not be inside a dynamic config file (its version is the "
                                         "file name's suffix)")
        if not is_quorum_key(key):
            raise ConfigError.at(origin, "only server.N, group.N and weight.N belong in a dynamic config file")
        settings[key] = Setting(value, origin)
    suffix = path.name.rsplit(".", 1)[-1] if "." in path.name else ""
    if re.fullmatch(r"[0-9a-fA-F]+", suffix):
        settings["version"] = Setting(suffix, Origin(str(path), 0, "version"))
    return str(path), settings


class QuorumParser:
    """server.N and version (QuorumMaj, parseDynamicConfig); group.N and weight.N (QuorumHierarchical,
    zkfast.config.hierarchy)."""

    def __init__(self, loader: Loader, where: str, settings: Mapping[str, Setting]) -> None:
        self.loader = loader
        self.where = where
        self.settings = settings

    def parse(self) -> None:
        servers: dict[int, ServerSpec] = {}
        for key, setting in self.settings.items():
            if key.startswith("server."):
                spec = self._server(key, setting)
                servers[spec.server_id] = spec
        version = self.settings.get("version")
        if version is not None:
            try:
                self.loader.fields["quorum_config_version"] = int(version.value, 16)
            except ValueError:
                raise ConfigError.at(version.origin, f"must be a hexadecimal number, got "
                                                     f"{version.value!r}") from None
        ordered = tuple(servers[sid] for sid in sorted(servers))
        hierarchy = hierarchy_of(self.settings, ordered, self.where)
        self._check_counts(ordered, hierarchy is not None)
        self.loader.fields["servers"] = ordered
        self.loader.fields["quorum_hierarchy"] = hierarchy

    def _server(self, key: str, setting: Setting) -> ServerSpec:
        sid = numbered_key(key, "server", setting.origin)
        fail = _server_error(setting)
        parts = setting.value.split(";")
        if len(parts) > 2:
            raise fail("more than one ';'")
        client_host: str | None = None
        client_port: int | None = None
        if len(parts) == 2:
            try:
                client = split_host_port(parts[1])
            except ValueError as e:
                raise fail(str(e)) from None
            if len(client) > 2 or not client[-1]:
                raise fail(f"client part {parts[1]!r} must be clientPort or clientHost:clientPort")
            client_host = client[0] if len(client) == 2 else "0.0.0.0"
            client_port = _port_or_fail(client[-1], "client port", fail)
        groups = parts[0].split("|")
        if len(groups) > 1 and not self.loader.fields["multi_address_enabled"]:
            raise fail("several '|'-separated addresses need multiAddress.enabled=true")
        addresses: list[QuorumAddress] = []
        role: PeerType | None = None
        for group in groups:
            address, group_role = self._address(group, fail)
            if role is not None and group_role is not None and group_role is not role:
                raise fail("all addresses of one server must have the same role")
            role = role or group_role
            addresses.append(address)
        first = addresses[0]
        return ServerSpec(sid, first.host, first.quorum_port, first.election_port, role or PeerType.PARTICIPANT,
                          client_host, client_port, tuple(addresses), setting.origin.line or 0)

    def _address(self, text: str, fail: Callable[[str], ConfigError]) -> tuple[QuorumAddress, PeerType | None]:
        try:
            parts = split_host_port(text)
        except ValueError as e:
            raise fail(str(e)) from None
        if len(parts) < 3:
            raise fail(f"{text!r} needs host:quorumPort:electionPort (the election port is missing)")
        if len(parts) > 4:
            raise fail(f"{text!r} has too many ':'-separated parts")
        if not parts[0]:
            raise fail("the host is empty")
        quorum = _port_or_fail(parts[1], "quorum port", fail)
        election = _port_or_fail(parts[2], "election port", fail)
        if quorum == election:
            raise fail(f"the quorum port and the election port must differ (both are {quorum})")
        role = None
        if len(parts) == 4:
            try:
                role = PeerType(parts[3].strip().lower())
            except ValueError:
                raise fail(f"role must be 'participant' or 'observer', got {parts[3]!r}") from None
        return QuorumAddress(parts[0], quorum, election), role

    def _check_counts(self, servers: tuple[ServerSpec, ...], hierarchical: bool) -> None:
        """parseDynamicConfig's rules on how many voters and observers make sense."""
        voters = [s for s in servers if s.is_voter]
        observers = [s for s in servers if not s.is_voter]
        standalone_enabled = self.loader.fields["standalone_enabled"]
        first = Origin(self.where, servers[0].line if servers else 0,
                       f"server.{servers[0].server_id}" if servers else "server.N")
        if not voters:
            if not standalone_enabled and not observers:
                pointer = self.loader.get("standaloneEnabled")
                raise ConfigError.at(pointer.origin if pointer else first,
                                     "standaloneEnabled=false needs at least one participant server.N line")
            if observers:
                raise ConfigError.at(first, "observers without any participant is not a valid ensemble")
        elif len(voters) == 1 and standalone_enabled:
            if observers:
                raise ConfigError.at(first, "observers need a quorum (more than one participant, or "
                                            "standaloneEnabled=false)")
            self.loader.warn(first, "only one participant is listed, so this runs as a standalone server "
                                    "(set standaloneEnabled=false for a one-member quorum)")
        elif len(voters) <= 2:
            self.loader.warn(first, f"{len(voters)} participants tolerate no failed server; use at least 3")
        elif len(voters) % 2 == 0 and not hierarchical:  # with groups, their count is what matters
            self.loader.warn(first, f"{len(voters)} participants tolerate no more failures than "
                                    f"{len(voters) - 1} would; an odd number is better")


def hierarchy_of(settings: Mapping[str, Setting], servers: Iterable[ServerSpec], where: str) -> Hierarchy | None:
    """The groups and weights among settings (None: a plain majority), checked against servers."""
    return parse_hierarchy(settings, {s.server_id: Origin(where, s.line or None, f"server.{s.server_id}")
                                      for s in servers if s.is_voter})


def parse_server_entry(key: str, value: str, where: str = "reconfig",
                       multi_address_enabled: bool = False) -> ServerSpec:
    """One `server.N=...` entry that comes from outside a file (a reconfig's joining servers or new
    members); ConfigError when it is malformed."""
    loader = SimpleNamespace(fields={"multi_address_enabled": multi_address_enabled})
    parser = QuorumParser(loader, where, {})  # type: ignore[arg-type]
    return parser._server(key.strip(), Setting(value.strip(), Origin(where, None, key.strip())))


def _server_error(setting: Setting) -> Callable[[str], ConfigError]:
    def fail(problem: str) -> ConfigError:
        return ConfigError.at(setting.origin, f"{problem}; expected host:quorumPort:electionPort"
                                              f"[:participant|observer][;[clientHost:]clientPort], got "
                                              f"{setting.value!r}")
    return fail


def _port_or_fail(text: str, what: str, fail: Callable[[str], ConfigError]) -> int:
    try:
        return parse_port(text)
    except ValueError:
        raise fail(f"{what} {text!r} is not a port number 1-65535") from None
