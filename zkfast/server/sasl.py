"""SASL authentication of client connections: DIGEST-MD5 (RFC 2831) as Apache ZooKeeper 3.8.0 runs it.

Apache's server side is the JDK's `com.sun.security.sasl.digest.DigestMD5Server`, created per
connection with protocol `zookeeper`, server name `zk-sasl-md5` and no properties, and fed by
`SaslServerCallbackHandler` (users from the `user_NAME="password"` options of the JAAS `Server`
section). This module reproduces that exchange and `ZooKeeperServer.processSasl` around it:

* GetSASLRequest{buffer token} in, SetSASLResponse{buffer token} out, ReplyHeader(xid, zxid 0, err).
* First token (whatever it holds): the challenge
  `realm="zk-sasl-md5",nonce="<40 base64 chars>",charset=utf-8,algorithm=md5-sess` (no `qop`
  directive: the JDK's default offer is `auth` only, and it says so by leaving qop out).
* Second token: the client's digest-response, checked as the JDK checks it (realm, nonce, cnonce,
  `nonce-count` (clients send `nc`, which the JDK never looks at), qop `auth` only, digest-uri
  `zookeeper/zk-sasl-md5` ignoring case, charset, the response hash); the answer is `rspauth=<hex>`
  and the connection gains the auth id ("sasl", user) (and ("super", "") for a `zookeeper.superUser*`).
* Any later SASL packet fails (the JDK server is then in its "illegal state").
* A failure answers AUTHFAILED (SESSIONCLOSEDREQUIRESASLAUTH when SASL is enforced) with a null token
  and closes the connection once that is sent, unless `zookeeper.allowSaslFailedClients=true` (and SASL
  is not enforced): then the reply is OK with a null token and the connection stays unauthenticated.
* What Java fails with a RuntimeException (an undecodable request, a null token, a non-numeric
  `maxbuf`/`nonce-count`, a malformed Kerberos-style user name) closes the connection without a reply.
* No JAAS `Server` section: Apache has no SaslServer for the connection, logs an error and answers OK
  with a null token; so does zkfast.

`AuthEnforcer` is Apache's AuthenticationHelper (`enforce.auth.enabled`, `enforce.auth.schemes`,
`sessionRequireClientSASLAuth`).

Deliberate differences: only DigestLoginModule (DIGEST-MD5) is supported, a `Server` section naming
another login module (Kerberos) stops start-up; an unknown user always fails (Apache's callback handler
keeps the last known user name across connections and may check an unknown user against that user's
password); nonces come from `secrets` (the JDK uses java.util.Random); auth_to_local rules run with
Python's `re`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zkfast._jute import Code, JuteError, decode_request
from zkfast.limits import MAX_AUTH_IDS_PER_CONNECTION
from zkfast.server.auth import java_parse_int, java_split, joined_auth_ids
from zkfast.server.jaas import JAAS_CONF_KEY, JaasConfig, JaasError, default_jaas_spec, load_jaas

if TYPE_CHECKING:
    from zkfast.net.connection import ClientConnection
    from zkfast.server.auth import AuthRegistry
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)

OP_SASL = 102
PROTOCOL = "zookeeper"
SERVER_NAME = "zk-sasl-md5"  # Apache's ZooKeeperSaslServer: also the DIGEST-MD5 realm
DIGEST_LOGIN_MODULE = "org.apache.zookeeper.server.auth.DigestLoginModule"
LOGIN_CONTEXT_NAME_KEY = "zookeeper.sasl.serverconfig"
DEFAULT_LOGIN_CONTEXT_NAME = "Server"
SUPER_USER_KEY = "zookeeper.superUser"
SUPER_PASSWORD_KEY = "zookeeper.SASLAuthenticationProvider.superPassword"
ALLOW_FAILED_KEY = "zookeeper.allowSaslFailedClients"
REMOVE_HOST_KEY = "zookeeper.kerberos.removeHostFromPrincipal"
REMOVE_REALM_KEY = "zookeeper.kerberos.removeRealmFromPrincipal"
AUTH_TO_LOCAL_KEY = "zookeeper.security.auth_to_local"
LET_ANY_SASL_USER_KEY = "zookeeper.letAnySaslUserDoX"
ENFORCE_AUTH_ENABLED_KEY = "zookeeper.enforce.auth.enabled"
ENFORCE_AUTH_SCHEMES_KEY = "zookeeper.enforce.auth.schemes"
SESSION_REQUIRE_SASL_KEY = "zookeeper.sessionRequireClientSASLAuth"

MAX_RESPONSE_LENGTH = 4096  # DigestMD5Base.MAX_RESPONSE_LENGTH
_NONCE_COUNT = 1
_DIRECTIVES = ("username", "realm", "nonce", "cnonce", "nonce-count", "qop", "digest-uri", "response",
               "maxbuf", "charset", "cipher", "authzid", "auth-param")


class SaslConfigError(Exception):
    """SASL cannot be set up as configured: the server must not start (Apache's IOException)."""


class SaslFailure(Exception):
    """The exchange failed (Java's SaslException): answered AUTHFAILED unless failures are allowed."""


class SaslAbort(Exception):
    """Java fails with a RuntimeException here: the connection is closed without a reply."""


def _java_bool(value: str | None) -> bool:
    """Boolean.parseBoolean / Boolean.getBoolean."""
    return value is not None and value.lower() == "true"


def _equals_ignore_case(a: str, b: str) -> bool:
    """String.equalsIgnoreCase."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x != y and x.upper() != y.upper() and x.lower() != y.lower():
            return False
    return True


def _java_str(b: bytes) -> str:
    """new String(bytes, UTF_8): malformed input becomes U+FFFD."""
    return b.decode("utf-8", "replace")


def _string_to_bytes(s: str) -> bytes:
    """DigestMD5Base.stringToByte_8859_1 with UTF-8 on: ISO-8859-1 unless a char is above U+00FF."""
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _hex(b: bytes) -> bytes:
    return b.hex().encode("ascii")


def quote_value(value: bytes) -> bytes:
    """DigestMD5Base.writeQuotedStringValue."""
    out = bytearray()
    for ch in value:
        if ch in (0x22, 0x5C, 0x7F) or (ch <= 31 and ch not in (9, 10, 13)):
            out.append(0x5C)
        out.append(ch)
    return bytes(out)


def _is_lws(b: int) -> bool:
    return b in (13, 10, 32, 9)


def _skip_lws(buf: bytes, i: int) -> int:
    while i < len(buf) and _is_lws(buf[i]):
        i += 1
    return i


def parse_directives(buf: bytes, keys: Sequence[str] = _DIRECTIVES) -> dict[str, bytes]:
    """DigestMD5Base.parseDirectives: known keys (case-insensitive) once each; others are ignored."""
    table: dict[str, bytes] = {}

    def extract(key: bytes, value: bytes) -> None:
        name = key.decode("latin-1")
        for k in keys:
            if _equals_ignore_case(name, k):
                if k in table:
                    raise SaslFailure(f"DIGEST-MD5: peer sent more than one {name} directive: "
                                      f"{_java_str(value)}")
                table[k] = value
                return

    key = bytearray()
    value = bytearray()
    getting_key, quoted, expect_sep = True, False, False
    i = _skip_lws(buf, 0)
    while i < len(buf):
        b = buf[i]
        if getting_key:
            if b == 0x2C:  # ','
                if key:
                    raise SaslFailure(f"Directive key contains a ',':{key.decode('latin-1')}")
                i = _skip_lws(buf, i + 1)
            elif b == 0x3D:  # '='
                if not key:
                    raise SaslFailure("Empty directive key")
                getting_key = False
                i = _skip_lws(buf, i + 1)
                if i < len(buf):
                    if buf[i] == 0x22:
                        quoted = True
                        i += 1
                else:
                    raise SaslFailure(f"Valueless directive found: {key.decode('latin-1')}")
            elif _is_lws(b):
                i = _skip_lws(buf, i + 1)
                if i >= len(buf) or buf[i] != 0x3D:
                    raise SaslFailure(f"'=' expected after key: {key.decode('latin-1')}")
            else:
                key.append(b)
                i += 1
        elif quoted:
            if b == 0x5C:
                i += 1
                if i < len(buf):
                    value.append(buf[i])
                    i += 1
                else:
                    raise SaslFailure(f"Unmatched quote found for directive: {key.decode('latin-1')}")
            elif b == 0x22:
                i += 1
                quoted = False
                expect_sep = True
            else:
                value.append(b)
                i += 1
        elif _is_lws(b) or b == 0x2C:
            extract(bytes(key), bytes(value))
            key.clear()
            value.clear()
            getting_key, quoted, expect_sep = True, False, False
            i = _skip_lws(buf, i + 1)
        elif expect_sep:
            raise SaslFailure("Expecting comma or linear whitespace after quoted string")
        else:
            value.append(b)
            i += 1
    if quoted:
        raise SaslFailure(f"Unmatched quote found for directive: {key.decode('latin-1')}")
    if key:
        extract(bytes(key), bytes(value))
    return table


def response_value(method: str, digest_uri: str, qop: str, username: str, realm: str, password: str,
                   nonce: bytes, cnonce: bytes, nonce_count: int, authzid: bytes | None) -> bytes:
    """DigestMD5Base.generateResponseValue (RFC 2831 §2.1.2.1), as lower-case hex bytes."""
    a2 = (method + ":" + digest_uri).encode("utf-8")
    if qop in ("auth-int", "auth-conf"):
        a2 += b":00000000000000000000000000000000"
    user_realm_pass = (_string_to_bytes(username) + b":" + _string_to_bytes(realm) + b":"
                       + _string_to_bytes(password))
    a1 = hashlib.md5(user_realm_pass).digest() + b":" + nonce + b":" + cnonce
    if authzid is not None:
        a1 += b":" + authzid
    kd = (_hex(hashlib.md5(a1).digest()) + b":" + nonce + b":" + b"%08x" % nonce_count + b":" + cnonce
          + b":" + qop.encode("utf-8") + b":" + _hex(hashlib.md5(a2).digest()))
    return _hex(hashlib.md5(kd).digest())


# ------------------------------------------------------------------------------ Kerberos-style names

_NAME_PARSER = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)")
_RULE_PARSER = re.compile(r"\s*((DEFAULT)|(RULE:\[(\d*):([^\]]*)](\(([^)]*)\))?(s/([^/]*)/([^/]*)/(g)?)?))")
_PARAMETER = re.compile(r"([^$]*)(\$(\d*))?")
_NON_SIMPLE = re.compile(r"[/@]")


class _NoMatchingRule(Exception):
    pass


def _java_replacement(to: str) -> str:
    """A java.util.regex replacement string ($n groups, \\x literal) as a Python one."""
    out: list[str] = []
    i = 0
    while i < len(to):
        c = to[i]
        if c == "\\" and i + 1 < len(to):
            out.append(to[i + 1].replace("\\", "\\\\"))
            i += 2
        elif c == "$" and i + 1 < len(to) and to[i + 1].isdigit():
            j = i + 1
            while j < len(to) and to[j].isdigit():
                j += 1
            out.append(f"\\g<{to[i + 1:j]}>")
            i = j
        else:
            out.append("\\\\" if c == "\\" else c)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Rule:
    """One auth_to_local rule (Apache's KerberosName.Rule)."""

    default: bool
    components: int = 0
    fmt: str = ""
    match: re.Pattern[str] | None = None
    sub_from: re.Pattern[str] | None = None
    sub_to: str = ""
    repeat: bool = False

    def apply(self, params: list[str], default_realm: str) -> str | None:
        result: str | None = None
        if self.default:
            if default_realm == params[0]:
                result = params[1]
        elif len(params) - 1 == self.components:
            base = []
            start = 0
            while start < len(self.fmt):
                m = _PARAMETER.match(self.fmt, start)
                if m is None or m.end() == start:
                    break
                base.append(m.group(1))
                if m.group(3) is not None:
                    if not m.group(3) or not 0 <= int(m.group(3)) < len(params):
                        raise _NoMatchingRule(f"bad parameter in {self.fmt}")
                    base.append(params[int(m.group(3))])
                start = m.end()
            text = "".join(base)
            if self.match is None or self.match.fullmatch(text):
                if self.sub_from is None:
                    result = text
                else:
                    result = self.sub_from.sub(_java_replacement(self.sub_to), text,
                                               count=0 if self.repeat else 1)
        if result is not None and _NON_SIMPLE.search(result):
            raise _NoMatchingRule(f"Non-simple name {result}")
        return result


def parse_auth_to_local(rules: str) -> list[_Rule]:
    """KerberosName.parseRules; ValueError for a rule it cannot read."""
    out: list[_Rule] = []
    remaining = rules.strip()
    while remaining:
        m = _RULE_PARSER.match(remaining)
        if m is None:
            raise ValueError(f"Invalid rule: {remaining}")
        if m.group(2) is not None:
            out.append(_Rule(default=True))
        else:
            try:
                out.append(_Rule(default=False, components=int(m.group(4)), fmt=m.group(5),
                                 match=None if m.group(7) is None else re.compile(m.group(7)),
                                 sub_from=None if m.group(9) is None else re.compile(m.group(9)),
                                 sub_to=m.group(10) or "", repeat=m.group(11) == "g"))
            except (re.error, ValueError) as e:
                raise ValueError(f"Invalid rule: {remaining}: {e}") from None
        remaining = remaining[m.end():]
    return out


def kerberos_name_valid(name: str) -> bool:
    """SASLAuthenticationProvider.isValid: `new KerberosName(id)` does not throw."""
    return _NAME_PARSER.fullmatch(name) is not None or "@" not in name


def default_kerberos_realm(properties: Mapping[str, str]) -> str:
    """KerberosUtil.getDefaultRealm, or "" when there is no Kerberos configuration (as Apache)."""
    realm = properties.get("java.security.krb5.realm")
    if realm:
        return realm
    conf = properties.get("java.security.krb5.conf") or "/etc/krb5.conf"
    try:
        text = Path(conf).read_text("utf-8", "replace")
    except OSError:
        return ""
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, eq, value = line.partition("=")
        if eq and section == "libdefaults" and key.strip() == "default_realm":
            return value.strip()
    return ""


@dataclass(frozen=True)
class NameCanonicalizer:
    """SaslServerCallbackHandler.handleAuthorizeCallback's KerberosName treatment of the user name."""

    rules: tuple[_Rule, ...] = (_Rule(default=True),)
    default_realm: str = ""
    remove_host: bool = False
    remove_realm: bool = False

    def authorized_id(self, authentication_id: str, authorization_id: str) -> str:
        m = _NAME_PARSER.fullmatch(authentication_id)
        if m is None:
            if "@" in authentication_id:
                raise SaslAbort(f"Malformed Kerberos name: {authentication_id}")
            service, host, realm = authentication_id, None, None
        else:
            service, host, realm = m.group(1), m.group(3), m.group(4)
        if host is None and realm is None:
            short = service
        else:
            params = [realm or "", service] if host is None else [realm or "", service, host]
            short = None
            try:
                for rule in self.rules:
                    short = rule.apply(params, self.default_realm)
                    if short is not None:
                        break
            except _NoMatchingRule as e:
                log.error("Failed to set name based on Kerberos authentication rules: %s", e)
                return authorization_id
            if short is None:
                log.error("Failed to set name based on Kerberos authentication rules: No rules applied "
                          "to %s", authentication_id)
                return authorization_id  # AuthorizeCallback.getAuthorizedID falls back to it
        name = short
        if not self.remove_host and host is not None:
            name += "/" + host
        if not self.remove_realm and realm is not None:
            name += "@" + realm
        return name


# --------------------------------------------------------------------------------- the mechanism

class DigestMD5Server:
    """One connection's DIGEST-MD5 server (the JDK's DigestMD5Server with Apache's callbacks)."""

    def __init__(self, credentials: Mapping[str, str], super_password: str | None = None,
                 names: NameCanonicalizer | None = None, realm: str = SERVER_NAME,
                 digest_uri: str = f"{PROTOCOL}/{SERVER_NAME}",
                 authorize: Callable[[str, str], str] | None = None) -> None:
        """realm/digest_uri: the server name and `protocol/serverName` the JDK server was created with.
        authorize: the AuthorizeCallback, (authentication id, authorization id) → authorized id, raising
        SaslFailure to refuse; by default the client port's (SaslServerCallbackHandler's)."""
        self.credentials = credentials
        self.super_password = super_password
        self.names = names or NameCanonicalizer()
        self.realm = realm
        self.digest_uri = digest_uri
        self.authorize = authorize or self._authorize_client
        self.step = 1
        self.complete = False
        self.nonce = b""
        self.authorization_id: str | None = None

    def challenge(self) -> bytes:
        self.nonce = base64.b64encode(secrets.token_bytes(30))  # 40 chars, as the JDK's nonce
        return (b'realm="' + quote_value(self.realm.encode("utf-8")) + b'",nonce="' + quote_value(self.nonce)
                + b'",charset=utf-8,algorithm=md5-sess')

    def evaluate_response(self, response: bytes | None) -> bytes:
        if response is None:  # Java: a NullPointerException, which the callers catch as a failure
            raise SaslFailure("no response token")
        if len(response) > MAX_RESPONSE_LENGTH:
            raise SaslFailure(f"DIGEST-MD5: Invalid digest response length. Got:  {len(response)} "
                              f"Expected < {MAX_RESPONSE_LENGTH}")
        if self.step == 1:
            self.step = 3
            return self.challenge()
        if self.step == 3:
            try:
                answer = self._validate(parse_directives(response))
            finally:
                self.step = 0
            self.complete = True
            return answer
        raise SaslFailure("DIGEST-MD5: Server at illegal state")

    def _authorize_client(self, username: str, authzid: str) -> str:
        """SaslServerCallbackHandler.handleAuthorizeCallback: any authzid, the name canonicalized."""
        log.info("Successfully authenticated client: authenticationID=%s;  authorizationID=%s.",
                 username, authzid)
        authorized = self.names.authorized_id(username, authzid)
        log.info("Setting authorizedID: %s", authorized)
        return authorized

    def _password(self, username: str) -> str | None:
        """SaslServerCallbackHandler's NameCallback + PasswordCallback."""
        if username not in self.credentials:
            log.warning("User '%s' not found in list of DIGEST-MD5 authenticateable users.", username)
            return None
        if username == "super" and self.super_password is not None:
            return self.super_password
        return self.credentials[username]

    def _validate(self, d: dict[str, bytes]) -> bytes:
        """DigestMD5Server.validateClientResponse."""
        fmt = "DIGEST-MD5: digest response format violation. "
        charset = d.get("charset")
        if charset is not None and _java_str(charset) != "utf-8":
            raise SaslFailure(fmt + f"Incompatible charset value: {_java_str(charset)}")
        maxbuf = d.get("maxbuf")
        if maxbuf is not None and java_parse_int(_java_str(maxbuf)) is None:
            raise SaslAbort(f"NumberFormatException: maxbuf {_java_str(maxbuf)!r}")
        if "username" not in d:
            raise SaslFailure(fmt + "Missing username.")
        username = _java_str(d["username"])
        realm = _java_str(d["realm"]) if "realm" in d else ""
        if realm != self.realm:
            raise SaslFailure(fmt + f"Nonexistent realm: {realm}")
        if "nonce" not in d:
            raise SaslFailure(fmt + "Missing nonce.")
        if d["nonce"] != self.nonce:
            raise SaslFailure(fmt + "Mismatched nonce.")
        if "cnonce" not in d:
            raise SaslFailure(fmt + "Missing cnonce.")
        cnonce = d["cnonce"]
        count = d.get("nonce-count")
        if count is not None:
            text = _java_str(count)
            if not re.fullmatch(r"[+-]?[0-9a-fA-F]+", text) or not -(2**31) <= int(text, 16) < 2**31:
                raise SaslAbort(f"NumberFormatException: nonce-count {text!r}")
            if int(text, 16) != _NONCE_COUNT:
                raise SaslFailure(fmt + f"Nonce count does not match: {text}")
        qop = _java_str(d["qop"]) if "qop" in d else "auth"
        if qop in ("auth-int", "auth-conf"):
            raise SaslFailure(f"DIGEST-MD5: server does not support  qop: {qop}")
        if qop != "auth":
            raise SaslFailure(fmt + f"Invalid QOP: {qop}")
        uri = _java_str(d["digest-uri"]) if "digest-uri" in d else None
        if uri is None or not _equals_ignore_case(self.digest_uri, uri):
            raise SaslFailure(fmt + f"Mismatched URI: {uri}; expecting: {self.digest_uri}")
        if "response" not in d:
            raise SaslFailure("DIGEST-MD5: digest response format  violation. Missing response.")
        authzid_bytes = d.get("authzid")
        authzid = _java_str(authzid_bytes) if authzid_bytes is not None else username
        password = self._password(username)
        if password is None:
            raise SaslFailure(f"DIGEST-MD5: cannot acquire password for {username} in realm : {realm}")
        expected = response_value("AUTHENTICATE", uri, qop, username, realm, password, self.nonce, cnonce,
                                  _NONCE_COUNT, authzid_bytes)
        if not secrets.compare_digest(d["response"], expected):
            raise SaslFailure(fmt + "Mismatched response.")
        self.authorization_id = self.authorize(username, authzid)
        return b"rspauth=" + response_value("", uri, qop, username, realm, password, self.nonce, cnonce,
                                            _NONCE_COUNT, authzid_bytes)


# ------------------------------------------------------------------------------ enforcement

@dataclass
class AuthEnforcer:
    """Apache's AuthenticationHelper: with enforcement on, a connection must hold an auth id of one of
    `schemes` before any request other than auth/SASL; otherwise it gets SESSIONCLOSEDREQUIRESASLAUTH
    (zxid 0, no body) and is closed."""

    enabled: bool = False
    schemes: tuple[str, ...] = ()

    @property
    def sasl_required(self) -> bool:
        return self.enabled and "sasl" in self.schemes

    @classmethod
    def from_properties(cls, props: Mapping[str, str], registry: AuthRegistry | None) -> AuthEnforcer:
        if _java_bool(props.get(SESSION_REQUIRE_SASL_KEY)):
            enabled, schemes = True, ["sasl"]
        else:
            enabled = _java_bool(props.get(ENFORCE_AUTH_ENABLED_KEY))
            raw = props.get(ENFORCE_AUTH_SCHEMES_KEY)
            schemes = [s.strip() for s in java_split(raw, ",")] if raw is not None else []
        log.info("%s = %s", ENFORCE_AUTH_ENABLED_KEY, "true" if enabled else "false")
        log.info("%s = [%s]", ENFORCE_AUTH_SCHEMES_KEY, ", ".join(schemes))
        if enabled:
            if not schemes:
                raise SaslConfigError(f"{ENFORCE_AUTH_ENABLED_KEY} is true {ENFORCE_AUTH_SCHEMES_KEY} "
                                      "must be configured.")
            for scheme in schemes:
                if registry is not None and registry.get(scheme) is None:
                    raise SaslConfigError(f"Authentication scheme {scheme} is not available "
                                          f"({ENFORCE_AUTH_SCHEMES_KEY}; known: "
                                          f"{', '.join(sorted(registry.providers))}).")
        return cls(enabled, tuple(schemes))

    def authenticated(self, auth_ids: Sequence[tuple[str, str]]) -> bool:
        return any(scheme in self.schemes for scheme, _ in auth_ids)

    def refresh(self, core: Any) -> None:
        """Keep a connection that enforcement would refuse off the C read fast path (ConnCore's
        `slow_only` flag, where the build has it), so that every request reaches `check`."""
        try:
            core.slow_only = self.enabled and not self.authenticated(core.auth_ids)
        except AttributeError:
            pass

    def check(self, server: ZooKeeperServer, conn: ClientConnection, xid: int) -> bool:
        """AuthenticationHelper.enforceAuthentication: False when the request was refused."""
        core = conn.core
        if not self.enabled or self.authenticated(core.auth_ids):
            return True
        log.error("Client authentication scheme(s) [%s] does not match with any of the expected "
                  "authentication scheme [%s], closing session.",
                  ", ".join(s for s, _ in core.auth_ids), ", ".join(self.schemes))
        core.out.reply(xid, 0, int(Code.SESSIONCLOSEDREQUIRESASLAUTH))
        core.packets_sent += 1
        conn.close_after_flush()
        return False


# ------------------------------------------------------------------------------------ the server

@dataclass
class SaslServer:
    """`server.sasl`: answers SASL packets (reads.handle_sasl calls `handle`)."""

    credentials: Mapping[str, str] | None  # None: no JAAS Server section, SASL is not set up
    super_password: str | None = None
    super_users: frozenset[str] = frozenset()
    allow_failed_clients: bool = False
    names: NameCanonicalizer = field(default_factory=NameCanonicalizer)
    enforcer: AuthEnforcer = field(default_factory=AuthEnforcer)
    section: str = DEFAULT_LOGIN_CONTEXT_NAME
    source: str = ""
    _mechs: weakref.WeakKeyDictionary[Any, DigestMD5Server] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False)

    @property
    def configured(self) -> bool:
        return self.credentials is not None

    def mechanism(self, conn: Any) -> DigestMD5Server | None:
        """The connection's DIGEST-MD5 server (made with the connection, as Apache's NIOServerCnxn)."""
        if self.credentials is None:
            return None
        mech = self._mechs.get(conn)
        if mech is None:
            mech = DigestMD5Server(self.credentials, self.super_password, self.names)
            self._mechs[conn] = mech
        return mech

    def is_super_user(self, ident: str) -> bool:
        return bool(ident) and ident in self.super_users

    def handle(self, server: ZooKeeperServer, conn: ClientConnection, xid: int, body: bytes) -> None:
        """ZooKeeperServer.processSasl."""
        try:
            (token,) = decode_request(OP_SASL, body)
        except JuteError:
            conn.close()
            return
        if token is None:
            conn.close()  # Java: NullPointerException before the exchange; the connection is dropped
            return
        mech = self.mechanism(conn)
        answer: bytes | None = None
        if mech is None:
            log.error("cnxn.saslServer is null: cnxn object did not initialize its saslServer properly.")
        else:
            try:
                answer = mech.evaluate_response(token)
                if mech.complete and mech.authorization_id is not None:
                    # only the call that completes gets here: later ones fail ("illegal state")
                    self._authenticated(conn, mech.authorization_id)
            except SaslAbort as e:
                log.warning("Unexpected exception in SASL exchange with %s: %s", conn.remote, e)
                conn.close()
                return
            except SaslFailure as e:
                log.warning("Client %s failed to SASL authenticate: javax.security.sasl.SaslException: %s",
                            conn.remote, e)
                if self.allow_failed_clients and not self.enforcer.sasl_required:
                    log.warning("Maintaining client connection despite SASL authentication failure.")
                    answer = None
                else:
                    if self.enforcer.sasl_required:
                        log.warning("Closing client connection due to server requires client SASL "
                                    "authenticaiton,but client SASL authentication has failed, or client "
                                    "is not configured with SASL authentication.")
                        err = Code.SESSIONCLOSEDREQUIRESASLAUTH
                    else:
                        log.warning("Closing client connection due to SASL authentication failure.")
                        err = Code.AUTHFAILED
                    self._reply(server, conn, xid, int(err), None)
                    conn.close_after_flush()
                    return
        self._reply(server, conn, xid, 0, answer)

    def _authenticated(self, conn: ClientConnection, ident: str) -> None:
        core = conn.core
        log.info("Session 0x%x: adding SASL authorization for authorizationID: %s",
                 core.session_id & 0xFFFFFFFFFFFFFFFF, ident)
        ids = [("sasl", ident)]
        if self.is_super_user(ident):
            ids.append(("super", ""))
            core.is_super = True
            log.info("Session 0x%x: Authenticated Id '%s' as super user",
                     core.session_id & 0xFFFFFFFFFFFFFFFF, ident)
        joined = joined_auth_ids(core.auth_ids, ids)
        if joined is None:
            log.warning("Session 0x%x: more than %d auth ids: the SASL identity %s is not added",
                        core.session_id & 0xFFFFFFFFFFFFFFFF, MAX_AUTH_IDS_PER_CONNECTION, ident)
            conn.close_after_flush()
            return
        core.auth_ids = joined
        self.enforcer.refresh(core)

    @staticmethod
    def _reply(server: ZooKeeperServer, conn: ClientConnection, xid: int, err: int,
               token: bytes | None) -> None:
        out = conn.core.out
        start = out.frame_start()
        out.write_reply_header(xid, 0, err)  # Apache: ReplyHeader(xid, 0, ...) for every SASL reply
        out.write_buffer(token)
        out.frame_end(start)
        conn.core.packets_sent += 1
        server.mark_dirty(conn)


def _super_users(props: Mapping[str, str]) -> frozenset[str]:
    """ZooKeeperServer.isSaslSuperUser: `zookeeper.superUser` and every `zookeeper.superUser.*`."""
    out = set()
    for key, value in props.items():
        if key == SUPER_USER_KEY or key.startswith(SUPER_USER_KEY + "."):
            out.add(value)
    return frozenset(out)


def digest_credentials(jaas: JaasConfig, section: str) -> dict[str, str] | None:
    """SaslServerCallbackHandler (and SaslQuorumServerCallbackHandler): the user_NAME options of every
    module of the section (None: no section)."""
    entries = jaas.entries(section)
    if entries is None:
        return None
    creds: dict[str, str] = {}
    for entry in entries:
        if entry.module != DIGEST_LOGIN_MODULE:
            raise SaslConfigError(
                f"{jaas.source}:{entry.line}: login module {entry.module} in section '{section}': zkfast "
                f"supports only {DIGEST_LOGIN_MODULE} (SASL DIGEST-MD5); Kerberos (GSSAPI) is not supported")
        for key, value in entry.options.items():
            if key.startswith("user_"):
                creds[key[len("user_"):]] = value
    return creds


def build_sasl_server(props: Mapping[str, str], registry: AuthRegistry | None = None) -> SaslServer:
    """The SASL set-up Apache's ServerCnxnFactory.configureSaslLogin + ZooKeeperServer make from the
    system properties (`ServerConfig.system_properties`). Raises SaslConfigError when Apache would not
    start: an unreadable or malformed JAAS file (named by the property), a login module other than
    DigestLoginModule, or enforce.auth settings it rejects."""
    section = props.get(LOGIN_CONTEXT_NAME_KEY, DEFAULT_LOGIN_CONTEXT_NAME)
    enforcer = AuthEnforcer.from_properties(props, registry)
    rules_text = props.get(AUTH_TO_LOCAL_KEY, "DEFAULT")
    try:
        rules = tuple(parse_auth_to_local(rules_text))
    except ValueError as e:
        raise SaslConfigError(f"{AUTH_TO_LOCAL_KEY}: {e}") from None
    names = NameCanonicalizer(rules=rules, default_realm=default_kerberos_realm(props),
                              remove_host=props.get(REMOVE_HOST_KEY) == "true",
                              remove_realm=props.get(REMOVE_REALM_KEY) == "true")
    common: dict[str, Any] = dict(
        super_password=props.get(SUPER_PASSWORD_KEY), super_users=_super_users(props),
        allow_failed_clients=_java_bool(props.get(ALLOW_FAILED_KEY)), names=names, enforcer=enforcer,
        section=section)
    spec = default_jaas_spec(props)
    if spec is None:
        return SaslServer(None, **common)
    try:
        jaas = load_jaas(spec, props)
    except JaasError as e:
        if JAAS_CONF_KEY in props or LOGIN_CONTEXT_NAME_KEY in props:
            raise SaslConfigError(f"cannot read the JAAS login configuration (section '{section}' for SASL): "
                                  f"{e}") from None
        log.warning("ignoring %s: %s", spec, e)
        return SaslServer(None, **common)
    creds = digest_credentials(jaas, section)
    if creds is None:
        log.warning("%s has no '%s' section: SASL authentication is off (as in Apache ZooKeeper, "
                    "clients that try it get an empty answer)", jaas.source, section)
        return SaslServer(None, source=jaas.source, **common)
    log.info("SASL DIGEST-MD5: %d user(s) from section '%s' of %s", len(creds), section, jaas.source)
    return SaslServer(creds, source=jaas.source, **common)


def sasl_acl_matches(ident: str, acl_expr: str, let_any_sasl_user: str | None) -> bool:
    """SASLAuthenticationProvider.matches (for auth.SaslProvider)."""
    if ident == "super" or ident == acl_expr:
        return True
    return let_any_sasl_user is not None and acl_expr == let_any_sasl_user


__all__ = [
    "AuthEnforcer", "DigestMD5Server", "SaslConfigError", "SaslServer", "build_sasl_server",
    "digest_credentials", "kerberos_name_valid", "parse_directives", "quote_value", "response_value",
    "sasl_acl_matches",
]
