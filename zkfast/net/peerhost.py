"""Whether a TLS peer's certificate names the address of the peer, as Apache ZooKeeper checks a quorum
connection with `ssl.quorum.hostnameVerification` (common/ZKTrustManager.java performHostVerification,
common/ZKHostnameVerifier.java): both ends check, the accepting one against the address the connection
comes from, the connecting one against the address it reached.

The IP address is tried first, against the certificate's IP subject alternative names; failing that, the
host name a reverse lookup gives for it (confirmed by a forward lookup, as Java's
InetAddress.getHostName does), against its DNS names, with a `*` standing for one label. A certificate
with no DNS or IP alternative name is matched by its most specific CN instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from cryptography import x509
from cryptography.x509.oid import NameOID


class HostMismatch(Exception):
    """The certificate names neither the peer's address nor its host name."""


def _alt_names(cert: x509.Certificate) -> list[tuple[str, str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ([("dns", name) for name in san.get_values_for_type(x509.DNSName)]
            + [("ip", str(ip)) for ip in san.get_values_for_type(x509.IPAddress)])


def _matches_name(host: str, identity: str) -> bool:
    """ZKHostnameVerifier.matchIdentityStrict: one `*`, which stands for part of one label."""
    host, identity = host.lower(), identity.lower()
    star = identity.find("*")
    if star == -1:
        return host == identity
    prefix, suffix = identity[:star], identity[star + 1:]
    if not host.startswith(prefix) or not host.endswith(suffix) or len(host) < len(prefix) + len(suffix):
        return False
    return "." not in host[len(prefix):len(host) - len(suffix)]


def _as_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def names_host(cert: x509.Certificate, host: str) -> bool:
    """ZKHostnameVerifier.verify: does `cert` name `host` (an IP address or a DNS name)?"""
    alts = _alt_names(cert)
    if not alts:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return bool(cns) and _matches_name(host, str(cns[-1].value))
    ip = _as_ip(host)
    if ip is not None:
        return any(kind == "ip" and _as_ip(value) == ip for kind, value in alts)
    return any(kind == "dns" and _matches_name(host, value) for kind, value in alts)


async def _confirmed_host_name(ip: str) -> str | None:
    """The name a reverse lookup gives for `ip`, if a forward lookup of that name gives `ip` back."""
    loop = asyncio.get_running_loop()
    try:
        name, _ = await loop.getnameinfo((ip, 0), socket.NI_NAMEREQD)
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return name if any(_as_ip(str(info[4][0])) == _as_ip(ip) for info in infos) else None


async def check_peer_host(cert_der: bytes, ip: str) -> None:
    """Raise HostMismatch unless the certificate (DER) names `ip` or its confirmed host name."""
    cert = x509.load_der_x509_certificate(cert_der)
    if names_host(cert, ip):
        return
    name = await _confirmed_host_name(ip)
    if name is not None and names_host(cert, name):
        return
    raise HostMismatch(f"the certificate of {cert.subject.rfc4514_string()} names neither {ip} nor "
                       f"{name or 'a host name of it'}")
