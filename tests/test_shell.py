"""`zkfast shell` must print what zkCli.sh (Apache ZooKeeper 3.8's Java shell) prints.

The same scripted sessions run through zkCli.sh against Apache ZooKeeper and through `python -m zkfast.shell`
(what `zkfast shell` calls) against the target server (zkfast; ZKFAST_DIFF_TARGET=apache makes it a second
Apache server), each on fresh servers, and their normalised transcripts (testbase.zkcli) must be
equal.  One-shot mode is compared the same way; the terminal
features (prompt, readline history, tab completion, events printed while the prompt waits) are driven through
a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess
from testbase.zkcli import (
    MARKER_COMMAND,
    ClientMissing,
    _check_script,
    _expand,
    both,
    diff_transcripts,
    normalise,
    parse_output,
    reference_and_target,
    require_zkcli,
    run_zkcli,
    target_kind,
    zkcli_oneshot,
)

from zkfast.shell.cliparse import Option, OptionGroup, Options, ParseError, parse
from zkfast.shell.javacompat import StatsTrack, java_date, to_hex, validate_path
from zkfast.shell.main import parse_command

SHELL = [sys.executable, "-m", "zkfast.shell"]
RUN_TIMEOUT_S = 60.0

# ---------------------------------------------------------------------------------------------------------
# scripts

# Against the target server: every command family, errors, usage lines, deprecations, watches, history.
CORE_SCRIPT = [
    "ls /",
    "ls -s /",
    "stat /",
    "get -s /zookeeper",
    "create /app",
    "create /app/cfg v1",
    "create /app/data 'hello world'",
    'create /app/q "a b"',
    "create /app/r 'it''s'",
    "create -s /app/seq- first",
    "create -e /app/eph",
    "create -s -e /app/eseq- e",
    "ls /app",
    "ls -s /app",
    "get /app/cfg",
    "get -s /app/data",
    "set /app/cfg v2",
    "set -s /app/cfg v3",
    "set -v 1 /app/cfg stale",
    "set -v 3 /app/cfg v4",
    "getEphemerals /app",
    "getEphemerals",
    "getAllChildrenNumber /app",
    "ls -R /app",
    # TTL and container nodes, and their argument checks
    "create -c -e /app/c",
    "create -t x /app/t",
    "create -t 0 /app/t",
    "create -t 100 -e /app/t",
    "create -t 100 -c /app/t",
    "create -t 1000 /app/t tdata",
    "create -t 1000 -s /app/ts-",
    "create -c /app/cont",
    "stat /app/t",
    "stat /app/cont",
    # ACLs
    "create /app/acl d foo",
    "create /app/acl2 d world:anyone:rx",
    "create /app/acl3 d digest:bad:cdrwa",
    "create /app/acl4 d world:anyone:rza,foo",
    "getAcl /app/acl2",
    "getAcl -s /app/acl4",
    "setAcl /app/acl2 foo",
    "setAcl -s /app/acl2 world:anyone:cdrwa",
    "setAcl -v 5 /app/acl4 world:anyone:cdrwa",
    "setAcl -s -v 0 /app/acl4 world:anyone:cdra",
    "setAcl -R /app/acl4 world:anyone:cdrwa",
    "getAcl /app/acl4",
    "get /app/acl2",
    # errors and usage lines
    "get /x",
    "stat /x",
    "ls /x",
    "set /x data",
    "delete /x",
    "create /app",
    "create /x/y",
    "create /app/eph/child",
    "delete /app",
    "delete -v 9 /app/cfg",
    "delete /app/cfg 1",
    "deleteall /x",
    "deleteall /app -b x",
    "create q",
    "create /q/",
    "create /q//x",
    "create /q/. x",
    "get /q/..",
    "create -s /q/",
    "getAllChildrenNumber /x",
    "getAllChildrenNumber",
    "getEphemerals nope",
    "sync nope",
    "sync /x",
    "ls -x /",
    "ls -sx /",
    "ls -? /",
    "ls",
    "ls -s",
    "set -v",
    "create",
    "get",
    "stat",
    "delete",
    "deleteall",
    "getAcl",
    "setAcl /app",
    "removewatches",
    "get -s -w",
    "version x",
    "nosuchcommand",
    "help",
    # deprecated forms
    "get /app/cfg watch",
    "stat /app/cfg watch",
    "ls /app watch",
    # watches: one-time, persistent, recursive, removal
    "create /w",
    "addWatch /w",
    "addWatch -m persistent /w/p",
    "addWatch -m bad /w",
    "addWatch",
    "create /w/a",
    "set /w/a x",
    "create /w/p",
    "set /w/p y",
    "create /w/p/c",
    "delete /w/p/c",
    "removewatches /w/p -d",
    "removewatches /w/p",
    "removewatches /w -c",
    "removewatches /w",
    "removewatches /w",
    "get -w /w/a",
    "ls -w /w",
    "stat -w /nope",
    "removewatches /w/a -c",
    "removewatches /w/a -d",
    "removewatches /w -c",
    "removewatches /nope -d",
    "removewatches nope",
    # The WatchRemoved events are printed by the client's event thread; a sync's callback is queued behind
    # them on that thread, so once `sync` prints, they are out and `printwatches off` cannot hide them.
    "sync /w",
    "printwatches off",
    "ls -w /w",
    "create /w/b",
    "sync /w",
    "ls /w",
    "printwatches on",
    "ls -R -w /w/a",
    "create /w/a/d",
    "set /w/a z",
    "deleteall /w",
    "ls /",
    # the shell's own commands
    "history",
    "redo 1",
    "redo 500",
    "redo -1",
    "printwatches maybe",
    "printwatches on",
    "config",
    "config -c",
    "whoami",
    "addauth digest u:p",
    "whoami",
    "addauth",
    "sync /app",
    "deleteall /app",
    "close",
    "ls /",
    "whoami",
    "connect {server}",
    "ls /",
    "create -e /eph-b b",
    "stat /eph-b",
    "quit",
]

# Against the target server: quotas (the server keeps their statistics), auth ACLs, reconfig's errors.
QUOTA_SCRIPT = [
    "create /w",
    "create /w/a",
    "setquota -n 2 /w",
    "setquota -n 5 /w/a",
    "setquota -b 10 /nope",
    "setquota -n 0 /w",
    "setquota -n x /w",
    "setquota -n 1 -b 2 /w",
    "setquota -N 1 /w",
    "setquota -B 100 /w",
    "listquota /w",
    "listquota /w/a",
    "ls -R /zookeeper",
    "get /zookeeper/quota/w/zookeeper_limits",
    "setquota -n 1 /zookeeper/quota",
    "delquota -n /w",
    "listquota /w",
    "delquota /w",
    "listquota /w",
    "delquota /w",
    "ls -R /zookeeper",
    "delquota -n -b /w",
    "setquota",
    "setquota /w",
    "setquota -n 3",
    "delquota",
    "listquota",
    "addauth digest u:p",
    "create /auth x auth::cdrwa",
    "getAcl -s /auth",
    "reconfig",
    "reconfig -add server.5=127.0.0.1:1:2;3",
    "reconfig -v x -add a",
    "reconfig -members a -add b",
    "reconfig -file /nonexistent-zkfast-file",
    "quit",
]


# ---------------------------------------------------------------------------------------------------------
# running the shell


def run_shell(address: str, commands: Sequence[str], extra_args: Sequence[str] = ()) -> str:
    """A scripted `zkfast shell` session, fed and cut exactly as testbase.zkcli drives zkCli.sh; the
    normalised transcript."""
    script = _check_script(commands)
    lines = [MARKER_COMMAND]
    for cmd in script:
        lines.append(_expand(cmd, address))
        if cmd.split()[0] != "quit":
            lines.append(MARKER_COMMAND)
    proc = subprocess.run([*SHELL, "-waitforconnection", "-server", address, *extra_args],
                          input="\n".join(lines) + "\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=RUN_TIMEOUT_S, text=True, errors="replace")
    return normalise(parse_output(address, script, proc.stdout, proc.returncode))


def shell_oneshot(address: str, args: Sequence[str]) -> tuple[str, int]:
    proc = subprocess.run([*SHELL, "-waitforconnection", "-server", address, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S, text=True, errors="replace")
    return proc.stdout, proc.returncode


@pytest.fixture(scope="module", autouse=True)
def _clients_installed() -> None:
    try:
        require_zkcli()
    except ClientMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One target server for the tests that do not compare against Apache."""
    srv: ServerProcess = ApacheZkProcess() if target_kind() == "apache" else ZkfastProcess()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


def _assert_same(ref: str, tgt: str, name: str) -> None:
    assert "-- exit code " in ref and "<<" not in ref, ref
    diff = diff_transcripts(ref, tgt, name)
    assert not diff, f"zkfast shell differs from zkCli.sh:\n{diff}"


# ---------------------------------------------------------------------------------------------------------
# transcripts against zkCli.sh


def test_core_session_matches_zkcli() -> None:
    with reference_and_target() as (ref, tgt):
        a, b = both(lambda: normalise(run_zkcli(ref.address, CORE_SCRIPT)),
                    lambda: run_shell(tgt.address, CORE_SCRIPT))
    for needle in ("Node does not exist: /x", "Node already exists: /app", "Node not empty: /app",
                   "Command not found: Command not found help", "KeeperErrorCode = No such watcher for /w",
                   "type:NodeDataChanged path:/w/a", "type:PersistentWatchRemoved path:/w", "$ quit"):
        assert needle in a, needle
    _assert_same(a, b, f"zkfast shell on {target_kind()}")


def test_quota_session_matches_zkcli() -> None:
    with reference_and_target() as (ref, tgt):
        a, b = both(lambda: normalise(run_zkcli(ref.address, QUOTA_SCRIPT)),
                    lambda: run_shell(tgt.address, QUOTA_SCRIPT))
    assert "Output quota for /w count=2,bytes=-1=;byteHardLimit=100;countHardLimit=1" in a
    _assert_same(a, b, f"zkfast shell on {target_kind()}")


ONESHOT = [
    ["create", "/os", "a b"],
    ["get", "-s", "/os"],
    ["ls", "/"],
    ["get", "/nope"],
    ["nosuch", "x"],
    ["delete", "/os"],
    ["history"],
    ["printwatches"],
    ["redo", "0"],
    ["quit"],
]


def test_oneshot_matches_zkcli() -> None:
    def normal(address: str, raw: str, rc: int) -> str:
        return normalise(parse_output(address, [], raw, rc))

    def apache_side(address: str) -> list[str]:
        out = []
        for args in ONESHOT:
            proc = subprocess.run([str(require_zkcli()), "-waitforconnection", "-server", address, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S,
                                  text=True, errors="replace",
                                  env={**os.environ, "CLIENT_JVMFLAGS": "-XX:TieredStopAtLevel=1"})
            out.append(normal(address, proc.stdout, proc.returncode))
        return out

    def shell_side(address: str) -> list[str]:
        return [normal(address, *shell_oneshot(address, args)) for args in ONESHOT]

    with reference_and_target() as (ref, tgt):
        a, b = both(lambda: apache_side(ref.address), lambda: shell_side(tgt.address))
    for args, x, y in zip(ONESHOT, a, b, strict=True):
        assert x == y, f"one-shot {args}:\n{diff_transcripts(x, y, 'zkfast shell')}"
    assert "-- exit code 127" in b[4] and "-- exit code 0" in b[0]


def test_uncaught_java_exception_ends_a_piped_session(server: ServerProcess) -> None:
    """`set -v x ...` kills zkCli.sh (NumberFormatException): same first line, exit 1, nothing after."""
    ref = zkcli_oneshot(server.address, "set -v x /zookeeper y")
    proc = subprocess.run([*SHELL, "-server", server.address], input="set -v x /zookeeper y\nls /\n",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_S)
    line = 'Exception in thread "main" java.lang.NumberFormatException: For input string: "x"'
    assert line in ref and line in proc.stdout
    assert proc.returncode == 1 and "[zookeeper]" not in proc.stdout


# ---------------------------------------------------------------------------------------------------------
# the old names


def test_ls2_and_rmr_aliases(server: ServerProcess) -> None:
    script = ["create /al", "create /al/a x", "create /al/a/b", "ls -s /al", "ls2 /al", "ls2 /al watch",
              "create /al/c", "rmr /al", "ls /", "ls2", "rmr", "ls2 /nope"]
    text = run_shell(server.address, script)
    sections = re.split(r"^\$ ", text, flags=re.M)
    by_cmd = {s.split("\n", 1)[0]: s.split("\n", 1)[1] for s in sections[1:]}
    assert by_cmd["ls2 /al"] == by_cmd["ls -s /al"]
    assert by_cmd["ls2 /al"].startswith("[a]\ncZxid = 0x")
    assert by_cmd["ls2 /al watch"] == by_cmd["ls -s /al"]  # no deprecation note
    assert "type:NodeChildrenChanged path:/al" in text  # the watch ls2 left fired on `create /al/c`
    assert "al" not in by_cmd["ls /"].split("\n")[0]
    assert by_cmd["ls2"] == "ls2 path [watch]\n"
    assert by_cmd["rmr"] == "rmr path [-b batch size]\n"
    assert by_cmd["ls2 /nope"].startswith("Node does not exist: /nope\n-- watch events")


# ---------------------------------------------------------------------------------------------------------
# the terminal: prompt, history, completion, asynchronous events

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\x07")


class Pty:
    """The shell on a pseudo-terminal: write keystrokes, wait for text."""

    def __init__(self, args: Sequence[str], home: Path) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, HOME=str(home), TERM="xterm", INPUTRC="/dev/null")
        env.pop("XDG_STATE_HOME", None)
        self.proc = subprocess.Popen([*SHELL, *args], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     close_fds=True, start_new_session=True)
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        """What the terminal shows: escape sequences dropped, backspaces applied."""
        out: list[str] = []
        for ch in _ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", ""):
            if ch == "\b":
                if out and out[-1] != "\n":
                    out.pop()
            else:
                out.append(ch)
        return "".join(out)

    def _pump(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.raw += data
        return bool(data)

    def expect(self, pattern: str, timeout_s: float = 15.0, since: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            m = re.compile(pattern).search(self.text, since)
            if m:
                return m
            if time.monotonic() > deadline or not self._pump(0.05):
                raise AssertionError(f"no {pattern!r} in:\n{self.text}")

    def send(self, keys: str) -> int:
        """Type `keys`; the text offset before them (for expect(since=...))."""
        mark = len(self.text)
        os.write(self.master, keys.encode())
        return mark

    def close(self) -> int:
        try:
            return self.proc.wait(15)
        finally:
            while self._pump(0.01):
                pass
            os.close(self.master)


def test_terminal_prompt_history_and_completion(server: ServerProcess, tmp_path: Path) -> None:
    addr = server.address
    subprocess.run([*SHELL, "-server", addr], input="create /compl\ncreate /compl/alpha 1\n"
                   "create /compl/beta 2\n", text=True, capture_output=True, timeout=RUN_TIMEOUT_S, check=True)
    t = Pty(["-server", addr], tmp_path)
    try:
        t.expect(r"JLine support is enabled")
        t.expect(re.escape(f"[zk: {addr}(CONNECTED) 0] ") + "$")
        mark = t.send("get /compl/alpha\r")
        t.expect(r"\n1\n" + re.escape(f"[zk: {addr}(CONNECTED) 1] "), since=mark)
        # a command name, then a znode path, completed by the server's children
        mark = t.send("getAl\t")
        t.expect(r"getAllChildrenNumber $", since=mark)
        t.send("/comp\t")
        t.expect(r"getAllChildrenNumber /compl$", since=mark)
        mark = t.send("\r")
        t.expect(r"\n2\n" + re.escape(f"[zk: {addr}(CONNECTED) 2] "), since=mark)
        mark = t.send("get /compl/b\t\r")
        t.expect(r"get /compl/beta\n2\n", since=mark)
        # several candidates: the common prefix stays, a second tab lists them
        mark = t.send("ls /compl/\t\t")
        t.expect(r"alpha\s+beta", since=mark)
        mark = t.send("\x15ls /compl\r")  # ^U clears the line
        t.expect(r"\[alpha, beta\]\n", since=mark)
        # `history` is the session's numbered list; redo runs an entry again
        mark = t.send("history\r")
        t.expect(r"0 - get /compl/alpha\n1 - getAllChildrenNumber /compl\n2 - get /compl/beta\n3 - ls /compl\n"
                 r"4 - history\n", since=mark)
        mark = t.send("redo 1\r")
        t.expect(r"redo 1\n2\n", since=mark)
        # a watch fires while the prompt waits: printed at once, then the prompt again
        mark = t.send("get -w /compl/alpha\r")
        t.expect(re.escape(f"[zk: {addr}(CONNECTED) 7] "), since=mark)
        mark = len(t.text)
        subprocess.run([*SHELL, "-server", addr, "set", "/compl/alpha", "9"], capture_output=True,
                       timeout=RUN_TIMEOUT_S, check=True)
        t.expect(r"\nWATCHER::\n\nWatchedEvent state:SyncConnected type:NodeDataChanged path:/compl/alpha\n"
                 + re.escape(f"[zk: {addr}(CONNECTED) 7] "), since=mark)
        t.send("\x04")  # end of input
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    history = (tmp_path / ".zkfast_history").read_text().splitlines()
    assert history[:4] == ["get /compl/alpha", "getAllChildrenNumber /compl", "get /compl/beta", "ls /compl"]

    # a new shell gets the saved lines back: the up arrow recalls the last one
    t = Pty(["-server", addr], tmp_path)
    try:
        t.expect(re.escape(f"[zk: {addr}(CONNECTED) 0] "))
        mark = t.send("\x1b[A\r")
        t.expect(r"get -w /compl/alpha\n9\n", since=mark)
        t.send("quit\r")
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()


def test_history_file_under_xdg_state_home(server: ServerProcess, tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "state"), TERM="dumb")
    master, slave = pty.openpty()
    proc = subprocess.Popen([*SHELL, "-server", server.address], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True, start_new_session=True)
    os.close(slave)
    try:
        os.write(master, b"ls /\rquit\r")
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert (tmp_path / "state" / "zkfast" / "shell_history").read_text().splitlines() == ["ls /", "quit"]
    assert not (tmp_path / "home" / ".zkfast_history").exists()


# ---------------------------------------------------------------------------------------------------------
# the Java behaviours the text depends on (no server)


def test_command_line_words() -> None:
    assert parse_command("create /a 'hello world'") == ["create", "/a", "hello world"]
    assert parse_command('create /a "x y" world:anyone:r') == ["create", "/a", "x y", "world:anyone:r"]
    assert parse_command("create /r 'it''s'") == ["create", "/r", "it", "s"]
    assert parse_command("get  /a\t") == ["get", "/a"]
    assert parse_command("   ") == [" "]  # as Java's pattern does it: zkCli.sh says "Command not found:  "


def test_option_parser_is_commons_cli() -> None:
    opts = Options(Option("s"), Option("w"), Option("v", True, "version"))
    cl = parse(opts, ["set", "-sv", "5", "/a", "x"])
    assert cl.args == ["set", "/a", "x"] and cl.has("s") and cl.value("v") == "5"
    assert parse(opts, ["set", "-v5", "/a"]).value("v") == "5"
    assert parse(opts, ["set", "-v=7", "/a"]).value("v") == "7"
    assert parse(opts, ["set", "-v", "-1", "/a"]).value("v") == "-1"
    assert parse(opts, ["ls", "/a", "-w"]).has("w")
    assert parse(opts, ["ls", "--", "-w"]).args == ["ls", "-w"]
    for args, text in ((["ls", "-x"], "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -x"),
                       (["ls", "-sx"], "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -sx"),
                       (["set", "-v"], "org.apache.commons.cli.MissingArgumentException: Missing argument for option: v"),
                       (["set", "-v", "-s"], "org.apache.commons.cli.MissingArgumentException: Missing argument for "
                                             "option: v")):
        with pytest.raises(ParseError) as e:
            parse(opts, args)
        assert str(e.value) == text
    group = Options(groups=(OptionGroup([Option("n", True, "num soft quota"), Option("b", True, "bytes soft quota")],
                                        required=True),))
    with pytest.raises(ParseError, match=r"Missing required option: \[-n num soft quota, -b bytes soft quota\]"):
        parse(group, ["setquota", "/a"])
    with pytest.raises(ParseError, match="The option 'b' was specified but an option from this group has already "
                                         "been selected: 'n'"):
        parse(group, ["setquota", "-n", "1", "-b", "2", "/a"])


def test_java_texts() -> None:
    for path, message in (("a", "Path must start with / character"), ("/a/", "Path must not end with / character"),
                          ("/a//b", 'Invalid path string "/a//b" caused by empty node name specified @3'),
                          ("/a/./b", 'Invalid path string "/a/./b" caused by relative paths not allowed @3'),
                          ("/a/\x01", 'Invalid path string "/a/\x01" caused by invalid character @3'),
                          ("", "Path length must be > 0")):
        with pytest.raises(ValueError) as e:
            validate_path(path)
        assert str(e.value) == message
    validate_path("/")
    validate_path("/a/b.c/..d")
    assert to_hex(-9223372036854775808) == "8000000000000000" and to_hex(0) == "0"
    assert re.fullmatch(r"Thu Jan 01 \d\d:\d\d:00 \S+ 19(69|70)", java_date(0))
    st = StatsTrack.parse(b"count=2,bytes=-1=;byteHardLimit=100;countHardLimit=1")
    assert (st.count, st.num_bytes, st.count_hard, st.bytes_hard) == (2, -1, 1, 100)
    assert str(st) == "count=2,bytes=-1=;byteHardLimit=100;countHardLimit=1"
    assert str(StatsTrack({"count": 0, "bytes": 0})) == "count=0,bytes=0"
