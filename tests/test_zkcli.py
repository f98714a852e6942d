"""zkCli.sh (Apache ZooKeeper 3.8's Java shell) must see the same thing from the target server as from
Apache ZooKeeper: one scripted session against each (fresh servers), normalised transcripts compared.

The target is zkfast; ZKFAST_DIFF_TARGET=apache makes it a second Apache server (harness determinism).
"""

from __future__ import annotations

import pytest
from testbase.zkcli import (
    ClientMissing,
    both,
    diff_transcripts,
    normalise,
    parse_output,
    reference_and_target,
    require_zkcli,
    run_zkcli,
    target_kind,
    zkcli_oneshot,
    zkcli_transcript,
)

# One session, every seed command, errors included.  `{server}` is the server's host:port.
SEED_SCRIPT = [
    "ls /",
    "ls -s /",
    "stat /",
    "get /",
    "get -s /zookeeper",
    "create /app",
    "create /app/cfg v1",
    "create /app/data 'hello world'",
    "create -s /app/seq- first",
    "create -s /app/seq-",
    "create -e /app/eph",
    "create -e /app/eph2 e-data",
    "create -s -e /app/eseq- e",
    "create -s -e /app/eseq-",
    "ls /app",
    "ls -s /app",
    "stat /app",
    "stat /app/eph",
    "get /app/cfg",
    "get -s /app/cfg",
    "get /app/data",
    "get -s /app/eph2",
    "set /app/cfg v2",
    "set -s /app/cfg v3",
    "set -v 1 /app/cfg stale",
    "set -v 2 /app/cfg v4",
    "get -s /app/cfg",
    "getEphemerals /app",
    "ls -R /app",
    "getAllChildrenNumber /app",
    # watches (printed asynchronously: compared as the separate event list)
    "get -w /app/cfg",
    "set /app/cfg v5",
    "ls -w /app",
    "create /app/new",
    "stat -w /app/new",
    "delete /app/new",
    # errors
    "get /x",
    "get -s /x",
    "stat /x",
    "ls /x",
    "set /x data",
    "delete /x",
    "create /app",
    "create /app/cfg again",
    "create /x/y",
    "create /app/eph/child",
    "delete /app",
    "delete -v 9 /app/cfg",
    "deleteall /x",
    "create",
    "get",
    "nosuchcommand",
    # sync and cleanup
    "sync /app",
    "sync /x",
    "delete /app/cfg",
    "deleteall /app",
    "ls /",
    "stat /app",
    # a second session
    "close",
    "ls /",
    "connect {server}",
    "ls /",
    "create -e /eph-b b",
    "create -s -e /eseq-b- b",
    "stat /eph-b",
    "ls -s /",
    "sync /",
    "quit",
]


@pytest.fixture(scope="module", autouse=True)
def _clients_installed() -> None:
    try:
        require_zkcli()
    except ClientMissing as e:  # CI installs zookeeper + zookeeper-bin: a missing client is a failure
        pytest.fail(str(e), pytrace=False)


def _compare(script: list[str]) -> tuple[str, str]:
    with reference_and_target() as (ref, tgt):
        return both(lambda: zkcli_transcript(ref.address, script),
                    lambda: zkcli_transcript(tgt.address, script))


def test_seed_session_matches_apache() -> None:
    ref, tgt = _compare(SEED_SCRIPT)
    # the reference transcript itself must show the session ran to the end
    assert "-- exit code " in ref and "<<" not in ref, ref
    assert "$ quit" in ref and "Node does not exist: /x" in ref and "Node already exists: /app" in ref
    assert "Node not empty: /app" in ref
    assert "state:SyncConnected type:NodeDataChanged path:/app/cfg" in ref
    diff = diff_transcripts(ref, tgt, target_kind())
    assert not diff, f"zkCli.sh output differs from Apache ZooKeeper's:\n{diff}"


def test_planted_difference_is_detected() -> None:
    """Two extra transactions on the target before the session: the listing is the same, but every
    zxid after them is not, and the comparison must say so."""
    script = ["create /p data", "ls /", "stat /p", "quit"]
    with reference_and_target() as (ref, tgt):
        zkcli_oneshot(tgt.address, "create /planted")
        zkcli_oneshot(tgt.address, "delete /planted")
        a, b = both(lambda: zkcli_transcript(ref.address, script),
                    lambda: zkcli_transcript(tgt.address, script))
    diff = diff_transcripts(a, b)
    assert diff, "a planted zxid shift went unnoticed"
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed and all("Zxid = 0x" in ln for ln in changed), diff


# ---------------------------------------------------------------------------------------------------------
# the normaliser on canned output (no server)

_ADDR = "127.0.0.1:40001"
_MARK = "printwatches is on"


def _canned(commands: list[str], body: list[list[str]], tail: list[str] | None = None) -> str:
    lines = ["SLF4J: Failed to load class \"org.slf4j.impl.StaticLoggerBinder\".", f"Connecting to {_ADDR}",
             "", "WATCHER::", "", "WatchedEvent state:SyncConnected type:None path:null",
             "Welcome to ZooKeeper!", "JLine support is disabled", _MARK]
    for out in body:
        lines += out + [_MARK]
    return "\n".join(lines + (tail or [])) + "\n"


def test_normaliser_rules() -> None:
    commands = ["ls -s /a", "getEphemerals /", "ls -R /a", "stat /b", "close", "ls /"]
    raw = "\n".join([
        'SLF4J: Failed to load class "org.slf4j.impl.StaticLoggerBinder".',
        f"Connecting to {_ADDR}", "", "WATCHER::", "", "WatchedEvent state:SyncConnected type:None path:null",
        "Welcome to ZooKeeper!", "JLine support is disabled", _MARK,
        "[c, b, a]", "cZxid = 0x5", "ctime = Wed Nov 25 16:48:09 UTC 2026", "mZxid = 0x7",
        "mtime = Thu Jan 01 00:00:00 UTC 1970", "pZxid = 0x5", "ephemeralOwner = 0x10000a1b2c30001", _MARK,
        "", "WATCHER::",  # an event thread's print cut in two by the main thread's output
        "[/b, /a]", "", "WatchedEvent state:SyncConnected type:NodeDeleted path:/a", _MARK,
        "/a", "/a/z", "/a/b", _MARK,
        "cZxid = 0x6", "ephemeralOwner = 0x10000a1b2c30001", "ephemeralOwner = 0x0", _MARK,
        _MARK, "Not connected",  # close; the marker itself says "Not connected" once closed
        "", "WATCHER::", "", "WatchedEvent state:Closed type:None path:null",
        "Not connected", _MARK, "Not connected", ""])
    text = normalise(parse_output(_ADDR, commands, raw, 0))
    assert text.splitlines() == [
        "$ ls -s /a", "[a, b, c]", "cZxid = 0x5", "ctime = <time>", "mZxid = 0x7", "mtime = <epoch>",
        "pZxid = 0x5", "ephemeralOwner = <session-1>",
        "$ getEphemerals /", "[/a, /b]",
        "$ ls -R /a", "/a", "/a/b", "/a/z",
        "$ stat /b", "cZxid = 0x6", "ephemeralOwner = <session-1>", "ephemeralOwner = 0x0",
        "$ close",
        "$ ls /", "Not connected",
        "-- watch events (in the order printed)",
        "state:SyncConnected type:None path:null", "state:SyncConnected type:NodeDeleted path:/a",
        "-- exit code 0"]


def test_normaliser_keeps_what_servers_must_agree_on() -> None:
    commands = ["stat /a"]

    def norm(lines: list[str]) -> str:
        return normalise(parse_output(_ADDR, commands, _canned(commands, [lines]), 0))

    base = ["cZxid = 0x5", "ctime = Wed Nov 25 16:48:09 UTC 2026", "dataVersion = 0"]
    assert norm(base) == norm(["cZxid = 0x5", "ctime = Sat Jan 02 10:00:00 UTC 2027", "dataVersion = 0"])
    assert norm(base) != norm(["cZxid = 0x6", *base[1:]])
    assert norm(base) != norm([*base[:2], "dataVersion = 1"])
    assert norm(["[b, a]"]) != norm(["[a, b]"])  # only ls output is sorted, not every bracketed line
    # a session that stops early is reported, not silently shortened
    short = normalise(parse_output(_ADDR, ["ls /", "ls /"], _canned([], []) + "[zookeeper]\n", None, True))
    assert "<<no end marker" in short and "<<not run" in short and "-- timed out" in short


def test_script_checks() -> None:
    with pytest.raises(ValueError):
        run_zkcli(_ADDR, ["printwatches"])
    with pytest.raises(ValueError):
        run_zkcli(_ADDR, ["ls /\nls /"])
