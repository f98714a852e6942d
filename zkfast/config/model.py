"""What a loaded configuration is: `ServerConfig` and the `server.N` entries it lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from zkfast.config.describe import describe_config
from zkfast.config.hierarchy import Hierarchy
from zkfast.config.keys import DEFAULT_QUORUM_CNXN_THREADS
from zkfast.limits import DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS
from zkfast.net.throttle import ThrottleSettings

EMBEDDED_SOURCE = "<embedded default>"

# ZooKeeperServer.DEFAULT_TICK_TIME: used when zoo.cfg has no tickTime at all.
DEFAULT_TICK_TIME_MS = 3000
DEFAULT_MAX_CLIENT_CNXNS = 60
MIN_SNAP_RETAIN_COUNT = 3
DEFAULT_METRICS_PROVIDER = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
# EphemeralType.MAX_EXTENDED_SERVER_ID: the server id lives in one byte of a TTL node's ephemeralOwner.
MAX_EXTENDED_SERVER_ID = 254


@dataclass(frozen=True)
class QuorumSasl:
    """quorum.auth.* of QuorumPeerConfig: SASL between ensemble members (zkfast.quorum.auth)."""

    enabled: bool = False            # quorum.auth.enableSasl
    server_required: bool = False    # quorum.auth.serverRequireSasl
    learner_required: bool = False   # quorum.auth.learnerRequireSasl
    learner_login_context: str = "QuorumLearner"  # quorum.auth.learner.saslLoginContext
    server_login_context: str = "QuorumServer"    # quorum.auth.server.saslLoginContext


class PeerType(StrEnum):
    PARTICIPANT = "participant"
    OBSERVER = "observer"


class QuorumAddress(NamedTuple):
    host: str
    quorum_port: int
    election_port: int


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One `server.N=host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]` line."""

    server_id: int
    host: str
    quorum_port: int
    election_port: int
    role: PeerType
    client_host: str | None  # "0.0.0.0" when only a client port is given, as in Apache
    client_port: int | None
    addresses: tuple[QuorumAddress, ...]  # all `|`-separated groups (multiAddress); [0] is the one above
    line: int = 0

    @property
    def is_voter(self) -> bool:
        return self.role is PeerType.PARTICIPANT

    def value(self) -> str:
        def host(h: str) -> str:
            return f"[{h}]" if ":" in h else h
        text = "|".join(f"{host(a.host)}:{a.quorum_port}:{a.election_port}" for a in self.addresses)
        text += f":{self.role.value}"
        if self.client_port is not None:
            text += f";{host(self.client_host or '0.0.0.0')}:{self.client_port}"
        return text


def is_distributed(servers: Sequence[ServerSpec], standalone_enabled: bool) -> bool:
    """QuorumPeerConfig.isDistributed: servers listed and (standaloneEnabled=false or > 1 voter)."""
    return bool(servers) and (not standalone_enabled or sum(s.is_voter for s in servers) > 1)


def frozen_map(data: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True)
class ServerConfig:
    """Everything a zkfast server needs to know, checked. Durations carry their unit in their name."""

    data_dir: Path
    data_log_dir: Path
    source: str = EMBEDDED_SOURCE  # the zoo.cfg path as given, or EMBEDDED_SOURCE
    client_port: int | None = None  # None: no plain client port
    client_port_address: str | None = None  # None: all interfaces (wildcard)
    secure_client_port: int | None = None
    secure_client_port_address: str | None = None
    tick_time_ms: int = DEFAULT_TICK_TIME_MS
    max_client_cnxns: int = DEFAULT_MAX_CLIENT_CNXNS  # per client IP; 0 = no limit
    min_session_timeout_ms: int = 2 * DEFAULT_TICK_TIME_MS  # effective (the -1 default already applied)
    max_session_timeout_ms: int = 20 * DEFAULT_TICK_TIME_MS
    client_port_listen_backlog: int = -1  # -1: the OS default
    init_limit_ticks: int | None = None
    sync_limit_ticks: int | None = None
    election_alg: int = 3
    peer_type: PeerType = PeerType.PARTICIPANT
    sync_enabled: bool = True
    autopurge_snap_retain_count: int = MIN_SNAP_RETAIN_COUNT
    autopurge_purge_interval_hours: int = 0  # 0 = never purge
    standalone_enabled: bool = True
    reconfig_enabled: bool = False
    local_sessions_enabled: bool = False
    local_sessions_upgrading_enabled: bool = False
    quorum_listen_on_all_ips: bool = False
    multi_address_enabled: bool = False
    ssl_quorum: bool = False  # sslQuorum: TLS on the quorum and election ports (the ssl.quorum.* keys)
    port_unification: bool = False  # portUnification: those ports also accept plaintext peers
    ssl_quorum_reload_cert_files: bool = False  # sslQuorumReloadCertFiles
    quorum_sasl: QuorumSasl = QuorumSasl()
    # quorum.cnxn.threads.size: election connections being set up (connected, not yet authenticated) at once
    quorum_cnxn_threads_size: int = DEFAULT_QUORUM_CNXN_THREADS
    dynamic_config_file: Path | None = None
    metrics_provider_class_name: str = DEFAULT_METRICS_PROVIDER
    metrics_provider_config: Mapping[str, str] = field(default_factory=frozen_map)
    servers: tuple[ServerSpec, ...] = ()
    quorum_config_version: int = 0  # `version` of the quorum config (hex in the file)
    quorum_hierarchy: Hierarchy | None = None  # group.N/weight.N; None: a plain majority
    server_id: int = 0  # myid; 0 in standalone mode
    myid_file: Path | None = None  # the myid file read, if any
    other_settings: Mapping[str, str] = field(default_factory=frozen_map)  # accepted, no effect in zkfast
    system_properties: Mapping[str, str] = field(default_factory=frozen_map)  # full names
    # --- typed system properties (zoo.cfg key in the comment; Apache's default)
    snap_count: int = 100000  # snapCount
    snap_size_limit_kb: int = 4194304  # snapSizeLimitInKb; <= 0 disables
    pre_alloc_size_kb: int = 65536  # preAllocSize
    global_outstanding_limit: int = 1000  # globalOutstandingLimit
    force_sync: bool = True  # forceSync=yes|no
    four_letter_words_enabled: frozenset[str] = frozenset({"srvr"})  # 4lw.commands.whitelist
    admin_enable_server: bool = True  # admin.enableServer
    admin_server_address: str = "0.0.0.0"  # admin.serverAddress
    admin_server_port: int = 8080  # admin.serverPort
    admin_command_url: str = "/commands"  # admin.commandURL
    admin_idle_timeout_ms: int = 30000  # admin.idleTimeout
    extended_types_enabled: bool = False  # extendedTypesEnabled
    skip_acl: bool = False  # skipACL=yes|no
    digest_enabled: bool = True  # digest.enabled
    close_session_txn_enabled: bool = True  # closeSessionTxn.enabled
    enforce_quota: bool = False  # enforceQuota: hard quotas (setquota -N/-B) refuse with QUOTAEXCEEDED
    election_port_bind_retry: int = 3  # electionPortBindRetry; 0 = forever
    cnx_timeout_ms: int = 5000  # cnxTimeout
    leader_serves: bool = True  # leaderServes=yes|no
    max_cnxns: int = 0  # maxCnxns, all clients together; 0 = no limit
    sessionless_cnxn_timeout_ms: int = DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS  # nio.sessionlessCnxnTimeout
    # netty.server.outstandingHandshake.limit: TLS handshakes in progress at once; <= 0 = zkfast's bound
    # MAX_PENDING_TLS_HANDSHAKES (Apache: no limit)
    outstanding_handshake_limit: int = -1
    connection_throttle: ThrottleSettings = ThrottleSettings()  # connection_throttle_*
    super_digest: str | None = None  # DigestAuthenticationProvider.superDigest = super:base64(sha1)
    auth_providers: Mapping[str, str] = field(default_factory=frozen_map)  # authProvider.N → class
    ssl_properties: Mapping[str, str] = field(default_factory=frozen_map)  # zookeeper.ssl.* (full names)
    sasl_properties: Mapping[str, str] = field(default_factory=frozen_map)  # SASL/Kerberos (full names)
    datadir_autocreate: bool = True  # datadir.autocreate
    fsync_warning_threshold_ms: int = 1000  # fsync.warningthresholdms
    container_check_interval_ms: int = 60000  # znode.container.checkIntervalMs (bare property)
    container_max_per_minute: int = 10000  # znode.container.maxPerMinute (bare property)
    container_max_never_used_interval_ms: int = 0  # znode.container.maxNeverUsedIntervalMs (bare)
    read_only_mode_enabled: bool = False  # readonlymode.enabled (bare property)
    jute_max_buffer_bytes: int = 0xFFFFF  # jute.maxbuffer (bare property)
    warnings: tuple[str, ...] = ()  # what load_config logged as warnings

    # --- derived facts
    @property
    def voters(self) -> tuple[ServerSpec, ...]:
        return tuple(s for s in self.servers if s.is_voter)

    @property
    def observers(self) -> tuple[ServerSpec, ...]:
        return tuple(s for s in self.servers if not s.is_voter)

    @property
    def is_quorum(self) -> bool:
        return is_distributed(self.servers, self.standalone_enabled)

    @property
    def is_standalone(self) -> bool:
        return not self.is_quorum

    @property
    def myself(self) -> ServerSpec | None:
        return next((s for s in self.servers if s.server_id == self.server_id), None)

    def four_letter_word_allowed(self, cmd: str) -> bool:
        return cmd in self.four_letter_words_enabled

    def local_client_address(self) -> tuple[str, int] | None:
        """Where a local tool (status, start) reaches the client port: wildcards become loopback."""
        if self.client_port is None:
            return None
        host = self.client_port_address
        if host in (None, "", "0.0.0.0"):
            host = "127.0.0.1"
        elif host in ("::", "0:0:0:0:0:0:0:0"):
            host = "::1"
        return host, self.client_port

    def describe(self) -> str:
        """The effective configuration as zoo.cfg lines; load_config() of the text gives this config back."""
        return describe_config(self)

    # Last in the class body on purpose: below this line `property` is this method, not the builtin.
    def property(self, name: str, default: str | None = None) -> str | None:
        """A raw system property by full name (`zookeeper.snapCount`, `jute.maxbuffer`)."""
        return self.system_properties.get(name, default)
