"""Authentication providers and ACL checks.

From Apache's zookeeper-server/src/main/java/org/apache/zookeeper/server/auth/*.java, checkACL in
zookeeper-server/src/main/java/org/apache/zookeeper/server/ZooKeeperServer.java, fixupACL in
zookeeper-server/src/main/java/org/apache/zookeeper/server/PrepRequestProcessor.java, Perms and Ids in
zookeeper-server/src/main/java/org/apache/zookeeper/ZooDefs.java.

An ACL is a list of (perms, scheme, id) tuples; a connection's auth ids a list of (scheme, id).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from zkfast import javaorder
from zkfast._jute import Code, Perm, ZkError
from zkfast.limits import MAX_AUTH_IDS_PER_CONNECTION

Acl = list[tuple[int, str, str]]
AuthId = tuple[str, str]

_JAVA_INT = re.compile(r"[+-]?[0-9]+\Z")


def java_split(s: str, sep: str, limit: int = 0) -> list[str]:
    """String.split(regex-free sep, limit) with Java's rules: limit 0 drops trailing empty strings."""
    parts = s.split(sep) if limit <= 0 else s.split(sep, limit - 1)
    if limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
        if not parts and s == "":
            return [""]
    return parts


def java_parse_int(s: str) -> int | None:
    if not _JAVA_INT.match(s):
        return None
    v = int(s)
    return v if -(2**31) <= v < 2**31 else None


class AuthProvider:
    """One scheme: how a client authenticates with it and how its ids match ACL entries."""

    scheme = ""
    authenticated = False

    def handle(self, auth: bytes, remote_ip: str) -> list[AuthId] | None:
        """The ids a successful addAuth adds, or None when it fails."""
        return None

    def is_valid(self, ident: str) -> bool:
        return True

    def matches(self, ident: str, acl_expr: str) -> bool:
        return ident == acl_expr

    def user_name(self, ident: str) -> str:
        return ident


class DigestProvider(AuthProvider):
    scheme = "digest"
    authenticated = True

    def __init__(self, super_digest: str | None, algorithm: str = "SHA1") -> None:
        self.super_digest = super_digest
        self.algorithm = algorithm.replace("-", "").lower()

    def digest_id(self, user_password: str) -> str:
        user = java_split(user_password, ":", 2)[0]
        raw = hashlib.new(self.algorithm, user_password.encode("utf-8")).digest()
        return f"{user}:{base64.b64encode(raw).decode('ascii')}"

    def handle(self, auth: bytes, remote_ip: str) -> list[AuthId] | None:
        ident = self.digest_id(auth.decode("utf-8", "replace"))
        ids: list[AuthId] = []
        if self.super_digest is not None and ident == self.super_digest:
            ids.append(("super", ""))
        ids.append((self.scheme, ident))
        return ids

    def is_valid(self, ident: str) -> bool:
        return len(java_split(ident, ":")) == 2

    def user_name(self, ident: str) -> str:
        return java_split(ident, ":")[0] if ident else ident


class IpProvider(AuthProvider):
    """IPv4 only, as Apache ZooKeeper 3.8.0's IPAuthenticationProvider."""

    scheme = "ip"
    authenticated = False

    def handle(self, auth: bytes, remote_ip: str) -> list[AuthId] | None:
        return [(self.scheme, remote_ip)]

    @staticmethod
    def _v4(addr: str) -> list[int] | None:
        parts = addr.split(".")
        if len(parts) != 4:
            return None
        out = []
        for p in parts:
            v = java_parse_int(p)
            if v is None or not 0 <= v <= 255:
                return None
            out.append(v)
        return out

    @staticmethod
    def _mask(b: list[int], bits: int) -> list[int]:
        out = []
        for i, v in enumerate(b):
            keep = max(0, min(8, bits - 8 * i))
            out.append(v & (0xFF << (8 - keep)) & 0xFF)
        return out

    def _parse(self, expr: str) -> tuple[list[int], int] | None:
        parts = java_split(expr, "/", 2)
        addr = self._v4(parts[0])
        if addr is None:
            return None
        bits = 32
        if len(parts) == 2:
            b = java_parse_int(parts[1])
            if b is None or not 0 <= b <= 32:
                return None
            bits = b
        return addr, bits

    def is_valid(self, ident: str) -> bool:
        return self._parse(ident) is not None

    def matches(self, ident: str, acl_expr: str) -> bool:
        parsed = self._parse(acl_expr)
        if parsed is None:
            return False
        addr, bits = parsed
        remote = self._v4(ident)
        if remote is None:
            return False
        return self._mask(remote, bits) == self._mask(addr, bits)


_KERBEROS_NAME = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)")


class SaslProvider(AuthProvider):
    """Ids set by a finished SASL exchange; `sasl:user` ACLs match the authenticated user
    (Apache's SASLAuthenticationProvider)."""

    scheme = "sasl"
    authenticated = True

    def __init__(self, let_any_sasl_user: str | None = None) -> None:
        self.let_any_sasl_user = let_any_sasl_user  # zookeeper.letAnySaslUserDoX

    def handle(self, auth: bytes, remote_ip: str) -> list[AuthId] | None:
        return None  # ids come from the SASL exchange, never from addAuth

    def is_valid(self, ident: str) -> bool:
        # new KerberosName(id) must not throw: a name with '@' must be primary[/host]@REALM
        return _KERBEROS_NAME.fullmatch(ident) is not None or "@" not in ident

    def matches(self, ident: str, acl_expr: str) -> bool:
        # an authenticated SASL user named "super" matches every sasl ACL entry
        if ident == "super" or ident == acl_expr:
            return True
        return self.let_any_sasl_user is not None and acl_expr == self.let_any_sasl_user


class X509Provider(AuthProvider):
    """Ids set by a client certificate on the secure port; never by addAuth."""

    scheme = "x509"
    authenticated = True

    def __init__(self, super_user: str | None = None) -> None:
        self.super_user = super_user

    def handle(self, auth: bytes, remote_ip: str) -> list[AuthId] | None:
        return None

    def matches(self, ident: str, acl_expr: str) -> bool:
        if self.super_user is not None and ident == self.super_user:
            return True
        return ident == acl_expr


@dataclass
class AuthRegistry:
    """The providers this server knows (Apache's ProviderRegistry)."""

    providers: dict[str, AuthProvider] = field(default_factory=dict)
    skip_acl: bool = False

    @classmethod
    def create(cls, super_digest: str | None = None, digest_enabled: bool = True,
               digest_algorithm: str = "SHA1", extra_schemes: Iterable[str] = (),
               skip_acl: bool = False) -> AuthRegistry:
        reg = cls(skip_acl=skip_acl)
        reg.add(IpProvider())
        if digest_enabled:
            reg.add(DigestProvider(super_digest, digest_algorithm))
        for scheme in extra_schemes:
            if scheme == "sasl":
                reg.add(SaslProvider())
        return reg

    def add_x509(self, super_user: str | None = None) -> None:
        """TLS is on: the x509 scheme exists (Apache's configureSSLAuth)."""
        if "x509" not in self.providers:
            self.add(X509Provider(super_user))

    def add(self, provider: AuthProvider) -> None:
        self.providers[provider.scheme] = provider

    def get(self, scheme: str) -> AuthProvider | None:
        return self.providers.get(scheme)

    # -- checks

    def check(self, acl: Sequence[tuple[int, str, str]] | None, perm: int, ids: Sequence[AuthId]) -> bool:
        """Apache's ZooKeeperServer.checkACL, as a yes/no."""
        if self.skip_acl or not acl:
            return True
        for scheme, _ in ids:
            if scheme == "super":
                return True
        for perms, scheme, ident in acl:
            if perms & perm:
                if scheme == "world" and ident == "anyone":
                    return True
                provider = self.providers.get(scheme)
                if provider is not None:
                    for id_scheme, id_value in ids:
                        if id_scheme == scheme and provider.matches(id_value, ident):
                            return True
        return False

    def require(self, acl: Sequence[tuple[int, str, str]] | None, perm: int, ids: Sequence[AuthId]) -> None:
        if not self.check(acl, perm, ids):
            raise ZkError(Code.NOAUTH)

    def fixup_acl(self, path: bytes, ids: Sequence[AuthId], acl: Acl | None) -> Acl:
        """Validate an ACL given by a client and expand `auth` ids (Apache's fixupACL)."""
        uniq: Acl = []
        for entry in acl or ():
            if entry not in uniq:
                uniq.append(entry)
        if not uniq:
            raise ZkError(Code.INVALIDACL, path)
        out: Acl = []
        for perms, scheme, ident in uniq:
            if scheme is None:
                raise ZkError(Code.INVALIDACL, path)
            if scheme == "world" and ident is None:
                # Apache's `id.getId().equals("anyone")` fails on a null id: MARSHALLINGERROR
                raise TypeError("world ACL with a null id")
            if scheme == "world" and ident == "anyone":
                out.append((perms, scheme, ident))
            elif scheme == "auth":
                valid = False
                for id_scheme, id_value in ids:
                    provider = self.providers.get(id_scheme)
                    if provider is not None and provider.authenticated:
                        valid = True
                        out.append((perms, id_scheme, id_value))
                if not valid:
                    raise ZkError(Code.INVALIDACL, path)
            else:
                provider = self.providers.get(scheme)
                if provider is None:
                    raise ZkError(Code.INVALIDACL, path)
                if ident is None:
                    raise TypeError(f"{scheme} ACL with a null id")  # Apache: NPE in isValid
                if not provider.is_valid(ident):
                    raise ZkError(Code.INVALIDACL, path)
                out.append((perms, scheme, ident))
        return out

    def client_infos(self, ids: Sequence[AuthId]) -> list[tuple[str, str]]:
        """whoAmI: (scheme, user) per auth id; unknown schemes give an empty user."""
        out = []
        for scheme, ident in ids:
            provider = self.providers.get(scheme)
            out.append((scheme, "" if provider is None else provider.user_name(ident)))
        return out


def mask_digest_ids(acl: Acl) -> Acl:
    """getACL without ADMIN shows digest ids as `user:x` (Apache's FinalRequestProcessor)."""
    return [(p, s, re.sub(r":.*", ":x", i, count=1, flags=re.S) if s == "digest" else i)
            for p, s, i in acl]


ALL_PERMS = int(Perm.ALL)


def joined_auth_ids(current: Sequence[tuple[str, str]],
                    added: Sequence[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """A connection's auth ids once `added` join them, in Apache's order; None past
    MAX_AUTH_IDS_PER_CONNECTION (every ACL check of the connection walks them)."""
    joined = list(dict.fromkeys([*current, *added]))
    if len(joined) > MAX_AUTH_IDS_PER_CONNECTION:
        return None
    return javaorder.auth_set_order(joined)
