"""Settings zkfast does not implement and must not ignore: their values that would weaken security,
durability or quorum safety stop start-up; their harmless values (`ssl.crl=false`) are accepted."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from zkfast.config.properties import java_trim
from zkfast.config.values import parse_true_false


class Unsupported(NamedTuple):
    """A setting zkfast does not implement and must not ignore: with a value that `refuses`, ignoring
    it would weaken `weakens` (security, durability or quorum safety), because of `consequence`."""

    refuses: Callable[[str], bool]  # True: refuse; False: harmless, accepted; ValueError: malformed
    feature: str
    weakens: str
    consequence: str


# authProvider.N classes zkfast implements (the last three are built in; naming them again is harmless)
_AUTH_PROVIDERS = frozenset(f"org.apache.zookeeper.server.auth.{name}AuthenticationProvider"
                            for name in ("SASL", "Digest", "IP", "X509"))


def _is_true(value: str) -> bool:
    # Apache reads these with Boolean.parseBoolean (anything but "true" means false); zkfast refuses
    # what is neither, so that "yes" never silently means false.
    return parse_true_false(java_trim(value))


_REVOCATION = "security", "a revoked client certificate would still be accepted"
_QUORUM_REVOCATION = "security", "a server with a revoked certificate would still join the ensemble"
_UNSUPPORTED: dict[str, Unsupported] = {
    # zoo.cfg keys of QuorumPeerConfig (never system properties)
    # system properties (names without "zookeeper.")
    "audit.enable": Unsupported(_is_true, "audit logging", "security",
                                "no audit log of who changed what would be written"),
    "requireKerberosConfig": Unsupported(_is_true, "Kerberos", "security",
                                         "the server would start without the Kerberos configuration this "
                                         "setting demands"),
    "DigestAuthenticationProvider.digestAlg": Unsupported(
        lambda v: java_trim(v).upper() not in ("SHA1", "SHA-1", "SHA"), "digest algorithms other than SHA1",
        "security", "digest ids and the superDigest would be computed with SHA1, so who may do what would "
                    "no longer be what the ACLs say"),
    "admin.forceHttps": Unsupported(_is_true, "HTTPS on the AdminServer", "security",
                                    "the AdminServer would answer over plain HTTP"),
    "ssl.crl": Unsupported(_is_true, "certificate revocation lists", *_REVOCATION),
    "ssl.ocsp": Unsupported(_is_true, "OCSP", *_REVOCATION),
    "ssl.quorum.crl": Unsupported(_is_true, "certificate revocation lists", *_QUORUM_REVOCATION),
    "ssl.quorum.ocsp": Unsupported(_is_true, "OCSP", *_QUORUM_REVOCATION),
    "ssl.quorum.context.supplier.class": Unsupported(
        lambda v: bool(java_trim(v)), "SSLContext supplier classes", "security",
        "quorum TLS would run with the ssl.quorum.* keys instead of the context that class builds"),
    "ssl.context.supplier.class": Unsupported(lambda v: bool(java_trim(v)), "SSLContext supplier classes",
                                              "security", "TLS would run with the ssl.* keys instead of the "
                                                          "context that class builds"),
    "ssl.authProvider": Unsupported(lambda v: java_trim(v) != "x509", "x509 authentication providers other "
                                    "than x509", "security", "client certificates would be checked and "
                                                             "named by the x509 scheme instead"),
    "authProvider.": Unsupported(lambda v: java_trim(v) not in _AUTH_PROVIDERS, "Java authentication "
                                 "providers other than SASL, digest, ip and x509", "security",
                                 "what that provider checks would go unchecked"),
}


def unsupported_setting(key: str) -> Unsupported | None:
    numbered = re.fullmatch(r"(authProvider)\.[^.]+", key)
    return _UNSUPPORTED.get(key if numbered is None else numbered.group(1) + ".")
