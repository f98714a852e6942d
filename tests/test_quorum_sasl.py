"""Quorum SASL (DIGEST-MD5) between ensemble members, as Apache ZooKeeper 3.8 runs it
(zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/auth/): the QuorumAuthPacket codec and
the two handshakes in memory, then real processes: an all-zkfast ensemble enabled rolling
(enableSasl → learnerRequireSasl → serverRequireSasl) under writes, a member with a wrong password
refused while the others serve, raw peers that skip authentication refused before anything they send is
read, and mixed ensembles (an Apache leader with zkfast followers, then a zkfast leader with Apache
followers) with SASL required on both sides."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.retry import KazooRetry
from testbase.ensemble import Ensemble
from testbase.process import apache_available
from testbase.quorumsec import JAAS, JAAS_KEY, SASL_REQUIRED, write_jaas

from zkfast.config import QuorumSasl, ServerConfig, parse_server_entry
from zkfast.quorum.auth import MAX_AUTH_TOKEN_BYTES, Outcome, QuorumAuth, load_quorum_auth
from zkfast.quorum.wire import (
    AuthStatus,
    InitialMessage,
    Notification,
    PacketType,
    ServerState,
    decode_auth_packet,
    encode_auth_packet,
    starts_with_auth_packet,
)
from zkfast.server.sasl import DigestMD5Server, SaslConfigError, SaslFailure
from zkfast.server.sasl_client import DigestMD5Client

pytestmark = pytest.mark.timeout(240)


def auth(required: bool = True, users: dict[str, str] | None = None, password: str = "s3cret") -> QuorumAuth:
    return QuorumAuth(server_required=required, learner_required=True,
                      credentials={"zkpeer": "s3cret"} if users is None else users,
                      learner_username="zkpeer", learner_password=password, authz_hosts=frozenset({"127.0.0.2"}))


def exchange(learner_auth: QuorumAuth, server_auth: QuorumAuth) -> tuple[Outcome, Outcome, bytearray]:
    """Run a learner and a server handshake against each other in memory; what the server got after."""
    learner = learner_auth.learner_handshake("server")
    server = server_auth.server_handshake("learner")
    assert learner is not None
    to_server, to_learner = bytearray(learner.start()), bytearray()
    lo = so = Outcome.PENDING
    while lo is Outcome.PENDING or so is Outcome.PENDING:
        if so is Outcome.PENDING:
            out, so = server.feed(to_server)
            to_learner += out
        if lo is Outcome.PENDING:
            out, lo = learner.feed(to_learner)
            to_server += out
            if lo is not Outcome.PENDING and so is Outcome.PENDING and not to_server:
                break  # the learner gave up: it closes, the server hears no more
    return lo, so, to_server


# ------------------------------------------------------------------------------ codec and handshakes

def test_quorum_auth_packets_have_apaches_layout_and_a_bounded_token() -> None:
    # QuorumAuth.QUORUM_AUTH_MAGIC_NUMBER is -0xa0dbcafecafe1234L: 0x5f2435013501edcc on the wire
    assert encode_auth_packet(AuthStatus.IN_PROGRESS, b"") == bytes.fromhex("5f2435013501edcc 00000000 00000000")
    assert encode_auth_packet(AuthStatus.ERROR, None) == bytes.fromhex("5f2435013501edcc ffffffff ffffffff")
    packet = encode_auth_packet(AuthStatus.SUCCESS, b"rspauth=x")
    assert decode_auth_packet(packet + b"tail", MAX_AUTH_TOKEN_BYTES) == (1, b"rspauth=x", len(packet))
    assert decode_auth_packet(packet[:-1], MAX_AUTH_TOKEN_BYTES) is None
    assert starts_with_auth_packet(packet[:7]) is None and starts_with_auth_packet(packet)
    assert not starts_with_auth_packet(struct.pack(">iq", 11, 0))  # a FOLLOWERINFO
    with pytest.raises(ValueError, match="token of 4097 bytes"):
        decode_auth_packet(struct.pack(">qii", 0x5F2435013501EDCC, 0, MAX_AUTH_TOKEN_BYTES + 1), MAX_AUTH_TOKEN_BYTES)


def test_a_learner_and_a_server_authenticate_and_a_wrong_password_is_refused() -> None:
    lo, so, rest = exchange(auth(), auth())
    assert (lo, so, rest) == (Outcome.AUTHENTICATED, Outcome.AUTHENTICATED, b"")
    lo, so, _ = exchange(auth(password="wrong"), auth())
    assert (lo, so) == (Outcome.REFUSED, Outcome.REFUSED)
    # serverRequireSasl=false: the server answers ERROR but lets the peer in; the learner still gives up
    lo, so, _ = exchange(auth(password="wrong"), auth(required=False))
    assert (lo, so) == (Outcome.REFUSED, Outcome.LET_IN)
    lo, so, _ = exchange(auth(), auth(users={"other": "s3cret"}))
    assert (lo, so) == (Outcome.REFUSED, Outcome.REFUSED)


def test_a_learner_acts_as_itself_only_and_a_kerberos_style_id_names_an_ensemble_host() -> None:
    # SaslQuorumServerCallbackHandler.handleAuthorizeCallback
    handshake = auth().server_handshake("x")
    assert handshake._authorize("zkpeer", "zkpeer") == "zkpeer"
    assert handshake._authorize("zk/127.0.0.2@R", "zk/127.0.0.2@R") == "zk/127.0.0.2@R"
    for authn, authz in (("zkpeer", "other"), ("zk/127.0.0.9@R", "zk/127.0.0.9@R")):
        with pytest.raises(SaslFailure, match="is not authorized to act as"):
            handshake._authorize(authn, authz)


def test_a_server_refuses_a_peer_that_does_not_authenticate_only_when_required() -> None:
    first = bytearray(struct.pack(">i", 40) + bytes(40))  # an election message instead of the magic
    assert auth().server_handshake("x").feed(first) == (b"", Outcome.REFUSED)
    assert auth(required=False).server_handshake("x").feed(first) == (b"", Outcome.LET_IN)
    assert len(first) == 44  # left for the election to read
    assert auth().server_handshake("x").feed(bytearray(7)) == (b"", Outcome.PENDING)
    # a huge token is refused at its header, never buffered
    out, outcome = auth(required=False).server_handshake("x").feed(
        bytearray(struct.pack(">qii", 0x5F2435013501EDCC, 0, 1 << 30)))
    assert outcome is Outcome.REFUSED and decode_auth_packet(out, 0) == (-1, b"", len(out))


def test_the_digest_md5_client_checks_the_servers_proof() -> None:
    server = DigestMD5Server({"zkpeer": "s3cret"}, realm="zk-quorum-sasl-md5",
                             digest_uri="zookeeper-quorum/zk-quorum-sasl-md5")
    challenge = server.evaluate_response(b"")
    client = DigestMD5Client("zkpeer", "s3cret", "zookeeper-quorum", "zk-quorum-sasl-md5")
    response = client.evaluate_challenge(challenge)
    assert response is not None and b'digest-uri="zookeeper-quorum/zk-quorum-sasl-md5"' in response
    assert response.endswith(b',authzid="zkpeer"')  # Apache's learner names itself as its authorization id
    rspauth = server.evaluate_response(response)
    assert server.authorization_id == "zkpeer"
    assert client.evaluate_challenge(rspauth) is None and client.complete
    # a server that does not know the password cannot forge the proof
    impostor = DigestMD5Client("zkpeer", "s3cret", "zookeeper-quorum", "zk-quorum-sasl-md5")
    impostor.evaluate_challenge(challenge)
    with pytest.raises(SaslFailure, match="rspauth value does not match"):
        impostor.evaluate_challenge(b"rspauth=" + b"0" * 32)
    # pure-sasl, an independent client, is accepted by the quorum server as the JDK's is
    puresasl_client = pytest.importorskip("puresasl.client")
    server = DigestMD5Server({"zkpeer": "s3cret"}, realm="zk-quorum-sasl-md5",
                             digest_uri="zookeeper-quorum/zk-quorum-sasl-md5")
    other = puresasl_client.SASLClient("zk-quorum-sasl-md5", service="zookeeper-quorum", mechanism="DIGEST-MD5",
                                       username="zkpeer", password="s3cret")
    server.evaluate_response(other.process(server.evaluate_response(b"")))
    assert server.complete and server.authorization_id == "zkpeer"


def _config(tmp_path: Path, jaas: str | None, **sasl: object) -> ServerConfig:
    props = {}
    if jaas is not None:
        (tmp_path / "jaas.conf").write_text(jaas)
        props[JAAS_KEY] = str(tmp_path / "jaas.conf")
    return ServerConfig(data_dir=tmp_path, data_log_dir=tmp_path, system_properties=props,
                        quorum_sasl=QuorumSasl(enabled=True, **sasl),  # type: ignore[arg-type]
                        servers=(parse_server_entry("server.1", "127.0.0.2:2888:3888"),))


def test_start_up_needs_the_jaas_sections_as_apache_does(tmp_path: Path) -> None:
    assert load_quorum_auth(ServerConfig(data_dir=tmp_path, data_log_dir=tmp_path)) is None
    with pytest.raises(SaslConfigError, match="needs a JAAS login configuration"):
        load_quorum_auth(_config(tmp_path, None))
    with pytest.raises(SaslConfigError, match="section 'QuorumLearner' could not be found"):
        load_quorum_auth(_config(tmp_path, JAAS.format(server_pw="a", learner_pw="b").split("QuorumLearner")[0]))
    with pytest.raises(SaslConfigError, match="section 'QS' could not be found"):
        load_quorum_auth(_config(tmp_path, JAAS.format(server_pw="a", learner_pw="b"), server_login_context="QS"))
    with pytest.raises(SaslConfigError, match="Kerberos"):
        load_quorum_auth(_config(tmp_path, JAAS.format(server_pw="a", learner_pw="b").replace(
            "org.apache.zookeeper.server.auth.DigestLoginModule", "com.sun.security.auth.module.Krb5LoginModule")))
    no_user = JAAS.format(server_pw="a", learner_pw="b").replace('username="zkpeer"', "")
    assert load_quorum_auth(_config(tmp_path, no_user)) is not None  # the learner never authenticates
    with pytest.raises(SaslConfigError, match="needs username and password"):
        load_quorum_auth(_config(tmp_path, no_user, learner_required=True))
    loaded = load_quorum_auth(_config(tmp_path, JAAS.format(server_pw="a", learner_pw="b"), learner_required=True))
    assert loaded is not None and loaded.credentials == {"zkpeer": "a"} and loaded.learner_password == "b"


# ------------------------------------------------------------------------------ real processes

def client(hosts: str) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0, connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5))
    c.start(timeout=30)
    return c


class Writer:
    """Creates /w/N through the whole ensemble until stopped; the longest time between two acks."""

    def __init__(self, hosts: str) -> None:
        self.zk = client(hosts)
        self.zk.ensure_path("/w")
        self.acked = 0
        self.longest_gap_s = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.is_set():
            try:
                self.zk.create("/w/n-", b"v", sequence=True)
            except KazooException:
                time.sleep(0.05)
                continue
            now = time.monotonic()
            self.longest_gap_s = max(self.longest_gap_s, now - last)
            last = now
            self.acked += 1
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.zk.stop()
        self.zk.close()


def restart_with(e: Ensemble, i: int, cfg: dict[str, str] | None = None, jaas: str | None = None) -> None:
    member = e.members[i]
    member.stop()
    member.config.update(cfg or {})
    if jaas is not None:
        member.system_properties[JAAS_KEY] = jaas
    e.restart(i)


def recv_all(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes (or the timeout)."""
    sock.settimeout(timeout_s)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensemble]:
    """Three zkfast servers started with enableSasl only, then made to require SASL one restart at a
    time (learnerRequireSasl everywhere, then serverRequireSasl), under writes."""
    jaas = write_jaas(tmp_path_factory.mktemp("jaas") / "jaas.conf", "s3cret")
    with Ensemble("zkfast", 3, cfg={"quorum.auth.enableSasl": "true"}, system_properties={JAAS_KEY: jaas},
                  sync_limit=5) as e:
        e.start()
        writer = Writer(e.hosts())
        try:
            for key in ("quorum.auth.learnerRequireSasl", "quorum.auth.serverRequireSasl"):
                leader = e.wait_leader()
                for i in [*(i for i in e.ids if i != leader), leader]:
                    restart_with(e, i, {key: "true"})
                    e.wait_leader()
            acked = writer.acked
            # the writer may still be reconnecting after the last restart: writes resume within a failover
            wait_until(lambda: writer.acked > acked, e.failover_bound_s(), "writes after the rolling enablement")
        finally:
            writer.close()
        # every acknowledged write is there; the ensemble never stopped for longer than a failover
        assert writer.longest_gap_s < e.failover_bound_s(), writer.longest_gap_s
        c = client(e.address(e.ids[0]))
        try:
            c.sync("/w")
            assert len(c.get_children("/w")) >= writer.acked
        finally:
            c.stop()
        # the last one restarted (the old leader) may still be syncing with the new leader
        e.wait_serving()
        yield e


def test_an_ensemble_requiring_quorum_sasl_elects_and_replicates(rolled: Ensemble) -> None:
    e = rolled
    assert sorted(e.mode(i) or "" for i in e.ids) == ["follower", "follower", "leader"]
    a, b = client(e.address(1)), client(e.address(3))
    try:
        a.create("/through-1", b"sasl")
        b.sync("/through-1")
        assert b.get("/through-1")[0] == b"sasl"
    finally:
        a.stop()
        b.stop()
    for i in e.ids:
        log = e.log_of(i)
        assert "Successfully completed the authentication using SASL. learner addr" in log
        assert "quorum.auth.serverRequireSasl=true" in log


def test_a_member_with_a_wrong_password_is_refused_and_the_others_serve_on(rolled: Ensemble, tmp_path: Path) -> None:
    e = rolled
    leader = e.wait_leader()
    victim = next(i for i in e.ids if i != leader)
    good = e.members[victim].system_properties[JAAS_KEY]
    e.members[victim].stop()
    e.members[victim].system_properties[JAAS_KEY] = write_jaas(tmp_path / "wrong.conf", "s3cret", "wrong")
    e.launch(victim)
    try:
        deadline = time.monotonic() + 30
        while "Mismatched response" not in e.log_of(leader):
            assert time.monotonic() < deadline, "the leader did not log the refusal"
            time.sleep(0.1)
        assert "Failed to authenticate using SASL" in e.log_of(leader)
        assert "Quorum SASL authentication to" in e.members[victim].log_text(since_start=True)
        assert e.members[victim].mode not in ("follower", "leader")
        others = [i for i in e.ids if i != victim]
        c = client(e.hosts(others))
        try:
            c.create("/while-refused", b"x")  # the two that know the password keep a quorum
        finally:
            c.stop()
        assert e.leader() == leader
    finally:
        e.members[victim].stop()
        e.members[victim].system_properties[JAAS_KEY] = good
        e.restart(victim)
    assert e.mode(victim) == "follower"


def test_peers_that_skip_authentication_are_refused_before_anything_they_send_is_read(rolled: Ensemble) -> None:
    e = rolled
    leader = e.wait_leader()
    smallest = min(e.ids)
    host = e.members[smallest].host
    _, election_port = e.peer_ports(smallest)
    # an election connection claiming a larger id, voting for itself: without SASL the server would
    # keep it and answer with its own vote; requiring SASL it reads no vote and answers nothing
    vote = Notification(ServerState.LOOKING, 99, 1 << 40, 1 << 20, 1 << 8).encode()
    with socket.create_connection((host, election_port)) as s:
        s.sendall(InitialMessage(max(e.ids), ("127.0.0.9:1",)).encode() + struct.pack(">i", len(vote)) + vote)
        assert recv_all(s, 5) == b""
    assert "is not trying to authenticate and authentication is required" in e.log_of(smallest)
    # the leader's quorum port: a FOLLOWERINFO without authentication gets no LEADERINFO
    lq_host, (lq_port, _) = e.members[leader].host, e.peer_ports(leader)
    info = struct.pack(">qiq", 1, 0x10000, 0)
    packet = struct.pack(">iqi", int(PacketType.FOLLOWERINFO), 0, len(info)) + info + struct.pack(">i", -1)
    with socket.create_connection((lq_host, lq_port)) as s:
        s.sendall(packet)
        assert recv_all(s, 5) == b""
    # probes that say nothing cost only themselves: closed after syncLimit ticks, and past
    # quorum.cnxn.threads.size (20) at once refused at accept
    silent = [socket.create_connection((host, election_port)) for _ in range(21)]
    try:
        started = time.monotonic()
        assert recv_all(silent[-1], 10) == b""
        assert time.monotonic() - started < 0.9
        assert recv_all(silent[0], 10) == b""
        assert time.monotonic() - started < 5
    finally:
        for s in silent:
            s.close()
    log = e.log_of(smallest)
    assert "did not complete its handshake within 1000 ms" in log
    assert "refused: 20 others are still in their handshake (quorum.cnxn.threads.size)" in log
    assert e.leader() == leader and sorted(e.mode(i) or "" for i in e.ids) == ["follower", "follower", "leader"]


@pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")
def test_mixed_ensembles_authenticate_both_ways(tmp_path: Path) -> None:
    """An Apache leader with zkfast followers, then a zkfast leader with Apache followers."""
    jaas = write_jaas(tmp_path / "jaas.conf", "s3cret")
    with Ensemble("zkfast", 3, kinds={3: "apache"}, cfg=SASL_REQUIRED, system_properties={JAAS_KEY: jaas}) as e:
        e.start([2, 3])
        assert e.wait_leader() == 3 and e.kinds[3] == "apache"
        # zkfast with a wrong password: the Apache leader refuses it
        e.members[1].system_properties[JAAS_KEY] = write_jaas(tmp_path / "wrong.conf", "s3cret", "wrong")
        e.launch(1)
        deadline = time.monotonic() + 30
        while "SaslException: DIGEST-MD5: digest response format violation. Mismatched response." not in e.log_of(3):
            assert time.monotonic() < deadline, "Apache did not refuse a wrong password"
            time.sleep(0.1)
        e.members[1].stop()
        e.members[1].system_properties[JAAS_KEY] = jaas
        e.start([1])
        assert e.mode(1) == "follower"
        a, b = client(e.address(1)), client(e.address(3))
        try:
            a.create("/from-zkfast", b"1")
            b.create("/from-apache", b"2")
            b.sync("/")
            a.sync("/")
            assert b.get("/from-zkfast")[0] == b"1" and a.get("/from-apache")[0] == b"2"
        finally:
            a.stop()
            b.stop()
        apache_log = e.log_of(3)
        assert "SaslQuorumAuthServer - Successfully completed the authentication using SASL" in apache_log
        assert "SaslQuorumAuthLearner - Successfully completed the authentication using SASL" in apache_log
        # the Apache leader goes: zkfast 2 leads, Apache 3 comes back and zkfast 1 becomes Apache
        e.stop(3)
        assert e.wait_leader(exclude=3) == 2
        e.restart(3)
        e.replace(1, "apache")
        e.restart(1)
        assert {i: e.mode(i) for i in e.ids} == {1: "follower", 2: "leader", 3: "follower"}
        assert (e.kinds[1], e.kinds[2], e.kinds[3]) == ("apache", "zkfast", "apache")
        a, b = client(e.address(1)), client(e.address(3))
        try:
            a.create("/zkfast-leads", b"3")
            b.sync("/zkfast-leads")
            assert b.get("/zkfast-leads")[0] == b"3" and b.exists("/from-zkfast")
        finally:
            a.stop()
            b.stop()
        assert "Successfully completed the authentication using SASL. learner addr" in e.log_of(2)


def test_a_server_without_its_jaas_sections_does_not_start(tmp_path: Path) -> None:
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(JAAS.format(server_pw="a", learner_pw="a").split("QuorumLearner")[0])
    with Ensemble("zkfast", 3, cfg=SASL_REQUIRED, system_properties={JAAS_KEY: str(jaas)}) as e:
        e.launch(1)
        assert e.members[1].process.wait(30) == 2
        assert ("cannot start: SASL-authentication failed because the specified JAAS configuration section "
                "'QuorumLearner' could not be found") in e.log_of(1)
