"""TLS between ensemble members (`sslQuorum=true`, the `ssl.quorum.*` keys, `portUnification`), with real
processes: zkfast alone, zkfast with Apache ZooKeeper 3.8 in both roles, and strangers probing the
election and quorum ports (plaintext, an untrusted certificate, a trusted certificate that does not name
the address it comes from) while a trusted member's certificate is let in on the same ports, so that the
probe shows it can tell the two apart. Apache's members are probed too: zkfast refuses what Apache does.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from testbase.ensemble import Ensemble
from testbase.pki import Authority
from testbase.process import apache_available, free_port
from testbase.quorumsec import REFUSED, make_quorum_pki, probe, tls_keys

from zkfast.net.peerhost import names_host
from zkfast.net.tls import TlsConfigError
from zkfast.quorum.tlscontexts import QuorumTls

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_quorum_pki(tmp_path_factory.mktemp("quorum-pki"))


def client(hosts: str) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0)
    c.start(timeout=30)
    return c


def write_here_read_there(e: Ensemble, writer: int, reader: int, path: str) -> bytes:
    w = client(e.address(writer))
    try:
        w.create(path, f"through {writer}".encode())
    finally:
        w.stop()
    r = client(e.address(reader))
    try:
        r.sync(path)
        return r.get(path)[0]
    finally:
        r.stop()


PROBES = {"plaintext": None, "untrusted": "rogue", "trusted elsewhere": "elsewhere", "member": "member"}


def probe_all(e: Ensemble, i: int, pki: dict[str, Path]) -> dict[str, str]:
    host = e.members[i].host
    _, election = e.peer_ports(i)
    return {name: probe(host, election, pki, identity) for name, identity in PROBES.items()}


def test_zkfast_ensemble_over_quorum_tls_with_every_store_type_refuses_strangers(pki: dict[str, Path]) -> None:
    with Ensemble("zkfast", 3, first_host=21, cfg=tls_keys(pki)) as e:
        e.members[2].cfg.update(tls_keys(pki, store="p12", trust="pem"))
        e.members[3].cfg.update(tls_keys(pki, store="pem", trust="pem"))
        e.start()
        leader = e.wait_leader()
        assert write_here_read_there(e, 1, 3, "/tls1") == b"through 1"
        outcomes = {i: probe_all(e, i, pki) for i in e.ids}
        # the learners' quorum connections are TLS: a plaintext stranger on the leader's quorum port is refused
        quorum_port = e.peer_ports(leader)[0]
        plain_on_quorum = probe(e.members[leader].host, quorum_port, pki, None, say=bytes(8))
        member_on_quorum = probe(e.members[leader].host, quorum_port, pki, "member", say=b"")
        assert e.leader() == leader
        assert write_here_read_there(e, 3, 2, "/tls2") == b"through 3"
        logs = {i: e.log_of(i) for i in e.ids}
    for i, seen in outcomes.items():
        assert seen["member"] == "kept", (i, seen)
        assert {k: v in REFUSED for k, v in seen.items() if k != "member"} == {
            "plaintext": True, "untrusted": True, "trusted elsewhere": True}, (i, seen)
    assert plain_on_quorum == "closed"
    assert member_on_quorum == "kept"
    assert all("blocked a plaintext quorum connection from 127.0.0.1" in text for text in logs.values())
    assert all("quorum TLS handshake with 127.0.0.1 failed" in text for text in logs.values())
    assert all("refused quorum TLS peer 127.0.0.1 (ssl.quorum.hostnameVerification)" in text
               for text in logs.values())


@pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")
def test_mixed_ensemble_over_quorum_tls_both_ways_and_apache_refuses_as_zkfast(pki: dict[str, Path]) -> None:
    # 3 (zkfast) leads 2 (Apache) and 1 (zkfast); without 3, 2 (Apache) leads 1 (zkfast)
    with Ensemble("zkfast", 3, first_host=25, cfg=tls_keys(pki), kinds={2: "apache"}) as e:
        e.start()
        assert e.wait_leader() == 3
        assert e.mode(2) == "follower"
        assert write_here_read_there(e, 2, 1, "/mixed1") == b"through 2"
        apache_seen = probe_all(e, 2, pki)
        e.kill9(3)
        assert e.wait_leader(exclude=3) == 2
        assert write_here_read_there(e, 1, 2, "/mixed2") == b"through 1"
        assert write_here_read_there(e, 2, 1, "/mixed3") == b"through 2"
        apache_log = e.log_of(2)
    assert "Creating TLS-only quorum server socket" in apache_log
    assert re.search(r"SSL handshake complete with /127\.0\.0\.25:\d+ - TLSv1\.2", apache_log)  # to zkfast's 1
    assert apache_seen["member"] == "kept", apache_seen
    assert all(v in REFUSED for k, v in apache_seen.items() if k != "member"), apache_seen


def test_port_unification_lets_a_rolling_upgrade_mix_plaintext_and_tls_members(pki: dict[str, Path]) -> None:
    # mid-upgrade: 1 and 2 still connect in plaintext, 3 already connects over TLS; all accept both
    unified = {**tls_keys(pki), "sslQuorum": "false", "portUnification": "true"}
    with Ensemble("zkfast", 3, first_host=29, cfg=unified) as e:
        e.members[3].cfg["sslQuorum"] = "true"
        e.start()
        e.wait_leader()
        assert write_here_read_there(e, 3, 1, "/rolling") == b"through 3"
        seen = {i: probe_all(e, i, pki) for i in (1, 3)}
    for i in (1, 3):
        assert seen[i]["plaintext"] == "kept" and seen[i]["member"] == "kept", seen
        assert seen[i]["untrusted"] in REFUSED and seen[i]["trusted elsewhere"] in REFUSED, seen


def test_the_tls_handshake_is_bounded(pki: dict[str, Path]) -> None:
    """A stranger that opens a TLS handshake and stops is closed within the handshake timeout."""
    cfg = {**tls_keys(pki), "ssl.quorum.handshakeDetectionTimeoutMillis": "300"}
    with Ensemble("zkfast", 1, first_host=33, cfg=cfg, sync_limit=2) as e:
        e.start()
        e.wait_leader()
        _, election = e.peer_ports(1)
        silent = socket.create_connection((e.members[1].host, election), timeout=10)
        half = socket.create_connection((e.members[1].host, election), timeout=10)
        with silent, half:
            started = time.monotonic()
            half.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, and no more
            assert silent.recv(1) == b""  # nothing said within the detection timeout: not TLS, closed
            silent_s = time.monotonic() - started
            assert half.recv(1) == b""
            half_s = time.monotonic() - started
    assert silent_s < 2.0
    assert half_s < 2 * 0.2 + 2.0  # syncLimit x tickTime, and room for a loaded machine


# ------------------------------------------------------------------ settings, reloading, the host check rules

def test_a_member_without_a_usable_key_store_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "myid").write_text("1\n")
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path / 'data'}\nclientPort={free_port()}\ntickTime=2000\ninitLimit=5\n"
                   "syncLimit=2\nadmin.enableServer=false\nsslQuorum=true\n"
                   "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\n")
    run = subprocess.run([sys.executable, "-m", "zkfast", "start-foreground", str(cfg)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2
    assert "ssl.quorum.keyStore.location: required for TLS" in run.stdout + run.stderr


def test_ssl_quorum_settings_are_checked(pki: dict[str, Path]) -> None:
    props = {f"zookeeper.{k}": v for k, v in tls_keys(pki).items() if k.startswith("ssl.")}
    assert QuorumTls(props, False).hostname_verification
    assert not QuorumTls({**props, "zookeeper.ssl.quorum.hostnameVerification": "FALSE"}, False).hostname_verification
    with pytest.raises(TlsConfigError, match="ssl.quorum.hostnameVerification: must be 'true' or 'false'"):
        QuorumTls({**props, "zookeeper.ssl.quorum.hostnameVerification": "no"}, False)
    with pytest.raises(TlsConfigError, match="ssl.quorum.trustStore.location: cannot read"):
        QuorumTls({**props, "zookeeper.ssl.quorum.trustStore.location": "/nonexistent.jks"}, False)
    with pytest.raises(TlsConfigError, match="ssl.quorum.clientAuth"):
        QuorumTls({**props, "zookeeper.ssl.quorum.clientAuth": "maybe"}, False)
    # honoured on the accepting side, as SSLContextAndOptions applies it to accepted quorum sockets
    assert QuorumTls(props, False).server().verify_mode == ssl.CERT_REQUIRED
    assert QuorumTls({**props, "zookeeper.ssl.quorum.clientAuth": "want"}, False).server().verify_mode == \
        ssl.CERT_OPTIONAL
    assert QuorumTls({**props, "zookeeper.ssl.quorum.handshakeDetectionTimeoutMillis": "0"},
                     False).detection_timeout_s == 5.0
    only13 = QuorumTls({**props, "zookeeper.ssl.quorum.enabledProtocols": "TLSv1.3"}, False)
    assert only13.server().minimum_version == only13.client().minimum_version == ssl.TLSVersion.TLSv1_3
    suites = QuorumTls({**props, "zookeeper.ssl.quorum.ciphersuites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, False)
    # Java's names; no TLS 1.3 suite listed, so no TLS 1.3 (as test_tls.py checks against Apache)
    assert [c["name"] for c in suites.client().get_ciphers() if c["protocol"] == "TLSv1.2"] == [
        "ECDHE-RSA-AES128-GCM-SHA256"]
    assert suites.client().maximum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("reload", [True, False])
def test_ssl_quorum_reload_cert_files_takes_a_new_trust_store(pki: dict[str, Path], tmp_path: Path,
                                                              reload: bool) -> None:
    d = pki["dir"]
    trust = tmp_path / "trust.pem"
    trust.write_bytes((d / "ca.pem").read_bytes())
    props = {"zookeeper.ssl.quorum.keyStore.location": str(d / "member.pem"),
             "zookeeper.ssl.quorum.trustStore.location": str(trust)}
    tls = QuorumTls(props, reload)

    def trusted() -> list[object]:
        return [dict(rdn[0] for rdn in c["subject"])["commonName"] for c in tls.server().get_ca_certs()]

    assert trusted() == ["zkfast quorum CA"]
    Authority("the next CA").write_pem(trust)
    assert trusted() == (["the next CA"] if reload else ["zkfast quorum CA"])
    trust.write_text("not a certificate")  # a broken store: the old context stays
    assert trusted() == (["the next CA"] if reload else ["zkfast quorum CA"])


@pytest.fixture(scope="module")
def host_ca() -> Authority:
    return Authority("ca")


@pytest.mark.parametrize(("host", "ips", "dns", "cn", "named"), [
    ("127.0.0.3", ["127.0.0.3"], [], "x", True),
    ("127.0.0.3", ["127.0.0.4"], ["127.0.0.3"], "x", False),  # an address only matches an IP name
    ("::1", ["0:0:0:0:0:0:0:1"], [], "x", True),
    ("zk1.example.com", [], ["*.example.com"], "x", True),
    ("a.zk1.example.com", [], ["*.example.com"], "x", False),  # * stands for one label
    ("zk1.example.com", [], ["zk*.example.com"], "x", True),
    ("ZK1.Example.com", [], ["zk1.example.COM"], "x", True),
    ("zk1.example.com", [], [], "zk1.example.com", True),  # no alternative name: the CN
    ("zk1.example.com", ["127.0.0.1"], [], "zk1.example.com", False),  # alternative names: never the CN
])
def test_host_names_as_zk_hostname_verifier(host_ca: Authority, host: str, ips: list[str], dns: list[str], cn: str,
                                            named: bool) -> None:
    identity = host_ca.issue(cn, ips=ips, dns=dns)
    assert names_host(identity.cert, host) is named
