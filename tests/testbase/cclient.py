"""Scripted sessions of the ZooKeeper C client shell `cli_mt` (zookeeper-bin, 3.8.0) and a normalised
transcript of them; plus a small `load_gen` smoke run.

How a session is driven
-----------------------
``cli_mt HOST:PORT`` reads commands from stdin (see ``help``: create [+e|s|c|t=ttl], create2, delete, set,
get, ls, ls2, sync, exists, wexists, myid, quit, ...).  Almost every command is asynchronous: the main
thread sends the request and goes on reading stdin, the reply is printed later by the completion thread.
``get``, ``ls`` and ``ls2`` always leave a watch (the default watcher prints ``Watcher CHANGED_EVENT ...``);
``exists``/``wexists`` are synchronous in cli_mt and print only on error (``Error -101 for /x``).

To get complete, ordered output the harness runs each session in lock step:

* at start it waits for ``Got a new session id: 0x...`` (the session event is printed by the completion
  thread and would otherwise race the first command's ``Creating [...]`` line);
* after every command it sends ``sync /zkfast_cli_barrier`` and waits for that reply's completion line.
  Replies on one session come in request order and the completion thread prints them in order, so when
  the barrier is printed everything the command caused (its reply, the watch events the server sent
  before it) is printed too.  The barrier lines are then cut out.  ``sync`` does not look at the path
  (Apache answers rc = 0 for a path that does not exist); a server that answers otherwise leaves the
  barrier's line in the transcript, so the difference shows up;
* when several sessions take turns, a session that resumes after another session ran first does one
  barrier on its own, so the watch events the other session's writes triggered are printed before the
  next command's output (not interleaved with it);
* ``Step.expect`` waits for a regex in a session's output (e.g. a watch event).

stdout (only ``myid`` prints there) is line buffered with ``stdbuf -oL`` and shares the pipe with stderr.

Normalisation (see `normalise_session_lines`)
--------------------------------------------
* C client log lines (``2024-.. ..,123:4242(0x7f..):ZOO_WARN@...``) are cut, even from the middle of a
  line, e.g. the IO thread's ``Exceeded deadline by 11ms``;
* ``time = 12 msec`` becomes ``time = <ms> msec``; ``ctime``/``mtime`` become ``<time>`` (``<epoch>``
  for zero);
* session ids (``Got a new session id``, ``session Id =`` from myid, ``ephemeralOwner``) become the name
  of the scripted session that owns them (``<session a>``, ``<session a#2>`` after ``reinit``);
* the children printed by ``ls``/``ls2`` (one per line, tab indented) are sorted;
* the server address becomes ``<server>``.  czxid/mzxid (hex), versions, rc codes and data stay exact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbase.zkcli import ClientMissing, is_session_owner

CLI_MT = Path(os.environ.get("ZK_CLI_MT", "/usr/lib/zookeeper/bin/cli_mt"))
LOAD_GEN = Path(os.environ.get("ZK_LOAD_GEN", "/usr/lib/zookeeper/bin/load_gen"))
BARRIER_PATH = "/zkfast_cli_barrier"
STEP_TIMEOUT_S = 10.0

_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}:\d+\(0x[0-9a-f]+\):ZOO_[A-Z]+@[^\n]*\n")
_B = re.escape(BARRIER_PATH)
_BARRIER_OK = re.compile(rf"\[{_B}\]: rc = 0\n\tname = {_B}\n")
# On raw output a log line of another client thread may sit between the two lines of one completion.
_LOG_BYTES = rb"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}:\d+\(0x[0-9a-f]+\):ZOO_[A-Z]+@[^\n]*\n)*"
_BB = re.escape(BARRIER_PATH.encode())
_BARRIER_DONE = re.compile(rb"\[" + _BB + rb"\]: rc = 0\n" + _LOG_BYTES + rb"\tname = " + _BB + rb"\n"
                           rb"|\[" + _BB + rb"\]: rc = (?!0\n)-?\d+\n")
_NEW_SESSION = re.compile(rb"Got a new session id: 0x([0-9a-f]+)\n")
_MS_LINE = re.compile(r"^time = -?\d+ msec$")
_CTIME = re.compile(r"^\tctime = (.*)$")
_MTIME = re.compile(r"^\tmtime=(.*)$")
_OWNER = re.compile(r"^\tephemeralOwner = ([0-9a-f]+)$")
_SESSION_ID_LINE = re.compile(r"^(Got a new session id: |session Id = )(?:0x)?([0-9a-f]+)$")
_RC_LINE = re.compile(r"^.*: rc = -?\d+$")


def require_cli_mt() -> Path:
    if not CLI_MT.exists():
        raise ClientMissing(f"cli_mt not found at {CLI_MT}: install the ZooKeeper C client shell "
                            "(Debian: apt-get install zookeeper-bin) or set ZK_CLI_MT")
    return CLI_MT


@dataclass(frozen=True)
class Step:
    """One scripted step: `command` typed into session `session`, or (with `expect`) a wait until that
    session has printed a line matching the regex `expect`."""

    session: str
    command: str = ""
    expect: str = ""
    timeout_s: float = STEP_TIMEOUT_S

    def label(self) -> str:
        return f"[{self.session}] ? {self.expect}" if self.expect else f"[{self.session}] $ {self.command}"


def cmd(session: str, command: str) -> Step:
    return Step(session=session, command=command)


def expect(session: str, regex: str, timeout_s: float = STEP_TIMEOUT_S) -> Step:
    return Step(session=session, expect=regex, timeout_s=timeout_s)


class CliMtSession:
    """One `cli_mt` process; all output is collected by a reader thread."""

    def __init__(self, address: str, name: str) -> None:
        self.address = address
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._pos = 0  # output before this offset was handed out with earlier steps
        self._scan = 0  # waits search the output from here on
        self._reader: threading.Thread | None = None
        self.dead_reason = ""

    # -- process and output
    def start(self, timeout_s: float = STEP_TIMEOUT_S) -> str:
        """Start the process, wait for the session; return the startup output (raw)."""
        argv = [str(require_cli_mt()), self.address]
        stdbuf = shutil.which("stdbuf")
        if stdbuf:
            argv = [stdbuf, "-oL", *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"cli_mt-{self.name}", daemon=True)
        self._reader.start()
        if not self._wait_raw(_NEW_SESSION, timeout_s):
            return self._fail(f"no session within {timeout_s:g}s")
        return self._take()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf.extend(data)
                self._cond.notify_all()

    def _wait_raw(self, pattern: re.Pattern[bytes], timeout_s: float) -> bool:
        """Wait until the output after the scan point matches `pattern`; move the scan point past it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                m = pattern.search(self._buf, self._scan)
                if m:
                    self._scan = m.end()
                    return True
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return False
                self._cond.wait(left)

    def _wait_text(self, pattern: re.Pattern[str], timeout_s: float) -> bool:
        """Wait until the output after the scan point, log lines cut out, matches `pattern`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                text = _LOG_LINE.sub("", self._buf[self._scan:].decode("utf-8", "replace"))
                if pattern.search(text):
                    return True
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return False
                self._cond.wait(left)

    def _take(self) -> str:
        """All output not yet handed out; later waits only look at output after it."""
        with self._cond:
            text = self._buf[self._pos:].decode("utf-8", "replace")
            self._pos = len(self._buf)
            self._scan = max(self._scan, self._pos)
        return text

    def _send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        # one write per line: cli.c drops a partial line left over from a read
        os.write(self.proc.stdin.fileno(), (line + "\n").encode())

    # -- steps
    def barrier(self, timeout_s: float = STEP_TIMEOUT_S) -> bool:
        """Send the sync barrier and wait until its completion has been printed."""
        self._send(f"sync {BARRIER_PATH}")
        return self._wait_raw(_BARRIER_DONE, timeout_s)

    def run(self, command: str, timeout_s: float = STEP_TIMEOUT_S, pre_barrier: bool = False) -> str:
        """Type one command, wait until everything it caused is printed; return that output (raw)."""
        if self.dead_reason:
            return f"<<session dead: {self.dead_reason}>>\n"
        try:
            if pre_barrier and not self.barrier(timeout_s):
                return self._fail("pre-step barrier did not complete")
            words = command.split()
            if words and words[0] == "quit":
                self._send(command)
                return self._finish(timeout_s)
            self._send(command)
            if not self.barrier(timeout_s):
                return self._fail("no completion within timeout")
        except OSError as e:  # stdin closed: the process has exited
            return self._fail(f"cannot write to cli_mt: {e}")
        return self._take()

    def wait_for(self, regex: str, timeout_s: float = STEP_TIMEOUT_S) -> str:
        if self.dead_reason:
            return f"<<session dead: {self.dead_reason}>>\n"
        pattern = re.compile(regex if regex.endswith("\n") else regex + r"[^\n]*\n")
        if not self._wait_text(pattern, timeout_s):
            return self._fail(f"expected output {regex!r} not printed")
        # a barrier so the step's output ends at a known point
        if not self.barrier(timeout_s):
            return self._fail("barrier after expect did not complete")
        return self._take()

    def _fail(self, reason: str) -> str:
        self.dead_reason = reason
        out = self._take()
        self.kill()
        return out + f"<<{reason}>>\n"

    def _finish(self, timeout_s: float) -> str:
        """Wait for the process to exit (after quit, or on close)."""
        assert self.proc is not None
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return self._fail("cli_mt did not exit")
        if self._reader is not None:
            self._reader.join(timeout_s)
        self.dead_reason = "exited"
        return self._take() + f"<<exit {self.proc.returncode}>>\n"

    def close(self, timeout_s: float = STEP_TIMEOUT_S) -> str:
        """End the session cleanly (EOF on stdin: cli_mt prints `bye` and closes the session)."""
        if self.proc is None or self.proc.poll() is not None or self.dead_reason:
            return ""
        return self._finish(timeout_s)

    def kill(self) -> None:
        """Kill the process if it still runs and release its pipes."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(5.0)
        if self.proc.stdout is not None and not self._reader_alive():
            self.proc.stdout.close()

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()


# ---------------------------------------------------------------------------------------------------------
# scenario


@dataclass
class CliMtRun:
    address: str
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (session, label, raw output)


def run_cli_mt(address: str, steps: Sequence[Step], sessions: Sequence[str] | None = None) -> CliMtRun:
    """Run `steps` in lock step; sessions are started in the order given (or of first use), and every
    session still alive at the end is ended with EOF (``bye``), in that order."""
    require_cli_mt()
    names = list(sessions) if sessions else list(dict.fromkeys(s.session for s in steps))
    run = CliMtRun(address=address)
    live: dict[str, CliMtSession] = {}
    last: str | None = None
    try:
        for name in names:
            s = CliMtSession(address, name)
            live[name] = s
            run.steps.append((name, f"[{name}] (start)", s.start()))
            last = name
        for step in steps:
            s = live[step.session]
            if step.expect:
                out = s.wait_for(step.expect, step.timeout_s)
            else:
                out = s.run(step.command, step.timeout_s, pre_barrier=last != step.session)
            run.steps.append((step.session, step.label(), out))
            last = step.session
        for name in names:
            out = live[name].close()
            if out:
                run.steps.append((name, f"[{name}] (end of input)", out))
    finally:
        for s in live.values():
            s.kill()
    return run


# ---------------------------------------------------------------------------------------------------------
# normalising


def _norm_ctime(value: str) -> str:
    return "<epoch>" if value.strip().endswith(("1969", "1970")) else "<time>"


class _SessionNamer:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.per_session: dict[str, int] = {}
        self.unknown = 0

    def new(self, sid: int, session: str) -> str:
        if sid not in self.names:
            n = self.per_session.get(session, 0) + 1
            self.per_session[session] = n
            self.names[sid] = f"<session {session}>" if n == 1 else f"<session {session}#{n}>"
        return self.names[sid]

    def get(self, sid: int) -> str:
        if sid not in self.names:
            self.unknown += 1
            self.names[sid] = f"<unknown session {self.unknown}>"
        return self.names[sid]


def normalise_session_lines(label: str, raw: str, address: str, namer: _SessionNamer,
                            session: str) -> list[str]:
    """Normalise what one step printed (see the module docstring)."""
    text = _LOG_LINE.sub("", raw)
    text = _BARRIER_OK.sub("", text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[str] = []
    for line in lines:
        line = line.replace(address, "<server>")
        if _MS_LINE.match(line):
            line = "time = <ms> msec"
        elif m := _CTIME.match(line):
            line = f"\tctime = {_norm_ctime(m.group(1))}"
        elif m := _MTIME.match(line):
            line = f"\tmtime={_norm_ctime(m.group(1))}"
        elif m := _OWNER.match(line):
            owner = int(m.group(1), 16)
            if is_session_owner(owner):
                line = f"\tephemeralOwner = {namer.get(owner)}"
        elif m := _SESSION_ID_LINE.match(line):
            sid = int(m.group(2), 16)
            name = namer.new(sid, session) if m.group(1).startswith("Got") else namer.get(sid)
            line = m.group(1) + name
        out.append(line)
    words = label.split("$ ", 1)[1].split() if "$ " in label else []
    if words and words[0].lstrip("a") in ("ls", "ls2"):
        out = _sort_children(out)
    return out


def _sort_children(lines: list[str]) -> list[str]:
    """Sort the tab-indented child names that follow a `path: rc = N` line of ls/ls2."""
    result = list(lines)
    i = 0
    while i < len(result):
        if _RC_LINE.match(result[i]):
            j = i + 1
            while j < len(result) and result[j].startswith("\t") and not _CTIME.match(result[j]):
                j += 1
            result[i + 1:j] = sorted(result[i + 1:j])
            i = j
        else:
            i += 1
    return result


def normalise(run: CliMtRun) -> str:
    namer = _SessionNamer()
    parts: list[str] = []
    for session, label, raw in run.steps:
        parts.append(label)
        parts.extend(normalise_session_lines(label, raw, run.address, namer, session))
    return "\n".join(parts) + "\n"


def cli_mt_transcript(address: str, steps: Sequence[Step], sessions: Sequence[str] | None = None) -> str:
    return normalise(run_cli_mt(address, steps, sessions))


def cli_mt_batch(address: str, command: str, timeout_s: float = STEP_TIMEOUT_S) -> str:
    """cli_mt's batch mode (``cli_mt A cmd:<command>``): one command in a fresh session, raw output."""
    proc = subprocess.run([str(require_cli_mt()), address, f"cmd:{command}"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
    return proc.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------------
# load_gen


@dataclass
class LoadGenResult:
    cycles: int  # complete create/write/read/delete cycles
    errors: list[str]
    clean_output: str
    clean_rc: int


def run_load_gen(address: str, root: str, children: int, duration_s: float) -> LoadGenResult:
    """Run ``load_gen A root N`` (an endless create/set/get/delete cycle over N children) for
    `duration_s`, then ``load_gen A root clean``.  Its output is timing-dependent (how many cycles fit),
    so it is not compared between servers: the result is the number of full cycles and any ZOO_ERROR."""
    if not LOAD_GEN.exists():
        raise ClientMissing(f"load_gen not found at {LOAD_GEN} (Debian: apt-get install zookeeper-bin)")
    proc = subprocess.Popen([str(LOAD_GEN), address, root, str(children)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=duration_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    text = out.decode("utf-8", "replace")
    cycles = max(0, text.count("Creating children for path") - 1)
    errors = [ln for ln in text.splitlines() if "ZOO_ERROR" in ln]
    # the killed load_gen's last requests may still be in the server's queue: a delete of its can win
    # the race with clean's, whose delete then finds no node (rc=-101); clean again then
    for _ in range(3):
        clean = subprocess.run([str(LOAD_GEN), address, root, "clean"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
        if clean.returncode == 0 or b"rc=-101" not in clean.stdout:
            break
        time.sleep(0.2)
    return LoadGenResult(cycles=cycles, errors=errors,
                         clean_output=clean.stdout.decode("utf-8", "replace"), clean_rc=clean.returncode)
