"""Which zoo.cfg keys and system properties exist: the ones Apache ZooKeeper 3.8.0 parses itself, the
ones it reads as system properties, and the ones zkfast acts on. A key none of these name is a typo."""

from __future__ import annotations

from zkfast.config.schema import THROTTLE_PREFIX, TYPED_PROPERTY_NAMES
from zkfast.net.tls import PROPERTY_NAMES as TLS_PROPERTY_NAMES
from zkfast.net.tls import QUORUM_PROPERTY_NAMES

PROPERTY_PREFIX = "zookeeper."

FOUR_LETTER_WORDS = frozenset({
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
})

# Keys QuorumPeerConfig.parseProperties consumes itself (they never become system properties) and that
# zkfast accepts and validates but does not act on, because ignoring them weakens nothing (the Kerberos
# principal serves only GSSAPI, which zkfast refuses in the JAAS file). Value: the parser Apache applies.
IGNORED_DIRECT_KEYS: dict[str, str] = {
    "observerMasterPort": "int", "connectToLearnerMasterLimit": "int",
    "quorum.auth.kerberos.servicePrincipal": "str", "jvm.pause.info-threshold.ms": "long",
    "jvm.pause.warn-threshold.ms": "long", "jvm.pause.sleep.time.ms": "long", "jvm.pause.monitor": "bool",
    "multiAddress.reachabilityCheckTimeoutMs": "int", "multiAddress.reachabilityCheckEnabled": "bool",
    "oraclePath": "str",
}

# quorum.auth.* keys zkfast honours (zkfast.quorum.auth), with their ServerConfig.quorum_sasl fields
QUORUM_SASL_KEYS: dict[str, str] = {
    "quorum.auth.enableSasl": "enabled", "quorum.auth.serverRequireSasl": "server_required",
    "quorum.auth.learnerRequireSasl": "learner_required",
    "quorum.auth.learner.saslLoginContext": "learner_login_context",
    "quorum.auth.server.saslLoginContext": "server_login_context",
}

# QuorumPeer.QUORUM_CNXN_THREADS_SIZE_DEFAULT_VALUE: quorum.cnxn.threads.size below it is raised to it
DEFAULT_QUORUM_CNXN_THREADS = 20

DIRECT_KEYS = frozenset({
    "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "secureClientPort", "secureClientPortAddress",
    "tickTime", "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "clientPortListenBacklog",
    "initLimit", "syncLimit", "electionAlg", "peerType", "syncEnabled", "dynamicConfigFile",
    "autopurge.snapRetainCount", "autopurge.purgeInterval", "standaloneEnabled", "reconfigEnabled",
    "localSessionsEnabled", "localSessionsUpgradingEnabled", "quorumListenOnAllIPs", "metricsProvider.className",
    "multiAddress.enabled", "sslQuorum", "portUnification", "sslQuorumReloadCertFiles", *QUORUM_SASL_KEYS,
    "quorum.cnxn.threads.size", *IGNORED_DIRECT_KEYS,
})

# System properties (without "zookeeper.") that Apache ZooKeeper 3.8.0 reads, collected from its sources.
# zoo.cfg keys among them are not typos, even where zkfast gives them no meaning.
APACHE_PROPERTY_KEYS = frozenset("""
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
SASL_PROPERTY_KEYS = frozenset({
    "sasl.serverconfig", "sessionRequireClientSASLAuth", "allowSaslFailedClients", "superUser",
    "SASLAuthenticationProvider.superPassword", "kerberos.removeHostFromPrincipal",
    "kerberos.removeRealmFromPrincipal", "letAnySaslUserDoX", "security.auth_to_local",
})
# Properties zkfast acts on besides the typed PROPERTY_SPECS (SASL and enforce.auth in
# zkfast.server.sasl, the rest in zkfast.server.main and zkfast.net.tls). Any other key Apache reads is
# accepted with an INFO line saying it has no effect, unless unsupported.py refuses its value.
_READ_PROPERTY_KEYS = SASL_PROPERTY_KEYS | {
    "4lw.commands.whitelist", "DigestAuthenticationProvider.superDigest", "DigestAuthenticationProvider.enabled",
    "X509AuthenticationProvider.superUser", "enforce.auth.enabled", "enforce.auth.schemes", "multiAddress.enabled",
    "log.dir", "log.file", *(f"ssl.{name}" for name in TLS_PROPERTY_NAMES),
    *(f"ssl.quorum.{name}" for name in QUORUM_PROPERTY_NAMES),
    # honoured in the one value zkfast implements (SHA1, x509); unsupported.py refuses the others
    "DigestAuthenticationProvider.digestAlg", "ssl.authProvider",
}


def is_quorum_key(key: str) -> bool:
    # Apache: startsWith("server.") || startsWith("group") || startsWith("weight")
    return key.startswith(("server.", "group", "weight"))


def is_direct_or_quorum_key(key: str) -> bool:
    return key in DIRECT_KEYS or key.startswith("metricsProvider.") or is_quorum_key(key) or key == "version"


def is_apache_property(name: str) -> bool:
    """A system property (name without "zookeeper.") that Apache ZooKeeper 3.8.0 reads."""
    return name in APACHE_PROPERTY_KEYS or name.startswith(_APACHE_PROPERTY_PREFIXES)


def zkfast_reads(name: str) -> bool:
    """zkfast acts on this property (a refused value never gets this far)."""
    return (name in TYPED_PROPERTY_NAMES or name in _READ_PROPERTY_KEYS or name.startswith(THROTTLE_PREFIX)
            or name.startswith("authProvider."))
