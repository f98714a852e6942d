"""The ZooKeeper C client shell `cli_mt` (3.8.0) must see the same thing from the target server as from
Apache ZooKeeper: the same lock-stepped two-session script against each (fresh servers), normalised
transcripts compared.  Watches set by one session fire on writes of the same and of the other session.

The target is zkfast; ZKFAST_DIFF_TARGET=apache makes it a second Apache server (harness determinism).
"""

from __future__ import annotations

import pytest
from testbase.cclient import (
    CliMtRun,
    Step,
    cli_mt_batch,
    cli_mt_transcript,
    cmd,
    expect,
    normalise,
    require_cli_mt,
    run_load_gen,
)
from testbase.zkcli import ClientMissing, both, diff_transcripts, reference_and_target, target_kind

SCRIPT: list[Step] = [
    # session a builds a tree
    cmd("a", "create /c"),
    cmd("a", "create2 /c/k1"),
    cmd("a", "create +e /c/ea"),
    cmd("a", "create +s /c/s-"),
    cmd("a", "create +s /c/s-"),
    cmd("a", "create +es /c/es-"),
    cmd("a", "ls /c"),
    cmd("a", "ls2 /c"),
    cmd("a", "get /c"),
    cmd("a", "get /c/ea"),
    cmd("a", "set /c hello"),  # a's own get left a data watch: the event comes before the reply
    cmd("a", "get /c"),
    cmd("a", "exists /c/k1"),
    cmd("a", "exists /nope"),
    cmd("a", "wexists /c/new"),
    # session b's writes fire a's watches
    cmd("b", "create /c/new"),
    expect("a", r"Watcher CREATED_EVENT state = CONNECTED_STATE for path /c/new"),
    cmd("b", "create +e /c/eb"),
    cmd("a", "wexists /c/eb"),
    cmd("a", "ls /c"),
    cmd("b", "set /c/ea from-b"),
    cmd("a", "get /c/ea"),
    cmd("b", "ls2 /c"),
    # errors
    cmd("b", "create /c"),
    cmd("b", "delete /c"),
    cmd("b", "get /nope"),
    cmd("b", "ls /nope"),
    cmd("b", "set /nope x"),
    cmd("b", "delete /nope"),
    cmd("b", "create /nope/child"),
    cmd("b", "create +e /c/eb/child"),
    cmd("b", "create2 /c"),
    cmd("b", "myid"),
    cmd("b", "sync /c"),
    # b leaves: its ephemeral goes, a's exists watch and child watch fire
    cmd("b", "quit"),
    expect("a", r"Watcher DELETED_EVENT state = CONNECTED_STATE for path /c/eb"),
    cmd("a", "ls2 /c"),
    cmd("a", "delete /c/k1"),
    cmd("a", "delete /c"),
    cmd("a", "get /c/k1"),
    cmd("a", "myid"),
    cmd("a", "sync /"),
]


@pytest.fixture(scope="module", autouse=True)
def _clients_installed() -> None:
    try:
        require_cli_mt()
    except ClientMissing as e:  # CI installs zookeeper-bin: a missing client is a failure, not a skip
        pytest.fail(str(e), pytrace=False)


def test_two_sessions_with_watches_match_apache() -> None:
    with reference_and_target() as (ref, tgt):
        a, b = both(lambda: cli_mt_transcript(ref.address, SCRIPT),
                    lambda: cli_mt_transcript(tgt.address, SCRIPT))
    assert "<<" not in a.replace("<<exit 0>>", ""), a  # the reference ran every step to the end
    for line in ("Watcher CHANGED_EVENT state = CONNECTED_STATE for path /c",
                 "Watcher CREATED_EVENT state = CONNECTED_STATE for path /c/new",
                 "Watcher CHANGED_EVENT state = CONNECTED_STATE for path /c/ea",
                 "Watcher DELETED_EVENT state = CONNECTED_STATE for path /c/eb",
                 "Watcher CHILD_EVENT state = CONNECTED_STATE for path /c",
                 "[/c]: rc = -110", "/c: rc = -111", "/nope: rc = -101", "[/c/eb/child]: rc = -108",
                 "\tephemeralOwner = <session a>", "session Id = <session b>", "bye"):
        assert line in a.splitlines(), f"{line!r} missing from the reference transcript:\n{a}"
    diff = diff_transcripts(a, b, target_kind())
    assert not diff, f"cli_mt output differs from Apache ZooKeeper's:\n{diff}"


def test_planted_difference_is_detected() -> None:
    script = [cmd("a", "ls /"), cmd("a", "create2 /p")]
    with reference_and_target() as (ref, tgt):
        cli_mt_batch(tgt.address, "create /planted")
        a, b = both(lambda: cli_mt_transcript(ref.address, script),
                    lambda: cli_mt_transcript(tgt.address, script))
    diff = diff_transcripts(a, b)
    assert {"+\tplanted", "-\tczxid=2", "+\tczxid=5"} <= set(diff.splitlines()), diff


def test_normaliser_rules() -> None:
    log = "2026-11-25 16:49:12,345:7788(0x7f3a1c000700):ZOO_WARN@zookeeper_interest@2299: Exceeded deadline\n"
    run = CliMtRun(address="127.0.0.1:40001", steps=[
        ("a", "[a] (start)", "Watcher SESSION_EVENT state = CONNECTED_STATE\n"
                             "Got a new session id: 0x10000064c3b0004\n"),
        ("a", "[a] $ ls2 /c", "time = 329139108 msec\n/c: rc = 0\n\tzz\n\tb\n" + "\ta" + log + "\n"
                              "time = 3 msec\n\tctime = Wed Nov 25 16:49:12 2026\n\tczxid=19\n"
                              "\tmtime=Thu Jan  1 00:00:00 1970\n\tmzxid=1a\n\tversion=1\taversion=0\n"
                              "\tephemeralOwner = 10000064c3b0004\n"
                              "[/zkfast_cli_barrier]: rc = 0\n\tname = /zkfast_cli_barrier\n"),
        ("a", "[a] $ myid", "session Id = 10000064c3b0004\n\tephemeralOwner = 10000064c3b0099\n"
                            "[/zkfast_cli_barrier]: rc = -101\n"),
    ])
    assert normalise(run).splitlines() == [
        "[a] (start)", "Watcher SESSION_EVENT state = CONNECTED_STATE", "Got a new session id: <session a>",
        "[a] $ ls2 /c", "time = <ms> msec", "/c: rc = 0", "\ta", "\tb", "\tzz", "time = <ms> msec",
        "\tctime = <time>", "\tczxid=19", "\tmtime=<epoch>", "\tmzxid=1a", "\tversion=1\taversion=0",
        "\tephemeralOwner = <session a>",
        "[a] $ myid", "session Id = <session a>", "\tephemeralOwner = <unknown session 1>",
        "[/zkfast_cli_barrier]: rc = -101"]  # a barrier that failed stays visible


def test_load_gen_runs_clean() -> None:
    """load_gen's create/set/get/delete cycles are timing-dependent, so they are not diffed: both servers
    must run at least one full cycle without a ZOO_ERROR, and `load_gen ... clean` must succeed."""
    with reference_and_target() as (ref, tgt):
        results = both(lambda: run_load_gen(ref.address, "/lg", children=50, duration_s=1.0),
                       lambda: run_load_gen(tgt.address, "/lg", children=50, duration_s=1.0))
    for name, res in zip(("apache", target_kind()), results, strict=True):
        assert res.cycles >= 1 and not res.errors, (name, res.cycles, res.errors[:5])
        assert res.clean_rc == 0 and "Successfully deleted a subtree starting at /lg" in res.clean_output, \
            (name, res.clean_output[-2000:])
