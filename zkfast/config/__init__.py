"""zoo.cfg + myid → one frozen `ServerConfig`, read the way Apache ZooKeeper 3.8.0 reads them.

Sources, lowest precedence first (as `zkServer.sh` and `QuorumPeerConfig.parseProperties` combine them):

1. `-D` flags zkServer.sh would give the JVM: `$ZOO_LOG_DIR`, `$ZOO_LOG_FILE`, `$ZOO_DATADIR_AUTOCREATE_DISABLE`,
   then every `-Dkey[=value]` token of `$SERVER_JVMFLAGS` and then `$JVMFLAGS` (the shell splits them on
   whitespace without quote removal, so do we; a later token wins, as in the JVM);
2. `extra_properties` (the `-D` options of zkfast's own command line);
3. zoo.cfg. Keys Apache parses itself become typed fields; every other key `K` sets the system property
   `zookeeper.K`, overriding a `-Dzookeeper.K` (Apache calls System.setProperty after the JVM started;
   checked on 3.8.0 with `4lw.commands.whitelist`).

Properties Apache reads without the `zookeeper.` prefix (`jute.maxbuffer`, `readonlymode.enabled`,
`znode.container.*`, `fsync.warningthresholdms`) are dead in Apache's zoo.cfg (they become `zookeeper.K`).
zkfast honours them there too, but a bare `-DK` wins, so a setup that ran on Apache keeps its effective value.

Errors are `ConfigError`s whose message is `WHERE: KEY: PROBLEM`, WHERE being `FILE:LINE` (line 0 for a
required key that is missing; the myid file for myid problems), `$JVMFLAGS`/`$SERVER_JVMFLAGS`/... or
`command line -D` for properties that came from there. zkfast is stricter than Apache on purpose: a value
that Apache would silently replace by a default (`snapCount=abc`, `forceSync=NO`) is an error, so what an
operator wrote never silently means something else. Keys that nobody reads are logged as warnings (typos).

A setting is honoured or refused, never silently ignored. Apache keys that zkfast accepts without acting
on them are named at INFO ("accepted; it has no effect in zkfast"): ignoring them weakens nothing. Those
whose absence would weaken security, durability or quorum safety (unsupported.py: audit logging,
certificate revocation...) stop start-up with a
ConfigError that names the key, where it was set and what ignoring it would cost; their harmless values
(`ssl.crl=false`) are accepted.

One module per job: `properties` (java.util.Properties syntax), `values` (Java's value parsers),
`jvmflags` (the environment's -D flags), `keys` (which keys exist), `schema` (the typed system
properties), `unsupported` (what is refused), `model` (ServerConfig), `loader` and `quorum` (checking and
typing), `sources` (file, text, default), `describe` (back to zoo.cfg text). This module only re-exports.
"""

from zkfast.config.jvmflags import environment_properties, jvm_flag_properties
from zkfast.config.keys import FOUR_LETTER_WORDS, PROPERTY_PREFIX
from zkfast.config.model import (
    DEFAULT_MAX_CLIENT_CNXNS,
    DEFAULT_METRICS_PROVIDER,
    DEFAULT_TICK_TIME_MS,
    EMBEDDED_SOURCE,
    MAX_EXTENDED_SERVER_ID,
    MIN_SNAP_RETAIN_COUNT,
    PeerType,
    QuorumAddress,
    QuorumSasl,
    ServerConfig,
    ServerSpec,
)
from zkfast.config.properties import (
    PropertiesSyntaxError,
    PropertyLine,
    escape_property,
    java_trim,
    parse_properties,
)
from zkfast.config.quorum import parse_server_entry
from zkfast.config.setting import ConfigError, Origin
from zkfast.config.sources import (
    default_config,
    default_config_text,
    default_data_dir,
    load_config,
    load_config_text,
)
from zkfast.config.values import (
    parse_java_decode,
    parse_java_int,
    parse_port,
    parse_true_false,
    parse_yes_no,
    split_host_port,
)

__all__ = [
    "DEFAULT_MAX_CLIENT_CNXNS", "DEFAULT_METRICS_PROVIDER", "DEFAULT_TICK_TIME_MS", "EMBEDDED_SOURCE",
    "FOUR_LETTER_WORDS", "MAX_EXTENDED_SERVER_ID", "MIN_SNAP_RETAIN_COUNT", "PROPERTY_PREFIX",
    "ConfigError", "Origin", "PeerType", "PropertiesSyntaxError", "PropertyLine", "QuorumAddress",
    "QuorumSasl", "ServerConfig", "ServerSpec",
    "default_config", "default_config_text", "default_data_dir", "environment_properties", "escape_property",
    "java_trim", "jvm_flag_properties", "load_config", "load_config_text", "parse_java_decode",
    "parse_java_int", "parse_port", "parse_properties", "parse_server_entry", "parse_true_false",
    "parse_yes_no", "split_host_port",
]
