"""Quorum SASL (DIGEST-MD5) between ensemble members, as Apache ZooKeeper 3.8 runs it
(zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/auth/: QuorumAuth.java,
SaslQuorumAuthServer.java, SaslQuorumAuthLearner.java, SaslQuorumServerCallbackHandler.java).

Who authenticates to whom: the side that opens a connection is the "learner" (an election connection's
initiator, a learner connecting to its leader's quorum port); the side that accepts it is the "server".
Right after the initial message (election port) or at once (quorum port):

* a learner with `quorum.auth.learnerRequireSasl=true` sends QuorumAuthPackets (IN_PROGRESS, empty token
  first) and answers challenges until the server says SUCCESS (whose token, rspauth, it checks) or ERROR;
  with it false it sends nothing and goes on, even with `enableSasl=true`;
* a server with `enableSasl=true` looks at the first 8 bytes: not the magic means the peer does not
  authenticate, which `serverRequireSasl=true` refuses and false lets in; the magic starts the exchange.
  A failed exchange is answered ERROR (empty token) and closed when required, else logged and let in.

The server's users are the `user_NAME="password"` options of the JAAS section
`quorum.auth.server.saslLoginContext` (QuorumServer); the learner's name and password are the `username`
and `password` of `quorum.auth.learner.saslLoginContext` (QuorumLearner). The handshakes here are
sans-IO: `feed` takes the bytes received and returns the bytes to send and the outcome
(zkfast.quorum.transport carries them out, bounded in time).

Deliberate differences: only DigestLoginModule (no Kerberos, so `quorum.auth.kerberos.servicePrincipal`
has no use, as in Apache with DIGEST-MD5); with learnerRequireSasl=true a learner section without
username and password stops start-up (Apache starts and fails every connection); a token longer than
the DIGEST-MD5 limit (4,096 bytes) closes the connection even when SASL is not required. In
zkfast.quorum.transport: `quorum.cnxn.threads.size` bounds the accepted election connections still in
their handshake (Apache's pool also runs its outgoing connects, and without SASL it takes accepted
ones one at a time); a smaller id that hangs up before sending 8 bytes is called back when SASL is not
required (Apache, waiting for those bytes, drops it).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from zkfast.config import ServerConfig
from zkfast.quorum.wire import AuthStatus, decode_auth_packet, encode_auth_packet, starts_with_auth_packet
from zkfast.server.jaas import JAAS_CONF_KEY, JaasError, default_jaas_spec, load_jaas
from zkfast.server.sasl import (
    DIGEST_LOGIN_MODULE,
    MAX_RESPONSE_LENGTH,
    DigestMD5Server,
    SaslAbort,
    SaslConfigError,
    SaslFailure,
    digest_credentials,
)
from zkfast.server.sasl_client import DigestMD5Client

log = logging.getLogger(__name__)

PROTOCOL = "zookeeper-quorum"        # QuorumAuth.QUORUM_SERVER_PROTOCOL_NAME
SERVER_NAME = "zk-quorum-sasl-md5"   # QuorumAuth.QUORUM_SERVER_SASL_DIGEST: also the realm
# No DIGEST-MD5 token is longer (DigestMD5Base.MAX_RESPONSE_LENGTH; challenges: 2,048): nothing larger
# is ever buffered for a handshake.
MAX_AUTH_TOKEN_BYTES = MAX_RESPONSE_LENGTH


class Outcome(enum.Enum):
    PENDING = "pending"                # more bytes needed
    AUTHENTICATED = "authenticated"
    LET_IN = "let in"                  # not authenticated, and SASL is not required
    REFUSED = "refused"                # close the connection; nothing it sent is acted on


@dataclass(frozen=True)
class QuorumAuth:
    """A server's quorum SASL set-up (it exists only with quorum.auth.enableSasl=true)."""

    server_required: bool
    learner_required: bool
    credentials: Mapping[str, str]         # the server section's users
    learner_username: str | None
    learner_password: str | None
    authz_hosts: frozenset[str]            # hosts of server.N lines: Kerberos-style ids must name one

    def server_handshake(self, remote: str) -> ServerHandshake:
        return ServerHandshake(self, remote)

    def learner_handshake(self, remote: str) -> LearnerHandshake | None:
        """None: this learner does not authenticate (learnerRequireSasl=false)."""
        if not self.learner_required:
            return None
        assert self.learner_username is not None and self.learner_password is not None  # load_quorum_auth
        return LearnerHandshake(DigestMD5Client(self.learner_username, self.learner_password, PROTOCOL,
                                                SERVER_NAME), remote)


class ServerHandshake:
    """SaslQuorumAuthServer.authenticate for one accepted connection."""

    def __init__(self, auth: QuorumAuth, remote: str) -> None:
        self.auth = auth
        self.remote = remote
        self.started = False
        self.mech = DigestMD5Server(auth.credentials, realm=SERVER_NAME,
                                    digest_uri=f"{PROTOCOL}/{SERVER_NAME}", authorize=self._authorize)

    @property
    def lets_unauthenticated_in(self) -> bool:
        return not self.auth.server_required

    def feed(self, buf: bytearray) -> tuple[bytes, Outcome]:
        """Consume the handshake's bytes from buf (what follows it stays there)."""
        out = bytearray()
        if not self.started:
            is_auth = starts_with_auth_packet(buf)
            if is_auth is None:
                return b"", Outcome.PENDING
            if not is_auth:
                if self.auth.server_required:
                    log.error("Learner %s is not trying to authenticate and authentication is required "
                              "(quorum.auth.serverRequireSasl=true): closing the connection", self.remote)
                    return b"", Outcome.REFUSED
                return b"", Outcome.LET_IN
            self.started = True
        while True:
            try:
                packet = decode_auth_packet(buf, MAX_AUTH_TOKEN_BYTES)
            except ValueError as e:
                log.error("Failed to authenticate using SASL, learner addr: %s: %s: closing the connection",
                          self.remote, e)
                return encode_auth_packet(AuthStatus.ERROR, b""), Outcome.REFUSED
            if packet is None:
                return bytes(out), Outcome.PENDING
            _, token, used = packet
            del buf[:used]
            try:
                answer = self.mech.evaluate_response(token)
            except (SaslFailure, SaslAbort) as e:
                out += encode_auth_packet(AuthStatus.ERROR, b"")
                return bytes(out), self._failed(e)
            if self.mech.complete:
                log.info("Successfully completed the authentication using SASL. learner addr: %s", self.remote)
                return bytes(out + encode_auth_packet(AuthStatus.SUCCESS, answer)), Outcome.AUTHENTICATED
            out += encode_auth_packet(AuthStatus.IN_PROGRESS, answer)

    def _failed(self, e: Exception) -> Outcome:
        if self.auth.server_required:
            log.error("Failed to authenticate using SASL, learner addr: %s: %s: closing the connection",
                      self.remote, e)
            return Outcome.REFUSED
        log.warning("Failed to authenticate using SASL, learner addr: %s: %s", self.remote, e)
        log.warning("Maintaining learner connection despite SASL authentication failure. server addr: %s, "
                    "quorum.auth.serverRequireSasl: false", self.remote)
        return Outcome.LET_IN

    def _authorize(self, authentication_id: str, authorization_id: str) -> str:
        """SaslQuorumServerCallbackHandler.handleAuthorizeCallback: the learner acts as itself only, and a
        Kerberos-style id (name/host@realm) must name a host of the ensemble."""
        refusal = f"DIGEST-MD5: {authentication_id} is not authorized to act as {authorization_id}"
        if authentication_id != authorization_id:
            raise SaslFailure(refusal)
        components = re.split("[/@]", authorization_id)
        while components and not components[-1]:  # Java's split drops trailing empty strings
            components.pop()
        if len(components) == 3 and components[1] not in self.auth.authz_hosts:
            log.error("SASL authorization completed, %s is not authorized to connect", components[1])
            raise SaslFailure(refusal)
        log.info("Successfully authenticated learner: authenticationID=%s;  authorizationID=%s.",
                 authentication_id, authorization_id)
        return authorization_id


class LearnerHandshake:
    """SaslQuorumAuthLearner.authenticate for one connection this server opens."""

    def __init__(self, client: DigestMD5Client, remote: str) -> None:
        self.client = client
        self.remote = remote

    @staticmethod
    def start() -> bytes:
        """DIGEST-MD5 has no initial response: an empty token asks for the challenge."""
        return encode_auth_packet(AuthStatus.IN_PROGRESS, b"")

    def feed(self, buf: bytearray) -> tuple[bytes, Outcome]:
        out = bytearray()
        while True:
            try:
                packet = decode_auth_packet(buf, MAX_AUTH_TOKEN_BYTES)
            except ValueError as e:
                return bytes(out), self._failed(str(e))
            if packet is None:
                return bytes(out), Outcome.PENDING
            status, token, used = packet
            del buf[:used]
            if status not in (AuthStatus.SUCCESS, AuthStatus.IN_PROGRESS):
                if status != AuthStatus.ERROR:
                    log.warning("Unknown status:%d!", status)
                return bytes(out), self._failed(f"Authentication failed against server addr: {self.remote}")
            if token is None:
                return bytes(out), self._failed("Error in authenticating with a Zookeeper Quorum member: the "
                                                "quorum member's saslToken is null.")
            try:
                answer = self.client.evaluate_challenge(token)
            except SaslFailure as e:
                return bytes(out), self._failed(str(e))
            if status == AuthStatus.SUCCESS:
                if answer is not None or not self.client.complete:
                    return bytes(out), self._failed("Protocol error: attempting to send response after "
                                                    "completion")
                log.info("Successfully completed the authentication using SASL. server addr: %s, status: "
                         "SUCCESS", self.remote)
                return bytes(out), Outcome.AUTHENTICATED
            out += encode_auth_packet(AuthStatus.IN_PROGRESS, answer)

    def _failed(self, why: str) -> Outcome:
        log.error("Quorum SASL authentication to %s failed: %s: closing the connection", self.remote, why)
        return Outcome.REFUSED


# ------------------------------------------------------------------------------------------ set-up

def _section_missing(section: str) -> SaslConfigError:
    return SaslConfigError(f"SASL-authentication failed because the specified JAAS configuration section "
                           f"'{section}' could not be found (quorum.auth.enableSasl=true)")


def load_quorum_auth(config: ServerConfig) -> QuorumAuth | None:
    """QuorumPeer.initialize: None with quorum.auth.enableSasl=false; SaslConfigError when Apache would
    not start (no JAAS file, a section missing) or zkfast cannot honour the set-up."""
    sasl = config.quorum_sasl
    if not sasl.enabled:
        log.info("QuorumPeer communication is not secured! (SASL auth disabled)")
        return None
    props = config.system_properties
    spec = default_jaas_spec(props)
    if spec is None:
        raise SaslConfigError(f"quorum.auth.enableSasl=true needs a JAAS login configuration: set "
                              f"-D{JAAS_CONF_KEY}=<file> with the sections '{sasl.server_login_context}' "
                              f"and '{sasl.learner_login_context}'")
    try:
        jaas = load_jaas(spec, props)
    except JaasError as e:
        raise SaslConfigError(f"cannot read the JAAS login configuration for quorum SASL: {e}") from None
    credentials = digest_credentials(jaas, sasl.server_login_context)
    if credentials is None:
        raise _section_missing(sasl.server_login_context)
    learner = jaas.entries(sasl.learner_login_context)
    if learner is None:
        raise _section_missing(sasl.learner_login_context)
    username = password = None
    for entry in learner:
        if entry.module != DIGEST_LOGIN_MODULE:
            raise SaslConfigError(f"{jaas.source}:{entry.line}: login module {entry.module} in section "
                                  f"'{sasl.learner_login_context}': zkfast supports only {DIGEST_LOGIN_MODULE} "
                                  "(SASL DIGEST-MD5); Kerberos (GSSAPI) is not supported")
        if username is None and "username" in entry.options:
            username, password = entry.options["username"], entry.options.get("password")
    if sasl.learner_required and (username is None or password is None):
        raise SaslConfigError(f"{jaas.source}: section '{sasl.learner_login_context}' needs username and "
                              "password options: with quorum.auth.learnerRequireSasl=true this server "
                              "authenticates with them to every other")
    log.info("quorum SASL (DIGEST-MD5): %d user(s) from section '%s' of %s; quorum.auth.learnerRequireSasl=%s, "
             "quorum.auth.serverRequireSasl=%s", len(credentials), sasl.server_login_context, jaas.source,
             str(sasl.learner_required).lower(), str(sasl.server_required).lower())
    return QuorumAuth(sasl.server_required, sasl.learner_required, credentials, username, password,
                      frozenset(s.host for s in config.servers))


__all__ = ["LearnerHandshake", "Outcome", "QuorumAuth", "ServerHandshake", "load_quorum_auth"]
