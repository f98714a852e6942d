"""The Go ZooKeeper client github.com/samuel/go-zookeeper (Debian's golang-github-samuel-go-zookeeper-dev)
must see the same thing from zkfast as from Apache ZooKeeper 3.8.

`tests/go/zkgo/main.go` runs one script (creates incl. sequential/ephemeral/protected, reads, sets,
deletes, errors, ACLs and auth, data/exist/child watches fired by the same and by another session,
multis incl. failing ones, an ephemeral going with its session, reconnects through a cut TCP connection
with watches re-registered by SetWatches, session expiry while disconnected, the library's Lock recipe)
against a fresh Apache server and a fresh zkfast server at the same time; the normalised transcripts
(times, session ids and protected-node guids replaced; zxids exact) must be equal. A second, short
script (`-script 4lw`) runs the library's four-letter-word parsers against both.

A missing Go toolchain or library skips these tests locally but fails them in CI (CI=true).
ZKFAST_DIFF_TARGET=apache compares Apache with a second Apache (shows the transcript is deterministic).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kazoo.client import KazooClient
from testbase.goclient import GoClientMissing, ensure_built, normalise, run_zkgo
from testbase.process import ServerProcess, ZkfastProcess
from testbase.zkcli import ClientMissing, both, diff_transcripts, reference_and_target, target_kind

# tickTime 500: sessions of 1 s .. 10 s, so the script's 2 s session expires quickly
GO_CFG = {"tickTime": "500"}


@pytest.fixture(scope="module")
def go_client_built() -> None:
    try:
        ensure_built()
    except ClientMissing as e:
        if os.environ.get("CI") == "true":  # CI installs the packages: missing ones are a failure
            pytest.fail(f"{e} (CI=true: the Go client tests must run)", pytrace=False)
        pytest.skip(str(e))


@dataclass(frozen=True)
class Transcripts:
    reference: str  # Apache, normalised
    target: str  # zkfast (or a second Apache), normalised


@pytest.fixture(scope="module")
def server_pair(go_client_built: None) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A fresh Apache (the reference) and a fresh target, for this module only."""
    with reference_and_target(GO_CFG) as pair:
        yield pair


@pytest.fixture(scope="module")
def transcripts(server_pair: tuple[ServerProcess, ServerProcess]) -> Transcripts:
    """The main script, run against both servers at once (first thing on them: zxids are comparable)."""
    ref, target = server_pair
    ref_run, target_run = both(lambda: run_zkgo(ref.address), lambda: run_zkgo(target.address))
    return Transcripts(reference=normalise(ref_run.stdout), target=normalise(target_run.stdout))


def test_reference_transcript_is_complete(transcripts: Transcripts) -> None:
    """The script ran to its end against Apache and every awaited event came (else the script is wrong)."""
    ref = transcripts.reference
    assert ref.rstrip().endswith("== end"), ref[-2000:]
    assert "TIMEOUT" not in ref, ref
    # the parts of the script that matter most did what the script says they do
    assert "[A] same session after reconnect: true" in ref
    assert "[C]   event session StateExpired" in ref
    assert "[C] new session: true" in ref
    assert "[L] lock -> ok" in ref
    assert re.search(r"\[A\] multi failing: create, set with a bad version, delete -> error: zk: version "
                     r"conflict\n\[A\]   op 0: ok\n\[A\]   op 1: error: zk: version conflict\n", ref)


def test_go_client_transcript_matches_apache(transcripts: Transcripts) -> None:
    diff = diff_transcripts(transcripts.reference, transcripts.target, target_kind())
    assert not diff, f"the Go client saw a difference:\n{diff}"


def test_four_letter_word_helpers_match_apache(server_pair: tuple[ServerProcess, ServerProcess],
                                               transcripts: Transcripts) -> None:
    """The library's FLWRuok/FLWSrvr/FLWCons (regular-expression parsers of ruok/srvr/cons) while two
    sessions (10 s and 5 s) are connected: same parse results, same sessions and negotiated timeouts.
    (Against Apache 3.8 FLWSrvr fails to parse too: its pattern predates 3.8's srvr format.)"""
    ref, target = server_pair
    ref_t, target_t = both(lambda: normalise(run_zkgo(ref.address, script="4lw").stdout),
                           lambda: normalise(run_zkgo(target.address, script="4lw").stdout))
    expected = "[4lw] cons -> ok=false 2 sessions: <session A>/timeout=10000 <session B>/timeout=5000"
    assert expected in ref_t, ref_t
    diff = diff_transcripts(ref_t, target_t, target_kind())
    assert not diff, f"the Go client's four-letter-word helpers saw a difference:\n{diff}"


def test_planted_difference_is_caught(transcripts: Transcripts) -> None:
    """A fresh zkfast on which another client opened and closed a session before the script (two txns,
    the tree unchanged) shifts every zxid the script sees: the comparison must report it, and with zxids
    masked the transcripts must agree (the difference is found exactly where it was planted)."""
    server = ZkfastProcess(GO_CFG)
    try:
        server.start()
        zk = KazooClient(hosts=server.address)
        zk.start(timeout=15)
        zk.stop()
        zk.close()
        planted = normalise(run_zkgo(server.address).stdout)
    finally:
        server.stop()
        server.cleanup()
    diff = diff_transcripts(transcripts.reference, planted, "zkfast with a planted txn")
    assert diff, "a server two txns ahead (createSession, closeSession) produced an identical transcript"
    assert re.search(r"^[-+].*czxid=0x", diff, re.M), diff
    mask = re.compile(r"\b([cmp]zxid)=0x[0-9a-f]+")
    assert mask.sub(r"\1=Z", transcripts.reference) == mask.sub(r"\1=Z", planted)


def test_normalise_masks_only_what_varies() -> None:
    raw = ("[A] session id 0x1000abc0000\n"
           "[A] exists /x -> true stat{czxid=0x5 mzxid=0x6 pzxid=0x5 ctime=1700000000123 mtime=1700000000456 "
           "version=1 cversion=0 aversion=0 ephemeralOwner=0x1000abc0000 dataLength=1 numChildren=0}\n"
           "[A] children / -> [_c_0123456789abcdef0123456789abcdef-lock-0000000001] stat{czxid=0x0 "
           "mzxid=0x0 pzxid=0x0 ctime=0 mtime=0 ephemeralOwner=0x0}\n"
           "[C] session id 0x2000000000001\n"
           "[C] session id 0x2000000000002\n"
           "[C] exists /e -> true stat{ephemeralOwner=0x2000000000002 ephemeralOwner=0x77}\n"
           "[4lw] cons -> ok=false 2 sessions: 0x1000abc0000/timeout=10000 0x2000000000001/timeout=5000\n"
           "[A]   event watch EventNodeDeleted path=/x state=3\n"
           "[A]   event watch EventNodeChildrenChanged path=/ state=3\n")
    assert normalise(raw) == (
        "[A] session id <session A>\n"
        "[A] exists /x -> true stat{czxid=0x5 mzxid=0x6 pzxid=0x5 ctime=<time> mtime=<time> "
        "version=1 cversion=0 aversion=0 ephemeralOwner=<session A> dataLength=1 numChildren=0}\n"
        "[A] children / -> [_c_<guid>-lock-0000000001] stat{czxid=0x0 "
        "mzxid=0x0 pzxid=0x0 ctime=0 mtime=0 ephemeralOwner=0x0}\n"
        "[C] session id <session C>\n"
        "[C] session id <session C#2>\n"
        "[C] exists /e -> true stat{ephemeralOwner=<session C#2> ephemeralOwner=<unknown session 1>}\n"
        "[4lw] cons -> ok=false 2 sessions: <session A>/timeout=10000 <session C>/timeout=5000\n"
        "[A]   event watch EventNodeDeleted path=/x state=3\n"
        "[A]   event watch EventNodeChildrenChanged path=/ state=3\n")
    # events keep their order: swapping two makes a difference
    lines = raw.splitlines()
    swapped = "\n".join(lines[:-2] + [lines[-1], lines[-2]]) + "\n"
    assert diff_transcripts(normalise(raw), normalise(swapped))


def test_go_client_missing_is_reported_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the library the error names the Debian packages (CI turns it into a failure, see above)."""
    import testbase.goclient as goclient

    monkeypatch.setattr(goclient, "GOPATH", goclient.GOPATH / "does-not-exist")
    with pytest.raises(GoClientMissing, match="golang-github-samuel-go-zookeeper-dev"):
        goclient.require_go()
