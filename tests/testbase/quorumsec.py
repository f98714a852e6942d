"""A hardened ensemble's set-up for tests, as an Apache ZooKeeper 3.8 operator writes it: the JAAS file of
quorum SASL (DIGEST-MD5), the certificates and key stores of quorum TLS; and a stranger that connects to
a member's election or quorum port and says something, to see whether it is kept or refused."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from testbase.pki import PASSWORD, Authority
from zkfast.quorum.wire import PROTOCOL_VERSION_V2, InitialMessage

# ------------------------------------------------------------------------------ quorum SASL

JAAS = """QuorumServer {{
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_zkpeer="{server_pw}";
}};
QuorumLearner {{
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="zkpeer"
       password="{learner_pw}";
}};
"""
JAAS_KEY = "java.security.auth.login.config"
SASL_REQUIRED = {"quorum.auth.enableSasl": "true", "quorum.auth.learnerRequireSasl": "true",
                 "quorum.auth.serverRequireSasl": "true"}


def write_jaas(path: Path, password: str, learner_password: str | None = None) -> str:
    path.write_text(JAAS.format(server_pw=password, learner_pw=learner_password or password))
    return str(path)


# ------------------------------------------------------------------------------ quorum TLS

# the addresses ensembles of TLS tests use (Apache's members connect from 127.0.0.1, the kernel's choice
# for a loopback destination, so a member's certificate names that too)
MEMBER_IPS = [f"127.0.0.{i}" for i in range(1, 41)]


def make_quorum_pki(d: Path) -> dict[str, Path]:
    """In d: a member's key store in every format and the CA's trust stores ("member", "trust.jks",
    "ca.pem"); strangers' certificates and keys: "elsewhere" (trusted, naming an address no probe comes
    from) and "rogue" (another CA's)."""
    ca = Authority("zkfast quorum CA")
    member = ca.issue("member", ips=MEMBER_IPS)
    member.write_jks(d / "member.jks")
    member.write_pkcs12(d / "member.p12")
    member.write_pem(d / "member.pem")
    member.write_cert_and_key(d / "member.crt", d / "member.key")
    ca.write_jks_truststore(d / "trust.jks")
    ca.write_pem(d / "ca.pem")
    ca.issue("elsewhere", ips=["127.0.0.250"]).write_cert_and_key(d / "elsewhere.crt", d / "elsewhere.key")
    Authority("someone else's CA").issue("rogue", ips=MEMBER_IPS).write_cert_and_key(d / "rogue.crt",
                                                                                       d / "rogue.key")
    return {"dir": d}


def tls_keys(pki: dict[str, Path], store: str = "jks", trust: str = "jks") -> dict[str, str]:
    d = pki["dir"]
    keys = {"sslQuorum": "true",
            "ssl.quorum.keyStore.location": str(d / f"member.{store}"),
            "ssl.quorum.trustStore.location": str(d / ("trust.jks" if trust == "jks" else "ca.pem"))}
    if store != "pem":
        keys["ssl.quorum.keyStore.password"] = PASSWORD
    if trust == "jks":
        keys["ssl.quorum.trustStore.password"] = PASSWORD
    return keys


# ------------------------------------------------------------------------------ a stranger's probe

PROBE_OPEN_S = 1.0
STRANGER_SID = 99  # larger than any member's: a member keeps (does not call back) its connection
# what a stranger says first on an election port: who it is, as a peer would
HELLO = InitialMessage(STRANGER_SID, ("127.0.0.1:1",), PROTOCOL_VERSION_V2).encode()
# a TLS 1.3 server refuses a client certificate after the client's handshake is done: "closed" then
REFUSED = {"closed", "handshake failed"}


def stranger_connection(host: str, port: int) -> socket.socket:
    """A plaintext connection to host:port from 127.0.0.1 (OSError if nothing listens)."""
    return socket.create_connection((host, port), timeout=5, source_address=("127.0.0.1", 0))


def stranger_tls(raw: socket.socket, host: str, pki: dict[str, Path], identity: str) -> ssl.SSLSocket:
    """raw with a TLS client handshake done, presenting the certificate `identity` (ssl.SSLError or
    OSError if the server refuses the handshake)."""
    d = pki["dir"]
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(d / f"{identity}.crt"), str(d / f"{identity}.key"))
    return ctx.wrap_socket(raw, server_hostname=host)


def answer_to(sock: socket.socket | ssl.SSLSocket, say: bytes) -> str:
    """Say `say`, then see whether the connection is kept."""
    if say:
        sock.sendall(say)
    sock.settimeout(PROBE_OPEN_S)
    try:
        return "closed" if sock.recv(1) == b"" else "answered"
    except TimeoutError:
        return "kept"
    except (ssl.SSLError, OSError):
        return "closed"


def probe(host: str, port: int, pki: dict[str, Path], identity: str | None, say: bytes = HELLO) -> str:
    """What a stranger gets on a member's election or quorum port: plaintext (identity None) or TLS
    with the certificate `identity` ("kept", "answered", "closed", or "handshake failed")."""
    with stranger_connection(host, port) as raw:
        if identity is None:
            return answer_to(raw, say)
        try:
            tls = stranger_tls(raw, host, pki, identity)
        except (ssl.SSLError, OSError):
            return "handshake failed"
        with tls:
            return answer_to(tls, say)
