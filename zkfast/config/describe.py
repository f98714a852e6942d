"""ServerConfig → zoo.cfg text: the effective configuration, written so that loading it gives the same
config back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from zkfast.config.keys import (
    DEFAULT_QUORUM_CNXN_THREADS,
    DIRECT_KEYS,
    FOUR_LETTER_WORDS,
    PROPERTY_PREFIX,
    QUORUM_SASL_KEYS,
)
from zkfast.config.properties import escape_property
from zkfast.config.schema import PROPERTY_SPECS, THROTTLE_SPECS
from zkfast.config.values import parse_yes_no

if TYPE_CHECKING:
    from zkfast.config.model import ServerConfig


def describe_config(cfg: ServerConfig) -> str:
    lines = [f"# effective configuration from {cfg.source}"]

    def put(key: str, value: object) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append(f"{escape_property(key, True)}={escape_property(str(value), False)}")

    put("dataDir", cfg.data_dir)
    put("dataLogDir", cfg.data_log_dir)
    if cfg.client_port is not None and not (cfg.is_quorum and cfg.myself and cfg.myself.client_port):
        put("clientPort", cfg.client_port)
        if cfg.client_port_address is not None:
            put("clientPortAddress", cfg.client_port_address)
    if cfg.secure_client_port is not None:
        put("secureClientPort", cfg.secure_client_port)
        if cfg.secure_client_port_address is not None:
            put("secureClientPortAddress", cfg.secure_client_port_address)
    for key, value in (
        ("tickTime", cfg.tick_time_ms), ("maxClientCnxns", cfg.max_client_cnxns),
        ("minSessionTimeout", cfg.min_session_timeout_ms), ("maxSessionTimeout", cfg.max_session_timeout_ms),
        ("clientPortListenBacklog", cfg.client_port_listen_backlog),
        ("initLimit", cfg.init_limit_ticks), ("syncLimit", cfg.sync_limit_ticks),
        ("electionAlg", cfg.election_alg), ("syncEnabled", cfg.sync_enabled),
        ("autopurge.snapRetainCount", cfg.autopurge_snap_retain_count),
        ("autopurge.purgeInterval", cfg.autopurge_purge_interval_hours),
        ("standaloneEnabled", cfg.standalone_enabled), ("reconfigEnabled", cfg.reconfig_enabled),
        ("localSessionsEnabled", cfg.local_sessions_enabled),
        ("localSessionsUpgradingEnabled", cfg.local_sessions_upgrading_enabled),
        ("quorumListenOnAllIPs", cfg.quorum_listen_on_all_ips),
        ("multiAddress.enabled", cfg.multi_address_enabled), ("sslQuorum", cfg.ssl_quorum),
        ("portUnification", cfg.port_unification), ("sslQuorumReloadCertFiles", cfg.ssl_quorum_reload_cert_files),
        ("metricsProvider.className", cfg.metrics_provider_class_name),
    ):
        if value is not None:
            put(key, value)
    if cfg.is_quorum:
        put("peerType", cfg.peer_type.value)
    for key, value in cfg.metrics_provider_config.items():
        put(f"metricsProvider.{key}", value)
    for key, value in cfg.other_settings.items():
        put(key, value)
    if cfg.quorum_sasl.enabled:
        for key, name in QUORUM_SASL_KEYS.items():
            put(key, getattr(cfg.quorum_sasl, name))
    if cfg.quorum_cnxn_threads_size != DEFAULT_QUORUM_CNXN_THREADS:
        put("quorum.cnxn.threads.size", cfg.quorum_cnxn_threads_size)
    _describe_quorum(cfg, put, lines)
    _describe_properties(cfg, put)
    return "\n".join(lines) + "\n"


def _describe_quorum(cfg: ServerConfig, put: Callable[[str, object], None], lines: list[str]) -> None:
    if cfg.dynamic_config_file is not None:
        put("dynamicConfigFile", cfg.dynamic_config_file)
    else:
        for spec in cfg.servers:
            put(f"server.{spec.server_id}", spec.value())
        for line in cfg.quorum_hierarchy.lines() if cfg.quorum_hierarchy is not None else ():
            put(*line.split("=", 1))
        if cfg.quorum_config_version:
            put("version", f"{cfg.quorum_config_version:x}")
    if cfg.myid_file is not None:
        lines.append(f"# myid={cfg.server_id} (from {cfg.myid_file})")


def _describe_properties(cfg: ServerConfig, put: Callable[[str, object], None]) -> None:
    for spec in PROPERTY_SPECS:
        value = getattr(cfg, spec.field)
        if spec.parse is parse_yes_no:
            value = "yes" if value else "no"
        put(spec.name, value)
    for spec in THROTTLE_SPECS:
        put(spec.name, getattr(cfg.connection_throttle, spec.field))
    words = cfg.four_letter_words_enabled
    put("4lw.commands.whitelist", "*" if words == FOUR_LETTER_WORDS else ",".join(sorted(words)))
    if cfg.super_digest is not None:
        put("DigestAuthenticationProvider.superDigest", cfg.super_digest)
    shown = {PROPERTY_PREFIX + s.name for s in (*PROPERTY_SPECS, *THROTTLE_SPECS)} | {
        PROPERTY_PREFIX + k for k in DIRECT_KEYS} | {
        "zookeeper.4lw.commands.whitelist", "zookeeper.DigestAuthenticationProvider.superDigest"}
    for name, value in sorted(cfg.system_properties.items()):
        if name.startswith(PROPERTY_PREFIX) and name not in shown and not name.startswith("zookeeper.log."):
            put(name[len(PROPERTY_PREFIX):], value)
