"""TLS on secureClientPort with JKS stores, as kazoo's own test harness configures it, and x509 auth."""

from __future__ import annotations

import os
import ssl
import struct
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import ACL, Id
from testbase.process import (
    ApacheZkProcess,
    ServerProcess,
    ZkfastProcess,
    apache_available,
    free_port,
)

jks = pytest.importorskip("jks") if os.environ.get("CI") != "true" else __import__("jks")
crypto_x509 = pytest.importorskip("cryptography.x509") if os.environ.get("CI") != "true" else \
    __import__("cryptography.x509", fromlist=["x509"])

from testbase.pki import PASSWORD, Authority  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = Authority("zkfast test CA")
    ca.issue("server", ips=["127.0.0.1"], dns=["localhost"]).write_jks(d / "keystore.jks")
    ca.write_jks_truststore(d / "truststore.jks")
    ca.write_pem(d / "ca.pem")
    ca.issue("client", ips=["127.0.0.1"], dns=["localhost"]).write_cert_and_key(d / "client.pem", d / "client.key")
    return {"dir": d}


def tls_cfg(pki: dict[str, Path], secure_port: int) -> dict[str, str]:
    d = pki["dir"]
    return {"secureClientPort": str(secure_port),
            "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
            "ssl.keyStore.location": str(d / "keystore.jks"), "ssl.keyStore.password": PASSWORD,
            "ssl.trustStore.location": str(d / "truststore.jks"), "ssl.trustStore.password": PASSWORD}


def run_tls_session(server: ServerProcess, secure_port: int, pki: dict[str, Path]) -> list[object]:
    d = pki["dir"]
    zk = KazooClient(hosts=f"127.0.0.1:{secure_port}", use_ssl=True, keyfile=str(d / "client.key"),
                     certfile=str(d / "client.pem"), ca=str(d / "ca.pem"), verify_certs=True)
    zk.start(timeout=20)
    out: list[object] = []
    try:
        dn = "CN=client,O=zkfast"
        zk.create("/tls", b"over tls", acl=[ACL(31, Id("x509", dn))])
        out.append(zk.get("/tls")[0])
        out.append([(a.perms, a.id.scheme, a.id.id) for a in zk.get_acls("/tls")[0]])
    finally:
        zk.stop()
        zk.close()
    plain = KazooClient(hosts=server.address)
    plain.start(timeout=20)
    try:
        try:
            plain.get("/tls")
            out.append("readable without the certificate")
        except NoAuthError:
            out.append("NoAuth without the certificate")
    finally:
        plain.stop()
        plain.close()
    return out


def test_tls_with_client_certificate_matches_apache(pki: dict[str, Path]) -> None:
    results = []
    kinds: list[type[ServerProcess]] = [ZkfastProcess]
    if apache_available() or os.environ.get("CI") == "true":
        kinds.append(ApacheZkProcess)
    for kind in kinds:
        port = free_port()
        server = kind(cfg=tls_cfg(pki, port))
        with server:
            results.append(run_tls_session(server, port, pki))
    assert results[0] == [b"over tls", [(31, "x509", "CN=client,O=zkfast")], "NoAuth without the certificate"]
    if len(results) == 2:
        assert results[0] == results[1]


def test_client_without_certificate_is_refused(pki: dict[str, Path]) -> None:
    port = free_port()
    with ZkfastProcess(cfg=tls_cfg(pki, port)):
        ctx = ssl.create_default_context(cafile=str(pki["dir"] / "ca.pem"))
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"\0\0\0\0")
                    if not s.recv(1):
                        raise ConnectionResetError("closed")


def tls_outcome(port: int, pki: dict[str, Path], version: ssl.TLSVersion, cipher: str | None = None) -> str:
    """What a client limited to `version` (and to `cipher`, an OpenSSL TLS 1.2 suite) gets on the secure
    port: the protocol and whether its ConnectRequest was answered, or "refused"."""
    d = pki["dir"]
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    ctx.minimum_version = ctx.maximum_version = version
    if cipher:
        ctx.set_ciphers(cipher)
    import socket

    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="localhost") as s:
            s.sendall(struct.pack(">i", 45) + struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\0" * 17)
            answer = s.recv(4)
            return f"{s.version()}, {'answered' if answer else 'closed'}"
    except (ssl.SSLError, OSError):
        return "refused"


TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
PROTOCOL_CASES = {
    # Apache needs TLS 1.3 suites in ssl.ciphersuites for TLS 1.3 (its default list has none)
    "tls13_only": ({"ssl.enabledProtocols": "TLSv1.3", "ssl.ciphersuites": "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384"},
                   [(TLS12, None, "refused"), (TLS13, None, "TLSv1.3, answered")]),
    # Java's names for TLS 1.2 suites; no TLS 1.3 suite listed, so no TLS 1.3
    "one_suite": ({"ssl.enabledProtocols": "TLSv1.2,TLSv1.3", "ssl.ciphersuites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
                  [(TLS12, "ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2, answered"),
                   (TLS12, "ECDHE-RSA-AES256-GCM-SHA384", "refused"), (TLS13, None, "refused")]),
}


@pytest.mark.parametrize("case", PROTOCOL_CASES)
@pytest.mark.parametrize("kind", ["zkfast", "apache"])
def test_protocols_suites_and_a_password_file_as_apache(pki: dict[str, Path], tmp_path: Path, kind: str,
                                                        case: str) -> None:
    if kind == "apache" and not apache_available():
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")
    settings, expected = PROTOCOL_CASES[case]
    secret = tmp_path / "keystore.pass"
    secret.write_text(PASSWORD + "\n")  # SecretUtils drops one trailing line separator
    port = free_port()
    cfg = tls_cfg(pki, port)
    cfg.pop("ssl.keyStore.password")
    cfg.update({"ssl.keyStore.passwordPath": str(secret), **settings})
    server_class: type[ServerProcess] = ZkfastProcess if kind == "zkfast" else ApacheZkProcess
    with server_class(cfg=cfg):
        outcomes = [tls_outcome(port, pki, version, cipher) for version, cipher, _ in expected]
    assert outcomes == [outcome for _, _, outcome in expected]
