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
whose absence would weaken security, durability or quorum safety (`_UNSUPPORTED`: quorum SASL and TLS,
enforceQuota, audit logging, certificate revocation, hierarchical quorums...) stop start-up with a
ConfigError that names the key, where it was set and what ignoring it would cost; their harmless values
(`sslQuorum=false`) are accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, NamedTuple

from zkfast.limits import DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS
from zkfast.net.throttle import ThrottleSettings
from zkfast.net.tls import PROPERTY_NAMES as TLS_PROPERTY_NAMES

log = logging.getLogger("zkfast.config")

EMBEDDED_SOURCE = "<embedded default>"
PROPERTY_PREFIX = "zookeeper."

# ZooKeeperServer.DEFAULT_TICK_TIME: used when zoo.cfg has no tickTime at all.
DEFAULT_TICK_TIME_MS = 3000
DEFAULT_MAX_CLIENT_CNXNS = 60
MIN_SNAP_RETAIN_COUNT = 3
DEFAULT_METRICS_PROVIDER = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
# EphemeralType.MAX_EXTENDED_SERVER_ID: the server id lives in one byte of a TTL node's ephemeralOwner.
MAX_EXTENDED_SERVER_ID = 254
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

FOUR_LETTER_WORDS = frozenset({
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
})

# Keys QuorumPeerConfig.parseProperties consumes itself (they never become system properties) and that
# zkfast accepts and validates but does not act on, because ignoring them weakens nothing (the quorum
# SASL and TLS keys only while they are off: see _UNSUPPORTED). Value: the parser Apache applies.
_IGNORED_DIRECT_KEYS: dict[str, str] = {
    "observerMasterPort": "int", "connectToLearnerMasterLimit": "int",
    "sslQuorum": "bool", "portUnification": "bool", "sslQuorumReloadCertFiles": "bool",
    "quorum.auth.enableSasl": "bool", "quorum.auth.serverRequireSasl": "bool",
    "quorum.auth.learnerRequireSasl": "bool", "quorum.auth.learner.saslLoginContext": "str",
    "quorum.auth.server.saslLoginContext": "str", "quorum.auth.kerberos.servicePrincipal": "str",
    "quorum.cnxn.threads.size": "int", "jvm.pause.info-threshold.ms": "long",
    "jvm.pause.warn-threshold.ms": "long", "jvm.pause.sleep.time.ms": "long", "jvm.pause.monitor": "bool",
    "multiAddress.reachabilityCheckTimeoutMs": "int", "multiAddress.reachabilityCheckEnabled": "bool",
    "oraclePath": "str",
}

_DIRECT_KEYS = frozenset({
    "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "secureClientPort", "secureClientPortAddress",
    "tickTime", "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "clientPortListenBacklog",
    "initLimit", "syncLimit", "electionAlg", "peerType", "syncEnabled", "dynamicConfigFile",
    "autopurge.snapRetainCount", "autopurge.purgeInterval", "standaloneEnabled", "reconfigEnabled",
    "localSessionsEnabled", "localSessionsUpgradingEnabled", "quorumListenOnAllIPs", "metricsProvider.className",
    "multiAddress.enabled", *_IGNORED_DIRECT_KEYS,
})

# System properties (without "zookeeper.") that Apache ZooKeeper 3.8.0 reads, collected from its sources.
# zoo.cfg keys among them are not typos, even where zkfast gives them no meaning.
_APACHE_PROPERTY_KEYS = frozenset("""
4lw.commands.whitelist DigestAuthenticationProvider.digestAlg DigestAuthenticationProvider.enabled
DigestAuthenticationProvider.superDigest SASLAuthenticationProvider.superPassword
X509AuthenticationProvider.superUser admin.commandURL admin.enableServer admin.forceHttps admin.httpVersion
admin.idleTimeout admin.portUnification admin.serverAddress admin.serverPort allowSaslFailedClients
audit.enable audit.impl.class bitHashCacheSize client.portUnification client.secure clientCnxnSocket
clientTcpKeepAlive closeSessionTxn.enabled cnxTimeout commitLogCount commitProcessor.maxCommitBatchSize
commitProcessor.maxReadBatchSize commitProcessor.numWorkerThreads commitProcessor.shutdownTimeout
connection_throttle_decrease_ratio connection_throttle_drop_decrease connection_throttle_drop_increase
connection_throttle_fill_count connection_throttle_fill_time connection_throttle_freeze_time
connection_throttle_global_session_weight connection_throttle_local_session_weight
connection_throttle_renew_session_weight connection_throttle_tokens connection_throttle_weight_enabled
datadir.autocreate db.autocreate digest.enabled disableAutoWatchReset electionPortBindRetry
emulate353TTLNodes enableEagerACLCheck enforce.auth.enabled enforce.auth.schemes enforceQuota
ensembleAuthName extendedTypesEnabled fastleader.maxNotificationInterval
fastleader.minNotificationInterval flushDelay follower.skipLearnerRequestToNextProcessor forceSnapshotSync
forceSync forward_learner_requests_to_commit_processor_disabled fsync.warningthresholdms
globalOutstandingLimit intBufferStartingSizeBytes jmx.log4j.disable jmx.log4j.mbean
jute.maxbuffer.extrasize kerberos.canonicalizeHostNames kerberos.removeHostFromPrincipal
kerberos.removeRealmFromPrincipal kinit largeRequestMaxBytes largeRequestThreshold
leader.ackLoggingFrequency leader.closeSocketAsync leader.maxConcurrentDiffSyncs
leader.maxConcurrentSnapSyncs leader.maxTimeToWaitForEpoch leaderConnectDelayDuringRetryMs leaderServes
learner.asyncSending learner.closeSocketAsync letAnySaslUserDoX log.dir log.file maxBatchSize maxCnxns
maxGetChildrenResponseCacheSize maxInProcessingDeadWatchers maxResponseCacheSize maxWriteQueuePollTime
messageTracker.BufferSize messageTracker.Enabled multiAddress.enabled
netty.advancedFlowControl.enabled netty.server.earlyDropSecureConnectionHandshakes
netty.server.outstandingHandshake.limit nio.directBufferBytes nio.numSelectorThreads
nio.numWorkerThreads nio.sessionlessCnxnTimeout nio.shutdownTimeout observer.election.DelayMs
observer.reconnectDelayMs observer.syncEnabled observerMaster.sizeLimit pathStats.delay
pathStats.enabled pathStats.initialDelay pathStats.maxDepth pathStats.sampleRate pathStats.slotCapacity
pathStats.slotDuration pathStats.topPathMax preAllocSize quorumCnxnTimeoutMs request.timeout
request_stale_connection_check request_stale_latency_check request_throttle_drop_stale
request_throttle_max_requests request_throttle_stall_time request_throttler.shutdownTimeout
requireKerberosConfig sasl.client sasl.client.canonicalize.hostname sasl.client.username sasl.clientconfig
sasl.serverconfig security.auth_to_local server.principal server.realm serverCnxnFactory
sessionRequireClientSASLAuth skipACL snapCount snapSizeLimitInKb snapshot.compression.method
snapshot.trust.empty snapshotSizeFactor superUser tcpKeepAlive throttled_op_wait_time
txnLogSizeLimitInKb watchManagerName watcherCleanIntervalInSeconds watcherCleanThreadsNum
watcherCleanThreshold
""".split())
_APACHE_PROPERTY_PREFIXES = ("ssl.", "authProvider.")
_SASL_PROPERTY_KEYS = frozenset({
    "sasl.serverconfig", "sessionRequireClientSASLAuth", "allowSaslFailedClients", "superUser",
    "SASLAuthenticationProvider.superPassword", "kerberos.removeHostFromPrincipal",
    "kerberos.removeRealmFromPrincipal", "letAnySaslUserDoX", "security.auth_to_local",
})
# Properties zkfast acts on besides the typed _PROPERTY_SPECS (SASL and enforce.auth in
# zkfast.server.sasl, the rest in zkfast.server.main and zkfast.net.tls). Any other key Apache reads is
# accepted with an INFO line saying it has no effect, unless _UNSUPPORTED refuses its value.
_READ_PROPERTY_KEYS = _SASL_PROPERTY_KEYS | {
    "4lw.commands.whitelist", "DigestAuthenticationProvider.superDigest", "DigestAuthenticationProvider.enabled",
    "X509AuthenticationProvider.superUser", "enforce.auth.enabled", "enforce.auth.schemes", "multiAddress.enabled",
    "log.dir", "log.file", *(f"ssl.{name}" for name in TLS_PROPERTY_NAMES),
    # honoured in the one value zkfast implements (SHA1, x509); _UNSUPPORTED refuses the others
    "DigestAuthenticationProvider.digestAlg", "ssl.authProvider",
}
_THROTTLE_PREFIX = "connection_throttle_"
# authProvider.N classes zkfast implements (the last three are built in; naming them again is harmless)
_AUTH_PROVIDERS = frozenset(f"org.apache.zookeeper.server.auth.{name}AuthenticationProvider"
                            for name in ("SASL", "Digest", "IP", "X509"))


class _Unsupported(NamedTuple):
    """A setting zkfast does not implement and must not ignore: with a value that `refuses`, ignoring
    it would weaken `weakens` (security, durability or quorum safety), because of `consequence`."""

    refuses: Callable[[str], bool]  # True: refuse; False: harmless, accepted; ValueError: malformed
    feature: str
    weakens: str
    consequence: str


def _is_true(value: str) -> bool:
    # Apache reads these with Boolean.parseBoolean (anything but "true" means false); zkfast refuses
    # what is neither, so that "yes" never silently means false.
    return parse_true_false(java_trim(value))


_QUORUM_SASL = ("SASL authentication between servers", "security",
                "servers would join and lead the ensemble without authenticating each other")
_REVOCATION = "security", "a revoked client certificate would still be accepted"
_UNSUPPORTED: dict[str, _Unsupported] = {
    # zoo.cfg keys of QuorumPeerConfig (never system properties)
    "quorum.auth.enableSasl": _Unsupported(_is_true, *_QUORUM_SASL),
    "quorum.auth.learnerRequireSasl": _Unsupported(_is_true, *_QUORUM_SASL),
    "quorum.auth.serverRequireSasl": _Unsupported(_is_true, *_QUORUM_SASL),
    "sslQuorum": _Unsupported(_is_true, "TLS between servers", "security",
                              "quorum and election traffic would travel unencrypted and unauthenticated"),
    # system properties (names without "zookeeper.")
    "enforceQuota": _Unsupported(_is_true, "quota enforcement", "security",
                                 "a client could write past a znode quota instead of getting QUOTAEXCEEDED"),
    "audit.enable": _Unsupported(_is_true, "audit logging", "security",
                                 "no audit log of who changed what would be written"),
    "requireKerberosConfig": _Unsupported(_is_true, "Kerberos", "security",
                                          "the server would start without the Kerberos configuration this "
                                          "setting demands"),
    "DigestAuthenticationProvider.digestAlg": _Unsupported(
        lambda v: java_trim(v).upper() not in ("SHA1", "SHA-1", "SHA"), "digest algorithms other than SHA1",
        "security", "digest ids and the superDigest would be computed with SHA1, so who may do what would "
                    "no longer be what the ACLs say"),
    "admin.forceHttps": _Unsupported(_is_true, "HTTPS on the AdminServer", "security",
                                     "the AdminServer would answer over plain HTTP"),
    "ssl.crl": _Unsupported(_is_true, "certificate revocation lists", *_REVOCATION),
    "ssl.ocsp": _Unsupported(_is_true, "OCSP", *_REVOCATION),
    "ssl.context.supplier.class": _Unsupported(lambda v: bool(java_trim(v)), "SSLContext supplier classes",
                                               "security", "TLS would run with the ssl.* keys instead of the "
                                                           "context that class builds"),
    "ssl.authProvider": _Unsupported(lambda v: java_trim(v) != "x509", "x509 authentication providers other "
                                     "than x509", "security", "client certificates would be checked and "
                                                              "named by the x509 scheme instead"),
    "authProvider.": _Unsupported(lambda v: java_trim(v) not in _AUTH_PROVIDERS, "Java authentication "
                                  "providers other than SASL, digest, ip and x509", "security",
                                  "what that provider checks would go unchecked"),
    "group.": _Unsupported(lambda v: True, "hierarchical quorums (group.N, weight.N)", "quorum safety",
                           "the ensemble would decide by a plain majority of servers instead of a majority "
                           "of groups"),
}
_UNSUPPORTED["weight."] = _UNSUPPORTED["group."]


def _unsupported(key: str) -> _Unsupported | None:
    numbered = re.fullmatch(r"(authProvider|group|weight)\.[^.]+", key)
    return _UNSUPPORTED.get(key if numbered is None else numbered.group(1) + ".")


# ---------------------------------------------------------------------------------------------- errors

class Origin(NamedTuple):
    """Where a setting came from: a file and line, or an environment variable / the command line."""

    where: str
    line: int | None
    key: str

    def location(self) -> str:
        return self.where if self.line is None else f"{self.where}:{self.line}"


class ConfigError(Exception):
    """A configuration an operator has to fix. str() is `WHERE[:LINE]: KEY: PROBLEM`."""

    def __init__(self, where: str, line: int | None, key: str, problem: str) -> None:
        self.where = where
        self.line = line
        self.key = key
        self.problem = problem
        location = where if line is None else f"{where}:{line}"
        super().__init__(f"{location}: {key}: {problem}")

    @classmethod
    def at(cls, origin: Origin, problem: str) -> ConfigError:
        return cls(origin.where, origin.line, origin.key, problem)


# ----------------------------------------------------------------------------- java.util.Properties syntax

class PropertyLine(NamedTuple):
    key: str
    value: str
    line: int  # 1-based line where the logical line starts


class PropertiesSyntaxError(ValueError):
    def __init__(self, line: int, key: str, problem: str) -> None:
        self.line = line
        self.key = key
        self.problem = problem
        super().__init__(f"line {line}: {problem}")


_PROPS_WS = " \t\f"  # the only whitespace java.util.Properties knows
_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "f": "\f"}


def _line_numbers(text: str) -> list[int]:
    """The 1-based natural line of every character (\r\n, \r and \n each end one line)."""
    numbers = []
    line = 1
    for i, c in enumerate(text):
        numbers.append(line)
        if c == "\n" or (c == "\r" and text[i + 1:i + 2] != "\n"):
            line += 1
    return numbers


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """A port of java.util.Properties.LineReader.readLine, state for state, because its corner cases
    (a line that is only a backslash, a comment after an empty continuation, a backslash at end of file)
    are hard to reproduce any other way. Yields (line where the logical line starts, its text)."""
    line_of = _line_numbers(text)
    n = len(text)
    off = 0
    while off < n:
        buf: list[str] = []
        start = 0
        skip_ws, appended, backslash = True, False, False
        while True:
            if off >= n:
                if buf:
                    yield start, "".join(buf[:-1] if backslash else buf)
                return
            c = text[off]
            off += 1
            if skip_ws:
                if c in _PROPS_WS or (not appended and c in "\r\n"):
                    continue
                skip_ws, appended = False, False
            if not buf and c in "#!":  # a comment: skip to the end of the natural line
                while off < n and text[off - 1] not in "\r\n":
                    off += 1
                skip_ws = True
                continue
            if c not in "\r\n":
                if not buf:
                    start = line_of[off - 1]
                buf.append(c)
                backslash = c == "\\" and not backslash
                continue
            if not buf:
                skip_ws = True
                continue
            if off >= n or not backslash:
                yield start, "".join(buf[:-1] if backslash else buf)
                break
            buf.pop()  # the continuation backslash; the next line's leading whitespace goes too
            skip_ws, appended, backslash = True, True, False
            if c == "\r" and text[off] == "\n":
                off += 1


def _split_key_value(logical: str) -> tuple[str, str]:
    """The key ends at the first unescaped '=', ':' or whitespace; then whitespace and one '=' or ':' go."""
    n = len(logical)
    key_end = n
    value_start = n
    has_separator = False
    escaped = False
    for pos, c in enumerate(logical):
        if not escaped and c in "=:":
            key_end, value_start, has_separator = pos, pos + 1, True
            break
        if not escaped and c in _PROPS_WS:
            key_end, value_start = pos, pos + 1
            break
        escaped = (c == "\\") and not escaped
    while value_start < n:
        c = logical[value_start]
        if c not in _PROPS_WS:
            if has_separator or c not in "=:":
                break
            has_separator = True
        value_start += 1
    return logical[:key_end], logical[value_start:]


def _unescape(raw: str, line: int, key: str) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c != "\\" or i >= n:
            out.append(c)
            continue
        c = raw[i]
        i += 1
        if c == "u":
            digits = raw[i:i + 4]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesSyntaxError(line, key, f"malformed \\uxxxx escape '\\u{digits}'")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_SIMPLE_ESCAPES.get(c, c))
    text = "".join(out)
    # Java strings are UTF-16: a \\uD83D\\uDE00 pair is one character.
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def parse_properties(text: str) -> list[PropertyLine]:
    """Every key/value of a properties text, in file order (duplicates kept; the last one wins)."""
    entries = []
    for line, logical in _logical_lines(text):
        raw_key, raw_value = _split_key_value(logical)
        key = _unescape(raw_key, line, raw_key)
        entries.append(PropertyLine(key, _unescape(raw_value, line, key), line))
    return entries


def java_trim(s: str) -> str:
    """String.trim(): strips every char <= U+0020 (control characters too), nothing else."""
    start, end = 0, len(s)
    while start < end and s[start] <= " ":
        start += 1
    while end > start and s[end - 1] <= " ":
        end -= 1
    return s[start:end]


def escape_property(text: str, is_key: bool) -> str:
    """The inverse of the loader's unescaping, so that describe() output loads back unchanged."""
    out = []
    for pos, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif c in "=:#!" and is_key:
            out.append("\\" + c)
        elif c == " " and (is_key or pos == 0):
            out.append("\\ ")
        elif ord(c) < 0x20 or ord(c) > 0x7E:
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16_units(c)))
        else:
            out.append(c)
    return "".join(out)


def _utf16_units(c: str) -> list[int]:
    data = c.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


# ------------------------------------------------------------------------------------- value parsers

_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _hint(value: str) -> str:
    return " ('#' starts a comment only at the beginning of a line)" if "#" in value else ""


def parse_java_int(value: str, bits: int = 32) -> int:
    """Integer.parseInt / Long.parseLong: optional sign, ASCII decimal digits, in range."""
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"must be an integer, got {value!r}{_hint(value)}")
    return _fits(int(value), value, bits)


def _fits(number: int, text: str, bits: int) -> int:
    limit = 2 ** (bits - 1)
    if not -limit <= number < limit:
        raise ValueError(f"{text} does not fit in a {bits}-bit integer")
    return number


def parse_java_decode(value: str, bits: int = 32) -> int:
    """Integer.getInteger / Long.getLong use Integer.decode: 0x/0X/# hex, a leading 0 means octal."""
    match = re.fullmatch(r"([+-]?)(0[xX]|#)?([0-9a-fA-F]+)", value)
    if not match:
        raise ValueError(f"must be an integer, got {value!r}{_hint(value)}")
    sign, hex_prefix, digits = match.groups()
    if hex_prefix:
        number = int(digits, 16)
    elif not digits.isdigit():
        raise ValueError(f"must be an integer, got {value!r}{_hint(value)}")
    elif len(digits) > 1 and digits.startswith("0"):
        if not re.fullmatch(r"[0-7]+", digits):
            raise ValueError(f"{value!r} starts with 0, so Java reads it as octal, but it has digits 8 or 9")
        number = int(digits, 8)
    else:
        number = int(digits)
    return _fits(-number if sign == "-" else number, value, bits)


def parse_true_false(value: str) -> bool:
    """QuorumPeerConfig.parseBoolean and Boolean.parseBoolean agree on 'true'/'false', any case."""
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise ValueError(f"must be 'true' or 'false', got {value!r}{_hint(value)}")


def parse_yes_no(value: str) -> bool:
    """forceSync, skipACL, leaderServes compare case-sensitively with "yes"/"no" in Apache ZooKeeper."""
    if value in ("yes", "no"):
        return value == "yes"
    raise ValueError(f"must be 'yes' or 'no', got {value!r}{_hint(value)}")


def parse_port(value: str, allow_zero: bool = False) -> int:
    port = parse_java_int(value)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"must be a port number {low}-65535, got {value}")
    return port


def split_host_port(text: str) -> list[str]:
    """ConfigUtils.getHostAndPort: `[v6addr]:a:b` keeps the colons of the address; otherwise split on ':'."""
    if not text.startswith("["):
        return text.split(":")
    close = text.find("]")
    if close < 0:
        raise ValueError(f"{text!r} starts with '[' but has no matching ']'")
    if close + 1 == len(text):
        return [text[1:close]]
    if text[close + 1] != ":" or close + 2 == len(text):
        raise ValueError(f"{text!r} has no port after ']:'")
    return [text[1:close], *text[close + 2:].split(":")]


# ----------------------------------------------------------------------------- JVM flags / environment

def jvm_flag_properties(flags: str) -> list[tuple[str, str]]:
    """`-Dkey=value` and `-Dkey` tokens of a JVMFLAGS-style string, split on whitespace as an unquoted
    shell expansion is (no quote removal)."""
    found = []
    for token in flags.split():
        if token.startswith("-D") and len(token) > 2:
            key, _, value = token[2:].partition("=")
            found.append((key, value))
    return found


def environment_properties(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(property, value, source) that zkServer.sh would pass to the JVM, in command-line order."""
    found: list[tuple[str, str, str]] = []
    if environ.get("ZOO_DATADIR_AUTOCREATE_DISABLE"):
        found.append(("zookeeper.datadir.autocreate", "false", "$ZOO_DATADIR_AUTOCREATE_DISABLE"))
    if environ.get("ZOO_LOG_DIR"):
        found.append(("zookeeper.log.dir", environ["ZOO_LOG_DIR"], "$ZOO_LOG_DIR"))
    if environ.get("ZOO_LOG_FILE"):
        found.append(("zookeeper.log.file", environ["ZOO_LOG_FILE"], "$ZOO_LOG_FILE"))
    # zkServer.sh: JVMFLAGS="$SERVER_JVMFLAGS $JVMFLAGS", so JVMFLAGS comes last and wins.
    for var in ("SERVER_JVMFLAGS", "JVMFLAGS"):
        found.extend((k, v, f"${var}") for k, v in jvm_flag_properties(environ.get(var, "")))
    return found


# ------------------------------------------------------------------------------------------ the config

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


def _frozen_map(data: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
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
    dynamic_config_file: Path | None = None
    metrics_provider_class_name: str = DEFAULT_METRICS_PROVIDER
    metrics_provider_config: Mapping[str, str] = field(default_factory=_frozen_map)
    servers: tuple[ServerSpec, ...] = ()
    quorum_config_version: int = 0  # `version` of the quorum config (hex in the file)
    server_id: int = 0  # myid; 0 in standalone mode
    myid_file: Path | None = None  # the myid file read, if any
    other_settings: Mapping[str, str] = field(default_factory=_frozen_map)  # accepted, no effect in zkfast
    system_properties: Mapping[str, str] = field(default_factory=_frozen_map)  # full names
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
    auth_providers: Mapping[str, str] = field(default_factory=_frozen_map)  # authProvider.N → class
    ssl_properties: Mapping[str, str] = field(default_factory=_frozen_map)  # zookeeper.ssl.* (full names)
    sasl_properties: Mapping[str, str] = field(default_factory=_frozen_map)  # SASL/Kerberos (full names)
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
        """QuorumPeerConfig.isDistributed: servers listed and (standaloneEnabled=false or > 1 voter)."""
        return bool(self.servers) and (not self.standalone_enabled or len(self.voters) > 1)

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
        return _describe(self)

    # Last in the class body on purpose: below this line `property` is this method, not the builtin.
    def property(self, name: str, default: str | None = None) -> str | None:
        """A raw system property by full name (`zookeeper.snapCount`, `jute.maxbuffer`)."""
        return self.system_properties.get(name, default)


# ----------------------------------------------------------------------------------------- the loader

@dataclass
class _Setting:
    value: str
    origin: Origin


class _Loader:
    """One load: collects settings and properties with their origins, then checks and types them."""

    def __init__(self, source: str, entries: list[PropertyLine], extra: Mapping[str, str],
                 environ: Mapping[str, str]) -> None:
        self.source = source
        self.warnings: list[str] = []
        self.settings: dict[str, _Setting] = {}
        self.props: dict[str, _Setting] = {}
        self.fields: dict[str, Any] = {"source": source}
        for key, value, where in environment_properties(environ):
            self.props[key] = _Setting(value, Origin(where, None, key))
        for key, value in extra.items():
            origin = Origin("command line -D", None, key)
            self.props[key] = _Setting(value, origin)
            if not key.startswith(PROPERTY_PREFIX) and key not in _BARE_PROPERTIES:
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
            self.settings[key] = _Setting(value, origin)
        for key, setting in self.settings.items():
            if not _is_direct_or_quorum_key(key):
                self.props[PROPERTY_PREFIX + key] = setting

    def get(self, key: str) -> _Setting | None:
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
        self._load_ignored_direct_keys()
        self._load_system_properties()
        self._check_apache_properties()
        self._warn_unknown_keys()
        self._load_quorum()
        self._check_client_port()
        self.fields["system_properties"] = _frozen_map({k: s.value for k, s in self.props.items()})
        self.fields["warnings"] = tuple(self.warnings)
        return ServerConfig(**self.fields)

    def _path(self, key: str) -> Path | None:
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
        data_dir = self._path("dataDir")
        if data_dir is None:
            raise self.missing("dataDir", "is required (the directory for snapshots, myid and, unless "
                                          "dataLogDir is set, the transaction log)")
        self.fields["data_dir"] = data_dir
        self.fields["data_log_dir"] = self._path("dataLogDir") or data_dir

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
        self.fields["metrics_provider_config"] = _frozen_map({
            key[len("metricsProvider."):]: s.value for key, s in self.settings.items()
            if key.startswith("metricsProvider.") and key != "metricsProvider.className"})

    def _load_ignored_direct_keys(self) -> None:
        parsers: dict[str, Callable[[str], Any]] = {
            "str": str, "int": parse_java_int, "long": lambda v: parse_java_int(v, 64),
            "bool": parse_true_false}
        present = {key: setting for key in _IGNORED_DIRECT_KEYS if (setting := self.get(key)) is not None}
        for key in present:
            self.typed(key, parsers[_IGNORED_DIRECT_KEYS[key]], None)
        self._check_quorum_sasl()
        for key, setting in present.items():
            self.refuse_if_unsupported(key, setting)
            self.info(setting.origin, "accepted; it has no effect in zkfast")
        self.fields["other_settings"] = _frozen_map({key: setting.value for key, setting in present.items()})

    def _check_quorum_sasl(self) -> None:
        """QuorumPeerConfig's SASL consistency checks (Apache's errors come before zkfast's refusal)."""
        enabled = self.typed("quorum.auth.enableSasl", parse_true_false, False)
        server_req = self.typed("quorum.auth.serverRequireSasl", parse_true_false, False)
        learner_req = self.typed("quorum.auth.learnerRequireSasl", parse_true_false, False)
        for required, key in ((server_req, "quorum.auth.serverRequireSasl"),
                              (learner_req, "quorum.auth.learnerRequireSasl")):
            if required and not enabled:
                raise ConfigError.at(self.settings[key].origin, "needs quorum.auth.enableSasl=true")
        if server_req and not learner_req:
            raise ConfigError.at(self.settings["quorum.auth.serverRequireSasl"].origin,
                                 "needs quorum.auth.learnerRequireSasl=true")

    def refuse_if_unsupported(self, name: str, setting: _Setting) -> None:
        """Stop here if `setting` asks for something zkfast lacks and ignoring it would weaken safety."""
        spec = _unsupported(name)
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
    def _prop(self, name: str, bare: bool) -> _Setting | None:
        """A property's setting. Bare properties: a bare -D wins over zoo.cfg's `zookeeper.`-prefixed one."""
        prefixed = self.props.get(PROPERTY_PREFIX + name)
        if not bare:
            return prefixed
        plain = self.props.get(name)
        if plain is not None and prefixed is not None and plain.value != prefixed.value:
            self.warn(prefixed.origin, f"-D{name}={plain.value} ({plain.origin.where}) wins over this "
                                       f"{prefixed.value!r}, as in Apache ZooKeeper")
        return plain or prefixed

    def _typed_prop(self, spec: _PropSpec) -> Any:
        setting = self._prop(spec.name, spec.bare)
        if setting is None:
            return spec.default
        try:
            return spec.parse(setting.value)
        except ValueError as e:
            raise ConfigError.at(setting.origin, str(e)) from None

    def _load_system_properties(self) -> None:
        for spec in _PROPERTY_SPECS:
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
        self.fields["sasl_properties"] = _frozen_map({
            PROPERTY_PREFIX + k: self.props[PROPERTY_PREFIX + k].value for k in sorted(_SASL_PROPERTY_KEYS)
            if PROPERTY_PREFIX + k in self.props})

    def _connection_throttle(self) -> ThrottleSettings:
        values = {spec.field: self._typed_prop(spec) for spec in _THROTTLE_SPECS}
        # BlueThrottle's static initialiser: a session kind cheaper than a local session costs as much
        local = values["local_session_weight"]
        for kind in ("global", "renew"):
            key = f"{_THROTTLE_PREFIX}{kind}_session_weight"
            if values[f"{kind}_session_weight"] < local:
                # blame the setting that made it so: this weight, or else the local weight above its default
                setting = self._prop(key, False) or self._prop(f"{_THROTTLE_PREFIX}local_session_weight", False)
                assert setting is not None  # the defaults (3, 2) are not below the default 1
                self.warn(setting.origin, f"{key} ({values[f'{kind}_session_weight']}) is below "
                                          f"{_THROTTLE_PREFIX}local_session_weight ({local}); using {local} "
                                          "(as Apache ZooKeeper)")
                values[f"{kind}_session_weight"] = local
        return ThrottleSettings(**values)

    def _props_under(self, prefix: str, strip: bool) -> Mapping[str, str]:
        full = PROPERTY_PREFIX + prefix
        return _frozen_map({(k[len(full):] if strip else k): s.value
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
            if not full.startswith(PROPERTY_PREFIX) or _is_direct_or_quorum_key(name) or not _is_apache_property(name):
                continue
            self.refuse_if_unsupported(name, setting)
            if not _zkfast_reads(name):
                self.info(setting.origin, "accepted; it has no effect in zkfast")

    def _warn_unknown_keys(self) -> None:
        for key, setting in self.settings.items():
            if _is_direct_or_quorum_key(key) or _zkfast_reads(key) or _is_apache_property(key):
                continue
            known = sorted(_DIRECT_KEYS | _TYPED_PROPERTY_NAMES | _APACHE_PROPERTY_KEYS)
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.warn(setting.origin, f"unknown setting, ignored{hint}; it only sets the system property "
                                      f"zookeeper.{key}")

    # -- quorum
    def _load_quorum(self) -> None:
        dynamic = self._path("dynamicConfigFile")
        self.fields["dynamic_config_file"] = dynamic
        if dynamic is not None:
            for key, setting in self.settings.items():
                if _is_quorum_key(key):
                    raise ConfigError.at(setting.origin, f"must be in the dynamic config file {dynamic}, "
                                                         "not here")
            quorum = _QuorumParser(self, *_read_dynamic_file(dynamic, self.settings["dynamicConfigFile"]))
        else:
            quorum = _QuorumParser(self, self.source, self.settings)
        quorum.parse()
        self._load_myid()

    def _is_quorum(self) -> bool:
        servers: tuple[ServerSpec, ...] = self.fields.get("servers", ())
        return bool(servers) and (not self.fields["standalone_enabled"] or sum(s.is_voter for s in servers) > 1)

    def _check_quorum_limits(self) -> None:
        """checkValidity: a quorum needs initLimit and syncLimit (ticks); they have no default."""
        for key, name, meaning in (
            ("initLimit", "init_limit_ticks", "ticks a follower may take to connect and sync to the leader"),
            ("syncLimit", "sync_limit_ticks", "ticks a follower may lag behind the leader"),
        ):
            value = self.fields[name]
            if value is None:
                raise self.missing(key, f"is required in quorum mode ({meaning})")
            if value <= 0:
                raise ConfigError.at(self.settings[key].origin,
                                     f"must be a positive number of ticks in quorum mode, got {value}")

    def _load_myid(self) -> None:
        servers: tuple[ServerSpec, ...] = self.fields["servers"]
        if not servers:
            return
        quorum = self._is_quorum()
        if quorum:
            self._check_quorum_limits()
        data_dir: Path = self.fields["data_dir"]
        myid_file = data_dir / "myid"
        if not myid_file.is_file():
            if quorum:
                raise ConfigError(str(myid_file), 0, "myid",
                                  f"missing; a quorum member needs its server id (one of "
                                  f"{_ids(servers)}) alone on the first line of this file")
            return
        server_id = _read_myid(myid_file)
        self.fields["server_id"] = server_id
        self.fields["myid_file"] = myid_file
        spec = next((s for s in servers if s.server_id == server_id), None)
        if spec is None:
            if quorum:
                raise ConfigError(str(myid_file), 1, "myid", f"{server_id} is not one of the servers in "
                                                            f"{self.source} ({_ids(servers)})")
            return
        if self.fields["extended_types_enabled"] and server_id > MAX_EXTENDED_SERVER_ID:
            raise ConfigError(str(myid_file), 1, "myid", f"{server_id} is too large: with "
                              f"extendedTypesEnabled=true server ids must be <= {MAX_EXTENDED_SERVER_ID}")
        self._apply_own_spec(spec)

    def _apply_own_spec(self, spec: ServerSpec) -> None:
        """QuorumPeerConfig.setupClientPort / setupPeerType: this server's own server.N line wins."""
        role = spec.role
        peer = self.get("peerType")
        if peer is not None and self.fields.get("peer_type", PeerType.PARTICIPANT) is not role:
            self.warn(peer.origin, f"says {peer.value!r} but server.{spec.server_id} is a {role.value}; "
                                   "the server list wins")
        self.fields["peer_type"] = role
        if spec.client_port is None:
            return
        port, host = self.fields["client_port"], self.fields["client_port_address"]
        if port is not None and not _same_client_address(host, port, spec.client_host, spec.client_port):
            origin = (self.get("clientPortAddress") or self.settings["clientPort"]).origin
            raise ConfigError.at(origin, f"{host or '0.0.0.0'}:{port} differs from the client address "
                                         f"{spec.client_host}:{spec.client_port} of server.{spec.server_id} "
                                         f"(line {spec.line})")
        self.fields["client_port"] = spec.client_port
        self.fields["client_port_address"] = spec.client_host

    def _check_client_port(self) -> None:
        if self.fields["client_port"] is None and self.fields["secure_client_port"] is None:
            if not self._is_quorum():
                raise self.missing("clientPort", "is required: a standalone server needs clientPort (or "
                                                 "secureClientPort) to serve clients")


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


def _is_quorum_key(key: str) -> bool:
    # Apache: startsWith("server.") || startsWith("group") || startsWith("weight")
    return key.startswith(("server.", "group", "weight"))


def _is_direct_or_quorum_key(key: str) -> bool:
    return key in _DIRECT_KEYS or key.startswith("metricsProvider.") or _is_quorum_key(key) or key == "version"


def _is_apache_property(name: str) -> bool:
    """A system property (name without "zookeeper.") that Apache ZooKeeper 3.8.0 reads."""
    return name in _APACHE_PROPERTY_KEYS or name.startswith(_APACHE_PROPERTY_PREFIXES)


def _zkfast_reads(name: str) -> bool:
    """zkfast acts on this property (a refused value never gets this far)."""
    return (name in _TYPED_PROPERTY_NAMES or name in _READ_PROPERTY_KEYS or name.startswith(_THROTTLE_PREFIX)
            or name.startswith("authProvider."))


def _read_dynamic_file(path: Path, pointer: _Setting) -> tuple[str, dict[str, _Setting]]:
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as e:
        raise ConfigError.at(pointer.origin, f"cannot read {path}: {e.strerror}") from None
    try:
        entries = parse_properties(text)
    except PropertiesSyntaxError as e:
        raise ConfigError(str(path), e.line, e.key, e.problem) from None
    settings: dict[str, _Setting] = {}
    for entry in entries:
        key, value = java_trim(entry.key), java_trim(entry.value)
        origin = Origin(str(path), entry.line, key)
        if key == "version":
            raise ConfigError.at(origin, "must not be inside a dynamic config file (its version is the "
                                         "file name's suffix)")
        if not _is_quorum_key(key):
            raise ConfigError.at(origin, "only server.N, group.N and weight.N belong in a dynamic config file")
        settings[key] = _Setting(value, origin)
    suffix = path.name.rsplit(".", 1)[-1] if "." in path.name else ""
    if re.fullmatch(r"[0-9a-fA-F]+", suffix):
        settings["version"] = _Setting(suffix, Origin(str(path), 0, "version"))
    return str(path), settings


class _QuorumParser:
    """server.N and version (QuorumMaj, parseDynamicConfig); group.N and weight.N (QuorumHierarchical) are
    refused: see _UNSUPPORTED."""

    def __init__(self, loader: _Loader, where: str, settings: Mapping[str, _Setting]) -> None:
        self.loader = loader
        self.where = where
        self.settings = settings

    def parse(self) -> None:
        servers: dict[int, ServerSpec] = {}
        for key, setting in self.settings.items():
            if key.startswith("server."):
                spec = self._server(key, setting)
                servers[spec.server_id] = spec
            elif key.startswith(("group", "weight")):
                self._numbered(key, "group" if key.startswith("group") else "weight", setting)
                self.loader.refuse_if_unsupported(key, setting)
        version = self.settings.get("version")
        if version is not None:
            try:
                self.loader.fields["quorum_config_version"] = int(version.value, 16)
            except ValueError:
                raise ConfigError.at(version.origin, f"must be a hexadecimal number, got "
                                                     f"{version.value!r}") from None
        ordered = tuple(servers[sid] for sid in sorted(servers))
        self._check_counts(ordered)
        self.loader.fields["servers"] = ordered

    def _numbered(self, key: str, prefix: str, setting: _Setting) -> int:
        match = re.fullmatch(re.escape(prefix) + r"\.([0-9]+)", key)
        if not match:
            raise ConfigError.at(setting.origin, f"malformed key: expected {prefix}.<number>")
        return int(match.group(1))

    def _server(self, key: str, setting: _Setting) -> ServerSpec:
        sid = self._numbered(key, "server", setting)
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

    def _check_counts(self, servers: tuple[ServerSpec, ...]) -> None:
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
        elif len(voters) % 2 == 0:
            self.loader.warn(first, f"{len(voters)} participants tolerate no more failures than "
                                    f"{len(voters) - 1} would; an odd number is better")


def parse_server_entry(key: str, value: str, where: str = "reconfig",
                       multi_address_enabled: bool = False) -> ServerSpec:
    """One `server.N=...` entry that comes from outside a file (a reconfig's joining servers or new
    members); ConfigError when it is malformed."""
    loader = SimpleNamespace(fields={"multi_address_enabled": multi_address_enabled})
    parser = _QuorumParser(loader, where, {})  # type: ignore[arg-type]
    return parser._server(key.strip(), _Setting(value.strip(), Origin(where, None, key.strip())))


def _server_error(setting: _Setting) -> Callable[[str], ConfigError]:
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


# --------------------------------------------------------------------------- typed system properties

class _PropSpec(NamedTuple):
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


_PROPERTY_SPECS: tuple[_PropSpec, ...] = (
    _PropSpec("snapCount", False, "snap_count", _decode32, 100000),
    _PropSpec("snapSizeLimitInKb", False, "snap_size_limit_kb", _decode64, 4194304),
    _PropSpec("preAllocSize", False, "pre_alloc_size_kb", _at_least(0, _long_decimal), 65536),
    _PropSpec("globalOutstandingLimit", False, "global_outstanding_limit", _at_least(0, _decode32), 1000),
    _PropSpec("forceSync", False, "force_sync", parse_yes_no, True),
    _PropSpec("admin.enableServer", False, "admin_enable_server", _admin_enable, True),
    _PropSpec("admin.serverAddress", False, "admin_server_address", str, "0.0.0.0"),
    _PropSpec("admin.serverPort", False, "admin_server_port", _admin_port, 8080),
    _PropSpec("admin.commandURL", False, "admin_command_url", str, "/commands"),
    _PropSpec("admin.idleTimeout", False, "admin_idle_timeout_ms", _at_least(0, _decode32), 30000),
    _PropSpec("extendedTypesEnabled", False, "extended_types_enabled", parse_true_false, False),
    _PropSpec("skipACL", False, "skip_acl", parse_yes_no, False),
    _PropSpec("digest.enabled", False, "digest_enabled", parse_true_false, True),
    _PropSpec("closeSessionTxn.enabled", False, "close_session_txn_enabled", parse_true_false, True),
    _PropSpec("electionPortBindRetry", False, "election_port_bind_retry",
              _at_least(0, _decode32, " (0 = retry forever)"), 3),
    _PropSpec("cnxTimeout", False, "cnx_timeout_ms", _at_least(1, parse_java_int), 5000),
    _PropSpec("leaderServes", False, "leader_serves", parse_yes_no, True),
    _PropSpec("maxCnxns", False, "max_cnxns", _at_least(0, _decode32, " (0 = no limit)"), 0),
    # Apache's ExpiryQueue divides by it: 0 would stop its connection expirer
    _PropSpec("nio.sessionlessCnxnTimeout", False, "sessionless_cnxn_timeout_ms", _at_least(1, _decode32),
              DEFAULT_SESSIONLESS_CNXN_TIMEOUT_MS),
    _PropSpec("netty.server.outstandingHandshake.limit", False, "outstanding_handshake_limit", _decode32, -1),
    _PropSpec("datadir.autocreate", False, "datadir_autocreate", parse_true_false, True),
    _PropSpec("fsync.warningthresholdms", True, "fsync_warning_threshold_ms", _at_least(0, _decode64), 1000),
    _PropSpec("znode.container.checkIntervalMs", True, "container_check_interval_ms",
              _at_least(1, _decode32), 60000),
    _PropSpec("znode.container.maxPerMinute", True, "container_max_per_minute", _at_least(1, _decode32), 10000),
    _PropSpec("znode.container.maxNeverUsedIntervalMs", True, "container_max_never_used_interval_ms",
              _at_least(0, _decode64), 0),
    _PropSpec("readonlymode.enabled", True, "read_only_mode_enabled", parse_true_false, False),
    _PropSpec("jute.maxbuffer", True, "jute_max_buffer_bytes", _at_least(1, _decode32), 0xFFFFF),
)
# bare JVM properties zkfast reads without a typed field (the JAAS file for SASL, Kerberos settings)
_BARE_EXTRA = frozenset(("java.security.auth.login.config", "java.security.krb5.realm",
                         "java.security.krb5.conf"))
_BARE_PROPERTIES = frozenset(s.name for s in _PROPERTY_SPECS if s.bare) | _BARE_EXTRA
_TYPED_PROPERTY_NAMES = frozenset(s.name for s in _PROPERTY_SPECS)


def _probability(value: str) -> float:
    """Double.parseDouble's decimal forms (no hex, NaN or Infinity), between 0 and 1."""
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[fFdD]?", java_trim(value)):
        raise ValueError(f"must be a number between 0 and 1, got {value!r}{_hint(value)}")
    number = float(java_trim(value).rstrip("fFdD"))
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value}")
    return number


_THROTTLE_DEFAULTS = ThrottleSettings()


def _throttle_spec(suffix: str, field_name: str, parse: Callable[[str], Any]) -> _PropSpec:
    return _PropSpec(_THROTTLE_PREFIX + suffix, False, field_name, parse, getattr(_THROTTLE_DEFAULTS, field_name))


# zookeeper.connection_throttle_* (BlueThrottle); `field` names a ThrottleSettings attribute here
_THROTTLE_SPECS: tuple[_PropSpec, ...] = (
    _throttle_spec("tokens", "tokens", _at_least(0, _decode32, " (0 = no throttle)")),
    _throttle_spec("fill_time", "fill_time_ms", _at_least(1, _decode32)),  # Apache divides by it
    _throttle_spec("fill_count", "fill_count", _at_least(0, _decode32)),
    _throttle_spec("freeze_time", "freeze_time_ms", _at_least(-1, _decode32, " (-1 = no random drops)")),
    _throttle_spec("drop_increase", "drop_increase", _probability),
    _throttle_spec("drop_decrease", "drop_decrease", _probability),
    _throttle_spec("decrease_ratio", "decrease_ratio", _probability),
    _throttle_spec("weight_enabled", "weight_enabled", parse_true_false),
    _throttle_spec("global_session_weight", "global_session_weight", _at_least(1, _decode32)),
    _throttle_spec("local_session_weight", "local_session_weight", _at_least(1, _decode32)),
    _throttle_spec("renew_session_weight", "renew_session_weight", _at_least(1, _decode32)),
)
assert {s.field for s in _PROPERTY_SPECS} <= {f.name for f in dataclasses.fields(ServerConfig)}


# ------------------------------------------------------------------------------------------- public API

def load_config(path: Path | str | None, extra_properties: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read zoo.cfg (and myid, and a dynamic config file) into a ServerConfig; None = the embedded default.

    `extra_properties` are -D options of the command line (full property names); `environ` defaults to
    os.environ and supplies SERVER_JVMFLAGS / JVMFLAGS / ZOO_* as zkServer.sh would pass them.
    """
    if path is None:
        return default_config(extra_properties, environ)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(str(path), 0, "config file", f"cannot be read: {e.strerror}") from None
    return load_config_text(_decode_properties_bytes(data, str(path)), str(path), extra_properties, environ)


def _decode_properties_bytes(data: bytes, source: str) -> str:
    """Properties.load(InputStream) reads ISO-8859-1; so do we, so non-ASCII paths name what Apache named."""
    if any(b > 0x7F for b in data):
        try:
            data.decode("utf-8")
            log.warning("%s: has non-ASCII UTF-8 text; it is read as ISO-8859-1, as Apache ZooKeeper reads "
                        "it (write \\uXXXX escapes to mean non-ASCII characters)", source)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def load_config_text(text: str, source: str, extra_properties: Mapping[str, str] | None = None,
                     environ: Mapping[str, str] | None = None) -> ServerConfig:
    """load_config() of text already read; `source` names it in error messages."""
    try:
        entries = parse_properties(text)
    except PropertiesSyntaxError as e:
        raise ConfigError(source, e.line, e.key, e.problem) from None
    env = os.environ if environ is None else environ
    return _Loader(source, entries, dict(extra_properties or {}), env).load()


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_DATA_HOME/zkfast, or ~/.local/share/zkfast (XDG ignores a relative XDG_DATA_HOME)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "zkfast"


def default_config_text(environ: Mapping[str, str] | None = None) -> str:
    """Apache's conf/zoo_sample.cfg values, listening on loopback only, with data in the user's data dir."""
    data_dir = escape_property(str(default_data_dir(environ)), is_key=False)
    return ("tickTime=2000\ninitLimit=10\nsyncLimit=5\n"
            f"dataDir={data_dir}\nclientPort=2181\nclientPortAddress=127.0.0.1\n"
            # Loopback only, like the client port: a default must not open an HTTP port to the network.
            "admin.serverAddress=127.0.0.1\n")


def default_config(extra_properties: Mapping[str, str] | None = None,
                   environ: Mapping[str, str] | None = None) -> ServerConfig:
    return load_config_text(default_config_text(environ), EMBEDDED_SOURCE, extra_properties, environ)


# -------------------------------------------------------------------------------------------- describe

def _describe(cfg: ServerConfig) -> str:
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
        ("multiAddress.enabled", cfg.multi_address_enabled),
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
    _describe_quorum(cfg, put, lines)
    _describe_properties(cfg, put)
    return "\n".join(lines) + "\n"


def _describe_quorum(cfg: ServerConfig, put: Callable[[str, object], None], lines: list[str]) -> None:
    if cfg.dynamic_config_file is not None:
        put("dynamicConfigFile", cfg.dynamic_config_file)
    else:
        for spec in cfg.servers:
            put(f"server.{spec.server_id}", spec.value())
        if cfg.quorum_config_version:
            put("version", f"{cfg.quorum_config_version:x}")
    if cfg.myid_file is not None:
        lines.append(f"# myid={cfg.server_id} (from {cfg.myid_file})")


def _describe_properties(cfg: ServerConfig, put: Callable[[str, object], None]) -> None:
    for spec in _PROPERTY_SPECS:
        value = getattr(cfg, spec.field)
        if spec.parse is parse_yes_no:
            value = "yes" if value else "no"
        put(spec.name, value)
    for spec in _THROTTLE_SPECS:
        put(spec.name, getattr(cfg.connection_throttle, spec.field))
    words = cfg.four_letter_words_enabled
    put("4lw.commands.whitelist", "*" if words == FOUR_LETTER_WORDS else ",".join(sorted(words)))
    if cfg.super_digest is not None:
        put("DigestAuthenticationProvider.superDigest", cfg.super_digest)
    shown = {PROPERTY_PREFIX + s.name for s in (*_PROPERTY_SPECS, *_THROTTLE_SPECS)} | {
        PROPERTY_PREFIX + k for k in _DIRECT_KEYS} | {
        "zookeeper.4lw.commands.whitelist", "zookeeper.DigestAuthenticationProvider.superDigest"}
    for name, value in sorted(cfg.system_properties.items()):
        if name.startswith(PROPERTY_PREFIX) and name not in shown and not name.startswith("zookeeper.log."):
            put(name[len(PROPERTY_PREFIX):], value)
