"""One load of a config: settings and system properties collected with their origins, then checked
and typed into a ServerConfig (the ensemble part in quorum.py)."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zkfast.config.jvmflags import environment_properties
from zkfast.config.keys import (
    APACHE_PROPERTY_KEYS,
    DEFAULT_QUORUM_CNXN_THREADS,
    DIRECT_KEYS,
    FOUR_LETTER_WORDS,
    IGNORED_DIRECT_KEYS,
    PROPERTY_PREFIX,
    QUORUM_SASL_KEYS,
    SASL_PROPERTY_KEYS,
    is_apache_property,
    is_direct_or_quorum_key,
    zkfast_reads,
)
from zkfast.config.model import (
    DEFAULT_MAX_CLIENT_CNXNS,
    DEFAULT_METRICS_PROVIDER,
    DEFAULT_TICK_TIME_MS,
    MIN_SNAP_RETAIN_COUNT,
    PeerType,
    QuorumSasl,
    ServerConfig,
    frozen_map,
    is_distributed,
)
from zkfast.config.properties import PropertyLine, java_trim
from zkfast.config.quorum import load_quorum
from zkfast.config.schema import (
    BARE_PROPERTIES,
    PROPERTY_SPECS,
    THROTTLE_PREFIX,
    THROTTLE_SPECS,
    TYPED_PROPERTY_NAMES,
    PropSpec,
)
from zkfast.config.setting import ConfigError, Origin, Setting
from zkfast.config.unsupported import unsupported_setting
from zkfast.config.values import parse_java_int, parse_port, parse_true_false
from zkfast.net.throttle import ThrottleSettings

# one logger for the whole package: the name operators' logging settings already use
log = logging.getLogger(__package__)

# every typed property lands in a ServerConfig field of its name
assert {s.field for s in PROPERTY_SPECS} <= {f.name for f in dataclasses.fields(ServerConfig)}


class Loader:
    """One load: collects settings and properties with their origins, then checks and types them."""

    def __init__(self, source: str, entries: list[PropertyLine], extra: Mapping[str, str],
                 environ: Mapping[str, str]) -> None:
        self.source = source
        self.warnings: list[str] = []
        self.settings: dict[str, Setting] = {}
        self.props: dict[str, Setting] = {}
        self.fields: dict[str, Any] = {"source": source}
        for key, value, where in environment_properties(environ):
            self.props[key] = Setting(value, Origin(where, None, key))
        for key, value in extra.items():
            origin = Origin("command line -D", None, key)
            self.props[key] = Setting(value, origin)
            if not key.startswith(PROPERTY_PREFIX) and key not in BARE_PROPERTIES:
                self.warn(origin, f"zkfast does not read this property (did you mean {PROPERTY_PREFIX}{key}?)")
        self._collect(entries)

    # -- reporting
    def warn(self, origin: Origin, message: str) -> None:
        text = f"{origin.location()}: {origin.key}: {message}"
        self.warnings.append(text)
        log.warning("%s", text)

    def info(self, origin: Origin, message: str) -> None:
        log.info("%s: %s: %s", origin.location(), origin.key, message)

    def missing(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, 0, key, problem)

    # -- collection
    def _collect(self, entries: list[PropertyLine]) -> None:
        for entry in entries:
            key, value = java_trim(entry.key), java_trim(entry.value)
            origin = Origin(self.source, entry.line, key)
            previous = self.settings.get(key)
            if previous is not None and previous.value != value:
                self.warn(origin, f"set again (line {previous.origin.line} said {previous.value!r}); "
                                  f"the later value {value!r} wins")
            self.settings[key] = Setting(value, origin)
        for key, setting in self.settings.items():
            if not is_direct_or_quorum_key(key):
                self.props[PROPERTY_PREFIX + key] = setting

    def get(self, key: str) -> Setting | None:
        return self.settings.get(key)

    def typed(self, key: str, parse: Callable[[str], Any], default: Any) -> Any:
        setting = self.settings.get(key)
        if setting is None:
            return default
        try:
            return parse(setting.value)
        except ValueError as e:
            raise ConfigError.at(setting.origin, str(e)) from None

    # -- the whole load
    def load(self) -> ServerConfig:
        self._load_paths()
        self._load_ports()
        self._load_timing()
        self._load_flags()
        self._load_metrics()
        self._load_quorum_auth()
        self._load_ignored_direct_keys()
        self._load_system_properties()
        self._check_apache_properties()
        self._warn_unknown_keys()
        load_quorum(self)
        self._check_client_port()
        self.fields["system_properties"] = frozen_map({k: s.value for k, s in self.props.items()})
        self.fields["warnings"] = tuple(self.warnings)
        return ServerConfig(**self.fields)

    def path(self, key: str) -> Path | None:
        setting = self.settings.get(key)
        if setting is None:
            return None
        if not setting.value:
            raise ConfigError.at(setting.origin, "must be a directory path, got an empty value")
        path = Path(setting.value)
        if not path.is_absolute():
            self.warn(setting.origin, f"{setting.value!r} is a relative path; it is taken relative to the "
                                      f"current directory {os.getcwd()}")
            path = Path.cwd() / path
        return path

    def _load_paths(self) -> None:
        data_dir = self.path("dataDir")
        if data_dir is None:
            raise self.missing("dataDir", "is required (the directory for snapshots, myid and, unless "
                                          "dataLogDir is set, the transaction log)")
        self.fields["data_dir"] = data_dir
        self.fields["data_log_dir"] = self.path("dataLogDir") or data_dir

    def _load_ports(self) -> None:
        # Apache treats clientPort=0 as "not set".
        port = self.typed("clientPort", lambda v: parse_port(v, allow_zero=True), 0) or None
        address = self.get("clientPortAddress")
        if address is not None and port is None:
            raise ConfigError.at(address.origin, "is set but clientPort is not")
        if address is not None and not address.value:
            raise ConfigError.at(address.origin, "must be a host name or IP address, got an empty value")
        self.fields["client_port"] = port
        self.fields["client_port_address"] = address.value if address else None
        secure = self.typed("secureClientPort", lambda v: parse_port(v, allow_zero=True), 0) or None
        secure_address = self.get("secureClientPortAddress")
        if secure_address is not None and secure is None:
            raise ConfigError.at(secure_address.origin, "is set but secureClientPort is not")
        self.fields["secure_client_port"] = secure
        self.fields["secure_client_port_address"] = secure_address.value if secure_address else None
        self.fields["client_port_listen_backlog"] = self.typed("clientPortListenBacklog", parse_java_int, -1)

    def _load_timing(self) -> None:
        tick = self.typed("tickTime", parse_java_int, DEFAULT_TICK_TIME_MS)
        if tick <= 0:
            raise ConfigError.at(self.settings["tickTime"].origin, f"must be a positive integer (ms), got {tick}")
        self.fields["tick_time_ms"] = tick
        timeouts = {}
        for key, factor in (("minSessionTimeout", 2), ("maxSessionTimeout", 20)):
            value = self.typed(key, parse_java_int, -1)
            if value < -1:
                raise ConfigError.at(self.settings[key].origin,
                                     f"must be -1 (= {factor} x tickTime) or a number of ms >= 0, got {value}")
            timeouts[key] = tick * factor if value == -1 else value
        if timeouts["minSessionTimeout"] > timeouts["maxSessionTimeout"]:
            culprit = self.get("minSessionTimeout") or self.get("maxSessionTimeout")
            assert culprit is not None  # the defaults (2x, 20x tickTime) are ordered
            raise ConfigError.at(culprit.origin, f"minSessionTimeout ({timeouts['minSessionTimeout']} ms) must "
                                                 f"not be larger than maxSessionTimeout "
                                                 f"({timeouts['maxSessionTimeout']} ms)")
        self.fields["min_session_timeout_ms"] = timeouts["minSessionTimeout"]
        self.fields["max_session_timeout_ms"] = timeouts["maxSessionTimeout"]
        max_cnxns = self.typed("maxClientCnxns", parse_java_int, DEFAULT_MAX_CLIENT_CNXNS)
        if max_cnxns < 0:
            raise ConfigError.at(self.settings["maxClientCnxns"].origin,
                                 f"must be >= 0 (0 = no limit), got {max_cnxns}")
        self.fields["max_client_cnxns"] = max_cnxns
        for key, name in (("initLimit", "init_limit_ticks"), ("syncLimit", "sync_limit_ticks")):
            self.fields[name] = self.typed(key, parse_java_int, None)
        alg = self.typed("electionAlg", parse_java_int, 3)
        if alg != 3:
            raise ConfigError.at(self.settings["electionAlg"].origin, f"only 3 is supported, got {alg}")
        self.fields["election_alg"] = alg
        retain = self.typed("autopurge.snapRetainCount", parse_java_int, MIN_SNAP_RETAIN_COUNT)
        if retain < MIN_SNAP_RETAIN_COUNT:
            self.warn(self.settings["autopurge.snapRetainCount"].origin,
                      f"{retain} is below the minimum; using {MIN_SNAP_RETAIN_COUNT}")
            retain = MIN_SNAP_RETAIN_COUNT
        self.fields["autopurge_snap_retain_count"] = retain
        self.fields["autopurge_purge_interval_hours"] = max(0, self.typed("autopurge.purgeInterval",
                                                                          parse_java_int, 0))

    def _load_flags(self) -> None:
        for key, name, default in (
            ("syncEnabled", "sync_enabled", True), ("standaloneEnabled", "standalone_enabled", True),
            ("reconfigEnabled", "reconfig_enabled", False),
            ("localSessionsEnabled", "local_sessions_enabled", False),
            ("localSessionsUpgradingEnabled", "local_sessions_upgrading_enabled", False),
            ("quorumListenOnAllIPs", "quorum_listen_on_all_ips", False),
            ("sslQuorum", "ssl_quorum", False), ("portUnification", "port_unification", False),
            ("sslQuorumReloadCertFiles", "ssl_quorum_reload_cert_files", False),
        ):
            self.fields[name] = self.typed(key, parse_true_false, default)
        peer = self.get("peerType")
        if peer is not None:
            try:
                self.fields["peer_type"] = PeerType(peer.value.lower())
            except ValueError:
                raise ConfigError.at(peer.origin, f"must be 'participant' or 'observer', got "
                                                  f"{peer.value!r}") from None
        # QuorumServer reads the system property, parseProperties the zoo.cfg key: either enables it.
        from_cfg = self.typed("multiAddress.enabled", parse_true_false, False)
        from_prop = self.props.get("zookeeper.multiAddress.enabled")
        self.fields["multi_address_enabled"] = from_cfg or (
            from_prop is not None and from_prop.value.lower() == "true")

    def _load_metrics(self) -> None:
        self.fields["metrics_provider_class_name"] = self.typed("metricsProvider.className", str,
                                                                DEFAULT_METRICS_PROVIDER)
        self.fields["metrics_provider_config"] = frozen_map({
            key[len("metricsProvider."):]: s.value for key, s in self.settings.items()
            if key.startswith("metricsProvider.") and key != "metricsProvider.className"})

    def _load_ignored_direct_keys(self) -> None:
        parsers: dict[str, Callable[[str], Any]] = {
            "str": str, "int": parse_java_int, "long": lambda v: parse_java_int(v, 64),
            "bool": parse_true_false}
        present = {key: setting for key in IGNORED_DIRECT_KEYS if (setting := self.get(key)) is not None}
        for key in present:
            self.typed(key, parsers[IGNORED_DIRECT_KEYS[key]], None)
        for key, setting in present.items():
            self.refuse_if_unsupported(key, setting)
            self.info(setting.origin, "accepted; it has no effect in zkfast")
        self.fields["other_settings"] = frozen_map({key: setting.value for key, setting in present.items()})

    def _load_quorum_auth(self) -> None:
        """quorum.auth.* with QuorumPeerConfig's consistency checks, and quorum.cnxn.threads.size."""
        values = {name: self.typed(key, str if name.endswith("_context") else parse_true_false,
                                   getattr(QuorumSasl(), name))
                  for key, name in QUORUM_SASL_KEYS.items()}
        sasl = QuorumSasl(**values)
        for required, key in ((sasl.server_required, "quorum.auth.serverRequireSasl"),
                              (sasl.learner_required, "quorum.auth.learnerRequireSasl")):
            if required and not sasl.enabled:
                raise ConfigError.at(self.settings[key].origin, "needs quorum.auth.enableSasl=true")
        if sasl.server_required and not sasl.learner_required:
            raise ConfigError.at(self.settings["quorum.auth.serverRequireSasl"].origin,
                                 "needs quorum.auth.learnerRequireSasl=true")
        self.fields["quorum_sasl"] = sasl
        # QuorumPeer.setQuorumCnxnThreadsSize: only a value above the default changes it
        threads = self.typed("quorum.cnxn.threads.size", parse_java_int, DEFAULT_QUORUM_CNXN_THREADS)
        self.fields["quorum_cnxn_threads_size"] = max(threads, DEFAULT_QUORUM_CNXN_THREADS)

    def refuse_if_unsupported(self, name: str, setting: Setting) -> None:
        """Stop here if `setting` asks for something zkfast lacks and ignoring it would weaken safety."""
        spec = unsupported_setting(name)
        if spec is None:
            return
        try:
            refused = spec.refuses(setting.value)
        except ValueError as e:
            raise ConfigError.at(setting.origin, str(e)) from None
        if refused:
            raise ConfigError.at(setting.origin, f"zkfast does not implement {spec.feature}, and ignoring "
                                                 f"{setting.value!r} would weaken {spec.weakens}: "
                                                 f"{spec.consequence}. Remove the setting to run zkfast "
                                                 "without it, or keep Apache ZooKeeper for this server")

    # -- system properties
    def _prop(self, name: str, bare: bool) -> Setting | None:
        """A property's setting. Bare properties: a bare -D wins over zoo.cfg's `zookeeper.`-prefixed one."""
        prefixed = self.props.get(PROPERTY_PREFIX + name)
        if not bare:
            return prefixed
        plain = self.props.get(name)
        if plain is not None and prefixed is not None and plain.value != prefixed.value:
            self.warn(prefixed.origin, f"-D{name}={plain.value} ({plain.origin.where}) wins over this "
                                       f"{prefixed.value!r}, as in Apache ZooKeeper")
        return plain or prefixed

    def _typed_prop(self, spec: PropSpec) -> Any:
        setting = self._prop(spec.name, spec.bare)
        if setting is None:
            return spec.default
        try:
            return spec.parse(setting.value)
        except ValueError as e:
            raise ConfigError.at(setting.origin, str(e)) from None

    def _load_system_properties(self) -> None:
        for spec in PROPERTY_SPECS:
            self.fields[spec.field] = self._typed_prop(spec)
        self.fields["connection_throttle"] = self._connection_throttle()
        snap = self._prop("snapCount", False)
        if snap is not None and self.fields["snap_count"] < 2:
            self.warn(snap.origin, f"{self.fields['snap_count']} is below 2; using 2 (as Apache ZooKeeper)")
            self.fields["snap_count"] = 2
        digest = self._prop("DigestAuthenticationProvider.superDigest", False)
        if digest is not None and ":" not in digest.value:
            raise ConfigError.at(digest.origin, "must be 'super:<base64 sha1 digest>' (see "
                                                "DigestAuthenticationProvider.generateDigest)")
        self.fields["super_digest"] = digest.value if digest else None
        self.fields["four_letter_words_enabled"] = self._four_letter_words()
        self.fields["auth_providers"] = self._props_under("authProvider.", strip=True)
        self.fields["ssl_properties"] = self._props_under("ssl.", strip=False)
        self.fields["sasl_properties"] = frozen_map({
            PROPERTY_PREFIX + k: self.props[PROPERTY_PREFIX + k].value for k in sorted(SASL_PROPERTY_KEYS)
            if PROPERTY_PREFIX + k in self.props})

    def _connection_throttle(self) -> ThrottleSettings:
        values = {spec.field: self._typed_prop(spec) for spec in THROTTLE_SPECS}
        # BlueThrottle's static initialiser: a session kind cheaper than a local session costs as much
        local = values["local_session_weight"]
        for kind in ("global", "renew"):
            key = f"{THROTTLE_PREFIX}{kind}_session_weight"
            if values[f"{kind}_session_weight"] < local:
                # blame the setting that made it so: this weight, or else the local weight above its default
                setting = self._prop(key, False) or self._prop(f"{THROTTLE_PREFIX}local_session_weight", False)
                assert setting is not None  # the defaults (3, 2) are not below the default 1
                self.warn(setting.origin, f"{key} ({values[f'{kind}_session_weight']}) is below "
                                          f"{THROTTLE_PREFIX}local_session_weight ({local}); using {local} "
                                          "(as Apache ZooKeeper)")
                values[f"{kind}_session_weight"] = local
        return ThrottleSettings(**values)

    def _props_under(self, prefix: str, strip: bool) -> Mapping[str, str]:
        full = PROPERTY_PREFIX + prefix
        return frozen_map({(k[len(full):] if strip else k): s.value
                           for k, s in sorted(self.props.items()) if k.startswith(full)})

    def _four_letter_words(self) -> frozenset[str]:
        """FourLetterCommands.isEnabled: comma list, '*' = all; srvr always; isro with read-only mode."""
        setting = self._prop("4lw.commands.whitelist", False)
        enabled = {"srvr"}
        if self.fields["read_only_mode_enabled"]:
            enabled.add("isro")
        if setting is None:
            return frozenset(enabled)
        for word in (w.strip() for w in setting.value.split(",")):
            if word == "*":
                return FOUR_LETTER_WORDS
            if word and word not in FOUR_LETTER_WORDS:
                self.warn(setting.origin, f"{word!r} is not a four-letter word command (known: "
                                          f"{', '.join(sorted(FOUR_LETTER_WORDS))})")
            elif word:
                enabled.add(word)
        return frozenset(enabled)

    def _check_apache_properties(self) -> None:
        """Refuse what zkfast cannot honour; name the Apache properties it accepts without acting on them."""
        for full, setting in self.props.items():
            name = full[len(PROPERTY_PREFIX):]
            if not full.startswith(PROPERTY_PREFIX) or is_direct_or_quorum_key(name) or not is_apache_property(name):
                continue
            self.refuse_if_unsupported(name, setting)
            if not zkfast_reads(name):
                self.info(setting.origin, "accepted; it has no effect in zkfast")

    def _warn_unknown_keys(self) -> None:
        for key, setting in self.settings.items():
            if is_direct_or_quorum_key(key) or zkfast_reads(key) or is_apache_property(key):
                continue
            known = sorted(DIRECT_KEYS | TYPED_PROPERTY_NAMES | APACHE_PROPERTY_KEYS)
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.warn(setting.origin, f"unknown setting, ignored{hint}; it only sets the system property "
                                      f"zookeeper.{key}")

    def is_quorum(self) -> bool:
        return is_distributed(self.fields.get("servers", ()), self.fields["standalone_enabled"])

    def _check_client_port(self) -> None:
        if self.fields["client_port"] is None and self.fields["secure_client_port"] is None:
            if not self.is_quorum():
                raise self.missing("clientPort", "is required: a standalone server needs clientPort (or "
                                                 "secureClientPort) to serve clients")
