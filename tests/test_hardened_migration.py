"""A hardened Apache ZooKeeper 3.8 ensemble moved to zkfast node by node, under write load, while a rogue
peer probes every member (issue 13's "done when").

The ensemble: three members with one zoo.cfg that requires quorum SASL both ways (DIGEST-MD5, a JAAS file
with QuorumServer and QuorumLearner sections through -Djava.security.auth.login.config), runs its election
and quorum ports on TLS only (sslQuorum=true, JKS key and trust stores) and enforces quotas
(enforceQuota=true, hard count limits set as `setquota -N` sets them: on /w, where the load writes, and
on /q, full).

- A kazoo client creates /w/N one after another and records every acknowledged write.
- Member by member, the Apache server is stopped and zkfast started with the same zoo.cfg, myid, dataDir,
  JAAS file and key stores; it must start from Apache's data, serve, and hold the latest acknowledged
  write before the next member goes. The Apache leader goes first, then the Apache server elected after
  it, so that the ensemble runs an Apache leader with a zkfast follower, then a zkfast leader with an
  Apache follower, then zkfast alone.
- At every step, /q is changed and a create past its hard limit is tried through every member: each kind
  of member answers QUOTAEXCEEDED under each kind of leader, and every member's stats of /q are right.
- Throughout, a rogue peer from 127.0.0.1 probes every member's election and quorum ports: plaintext, TLS
  with a certificate of another CA, with a trusted certificate naming another address, with a trusted
  certificate but no SASL, and with a trusted certificate and a guessed password (then it talks as a peer
  let in would: a vote on the election port, a FOLLOWERINFO on the quorum port, as server 99). Each
  attempt must be refused, by each kind of member; the ensemble keeps its leader and its two followers
  meanwhile, and no member logs server 99 as a peer or a learner.
- At the end: every acknowledged write is on every member (read through each, after a sync), every
  member's quota stats are the counts of the nodes below each quota root, and no zkfast member counted a
  digest mismatch (nor any Apache member before it left).
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import QuotaExceededError
from test_mixed_ensemble import Writer, client, every_member_holds, wait_acks
from testbase.ensemble import Ensemble
from testbase.process import apache_available
from testbase.quorumsec import (
    HELLO,
    JAAS_KEY,
    PROBE_OPEN_S,
    REFUSED,
    SASL_REQUIRED,
    STRANGER_SID,
    answer_to,
    make_quorum_pki,
    probe,
    stranger_connection,
    stranger_tls,
    tls_keys,
    write_jaas,
)

from zkfast.quorum.auth import Outcome, QuorumAuth
from zkfast.quorum.wire import Notification, PacketType, ServerState

pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")]

FIRST_HOST = 37  # 127.0.0.37-39: named by the member certificate (testbase.quorumsec.MEMBER_IPS)
QUOTA_ROOTS = {"/w": 1_000_000, "/q": 3}  # hard count limits

# the rogue's words: on an election port, who it is and a vote for itself that would win any election;
# on a leader's quorum port, a FOLLOWERINFO (LearnerInfo: sid, protocol version, config version)
_VOTE = Notification(ServerState.LOOKING, STRANGER_SID, 1 << 40, 1 << 20, 1 << 8).encode()
VOTE = struct.pack(">i", len(_VOTE)) + _VOTE
_INFO = struct.pack(">qiq", STRANGER_SID, 0x10000, 0)
QUORUM_SAY = struct.pack(">iqi", int(PacketType.FOLLOWERINFO), 0, len(_INFO)) + _INFO + struct.pack(">i", -1)
PROBES = {"plaintext": None, "untrusted certificate": "rogue", "trusted elsewhere": "elsewhere",
          "trusted, no SASL": "member"}
GUESSED = "trusted, guessed password"


def let_in(sid: int) -> re.Pattern[str]:
    """What a member logs of peer `sid` it let in: an Apache leader's LearnerHandler, the workers of an
    Apache election connection, a zkfast leader."""
    return re.compile(rf"Follower sid: {sid} |thread id {sid} |sid: {sid}\. myId|learner {sid} connected")


def guess_password(host: str, port: int, pki: dict[str, Path], hello: bytes, then: bytes) -> str:
    """A trusted certificate, `hello`, quorum SASL as a learner with a guessed password; whatever the
    server says, then `then` as if it had been let in."""
    guesser = QuorumAuth(server_required=True, learner_required=True, credentials={}, learner_username="zkpeer",
                         learner_password="guessed", authz_hosts=frozenset()).learner_handshake(host)
    assert guesser is not None
    with stranger_connection(host, port) as raw:
        try:
            tls = stranger_tls(raw, host, pki, "member")
        except OSError:
            return "handshake failed"
        with tls:
            tls.settimeout(PROBE_OPEN_S)
            tls.sendall(hello + guesser.start())
            got = bytearray()
            outcome = Outcome.PENDING
            while outcome is Outcome.PENDING:
                try:
                    chunk = tls.recv(4096)
                except TimeoutError:
                    return "kept"
                if not chunk:
                    return "closed"
                got += chunk
                out, outcome = guesser.feed(got)
                tls.sendall(out)
            if outcome is Outcome.AUTHENTICATED:
                return "authenticated"
            return "sasl refused" if answer_to(tls, then) == "closed" else "let in after failing SASL"


class HoldableWriter(Writer):
    """The load, whose creates can be held (none in flight while held)."""

    def __init__(self, hosts: str) -> None:
        super().__init__(hosts)
        self.held = threading.Lock()
        create = self.zk.create

        def create_unless_held(*args: Any, **kwargs: Any) -> Any:
            with self.held:
                return create(*args, **kwargs)

        self.zk.create = create_unless_held  # type: ignore[method-assign]


class Rogue:
    """Probes every member's election and quorum ports, round after round, until stopped; records
    (member, the member's kind, port, probe, outcome)."""

    def __init__(self, e: Ensemble, pki: dict[str, Path]) -> None:
        self.e = e
        self.pki = pki
        self.seen: list[tuple[int, str, str, str, str]] = []
        self.rounds = 0
        self.error: Exception | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def attempt(self, i: int, port_name: str, name: str) -> str:
        host = self.e.members[i].host
        quorum, election = self.e.peer_ports(i)
        port, hello, then = (election, HELLO, VOTE) if port_name == "election" else (quorum, b"", QUORUM_SAY)
        try:
            if name == GUESSED:
                return guess_password(host, port, self.pki, hello, then)
            return probe(host, port, self.pki, PROBES[name], hello + then)
        except ConnectionRefusedError:
            return "not listening"
        except (ConnectionError, ssl.SSLError):
            return "closed"

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for i in self.e.ids:
                    for port_name in ("election", "quorum"):
                        for name in (*PROBES, GUESSED):
                            kind = self.e.kinds[i]
                            self.seen.append((i, kind, port_name, name, self.attempt(i, port_name, name)))
                self.rounds += 1
                self.stop.wait(0.05)
        except Exception as e:  # noqa: BLE001 - reported by full_round
            self.error = e

    def full_round(self, timeout_s: float = 20.0) -> None:
        """Wait until a whole round has run since this call."""
        target = self.rounds + 2
        deadline = time.monotonic() + timeout_s
        while self.rounds < target:
            assert self.error is None, f"the rogue failed: {self.error!r}"
            assert time.monotonic() < deadline, "the rogue's probes stalled"
            time.sleep(0.05)


@contextlib.contextmanager
def probing(e: Ensemble, pki: dict[str, Path]) -> Iterator[Rogue]:
    rogue = Rogue(e, pki)
    rogue.thread.start()
    try:
        yield rogue
    finally:
        rogue.stop.set()
        rogue.thread.join(30)


@pytest.fixture
def hardened(tmp_path: Path) -> Iterator[tuple[Ensemble, dict[str, Path]]]:
    pki = make_quorum_pki(tmp_path)
    jaas = write_jaas(tmp_path / "jaas.conf", "s3cret")
    cfg = {**SASL_REQUIRED, **tls_keys(pki), "enforceQuota": "true"}
    with Ensemble("apache", 3, first_host=FIRST_HOST, cfg=cfg, system_properties={JAAS_KEY: jaas}) as e:
        yield e, pki


def mntr(e: Ensemble, i: int) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in e.members[i].four_letter("mntr").splitlines() if "\t" in line)


def set_quotas(hosts: str) -> None:
    """What `setquota -N <limit> <root>` does (SetQuotaCommand.createQuota); /q filled to its limit."""
    c = client(hosts)
    try:
        for root, limit in QUOTA_ROOTS.items():
            c.ensure_path(root)
            c.ensure_path(f"/zookeeper/quota{root}")
            c.create(f"/zookeeper/quota{root}/zookeeper_limits", b"count=-1,bytes=-1,countHardLimit=%d" % limit)
            c.create(f"/zookeeper/quota{root}/zookeeper_stats", b"count=0,bytes=0")
        c.create("/q/a", b"1")
        c.create("/q/b", b"22")
    finally:
        c.stop()


def quota_refusals(e: Ensemble) -> list[tuple[str, str]]:
    """/q/b deleted and created again (the stats move), then a create past the hard count through every
    member, refused with QUOTAEXCEEDED: (member's kind, leader's kind) of each refusal.

    An Apache leader checks quotas against the tree it has applied (ZooKeeperServer.checkQuota): a write
    through a follower is answered once the follower applied it, possibly before the leader did, so the
    next one could be checked against the stats before it. /q is changed through the leader, which
    answers once it applied the change."""
    leader = e.wait_leader()
    c = client(e.address(leader))
    try:
        c.delete("/q/b")
        c.create("/q/b", b"22")
    finally:
        c.stop()
    seen = []
    for i in e.ids:
        c = client(e.address(i))
        try:
            with pytest.raises(QuotaExceededError):
                c.create("/q/over", b"x")
            seen.append((e.kinds[i], e.kinds[leader]))
            c.sync("/q")
            assert stats(c, "/q") == {"count": 3, "bytes": 3}, f"member {i}'s stats of /q"
        finally:
            c.stop()
    assert e.leader() == leader
    return seen


def holds_latest(e: Ensemble, i: int, w: Writer) -> None:
    latest = w.acked[-1]
    c = client(e.address(i))
    try:
        c.sync("/w")
        assert c.exists(latest), f"member {i} has not caught up with {latest}"
    finally:
        c.stop()


def keeps_its_leader(e: Ensemble, rogue: Rogue) -> None:
    """While the rogue probes every member once: the same leader, with the two members as learners."""
    leader = e.wait_leader()
    rogue.full_round()
    assert e.leader() == leader, "the leader changed while the rogue probed"
    seen = mntr(e, leader)
    assert (seen["zk_learners"], seen["zk_synced_followers"]) == ("2", "2"), seen


def stats(c: KazooClient, root: str) -> dict[str, int]:
    data = c.get(f"/zookeeper/quota{root}/zookeeper_stats")[0].decode()
    return {k: int(v) for k, v in (kv.split("=") for kv in data.split(","))}


def quota_stats_are_counts(e: Ensemble) -> None:
    """Each member's stats of each quota root: the nodes below it (and itself) and their bytes."""
    for i in e.ids:
        c = client(e.address(i))
        try:
            c.sync("/")
            for root in QUOTA_ROOTS:
                children = c.get_children(root)
                size = sum(len(a.get()[0]) for a in [c.get_async(f"{root}/{child}") for child in children])
                assert stats(c, root) == {"count": len(children) + 1, "bytes": size}, (i, root)
        finally:
            c.stop()


def zkfast_log(e: Ensemble, i: int) -> str:
    """Member i's log since zkfast first started there (Apache's is the same file, before)."""
    text = e.log_of(i)
    start = text.find("quorum TLS: on")
    assert start >= 0, f"zkfast member {i} did not run quorum TLS"
    return text[start:]


def rogue_was_refused(rogue: Rogue, e: Ensemble) -> None:
    kept = [s for s in rogue.seen if s[4] not in REFUSED | {"sasl refused", "not listening"}]
    assert not kept, f"the rogue got in: {kept[:5]}"
    refused = {(i, kind, port, name) for i, kind, port, name, outcome in rogue.seen if outcome != "not listening"}
    for name in (*PROBES, GUESSED):
        for kind in ("apache", "zkfast"):
            for i in e.ids:
                assert (i, kind, "election", name) in refused, f"no {name} probe of {kind} member {i}'s election port"
            assert any((i, kind, "quorum", name) in refused for i in e.ids), f"no {name} probe of a {kind} leader"
    for i in e.ids:
        text = e.log_of(i)
        assert not let_in(STRANGER_SID).search(text), f"member {i} let the rogue in"
        assert any(let_in(j).search(text) for j in e.ids), "what a member logs of a peer it lets in has changed"
        for refusal in ("blocked a plaintext quorum connection from 127.0.0.1",
                        "quorum TLS handshake with 127.0.0.1 failed",
                        "refused quorum TLS peer 127.0.0.1 (ssl.quorum.hostnameVerification)",
                        "is not trying to authenticate and authentication is required",
                        "Failed to authenticate using SASL, learner addr"):
            assert refusal in zkfast_log(e, i), f"zkfast member {i} did not log {refusal!r}"


def members_authenticated_each_other(e: Ensemble) -> None:
    """Each zkfast member ran its quorum connections on TLS and SASL, as a server and as a learner."""
    for i in e.ids:
        for done in ("Successfully completed the authentication using SASL. learner addr",
                     "Successfully completed the authentication using SASL. server addr"):
            assert done in zkfast_log(e, i), f"zkfast member {i} did not log {done!r}"


def test_hardened_apache_ensemble_migrates_to_zkfast_under_load_and_probes(
        hardened: tuple[Ensemble, dict[str, Path]], caplog: pytest.LogCaptureFixture) -> None:
    e, pki = hardened
    caplog.set_level(logging.CRITICAL, logger="zkfast.quorum.auth")  # the rogue's SASL failures, as a learner
    started = time.monotonic()
    e.start()
    set_quotas(e.hosts())
    refusals = quota_refusals(e)
    digests: dict[int, str] = {}
    leaders = []
    with probing(e, pki) as rogue, HoldableWriter(e.hosts()) as w:
        keeps_its_leader(e, rogue)
        wait_acks(w, 30)
        while "apache" in e.kinds.values():
            # an Apache leader goes first, so that the next election is between an Apache server and a
            # zkfast one with the larger id (Apache's leader is the largest id of its quorum): zkfast wins
            leader = e.wait_leader()
            i = leader if e.kinds[leader] == "apache" else min(i for i in e.ids if e.kinds[i] == "apache")
            digests[i] = mntr(e, i)["zk_digest_mismatches_count"]
            if i == leader:
                with w.held:  # no write in flight: both followers end with the same zxid, ids decide
                    time.sleep(0.2)
                    e.stop(i)
            e.replace(i, "zkfast")
            e.restart(i)
            recovered = re.search(r"recovered zxid 0x([0-9a-f]+)", e.members[i].log_text(since_start=True))
            assert recovered and int(recovered.group(1), 16) > 0, "zkfast did not start from Apache's data"
            holds_latest(e, i, w)
            wait_acks(w, 30)
            keeps_its_leader(e, rogue)
            leaders.append(e.kinds[e.wait_leader()])
            refusals += quota_refusals(e)
        wait_acks(w, 30)
    migrated_s = time.monotonic() - started
    print(f"{len(w.acked)} writes acked, {w.errors} retried, longest pause {w.longest_gap_s:.2f} s; "
          f"{rogue.rounds} probe rounds, {len(rogue.seen)} probes; migrated in {migrated_s:.1f} s")

    # the load: nothing acknowledged lost, no pause longer than a failover
    every_member_holds(e, w.acked)
    assert w.longest_gap_s < e.failover_bound_s(), w.longest_gap_s
    # an Apache leader with zkfast and Apache followers, a zkfast leader with an Apache follower, all zkfast
    assert leaders == ["apache", "zkfast", "zkfast"], leaders
    assert set(e.kinds.values()) == {"zkfast"}

    # quotas: refused by every kind of member under every kind of leader, stats right everywhere
    assert set(refusals) == {(member, leader) for member in ("apache", "zkfast") for leader in ("apache", "zkfast")}, \
        refusals
    quota_stats_are_counts(e)

    # digests: no mismatch counted by a zkfast member, nor by an Apache one before it left
    assert set(digests.values()) == {"0"}, digests
    assert {i: mntr(e, i)["zk_digest_mismatches_count"] for i in e.ids} == dict.fromkeys(e.ids, "0")

    # the rogue: refused every time, by both kinds, on every port; no member let it in
    rogue_was_refused(rogue, e)
    members_authenticated_each_other(e)
