"""Txn digests as Apache ZooKeeper 3.8 keeps them (DigestCalculator, NodeHashMapImpl, AdHash,
DataTree.compareDigest, PrepRequestProcessor's precalculated digests), checked against Apache's own
numbers rather than against a second implementation:

- Apache's history: Apache writes a txn log under a pipelined write load; each of its txns carries the
  digest Apache's leader computed for the tree after it. zkfast applies that log and its tree digest
  equals Apache's after every txn; zkfast's recovery of Apache's dataDir (its snapshot's digest
  trailer included) counts no mismatch.
- zkfast's history: Apache starts on a log zkfast wrote under the same load and compares every txn's
  digest as it replays it (FileTxnSnapLog.fastForwardFromEdits): it counts exactly the one txn whose
  digest the test altered, and the digest trailer of the snapshot Apache then takes equals zkfast's.
- Mixed ensembles in both directions under a short write load: digest_mismatches_count is 0 on every
  member; then a planted divergence (tests/fault/planted_digest.py, on paths under /planted-digest
  only) is counted where Apache counts it: by a zkfast follower whose tree drifts from an Apache
  leader's, and by the Apache followers of a zkfast leader that proposes wrong digests.
- zkfast's own ensembles: the quorum simulator's seeds count no mismatch.
"""

from __future__ import annotations

import random
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault import planted_digest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.retry import KazooRetry
from kazoo.security import ACL, Id
from testbase.ensemble import Ensemble
from testbase.process import ApacheZkProcess, ZkfastProcess, apache_available
from zkfast._datatree import DataTree, crc32_of, digest_mismatches_count, path_digest
from zkfast._jute import (
    LOG_FILE_HEADER_BYTES,
    OP_CLOSE_SESSION,
    OP_CREATE,
    OP_DELETE,
    OP_ERROR,
    OP_MULTI,
    OP_SET_ACL,
    OP_SET_DATA,
    Txn,
    decode_txn,
)

from zkfast.storage.apache import apache_snapshots, load_apache_snapshot
from zkfast.storage.recovery import recover
from zkfast.storage.txnlog import log_files, scan_log

needs_apache = pytest.mark.skipif(not apache_available(), reason="Apache ZooKeeper is not installed")
OPEN = [(31, "world", "anyone")]


# ------------------------------------------------------------------------------------------ units

def java_digest(path: bytes, data: bytes | None, stat: tuple[int, ...]) -> int:
    """DigestCalculator.calculateDigest as its source reads (for the unit checks only)."""
    if path.startswith(b"/zookeeper/"):
        return 0
    czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid = stat
    body = struct.pack(">qqqqqiiiq", czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, owner)
    return zlib.crc32((b"" if path == b"/" else path) + (data or b"") + body)


def test_sliced_crc32_is_zlibs() -> None:
    rng = random.Random(3)
    for n in [*range(70), 511, 512, 513, 4000]:
        b = rng.randbytes(n)
        assert crc32_of(b) == zlib.crc32(b) == crc32_of(memoryview(b"u" + b)[1:]), n


def test_node_digest_is_crc32_of_path_data_and_stat() -> None:
    assert path_digest(b"/a", b"xy", 5, 6, 7, 100, 200, 1, 2, 3, -1) == java_digest(
        b"/a", b"xy", (5, 6, 100, 200, 1, 2, 3, -1, 7))
    # "/" is "" (the root's alias), null data adds nothing, /zookeeper/... counts 0 but /zookeeper does not
    assert path_digest(b"/", None, 0, 0, 0, 0, 0, 0, 0, 0, 0) == path_digest(b"", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert path_digest(b"/zookeeper/quota", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0) == 0
    assert path_digest(b"/zookeeper", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0) != 0
    t = DataTree()
    # the built-in nodes: the root and /zookeeper count, /zookeeper/quota and /zookeeper/config not
    assert t.tree_digest == java_digest(b"/", b"", (0,) * 9) + java_digest(b"/zookeeper", b"", (0,) * 9)


def _txn(zxid: int, typ: int, **fields: object) -> Txn:
    t = Txn(0x100 + zxid % 3, zxid, zxid, 1_700_000_000_000 + zxid, typ)
    for k, v in fields.items():
        setattr(t, k, v)
    return t


def test_kept_digest_is_the_sum_of_node_digests_through_a_random_history() -> None:
    rng = random.Random(7)
    t = DataTree(extended_types=True)
    paths: list[bytes] = []
    for zxid in range(1, 3000):
        r = rng.random()
        if r < 0.4 or not paths:
            parent = rng.choice([b"", *paths[-20:]])
            p = parent + b"/n%d" % zxid
            t.apply(_txn(zxid, OP_CREATE, path=p, data=rng.randbytes(rng.randrange(0, 40)) or None, acl=OPEN,
                         ephemeral=rng.random() < 0.2, parent_cversion=-1))
            paths.append(p)
        elif r < 0.6:
            t.apply(_txn(zxid, OP_SET_DATA, path=rng.choice(paths), data=rng.randbytes(8), version=zxid))
        elif r < 0.7:
            t.apply(_txn(zxid, OP_SET_ACL, path=rng.choice(paths), acl=[(1, "world", "anyone")], version=zxid))
        elif r < 0.9:
            p = paths.pop(rng.randrange(len(paths)))
            if t.apply(_txn(zxid, OP_DELETE, path=p)) != 0:
                paths.append(p)  # it had children
        else:
            t.apply(_txn(zxid, OP_CLOSE_SESSION, paths=None))
            paths = [p for p in paths if t.exists(p)]
        assert t.tree_digest == t.recount_digest(), f"kept digest drifted at zxid {zxid}"
    expected = sum(java_digest(p, *t.node_info(p)[:2]) for p in t.walk())
    assert t.tree_digest == (expected + 2**63) % 2**64 - 2**63


def test_close_session_txn_without_body_keeps_its_digest() -> None:
    # closeSessionTxn.enabled=false: header then TxnDigest, no body (Apache reads the digest there)
    t = _txn(9, OP_CLOSE_SESSION, paths=None)
    t.has_digest, t.digest_version, t.digest = True, 2, 0x1234
    back = decode_txn(t.to_bytes())
    assert back.paths is None and back.has_digest and back.digest == 0x1234


def test_a_fuzzy_snapshots_digest_waits_for_its_zxid() -> None:
    # DataTree.deserializeZxidDigest / compareSnapshotDigests: txn digests are not compared until
    # replay reaches the zxid the snapshot's digest was taken at; then that digest is
    t = DataTree()
    before = digest_mismatches_count()
    t.set_snapshot_digest(5, 2, 12345, 3)  # a wrong digest for zxid 5
    for zxid in (4, 5, 6):
        txn = _txn(zxid, OP_CREATE, path=b"/f%d" % zxid, data=b"", acl=OPEN, parent_cversion=-1)
        txn.has_digest, txn.digest_version, txn.digest = True, 2, 999  # wrong too
        t.apply(txn)
    # 4 was not compared; at 5 the snapshot's digest and the txn's were; 6 was
    assert digest_mismatches_count() == before + 3
    t.set_snapshot_digest(7, 2, t.tree_digest, 7)  # a snapshot's own zxid: compared at once, and right
    assert digest_mismatches_count() == before + 3 and t.snapshot_digest_zxid == -1


def test_simulated_ensembles_count_no_mismatch() -> None:
    # zkfast leaders' precalculated digests against zkfast followers' trees, through crashes, torn
    # logs, SNAP, DIFF and TRUNC syncs, pipelined and forwarded writes, multis and session closes
    from quorum.sim import run_seed

    before = digest_mismatches_count()
    for seed in range(40):
        assert run_seed(seed, 3, 0) is None
    for seed in range(10):  # observers (INFORM), and reconfigs
        assert run_seed(seed, 3, 2, reconfig=True) is None
    assert digest_mismatches_count() == before


# ------------------------------------------------------------------------------------------ load

def client(hosts: str) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0, connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5))
    c.start(timeout=30)
    return c


def write_load(hosts: str, base: str, rounds: int) -> None:
    """Creates, sets, deletes, ephemerals, sequential nodes, setACL, multis (one failing) and a
    session closed with its ephemerals; each round's writes pipelined."""
    c = client(hosts)
    closer = client(hosts)
    try:
        c.ensure_path(base)
        for i in range(rounds):
            p = f"{base}/n{i}"
            pending = [c.create_async(p, b"v0"), c.set_async(p, b"v1" * i),
                       c.create_async(f"{base}/seq-", b"s", sequence=True),
                       c.create_async(f"{base}/eph{i}", b"e", ephemeral=True),
                       closer.create_async(f"{base}/closer{i}", b"c", ephemeral=True),
                       c.set_acls_async(p, [ACL(31, Id("world", "anyone"))]),
                       c.set_async(base, b"parent %d" % i)]
            for a in pending:
                a.get(timeout=10)
            t = c.transaction()
            t.create(f"{base}/m{i}", b"m")
            t.set_data(p, b"in a multi")
            t.delete(f"{base}/m{i}")
            t.commit()
            bad = c.transaction()
            bad.create(f"{base}/bad{i}")
            bad.check(p, 12345)  # fails: nothing of it applies
            bad.commit()
            try:
                c.set(p, b"x", version=999)  # an error txn
            except KazooException:
                pass
            if i % 2:
                c.delete(p)
    finally:
        closer.stop()  # closeSession deletes its ephemerals
        closer.close()
        c.stop()
        c.close()


def log_txns(data_dir: Path) -> Iterator[Txn]:
    for _, path in log_files(data_dir / "version-2"):
        yield from scan_log(path).txns


def digest_count(mntr: str) -> int:
    for line in mntr.splitlines():
        key, _, value = line.partition("\t")
        if key == "zk_digest_mismatches_count":
            return int(value)
    raise AssertionError(f"no zk_digest_mismatches_count in mntr:\n{mntr}")


# ------------------------------------------------------------------------------------------ Apache's numbers

@pytest.fixture(scope="module")
def apache_history() -> Iterator[Path]:
    srv = ApacheZkProcess(cfg={"4lw.commands.whitelist": "*"})
    try:
        srv.start()
        write_load(srv.address, "/digest", 14)
        (srv.data_dir / "hash.txt").write_text(srv.four_letter("hash"))
        srv.stop()
        # started again, Apache replays its log and snapshots the tree with its digest trailer
        srv.start()
        srv.stop()
        yield srv.data_dir
    finally:
        srv.cleanup()


@needs_apache
def test_zkfast_tree_digest_equals_apaches_after_every_txn(apache_history: Path) -> None:
    tree = DataTree(extended_types=True)
    compared = errors = 0
    for txn in log_txns(apache_history):
        tree.apply(txn)
        if txn.type == OP_ERROR:
            assert not txn.has_digest, "Apache's error txns carry no digest"
            errors += 1
            continue
        assert txn.has_digest and txn.digest_version == 2
        assert tree.tree_digest == txn.digest, f"zxid 0x{txn.zxid:x} ({txn!r}): zkfast {tree.tree_digest}, " \
                                               f"Apache {txn.digest}"
        compared += 1
    assert compared > 100 and errors > 0
    assert any(t.type == OP_MULTI for t in log_txns(apache_history))


@needs_apache
def test_hash_command_lists_the_digests_apache_lists(apache_history: Path) -> None:
    tree = DataTree(extended_types=True)
    for txn in log_txns(apache_history):
        tree.apply(txn)
    theirs = (apache_history / "hash.txt").read_text()
    assert theirs.count("\n") >= 1
    ours = "".join(f"{z:x}: {d}\n" for z, d in tree.digest_log)
    assert ours == theirs


@needs_apache
def test_zkfast_recovers_apaches_datadir_without_mismatch(apache_history: Path) -> None:
    snaps = apache_snapshots(apache_history / "version-2")
    assert snaps, "Apache took no snapshot at start-up"
    loaded = load_apache_snapshot(snaps[0][1], DataTree(extended_types=True))
    assert loaded.digest is not None and loaded.digest[0] == loaded.zxid, "no digest trailer in Apache's snapshot"
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "data"
        shutil.copytree(apache_history, copy)
        before = digest_mismatches_count()
        rec = recover(copy / "version-2", copy / "version-2", lambda: DataTree(extended_types=True))
        assert digest_mismatches_count() == before
    # the snapshot's trailer, checked as it loaded, is Apache's digest of the whole tree
    assert rec.tree.tree_digest == loaded.digest[2]


def alter_one_digest(log: Path) -> int:
    """Add 1 to the digest of the log's first setData txn (its checksum recomputed): the zxid."""
    raw = bytearray(log.read_bytes())
    at = LOG_FILE_HEADER_BYTES
    while at + 12 <= len(raw):
        length = struct.unpack_from(">i", raw, at + 8)[0]
        if length <= 0:
            break
        payload = bytes(raw[at + 12:at + 12 + length])
        txn = decode_txn(payload)
        if txn.type == OP_SET_DATA and txn.has_digest:
            txn.digest += 1
            fixed = txn.to_bytes()
            assert len(fixed) == length
            raw[at + 12:at + 12 + length] = fixed
            struct.pack_into(">q", raw, at, zlib.adler32(fixed))
            log.write_bytes(bytes(raw))
            return txn.zxid
        at += 12 + length + 1
    raise AssertionError("no setData txn with a digest in the log")


@needs_apache
def test_apache_replays_zkfasts_log_and_counts_only_the_altered_digest() -> None:
    zk = ZkfastProcess(cfg={"4lw.commands.whitelist": "*"})
    apache = ApacheZkProcess(cfg={"4lw.commands.whitelist": "*"},
                             jvm_flags=("-Dzookeeper.snapshot.trust.empty=true",))
    try:
        zk.start()
        write_load(zk.address, "/digest", 14)
        hashed = zk.four_letter("hash")
        zk.stop()
        txns = list(log_txns(zk.data_dir))
        assert all(t.has_digest == (t.type != OP_ERROR) for t in txns), "digest on every txn but error txns"
        expected = DataTree(extended_types=True)
        for t in txns:
            expected.apply(t)
        assert hashed and hashed == "".join(f"{z:x}: {d}\n" for z, d in expected.digest_log)
        # restarted, zkfast replays its log over its start-up snapshot, comparing, and snapshots again
        zk.start()
        assert digest_count(zk.four_letter("mntr")) == 0
        zk.stop()
        # Apache reads zkfast's logs alone (no snapshot: it replays from an empty tree)
        logs = apache.data_dir / "version-2"
        logs.mkdir(parents=True, exist_ok=True)
        for _, path in log_files(zk.data_dir / "version-2"):
            shutil.copy(path, logs / path.name)
        altered = alter_one_digest(logs / log_files(logs)[0][1].name)
        apache.start()
        assert digest_count(apache.four_letter("mntr")) == 1, \
            f"Apache should count only zxid 0x{altered:x}:\n{apache.log_tail()}"
        apache.stop()
        snaps = apache_snapshots(logs)
        loaded = load_apache_snapshot(snaps[0][1], DataTree(extended_types=True))
        assert loaded.digest is not None and loaded.digest[2] == expected.tree_digest
    finally:
        zk.cleanup()
        apache.cleanup()


# ------------------------------------------------------------------------------------------ mixed ensembles

def plant(e: Ensemble, i: int, bug: str) -> None:
    member = e.members[i]
    base = member.launcher.command(member.cfg_path, member.system_properties)
    assert base[1:3] == ["-m", "zkfast"]
    member.command = lambda: planted_digest.command(bug, *base[3:])  # type: ignore[method-assign]


def counts(e: Ensemble) -> dict[int, int]:
    return {i: digest_count(e.members[i].four_letter("mntr")) for i in e.running()}


def planted_writes(hosts: str) -> None:
    c = client(hosts)
    try:
        c.create("/planted-digest", b"0")
        for i in range(3):
            c.set("/planted-digest", b"%d" % i)
        c.sync("/")
    finally:
        c.stop()
        c.close()


@needs_apache
@pytest.mark.timeout(180)
@pytest.mark.parametrize("leader_kind", ["apache", "zkfast"])
def test_mixed_ensemble_digests(leader_kind: str) -> None:
    other = "zkfast" if leader_kind == "apache" else "apache"
    cfg = {"4lw.commands.whitelist": "*"}
    with Ensemble(leader_kind, 3, kinds={1: other, 2: other}, cfg=cfg) as e:
        # Apache leader: zkfast followers 1 (clean) and 2 (its tree drifts on /planted-digest);
        # zkfast leader 3 proposes wrong digests on /planted-digest to Apache followers 1 and 2
        plant(e, 2 if leader_kind == "apache" else 3, "diverge-apply" if leader_kind == "apache" else "wrong-digest")
        e.start([1, 3])
        assert e.wait_leader() == 3
        e.start([2])
        for i in e.ids:
            write_load(e.address(i), f"/through{i}", 6)
        c = client(e.hosts())
        c.sync("/")
        c.stop()
        assert counts(e) == {1: 0, 2: 0, 3: 0}, "a mismatch under a clean write load"
        planted_writes(e.address(3))
        seen = counts(e)
        if leader_kind == "apache":
            assert seen[2] > 0 and seen[1] == 0 and seen[3] == 0, seen
            assert "First digest mismatch" in e.members[2].log_text()
        else:
            assert seen[1] > 0 and seen[2] > 0, seen


def test_digest_enabled_false_writes_no_digests() -> None:
    zk = ZkfastProcess(cfg={"4lw.commands.whitelist": "*", "digest.enabled": "false"})
    try:
        zk.start()
        c = client(zk.address)
        c.create("/off", b"1")
        c.set("/off", b"2")
        c.stop()
        c.close()
        assert digest_count(zk.four_letter("mntr")) == 0
        zk.stop()
        txns = list(log_txns(zk.data_dir))
        assert len(txns) >= 3 and not any(t.has_digest for t in txns)
    finally:
        zk.cleanup()
