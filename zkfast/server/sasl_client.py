"""The client side of SASL DIGEST-MD5 (RFC 2831), as the JDK's `com.sun.security.sasl.digest.DigestMD5Client`
runs it for Apache ZooKeeper's quorum learner (SaslQuorumAuthLearner through
SecurityUtils.createSaslClient: authorization id = the user name, no initial response, qop `auth` only).

Two steps: the server's challenge (realm, nonce, charset, algorithm) is answered with a digest-response;
the server's `rspauth` is then checked, which proves the server knows the password too. The digest
arithmetic and the directive parser are the server's (zkfast.server.sasl), so both ends compute the
same values by construction.
"""

from __future__ import annotations

import base64
import secrets

from zkfast.server.sasl import SaslFailure, parse_directives, quote_value, response_value

MAX_CHALLENGE_LENGTH = 2048  # DigestMD5Base.MAX_CHALLENGE_LENGTH
MAX_BUF = 65536  # DigestMD5Base.DEFAULT_MAXBUF, which the JDK client announces
_NONCE_COUNT = 1  # the JDK never re-authenticates on a nonce
_CHALLENGE_KEYS = ("realm", "qop", "algorithm", "nonce", "maxbuf", "charset", "cipher", "rspauth", "stale")


class DigestMD5Client:
    """One exchange: `evaluate_challenge` twice (the challenge, then the server's rspauth)."""

    def __init__(self, username: str, password: str, protocol: str, server_name: str) -> None:
        self.username = username
        self.password = password
        self.digest_uri = f"{protocol}/{server_name}"
        self.authzid = username.encode("utf-8")  # Apache passes the user name as the authorization id
        self.step = 2
        self.complete = False
        self.realm = ""
        self.nonce = b""
        self.cnonce = b""

    def evaluate_challenge(self, challenge: bytes) -> bytes | None:
        """The response to send, or None once the server's rspauth is checked. SaslFailure otherwise."""
        if len(challenge) > MAX_CHALLENGE_LENGTH:
            raise SaslFailure(f"DIGEST-MD5: Invalid digest-challenge length. Got:  {len(challenge)} "
                              f"Expected < {MAX_CHALLENGE_LENGTH}")
        if self.step == 2:
            self.step = 0  # whatever happens, a second challenge is an illegal state
            answer = self._respond(parse_directives(challenge, _CHALLENGE_KEYS))
            self.step = 3
            return answer
        if self.step == 3:
            self.step = 0
            self.complete = True
            self._check_rspauth(parse_directives(challenge, _CHALLENGE_KEYS).get("rspauth"))
            return None
        raise SaslFailure("DIGEST-MD5: Client at illegal state")

    def _respond(self, d: dict[str, bytes]) -> bytes:
        """DigestMD5Client.processChallenge, checkQopSupport and generateClientResponse."""
        charset = d.get("charset")
        if charset is not None and charset != b"utf-8":
            raise SaslFailure("DIGEST-MD5: digest-challenge format violation. Unrecognised charset value: "
                              + charset.decode("latin-1"))
        if d.get("algorithm") != b"md5-sess":
            raise SaslFailure("DIGEST-MD5: Digest-challenge format violation: algorithm directive missing or "
                              "not md5-sess")
        if "nonce" not in d:
            raise SaslFailure("DIGEST-MD5: Digest-challenge format violation: nonce directive missing")
        maxbuf = d.get("maxbuf")
        if maxbuf is not None and not maxbuf.isdigit():
            raise SaslFailure(f"DIGEST-MD5: maxbuf {maxbuf!r} is not a number")
        qop = d.get("qop", b"auth")
        if b"auth" not in (t.strip() for t in qop.split(b",")):
            raise SaslFailure("DIGEST-MD5: No common protection layer between client and server")
        self.nonce = d["nonce"]
        self.realm = d["realm"].decode("utf-8", "replace") if "realm" in d else ""
        self.cnonce = base64.b64encode(secrets.token_bytes(30))  # the JDK's generateNonce: 30 random bytes
        encoding = "utf-8" if charset is not None else "latin-1"
        out = bytearray(b"charset=utf-8," if charset is not None else b"")
        out += b'username="' + quote_value(self.username.encode(encoding, "replace")) + b'",'
        if self.realm:
            out += b'realm="' + quote_value(self.realm.encode(encoding, "replace")) + b'",'
        out += b'nonce="' + quote_value(self.nonce) + b'",nc=%08x,' % _NONCE_COUNT
        out += b'cnonce="' + quote_value(self.cnonce) + b'",'
        out += b'digest-uri="' + self.digest_uri.encode(encoding) + b'",'
        out += b"maxbuf=%d,response=" % MAX_BUF + self._value("AUTHENTICATE") + b",qop=auth"
        out += b',authzid="' + quote_value(self.authzid) + b'"'
        return bytes(out)

    def _value(self, method: str) -> bytes:
        return response_value(method, self.digest_uri, "auth", self.username, self.realm, self.password,
                              self.nonce, self.cnonce, _NONCE_COUNT, self.authzid)

    def _check_rspauth(self, rspauth: bytes | None) -> None:
        """DigestMD5Client.validateResponseValue: the server proves it knows the password too."""
        if rspauth is None:
            raise SaslFailure("DIGEST-MD5: Authentication failed. Expecting 'rspauth' authentication success "
                              "message")
        if not secrets.compare_digest(rspauth, self._value("")):
            raise SaslFailure("Server's rspauth value does not match what client expects")


__all__ = ["DigestMD5Client"]
