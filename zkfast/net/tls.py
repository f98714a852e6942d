"""TLS contexts from Apache ZooKeeper's X509Util keys: `ssl.*` for secureClientPort, `ssl.quorum.*` for
the quorum and election ports (QuorumX509Util: the same names under another prefix).

Key and trust stores may be JKS (read with pyjks), PKCS12 or PEM, as `ssl.keyStore.type` /
`ssl.trustStore.type` say or as their file names suggest. A client certificate authenticates the
connection under the `x509` scheme with its subject DN in RFC 2253 form, as Apache's
X509AuthenticationProvider does (`zookeeper.X509AuthenticationProvider.superUser` also makes it super).
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "zookeeper.ssl."
QUORUM_PREFIX = "zookeeper.ssl.quorum."
# the zookeeper.ssl.* keys server_context reads (config.py refuses ssl.crl, ssl.ocsp and the other keys
# that zkfast cannot honour and must not ignore)
PROPERTY_NAMES = frozenset({
    "keyStore.location", "keyStore.password", "keyStore.passwordPath", "keyStore.type",
    "trustStore.location", "trustStore.password", "trustStore.passwordPath", "trustStore.type",
    "protocol", "enabledProtocols", "ciphersuites", "clientAuth",
})
# ...and the ssl.quorum.* ones (zkfast.quorum.tlscontexts): the same, and the quorum's host check and
# UnifiedServerSocket's wait for a first byte
QUORUM_PROPERTY_NAMES = PROPERTY_NAMES | {"hostnameVerification", "handshakeDetectionTimeoutMillis"}
_TLS_VERSIONS = {"TLSV1": ssl.TLSVersion.TLSv1, "TLSV1.1": ssl.TLSVersion.TLSv1_1,
                 "TLSV1.2": ssl.TLSVersion.TLSv1_2, "TLSV1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(Exception):
    """A key or trust store cannot be used; the message names the key and the file."""


@dataclass
class Store:
    key_pem: bytes | None
    certs_pem: list[bytes]


def _pem(kind: str, der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode() if kind == "CERTIFICATE" else (
        b"-----BEGIN PRIVATE KEY-----\n" + _b64_lines(der) + b"-----END PRIVATE KEY-----\n")


def _b64_lines(der: bytes) -> bytes:
    import base64

    text = base64.b64encode(der)
    return b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64))


def _store_type(path: Path, declared: str | None) -> str:
    if declared:
        return declared.upper()
    name = path.name.lower()
    if name.endswith((".jks", ".keystore", ".truststore")):
        return "JKS"
    if name.endswith((".p12", ".pfx", ".pkcs12")):
        return "PKCS12"
    if name.endswith((".pem", ".crt", ".cer", ".key")):
        return "PEM"
    return "JKS"


def read_store(key: str, path: Path, password: str | None, declared_type: str | None) -> Store:
    """The private key (PKCS#8 PEM, if any) and the certificates of a JKS, PKCS12 or PEM store; `key`
    names the store's keys in errors (`ssl.keyStore`, `ssl.quorum.trustStore`)."""
    kind = _store_type(path, declared_type)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TlsConfigError(f"{key}.location: cannot read {path}: {e.strerror}") from e
    try:
        if kind in ("JKS", "JCEKS"):
            import jks

            ks = jks.KeyStore.loads(raw, password or "")
            key_pem = None
            certs: list[bytes] = []
            for entry in ks.private_keys.values():
                if not entry.is_decrypted():
                    entry.decrypt(password or "")
                key_pem = _pem("PRIVATE KEY", entry.pkey_pkcs8)
                certs.extend(_pem("CERTIFICATE", der) for _, der in entry.cert_chain)
                break
            certs.extend(_pem("CERTIFICATE", c.cert) for c in ks.certs.values())
            return Store(key_pem, certs)
        if kind == "PKCS12":
            from cryptography.hazmat.primitives.serialization import (
                Encoding,
                NoEncryption,
                PrivateFormat,
                pkcs12,
            )

            pkey, cert, extra = pkcs12.load_key_and_certificates(raw, (password or "").encode() or None)
            key_pem = None if pkey is None else pkey.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                                   NoEncryption())
            chain = ([cert] if cert is not None else []) + list(extra or [])
            return Store(key_pem, [c.public_bytes(Encoding.PEM) for c in chain])
        if kind == "PEM":
            text = raw
            key_pem = None
            for marker in (b"PRIVATE KEY-----", b"RSA PRIVATE KEY-----", b"EC PRIVATE KEY-----"):
                begin = text.find(b"-----BEGIN " + marker)
                if begin != -1:
                    end = text.find(b"-----END " + marker, begin)
                    key_pem = text[begin:end + len(b"-----END ") + len(marker)] + b"\n"
                    break
            certs = []
            pos = 0
            while True:
                begin = text.find(b"-----BEGIN CERTIFICATE-----", pos)
                if begin == -1:
                    break
                end = text.find(b"-----END CERTIFICATE-----", begin) + len(b"-----END CERTIFICATE-----")
                certs.append(text[begin:end] + b"\n")
                pos = end
            return Store(key_pem, certs)
    except TlsConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure becomes a config error naming the file
        raise TlsConfigError(f"{key}.location: cannot read {kind} store {path}: {e}") from e
    raise TlsConfigError(f"{key}.type: unsupported store type {kind!r} (JKS, PKCS12 or PEM)")


def server_context(props: Mapping[str, str], prefix: str = PREFIX, *, system_trust: bool = False) -> ssl.SSLContext:
    """The accepting side's SSLContext from the `<prefix>*` properties (full names, as ServerConfig keeps
    them). system_trust: without a trust store, trust the system's CAs (as Java falls back to its own)."""
    ctx = _context(props, prefix, True, system_trust)
    client_auth = (props.get(prefix + "clientAuth") or "need").lower()
    if client_auth in ("need", "required"):
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif client_auth in ("want", "optional"):
        ctx.verify_mode = ssl.CERT_OPTIONAL
    elif client_auth == "none":
        ctx.verify_mode = ssl.CERT_NONE
    else:
        raise TlsConfigError(f"{_short(prefix)}clientAuth: {client_auth!r} is not need, want or none")
    return ctx


def client_context(props: Mapping[str, str], prefix: str) -> ssl.SSLContext:
    """The connecting side's SSLContext: it presents the key store's certificate and requires one the
    trust store (or, without one, the system) trusts. Host names are checked by the caller, against the
    address connected to, as Apache's ZKTrustManager checks them (zkfast.net.peerhost)."""
    ctx = _context(props, prefix, False, True)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _short(prefix: str) -> str:
    return prefix.removeprefix("zookeeper.")


def _context(props: Mapping[str, str], prefix: str, server_side: bool, system_trust: bool) -> ssl.SSLContext:
    def get(name: str) -> str | None:
        return props.get(prefix + name)

    short = _short(prefix)
    key_loc = get("keyStore.location")
    if not key_loc:
        raise TlsConfigError(f"{short}keyStore.location: required for TLS")
    keystore = read_store(f"{short}keyStore", Path(key_loc), _password(props, prefix, "keyStore"),
                          get("keyStore.type"))
    if keystore.key_pem is None or not keystore.certs_pem:
        raise TlsConfigError(f"{short}keyStore.location: {key_loc} holds no private key with a certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    _set_versions(ctx, short, get("protocol"), get("enabledProtocols"))
    with tempfile.TemporaryDirectory(prefix="zkfast-tls-") as tmp:
        cert_file = Path(tmp) / "cert.pem"
        key_file = Path(tmp) / "key.pem"
        cert_file.write_bytes(b"".join(keystore.certs_pem))
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(keystore.key_pem)
        ctx.load_cert_chain(str(cert_file), str(key_file))
    trust_loc = get("trustStore.location")
    if trust_loc:
        truststore = read_store(f"{short}trustStore", Path(trust_loc), _password(props, prefix, "trustStore"),
                                get("trustStore.type"))
        if not truststore.certs_pem:
            # Java's PKIX trust manager refuses an empty trust store too (no trust anchors)
            raise TlsConfigError(f"{short}trustStore.location: {trust_loc} holds no certificate")
        ctx.load_verify_locations(cadata=b"".join(truststore.certs_pem).decode())
    elif system_trust:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH)
    ciphers = get("ciphersuites")
    if ciphers:
        _set_cipher_suites(ctx, short, [c.strip() for c in ciphers.split(",") if c.strip()])
    return ctx


def _password(props: Mapping[str, str], prefix: str, store: str) -> str | None:
    """X509Util.getPasswordFromConfigPropertyOrFile: `passwordPath` (a file) wins over `password`;
    SecretUtils drops one trailing line separator."""
    path = props.get(f"{prefix}{store}.passwordPath")
    if not path:
        return props.get(f"{prefix}{store}.password")
    try:
        secret = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TlsConfigError(f"{_short(prefix)}{store}.passwordPath: cannot read {path}: {e}") from e
    return secret.removesuffix("\n")


def _set_versions(ctx: ssl.SSLContext, short: str, protocol: str | None, enabled: str | None) -> None:
    """Apache enables `ssl.enabledProtocols` (a comma list), or else only `ssl.protocol` (TLSv1.2 by
    default). zkfast allows the range the list spans; without one, `ssl.protocol` and anything newer."""
    if not enabled:
        newest_only = (protocol or "").upper() == "TLSV1.3"
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if newest_only else ssl.TLSVersion.TLSv1_2
        return
    names = [n.strip().upper() for n in enabled.split(",") if n.strip()]
    unknown = [n for n in names if n not in _TLS_VERSIONS]
    if unknown or not names:
        raise TlsConfigError(f"{short}enabledProtocols: {enabled!r} must list TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")
    versions = sorted(_TLS_VERSIONS[n] for n in names)
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]


_TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
_KEY_EXCHANGES = {"ECDHE_ECDSA": "ECDHE-ECDSA-", "ECDHE_RSA": "ECDHE-RSA-", "DHE_RSA": "DHE-RSA-", "RSA": ""}
_IANA_SUITE = re.compile(r"TLS_(ECDHE_ECDSA|ECDHE_RSA|DHE_RSA|RSA)_WITH_"
                         r"(?:AES_(128|256)_(GCM|CBC)_(SHA384|SHA256|SHA)|(CHACHA20_POLY1305)_SHA256)")


def openssl_suite_name(name: str) -> str:
    """A TLS 1.2 suite as OpenSSL spells it: Apache's ssl.ciphersuites uses the IANA names Java knows
    (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 is OpenSSL's ECDHE-RSA-AES128-GCM-SHA256); other names
    pass unchanged."""
    match = _IANA_SUITE.fullmatch(name)
    if match is None:
        return name
    exchange, bits, mode, mac, chacha = match.groups()
    prefix = _KEY_EXCHANGES[exchange]
    if chacha:
        return f"{prefix}CHACHA20-POLY1305"
    return f"{prefix}AES{bits}-GCM-{mac}" if mode == "GCM" else f"{prefix}AES{bits}-{mac}"


def _set_cipher_suites(ctx: ssl.SSLContext, short: str, names: list[str]) -> None:
    """ssl.ciphersuites, as Netty applies it: unknown suites are left out; a list without TLS 1.3
    suites means no TLS 1.3 (so Apache's default-era lists behave there as in Apache); a list that
    allows nothing stops start-up rather than fall back to OpenSSL's defaults."""
    older = [n for n in names if n not in _TLS13_SUITES]
    known = []
    for name in older:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(openssl_suite_name(name))
            known.append(openssl_suite_name(name))
        except ssl.SSLError:
            log.warning("%sciphersuites: %s is not known to OpenSSL; left out", short, name)
    newer = _TLS13_SUITES.intersection(names)
    if known:
        ctx.set_ciphers(":".join(known))
    elif ctx.minimum_version < ssl.TLSVersion.TLSv1_3:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # no TLS 1.2 suite left: TLS 1.2 cannot be offered
    if not newer:
        if not known:
            raise TlsConfigError(f"{short}ciphersuites: none of {', '.join(names)} is known to OpenSSL")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif newer != _TLS13_SUITES:
        # Python's ssl module cannot choose among TLS 1.3 suites (all three are AEAD suites)
        log.warning("%sciphersuites: TLS 1.3 connections may also use %s", short, ", ".join(sorted(_TLS13_SUITES - newer)))


def client_cert_id(ssl_object: ssl.SSLObject | None) -> str | None:
    """The client certificate's subject DN as Java's X500Principal.getName() (RFC 2253) prints it."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.subject.rfc4514_string()
