"""Quotas beside Apache ZooKeeper 3.8: the same script against both, the same bytes, zxids and Stats.

One Apache server and one zkfast server, both with `enforceQuota=true` in zoo.cfg, run one script (the
module's fixture runs it once; each test checks one aspect of what it recorded):

1. a zkCli.sh session (setquota -n/-b/-N/-B, listquota, delquota, writes past soft and hard limits)
   against each server, transcripts compared; `zkfast shell` runs it against a third (zkfast) server;
2. kazoo, in lock step on both: creates, sets, deletes, sequential and ephemeral nodes, multis (one
   refused by a hard quota), hard limits refused with QUOTAEXCEEDED, a client's own setData on a stats
   node, a nested quota made by hand, a deleted limits node, a missing stats node, a malformed limits
   node; after every step the result and each quota root's stats node (data and Stat: they change in
   place, without a txn) are recorded;
3. the quota warnings both servers logged (RateLogger's "Message:Quota exceeded: ..." lines);
4. a restart of both with `enforceQuota=false` (the txn log replayed), then another (the snapshot
   each took at start-up loaded, its stats recounted): every quota znode as before, and a write past a
   hard limit now accepted by both, with the same stats.

In-process tests below check the pieces the servers cannot show on their own: StatsTrack parsing and
formatting, setupQuota after a tree is loaded (a snapshot or a leader's SNAP), Apache's RateLogger.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available, free_port
from testbase.zkcli import (
    MARKER_COMMAND,
    ClientMissing,
    _check_script,
    both,
    diff_transcripts,
    normalise,
    parse_output,
    require_zkcli,
    run_zkcli,
)
from zkfast._datatree import (
    DataTree,
    format_stats_track,
    load_chunk,
    parse_stats_track,
    quota_trie_key,
    serialize_chunk,
)
from zkfast._jute import OP_CREATE, Txn, WriteBuffer
from zkfast._pipeline import RateLogger

from zkfast.quotas import BYTES_LIMIT, BYTES_USAGE, COUNT_LIMIT, COUNT_USAGE, GAUGE_SETS, chm_order

ENFORCED = {"enforceQuota": "true"}

ZKCLI_SCRIPT = [
    "create /q",
    "create /q/a aaaa",
    "create /q/b",
    "create /r",
    "setquota -n 4 /q",
    "setquota -b 20 /q",
    "setquota -N 6 /q",
    "listquota /q",
    "get -s /zookeeper/quota/q/zookeeper_limits",
    "get -s /zookeeper/quota/q/zookeeper_stats",
    "create /q/c cccccc",
    "listquota /q",
    "setquota -B 5 /r",
    "create /r/x 123456",
    "create /r/x 12345",
    "set /r/x 1234567",
    "listquota /r",
    "setquota -n 2 /q/a",
    "setquota -n 2 /nope",
    "setquota -b 3 /zookeeper/quota/q",
    "create /d",
    "create /d/e",
    "setquota -n 1 /d",
    "create /d/f",
    "listquota /d",
    "delquota -n /d",
    "listquota /d",
    "setquota -B 0 /d",
    "delquota -B /d",
    "listquota /d",
    "delquota /d",
    "listquota /d",
    "create /d/g",
    "ls -R /zookeeper/quota",
    "stat /zookeeper/quota/q/zookeeper_stats",
    "quit",
]

QUOTA_LOG_LINE = re.compile(r"((?:\[\d+ times\] )?Message: ?Quota exceeded: .*|Missing node for stat .*|"
                            r"Missing limit node for quota .*|Missing quota stat node .*)$")
STATS = ("/zookeeper/quota/q/zookeeper_stats", "/zookeeper/quota/r/zookeeper_stats",
         "/zookeeper/quota/w/zookeeper_stats", "/zookeeper/quota/w/1/zookeeper_stats")
DUMPED = ("/zookeeper/quota", "/q", "/r", "/w", "/d")


def stat_fields(stat: ZnodeStat) -> tuple[Any, ...]:
    """A Stat without its times, and the owner of an ephemeral as "session" (ids differ by server)."""
    return (stat.czxid, stat.mzxid, stat.version, stat.cversion, stat.aversion,
            "session" if stat.ephemeralOwner else 0, stat.dataLength, stat.numChildren, stat.pzxid)


def outcome(value: Any) -> Any:
    if isinstance(value, BaseException):
        return type(value).__name__
    if isinstance(value, ZnodeStat):
        return stat_fields(value)
    if isinstance(value, (list, tuple)):
        return [outcome(v) for v in value]
    return value


def stats_of(zk: KazooClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in STATS:
        found = zk.exists(path)
        if found is not None:
            data, stat = zk.get(path)
            out[path] = (data, stat_fields(stat))
    return out


def dump(zk: KazooClient) -> list[tuple[str, bytes | None, tuple[Any, ...]]]:
    """Every znode of the quota subtree and of the script's trees: path, data, Stat without times."""
    out = []
    stack = list(DUMPED)
    while stack:
        path = stack.pop()
        if zk.exists(path) is None:
            continue
        data, stat = zk.get(path)
        out.append((path, data, stat_fields(stat)))
        stack.extend(f"{path}/{child}" for child in zk.get_children(path))
    return sorted(out)


def multi(ops: Callable[[Any], None]) -> Callable[[KazooClient], Any]:
    def run(zk: KazooClient) -> Any:
        t = zk.transaction()
        ops(t)
        return t.commit()
    return run


def attempt(fn: Callable[[KazooClient], Any], zk: KazooClient) -> Any:
    try:
        return outcome(fn(zk))
    except Exception as e:  # noqa: BLE001 - the error class is the result compared
        return type(e).__name__


QW = "/zookeeper/quota/w"
# (name, operation): each runs on Apache, then on zkfast, then both servers' stats nodes are read
KAZOO_SCRIPT: list[tuple[str, Callable[[KazooClient], Any]]] = [
    ("create under the hard count", lambda zk: zk.create("/q/e", b"xyz")),
    ("set to empty data", lambda zk: zk.set("/q/a", b"")),
    ("sequential create up to the soft bytes", lambda zk: zk.create("/q/s-", b"12345678901", sequence=True)),
    ("create past the hard count", lambda zk: zk.create("/q/t")),
    ("delete", lambda zk: zk.delete("/q/b")),
    ("ephemeral past the soft bytes", lambda zk: zk.create("/q/eph", b"1", ephemeral=True)),
    ("multi refused by the hard count", multi(lambda t: (t.create("/q/m1", b"ab"), t.set_data("/q/a", b"12")))),
    ("delete the ephemeral", lambda zk: zk.delete("/q/eph")),
    ("multi under the hard count", multi(lambda t: (t.create("/q/m1", b"ab"), t.set_data("/q/a", b"12")))),
    ("multi failing on NODEEXISTS", multi(lambda t: (t.create("/q/m2"), t.create("/q/c")))),
    ("multi delete", multi(lambda t: (t.delete("/q/m1"), t.create("/q/m3", b"abc")))),
    ("empty create: no bytes check", lambda zk: zk.create("/r/y", b"")),
    ("set below the hard bytes", lambda zk: zk.set("/r/x", b"1234")),
    ("create up to the hard bytes", lambda zk: zk.create("/r/z", b"1")),
    ("create past the hard bytes", lambda zk: zk.create("/r/zz", b"1")),
    ("set past the hard bytes", lambda zk: zk.set("/r/x", b"12345")),
    ("set with a bad version past the hard bytes", lambda zk: zk.set("/r/x", b"123456", version=99)),
    ("malformed limits", lambda zk: zk.set("/zookeeper/quota/r/zookeeper_limits", b"garbage")),
    ("create under malformed limits", lambda zk: zk.create("/r/g", b"1")),
    ("limits restored", lambda zk: zk.set("/zookeeper/quota/r/zookeeper_limits",
                                          b"count=-1,bytes=-1=;byteHardLimit=5;countHardLimit=-1")),
    # a quota made by hand, its stats node written by a client, nested quotas, missing nodes
    ("create /w", lambda zk: zk.create("/w/1", b"abc", makepath=True)),
    ("quota node", lambda zk: zk.create(QW)),
    ("limits node", lambda zk: zk.create(f"{QW}/zookeeper_limits", b"count=10,bytes=-1")),
    ("stats node: recounted", lambda zk: zk.create(f"{QW}/zookeeper_stats", b"count=0,bytes=0")),
    ("a client's setData on the stats node", lambda zk: zk.set(f"{QW}/zookeeper_stats", b"bytes=2,count=1,foo=7")),
    ("create under it", lambda zk: zk.create("/w/2", b"zz")),
    ("nested quota node", lambda zk: zk.create(f"{QW}/1")),
    ("nested limits", lambda zk: zk.create(f"{QW}/1/zookeeper_limits", b"count=-1,bytes=3")),
    ("nested stats", lambda zk: zk.create(f"{QW}/1/zookeeper_stats", b"")),
    ("create under the nested quota", lambda zk: zk.create("/w/1/n", b"12345")),
    ("nested limits deleted", lambda zk: zk.delete(f"{QW}/1/zookeeper_limits")),
    ("create under the former nested quota", lambda zk: zk.create("/w/1/o", b"1")),
    ("stats node deleted", lambda zk: zk.delete(f"{QW}/zookeeper_stats")),
    ("create without a stats node", lambda zk: zk.create("/w/3", b"1")),
    ("cleanup", lambda zk: [zk.delete(p) for p in (f"{QW}/1/zookeeper_stats", f"{QW}/1",
                                                     f"{QW}/zookeeper_limits", QW)]),
    ("delete under /q after all", lambda zk: zk.delete("/q/e")),
]


@dataclass
class Run:
    """What the script recorded on each server (index 0: Apache, 1: zkfast)."""

    zkcli: tuple[str, str] = ("", "")
    shell: str = ""
    steps: list[tuple[str, Any, Any, Any, Any]] = field(default_factory=list)  # name, results, stats
    dumps: tuple[Any, Any] = (None, None)
    logs: tuple[list[str], list[str]] = ([], [])
    restarted_dumps: tuple[Any, Any] = (None, None)
    reloaded_dumps: tuple[Any, Any] = (None, None)
    after_restart: tuple[Any, Any] = (None, None)
    data_size: tuple[str, str] = ("", "")
    mntr: tuple[list[str], list[str]] = ([], [])
    prometheus: list[str] = field(default_factory=list)  # zkfast's (Debian has no Prometheus provider jar)


def quota_lines(server: ServerProcess) -> list[str]:
    out = []
    for line in server.log_text().splitlines():
        m = QUOTA_LOG_LINE.search(line)
        if m:
            out.append(m.group(1))
    return out


def mntr_value(server: ServerProcess, key: str) -> str:
    for line in server.four_letter("mntr").splitlines():
        name, _, value = line.partition("\t")
        if name == key:
            return value
    return ""


def quota_mntr(server: ServerProcess) -> list[str]:
    return [line for line in server.four_letter("mntr").splitlines() if "_quota_" in line]


def run_shell(address: str) -> str:
    """The script through `zkfast shell`, fed and cut as testbase.zkcli drives zkCli.sh (as test_shell)."""
    script = _check_script(ZKCLI_SCRIPT)
    lines = [MARKER_COMMAND]
    for cmd in script:
        lines.append(cmd)
        if cmd.split()[0] != "quit":
            lines.append(MARKER_COMMAND)
    proc = subprocess.run([sys.executable, "-m", "zkfast.shell", "-waitforconnection", "-server", address],
                          input="\n".join(lines) + "\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=60, text=True, errors="replace")
    return normalise(parse_output(address, script, proc.stdout, proc.returncode))


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    if not apache_available():
        pytest.fail("Apache ZooKeeper 3.8 (/usr/share/java/zookeeper.jar) and java are needed", pytrace=False)
    try:
        require_zkcli()
    except ClientMissing as e:
        pytest.fail(str(e), pytrace=False)
    metrics_port = free_port()
    prometheus = {"metricsProvider.className": "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
                  "metricsProvider.httpPort": str(metrics_port), "metricsProvider.httpHost": "127.0.0.1"}
    servers: list[ServerProcess] = [ApacheZkProcess(ENFORCED), ZkfastProcess({**ENFORCED, **prometheus}),
                                    ZkfastProcess(ENFORCED)]
    clients: list[KazooClient] = []
    try:
        with ThreadStarts() as starts:
            for srv in servers:
                starts.add(srv.start)
        ref, tgt, shell_target = servers
        r = Run()
        r.zkcli = both(lambda: normalise(run_zkcli(ref.address, ZKCLI_SCRIPT)),
                       lambda: normalise(run_zkcli(tgt.address, ZKCLI_SCRIPT)))
        r.shell = run_shell(shell_target.address)
        shell_target.stop()
        clients = [ref.client(), tgt.client()]
        for name, op in KAZOO_SCRIPT:
            a = attempt(op, clients[0])
            b = attempt(op, clients[1])
            r.steps.append((name, a, b, stats_of(clients[0]), stats_of(clients[1])))
        r.dumps = (dump(clients[0]), dump(clients[1]))
        r.data_size = (mntr_value(ref, "zk_approximate_data_size"), mntr_value(tgt, "zk_approximate_data_size"))
        r.mntr = (quota_mntr(ref), quota_mntr(tgt))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            r.prometheus = [ln for ln in resp.read().decode().splitlines() if "quota_" in ln]
        for zk in clients:
            zk.stop()
            zk.close()
        clients = []
        r.logs = (quota_lines(ref), quota_lines(tgt))
        for srv in (ref, tgt):
            srv.stop()
            srv.config["enforceQuota"] = "false"
        both(ref.start, tgt.start)  # the txn log replayed over the first (empty) snapshot
        clients = [ref.client(), tgt.client()]
        r.restarted_dumps = (dump(clients[0]), dump(clients[1]))
        for zk in clients:
            zk.stop()
            zk.close()
        both(ref.restart, tgt.restart)  # now the snapshot start-up took: setupQuota recounts
        clients = [ref.client(), tgt.client()]
        r.reloaded_dumps = (dump(clients[0]), dump(clients[1]))
        r.after_restart = tuple((attempt(lambda zk: zk.create("/r/big", b"x" * 10), zk), stats_of(zk))
                                for zk in clients)  # type: ignore[assignment]
        yield r
    finally:
        for zk in clients:
            zk.stop()
            zk.close()
        for srv in servers:
            srv.stop()
            srv.cleanup()


class ThreadStarts:
    """Start several servers at once (Apache's JVM takes the longest)."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.futures: list[Any] = []

    def add(self, fn: Callable[[], Any]) -> None:
        self.futures.append(self.pool.submit(fn))

    def __enter__(self) -> ThreadStarts:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown()


# ---------------------------------------------------------------------------------------------------------
# against Apache


def test_zkcli_quota_session_matches_apache(run: Run) -> None:
    apache, zkfast = run.zkcli
    for needle in ("Output quota for /q count=4,bytes=20=;byteHardLimit=-1;countHardLimit=6",
                   "Output stat for /q count=4,bytes=10", "Quota has exceeded : /r/x",
                   "/q/a has a parent /q which has a quota",
                   "[Warning]: the count quota you create is less than the existing count:2",
                   "cannot set a quota under the path: /zookeeper/quota", "$ quit"):
        assert needle in apache, needle
    diff = diff_transcripts(apache, zkfast, "zkCli.sh against zkfast")
    assert not diff, f"zkCli.sh prints differently against zkfast:\n{diff}"


def test_zkfast_shell_quota_session_matches_zkcli(run: Run) -> None:
    diff = diff_transcripts(run.zkcli[0], run.shell, "zkfast shell against zkfast")
    assert not diff, f"zkfast shell against zkfast differs from zkCli.sh against Apache:\n{diff}"


def test_kazoo_script_same_results_and_stats(run: Run) -> None:
    differing = [(name, a, b, sa, sb) for name, a, b, sa, sb in run.steps if a != b or sa != sb]
    assert not differing, "\n".join(f"{name}:\n  apache {a} {sa}\n  zkfast {b} {sb}" for name, a, b, sa, sb in differing)
    results = {name: a for name, a, _, _, _ in run.steps}
    assert results["create past the hard count"] == "QuotaExceededError"
    assert results["create past the hard bytes"] == "QuotaExceededError"
    assert results["set with a bad version past the hard bytes"] == "QuotaExceededError"  # checked first
    assert results["multi refused by the hard count"][0] == "QuotaExceededError"
    # the stats node changes in place: same Stat (mzxid, version), new data and dataLength
    stats = {name: sa for name, _, _, sa, _ in run.steps}
    before = stats["create under the hard count"]["/zookeeper/quota/q/zookeeper_stats"]
    after = stats["sequential create up to the soft bytes"]["/zookeeper/quota/q/zookeeper_stats"]
    assert before[0] != after[0] and before[1][:6] == after[1][:6]
    assert stats["create under it"]["/zookeeper/quota/w/zookeeper_stats"][0] == b"count=2,bytes=4=;foo=7"


def test_quota_znodes_same_on_both(run: Run) -> None:
    assert run.dumps[0] == run.dumps[1]
    assert run.data_size[0] == run.data_size[1] != ""


def test_quota_metrics_in_mntr_as_apache(run: Run) -> None:
    apache, zkfast = run.mntr
    assert "zk_q_quota_count_limit_per_namespace\t6" in apache and "zk_q_quota_exceeded_error_per_namespace\t4" in apache
    assert apache == zkfast
    # Apache's PrometheusMetricsProvider: one family per set, the namespace as label `key`
    assert 'quota_count_limit_per_namespace{key="q"} 6.0' in run.prometheus
    assert "# TYPE quota_exceeded_error_per_namespace counter" in run.prometheus
    assert 'quota_exceeded_error_per_namespace{key="r"} 5.0' in run.prometheus


def test_quota_warnings_logged_as_apache(run: Run) -> None:
    apache, zkfast = run.logs
    assert "Message:Quota exceeded: /q [current count=7, hardCountLimit=6] Value:null" in apache
    assert "Message:Quota exceeded: /d [current count=3, softCountLimit=1] Value:null" in apache
    assert apache == zkfast


def test_restart_keeps_quota_state(run: Run) -> None:
    assert run.restarted_dumps[0] == run.dumps[0]
    assert run.restarted_dumps[1] == run.dumps[1]
    assert run.reloaded_dumps == run.restarted_dumps
    apache, zkfast = run.after_restart
    assert apache == zkfast
    assert apache[0] == "/r/big"  # enforceQuota=false: the hard limit no longer refuses


def test_writes_in_flight_together_do_not_pass_a_hard_limit() -> None:
    """zkfast prepares a pipelined batch ahead of its log: each write is checked against the stats as
    committed plus those of the writes before it not applied yet. (Apache counts only what it has
    applied: of 200 creates pipelined into one free place, 7 passed on Apache, and 198 on zkfast
    before it counted writes in flight.)"""
    with ZkfastProcess(ENFORCED) as srv:
        zk = srv.client()
        try:
            zk.create("/p", b"")
            zk.create("/zookeeper/quota/p", makepath=True)
            zk.create("/zookeeper/quota/p/zookeeper_limits", b"count=-1,bytes=-1,countHardLimit=3,byteHardLimit=10")
            zk.create("/zookeeper/quota/p/zookeeper_stats", b"count=0,bytes=0")
            zk.create("/p/a", b"")

            def results(calls: list[Any]) -> list[Any]:
                return [attempt(lambda _, a=a: a.get(timeout=10), zk) for a in calls]

            # one place left: the first create takes it
            assert results([zk.create_async(f"/p/n{i}") for i in range(50)]) == [
                "/p/n0", *["QuotaExceededError"] * 49]
            # setData growing /p/a by 4 bytes a time (the bytes of the one before in flight): 10 bytes at most
            grown = results([zk.set_async("/p/a", b"x" * n) for n in (4, 8, 12, 10)])
            assert [r if isinstance(r, str) else "ok" for r in grown] == ["ok", "ok", "QuotaExceededError", "ok"]
            # a delete in flight frees its place for a create behind it, as once applied
            assert results([zk.delete_async("/p/n0"), zk.create_async("/p/m", b"")]) == [True, "/p/m"]
            # the ops of one multi are checked against the same stats, as on Apache: both creates pass
            zk.delete("/p/m")
            t = zk.transaction()
            t.create("/p/t1")
            t.create("/p/t2")
            assert t.commit() == ["/p/t1", "/p/t2"]
            assert zk.get("/zookeeper/quota/p/zookeeper_stats")[0] == b"count=4,bytes=10"
        finally:
            zk.stop()
            zk.close()


# ---------------------------------------------------------------------------------------------------------
# in-process


def test_stats_track_parse_and_format() -> None:
    assert parse_stats_track(b"count=1,bytes=2=;byteHardLimit=5;countHardLimit=-1") == {
        "count": 1, "bytes": 2, "byteHardLimit": 5, "countHardLimit": -1}
    assert parse_stats_track(b"count=3;;bytes==7") == {"count": 3, "bytes": -1}  # kv[1] is ""
    assert parse_stats_track(b"") == {} and parse_stats_track(None) == {}
    for bad in (b"garbage", b"count=x,bytes=1", b",count=1", b"count=99999999999999999999", b"count=1,bytes="):
        with pytest.raises(ValueError):
            parse_stats_track(bad)
    assert format_stats_track({"bytes": 4, "zz": 1, "countHardLimit": 2}) == b"count=-1,bytes=4=;countHardLimit=2;zz=1"
    assert format_stats_track({"count": 0, "bytes": 0}) == b"count=0,bytes=0"
    assert quota_trie_key(b"/a/ /b") == b"/a/b" and quota_trie_key(b"X") == b"/X" and quota_trie_key(b"/ ") is None


def _quota_tree() -> DataTree:
    tree = DataTree()
    zxid = 0

    def create(path: bytes, data: bytes) -> None:
        nonlocal zxid
        zxid += 1
        t = Txn(0, 1, zxid, 1000, OP_CREATE)
        t.path, t.data, t.acl, t.parent_cversion = path, data, [(31, "world", "anyone")], -1
        assert tree.apply(t) == 0, path

    for path, data in ((b"/a", b"12"), (b"/a/b", b"345"), (b"/zookeeper/quota/a", b""),
                       (b"/zookeeper/quota/a/zookeeper_limits", b"count=5,bytes=-1"),
                       (b"/zookeeper/quota/a/zookeeper_stats", b"count=0,bytes=0"), (b"/a/c", b"6")):
        create(path, data)
    return tree


def test_tree_keeps_stats_and_rebuilds_them_when_loaded() -> None:
    tree = _quota_tree()
    assert tree.get_data(b"/zookeeper/quota/a/zookeeper_stats") == b"count=3,bytes=6"
    assert tree.max_quota_prefix(b"/a/b/c") == b"/a" and tree.max_quota_prefix(b"/ab") is None
    # a client's edit of the stats node: kept in memory, recounted when a snapshot (or SNAP) is loaded
    stat = tree.node_info(b"/zookeeper/quota/a/zookeeper_stats")[1]
    tree.quota_roots.clear()  # as if the trie were lost: loading rebuilds it
    out = WriteBuffer(1 << 16)
    acl_out: list[Any] = []
    serialize_chunk(tree, [b"/"], 1 << 30, out, {}, acl_out)
    fresh = DataTree()
    load_chunk(fresh, out.getvalue(), dict(acl_out))
    assert fresh.quota_pending
    data, fresh_stat, _ = fresh.node_info(b"/zookeeper/quota/a/zookeeper_stats")
    assert data == b"count=3,bytes=6" and fresh_stat == stat  # recounted in place, Stat untouched
    assert fresh.quota_roots == {b"/a"}


def test_chunked_load_then_dead_session_cleanup_counts_once() -> None:
    tree = _quota_tree()
    t = Txn(77, 1, 100, 1000, OP_CREATE)
    t.path, t.data, t.acl, t.parent_cversion, t.ephemeral = b"/a/eph", b"abcd", [(31, "world", "anyone")], -1, True
    assert tree.apply(t) == 0
    assert tree.get_data(b"/zookeeper/quota/a/zookeeper_stats") == b"count=4,bytes=10"
    acl_map: dict[Any, Any] = {}
    acl_out: list[Any] = []
    stack = [b"/"]
    fresh = DataTree()
    while stack:  # a zkfast snapshot's chunks, two nodes each, loaded one by one
        out = WriteBuffer(1 << 16)
        serialize_chunk(tree, stack, 2, out, acl_map, acl_out)
        load_chunk(fresh, out.getvalue(), dict(acl_out))
    fresh.kill_session(77, 101, None)  # loadData: the ephemerals of a session that is gone
    assert fresh.get_data(b"/zookeeper/quota/a/zookeeper_stats") == b"count=3,bytes=6"


def test_rate_logger_as_apache() -> None:
    lines: list[str] = []

    class Sink:
        def warning(self, fmt: str, *args: Any) -> None:
            lines.append(fmt % args)

    now = [0]
    rl = RateLogger(Sink(), 100, clock=lambda: now[0])
    rl.rate_limit_log("a")
    rl.rate_limit_log("a")
    now[0] = 50
    rl.rate_limit_log("a")
    rl.rate_limit_log("b")
    now[0] = 300
    rl.rate_limit_log("b")
    assert lines == ["Message:a Value:null", "[2 times] Message: a", "Message:b Value:null", "Message: b"]


def test_concurrent_hash_map_order_as_apache_prints_it() -> None:
    # both seen in Apache 3.8's mntr: the gauge sets, and namespaces a, c, zz
    assert chm_order([COUNT_LIMIT, BYTES_LIMIT, COUNT_USAGE, BYTES_USAGE]) == list(GAUGE_SETS)
    assert chm_order(["a", "c", "zz"]) == ["zz", "a", "c"]
    many = [f"ns{i}" for i in range(40)]  # two resizes: every key once
    assert sorted(chm_order(many)) == sorted(many)
