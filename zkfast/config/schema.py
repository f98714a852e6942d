"""The system properties zkfast types into ServerConfig fields: each one's key, field, parser and
Apache's default, in one table that loading and describe() both read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from zkfast.config.values import (
    parse_java_decode,
    parse_java_int,
    parse_probability,
    parse_true_false,
    parse_yes_no,
)
from zkfast.limits import DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS
from zkfast.net.throttle import ThrottleSettings

THROTTLE_PREFIX = "connection_throttle_"


class PropSpec(NamedTuple):
    name: str  # the zoo.cfg key (= property name without "zookeeper." unless bare)
    bare: bool  # Apache reads the property without the "zookeeper." prefix
    field: str
    parse: Callable[[str], Any]
    default: Any


def _at_least(low: int, parse: Callable[[str], int], meaning: str = "") -> Callable[[str], int]:
    def parse_bounded(value: str) -> int:
        number = parse(value)
        if number < low:
            raise ValueError(f"must be >= {low}{meaning}, got {number}")
        return number
    return parse_bounded


def _admin_enable(value: str) -> bool:
    # AdminServerFactory: enabled unless the property is exactly "false"; reject what would mislead.
    if value == "false" or value.lower() == "true":
        return value != "false"
    raise ValueError(f"must be 'true' or 'false', got {value!r} (Apache ZooKeeper treats anything but "
                     "'false' as true)")


def _admin_port(value: str) -> int:
    port = parse_java_decode(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"must be a port number 1-65535, got {value}")
    return port


def _decode32(value: str) -> int:
    return parse_java_decode(value)


def _decode64(value: str) -> int:
    return parse_java_decode(value, 64)


def _long_decimal(value: str) -> int:
    return parse_java_int(value, 64)


PROPERTY_SPECS: tuple[PropSpec, ...] = (
    PropSpec("snapCount", False, "snap_count", _decode32, 100000),
    PropSpec("snapSizeLimitInKb", False, "snap_size_limit_kb", _decode64, 4194304),
    PropSpec("preAllocSize", False, "pre_alloc_size_kb", _at_least(0, _long_decimal), 65536),
    PropSpec("globalOutstandingLimit", False, "global_outstanding_limit", _at_least(0, _decode32), 1000),
    PropSpec("forceSync", False, "force_sync", parse_yes_no, True),
    PropSpec("admin.enableServer", False, "admin_enable_server", _admin_enable, True),
    PropSpec("admin.serverAddress", False, "admin_server_address", str, "0.0.0.0"),
    PropSpec("admin.serverPort", False, "admin_server_port", _admin_port, 8080),
    PropSpec("admin.commandURL", False, "admin_command_url", str, "/commands"),
    PropSpec("admin.idleTimeout", False, "admin_idle_timeout_ms", _at_least(0, _decode32), 30000),
    PropSpec("extendedTypesEnabled", False, "extended_types_enabled", parse_true_false, False),
    PropSpec("skipACL", False, "skip_acl", parse_yes_no, False),
    PropSpec("digest.enabled", False, "digest_enabled", parse_true_false, True),
    PropSpec("closeSessionTxn.enabled", False, "close_session_txn_enabled", parse_true_false, True),
    PropSpec("enforceQuota", False, "enforce_quota", parse_true_false, False),
    PropSpec("electionPortBindRetry", False, "election_port_bind_retry",
             _at_least(0, _decode32, " (0 = retry forever)"), 3),
    PropSpec("cnxTimeout", False, "cnx_timeout_ms", _at_least(1, parse_java_int), 5000),
    PropSpec("leaderServes", False, "leader_serves", parse_yes_no, True),
    PropSpec("maxCnxns", False, "max_cnxns", _at_least(0, _decode32, " (0 = no limit)"), 0),
    # Apache's ExpiryQueue divides by it: 0 would stop its connection expirer
    PropSpec("nio.sessionlessCnxnTimeout", False, "sessionless_cnxn_timeout_ms", _at_least(1, _decode32),
             DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS),
    PropSpec("netty.server.outstandingHandshake.limit", False, "outstanding_handshake_limit", _decode32, -1),
    PropSpec("datadir.autocreate", False, "datadir_autocreate", parse_true_false, True),
    PropSpec("fsync.warningthresholdms", True, "fsync_warning_threshold_ms", _at_least(0, _decode64), 1000),
    PropSpec("znode.container.checkIntervalMs", True, "container_check_interval_ms",
             _at_least(1, _decode32), 60000),
    PropSpec("znode.container.maxPerMinute", True, "container_max_per_minute", _at_least(1, _decode32), 10000),
    PropSpec("znode.container.maxNeverUsedIntervalMs", True, "container_max_never_used_interval_ms",
             _at_least(0, _decode64), 0),
    PropSpec("readonlymode.enabled", True, "read_only_mode_enabled", parse_true_false, False),
    PropSpec("jute.maxbuffer", True, "jute_max_buffer_bytes", _at_least(1, _decode32), 0xFFFFF),
)
# bare JVM properties zkfast reads without a typed field (the JAAS file for SASL, Kerberos settings)
_BARE_EXTRA = frozenset(("java.security.auth.login.config", "java.security.krb5.realm",
                         "java.security.krb5.conf"))
BARE_PROPERTIES = frozenset(s.name for s in PROPERTY_SPECS if s.bare) | _BARE_EXTRA
TYPED_PROPERTY_NAMES = frozenset(s.name for s in PROPERTY_SPECS)

_THROTTLE_DEFAULTS = ThrottleSettings()


def _throttle_spec(suffix: str, field_name: str, parse: Callable[[str], Any]) -> PropSpec:
    return PropSpec(THROTTLE_PREFIX + suffix, False, field_name, parse, getattr(_THROTTLE_DEFAULTS, field_name))


# zookeeper.connection_throttle_* (BlueThrottle); `field` names a ThrottleSettings attribute here
THROTTLE_SPECS: tuple[PropSpec, ...] = (
    _throttle_spec("tokens", "tokens", _at_least(0, _decode32, " (0 = no throttle)")),
    _throttle_spec("fill_time", "fill_time_ms", _at_least(1, _decode32)),  # Apache divides by it
    _throttle_spec("fill_count", "fill_count", _at_least(0, _decode32)),
    _throttle_spec("freeze_time", "freeze_time_ms", _at_least(-1, _decode32, " (-1 = no random drops)")),
    _throttle_spec("drop_increase", "drop_increase", parse_probability),
    _throttle_spec("drop_decrease", "drop_decrease", parse_probability),
    _throttle_spec("decrease_ratio", "decrease_ratio", parse_probability),
    _throttle_spec("weight_enabled", "weight_enabled", parse_true_false),
    _throttle_spec("global_session_weight", "global_session_weight", _at_least(1, _decode32)),
    _throttle_spec("local_session_weight", "local_session_weight", _at_least(1, _decode32)),
    _throttle_spec("renew_session_weight", "renew_session_weight", _at_least(1, _decode32)),
)
