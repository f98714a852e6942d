"""The TLS contexts of the quorum and election ports, from the `ssl.quorum.*` keys (Apache's
common/QuorumX509Util.java: X509Util's keys under `zookeeper.ssl.quorum.`), and their reloading.

With `sslQuorumReloadCertFiles=true` Apache watches the key and trust store files and builds a new
context when one changes (X509Util.enableCertFileReloading); connections opened after that use it. zkfast
looks at the files' identity (inode, size, mtime) before each connection it opens or accepts and rebuilds
both contexts when it changed; a store that cannot be read then is logged and the old contexts stay, as a
failed reload leaves Apache's old context in place.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping

from zkfast.config.values import parse_java_int, parse_true_false
from zkfast.net.tls import QUORUM_PREFIX, TlsConfigError, client_context, server_context

log = logging.getLogger(__name__)

# X509Util.DEFAULT_HANDSHAKE_DETECTION_TIMEOUT_MILLIS: how long an accepted socket may stay silent before
# UnifiedServerSocket decides it is not TLS
DEFAULT_HANDSHAKE_DETECTION_TIMEOUT_MS = 5000


class QuorumTls:
    """Server and client contexts for the quorum ports, the host check switch and the detection timeout."""

    def __init__(self, props: Mapping[str, str], reload_cert_files: bool) -> None:
        self.props = props
        self.reload_cert_files = reload_cert_files
        # X509Util: ssl.quorum.hostnameVerification, true unless set; QuorumX509Util checks both ends
        self.hostname_verification = _flag(props, "hostnameVerification", True)
        self.detection_timeout_s = _detection_timeout_ms(props) / 1000
        self._files = self._identity()
        self._server, self._client = self._build()

    def _build(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        # without a trust store Java trusts its own CA list: the system's is the equivalent here
        return (server_context(self.props, QUORUM_PREFIX, system_trust=True),
                client_context(self.props, QUORUM_PREFIX))

    def _identity(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for store in ("keyStore", "trustStore"):
            path = self.props.get(f"{QUORUM_PREFIX}{store}.location")
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            out.append(None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def _reload_if_changed(self) -> None:
        if not self.reload_cert_files:
            return
        files = self._identity()
        if files == self._files:
            return
        self._files = files
        try:
            self._server, self._client = self._build()
        except (TlsConfigError, ssl.SSLError, OSError) as e:
            log.error("cannot reload the quorum key or trust store; keeping the old ones: %s", e)
            return
        log.info("reloaded the quorum key and trust stores (sslQuorumReloadCertFiles)")

    def server(self) -> ssl.SSLContext:
        self._reload_if_changed()
        return self._server

    def client(self) -> ssl.SSLContext:
        self._reload_if_changed()
        return self._client


def _flag(props: Mapping[str, str], name: str, default: bool) -> bool:
    value = props.get(QUORUM_PREFIX + name)
    if value is None:
        return default
    try:
        # Apache's Boolean.parseBoolean takes any other word for false: zkfast refuses it instead
        return parse_true_false(value.strip())
    except ValueError as e:
        raise TlsConfigError(f"ssl.quorum.{name}: {e}") from None


def _detection_timeout_ms(props: Mapping[str, str]) -> int:
    value = props.get(QUORUM_PREFIX + "handshakeDetectionTimeoutMillis")
    if value is None:
        return DEFAULT_HANDSHAKE_DETECTION_TIMEOUT_MS
    try:
        ms = parse_java_int(value)
    except ValueError as e:
        raise TlsConfigError(f"ssl.quorum.handshakeDetectionTimeoutMillis: {e}") from None
    if ms < 1:
        # SSLContextAndOptions: an endless wait could hold the port's accepting forever
        log.warning("ssl.quorum.handshakeDetectionTimeoutMillis=%d is below 1; using %d", ms,
                    DEFAULT_HANDSHAKE_DETECTION_TIMEOUT_MS)
        return DEFAULT_HANDSHAKE_DETECTION_TIMEOUT_MS
    return ms
