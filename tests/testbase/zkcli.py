"""Scripted `zkCli.sh` sessions (Apache ZooKeeper 3.8's Java shell) and a normalised transcript of them.

How a session is driven
-----------------------
One JVM per script: ``zkCli.sh -waitforconnection -server HOST:PORT`` with the commands written to its
stdin.  Without JLine on the classpath (Debian ships none) ZooKeeperMain reads stdin line by line and runs
every command synchronously on its main thread, so one session keeps its state (ephemerals, watches,
`close`/`connect`) across the whole script.  ``-waitforconnection`` makes the shell wait for SyncConnected
before the first command, so no command races the session handshake.  stdout and stderr share one pipe;
the JVM flushes each ``println`` with one ``write``, so lines never tear and the main thread's stdout and
stderr lines keep their program order.

To cut the output per command, the harness writes ``printwatches`` (no argument) after every command: it
only prints ``printwatches is on|off`` (plus ``Not connected`` when the session is closed) and sends nothing
to the server.  A script therefore must not contain a bare ``printwatches`` itself.

Watch notifications are printed by the client's event thread, asynchronously to the main thread, so their
position in the stream is not deterministic.  They are cut out of the stream (``\\nWATCHER::\\n`` and
``\\nWatchedEvent ...\\n`` are each one atomic write) and listed, in the order printed, in a separate
``watch events`` section.  ``state:Closed`` events are dropped: after ``close``/``quit`` the event thread may
or may not print one before the JVM moves on or exits.

Normalisation (see `normalise`)
-------------------------------
* the server address is replaced by ``<server>``;
* ``ctime``/``mtime`` values become ``<time>`` (``<epoch>`` for a zero time, as on ``/`` and ``/zookeeper``);
* an ``ephemeralOwner`` that is a session id becomes ``<session-N>``, numbered by first appearance (so two
  ephemerals of one session still show one owner); 0 and the container/TTL markers stay as they are;
* the children list printed by ``ls``/``ls -s`` (``[b, a]``) and by ``getEphemerals`` is sorted, and so are
  the path lines of ``ls -R``: servers return children in hash order and clients must not rely on it;
* startup banner (``Connecting to``, ``Welcome to ZooKeeper!``, ``JLine support is ...``), SLF4J and JVM
  warnings are removed;
* zxids, versions, data, error messages and the exit code are kept exactly.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available

ZKCLI = Path(os.environ.get("ZKCLI_SH", "/usr/share/zookeeper/bin/zkCli.sh"))
DIFF_TARGET_ENV = "ZKFAST_DIFF_TARGET"
MARKER_COMMAND = "printwatches"
SERVER_PLACEHOLDER = "{server}"
DEFAULT_TIMEOUT_S = 60.0

_MARKER_LINE = re.compile(r"printwatches is (?:on|off)")
_WATCHER_HEAD = re.compile(r"\nWATCHER::\n")
_WATCHED_EVENT = re.compile(r"\nWatchedEvent ([^\n]*)\n")
_NOISE_LINE = re.compile(r"^(?:SLF4J: |Picked up _?JAVA_|OpenJDK 64-Bit Server VM warning:|WARNING: )")
_BANNER_LINE = re.compile(r"^(?:Connecting to \S+|Welcome to ZooKeeper!|JLine support is (?:enabled|disabled))$")
_TIME_LINE = re.compile(r"^(ctime|mtime) = (.*)$")
_OWNER_LINE = re.compile(r"^ephemeralOwner = 0x([0-9a-fA-F]+)$")
_LIST_LINE = re.compile(r"^\[(.*)\]$")
_CONTAINER_OWNER = 0x8000000000000000
_TTL_OWNER_MASK = 0xFF00000000000000


class ClientMissing(RuntimeError):
    """zkCli.sh / cli_mt / java is not installed (the tests must fail loudly, not skip)."""


def require_zkcli() -> Path:
    """The zkCli.sh path, or a clear error saying what to install."""
    if not ZKCLI.exists():
        raise ClientMissing(f"zkCli.sh not found at {ZKCLI}: install Apache ZooKeeper 3.8 "
                            "(Debian: apt-get install zookeeper zookeeper-bin) or set ZKCLI_SH")
    if shutil.which("java") is None:
        raise ClientMissing("java not found on PATH: zkCli.sh needs a JRE (Debian: apt-get install "
                            "default-jre-headless)")
    return ZKCLI


# ---------------------------------------------------------------------------------------------------------
# running


@dataclass
class ZkCliRun:
    """What one scripted zkCli.sh session printed, cut per command (not yet normalised)."""

    address: str
    commands: list[str]
    raw: str
    returncode: int | None
    preamble: list[str] = field(default_factory=list)
    outputs: list[list[str] | None] = field(default_factory=list)  # None: the command never ran
    events: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)
    timed_out: bool = False


def _expand(command: str, address: str) -> str:
    return command.replace(SERVER_PLACEHOLDER, address)


def _check_script(commands: Sequence[str]) -> list[str]:
    script: list[str] = []
    for cmd in commands:
        if "\n" in cmd or "\r" in cmd:
            raise ValueError(f"one command per entry, no newlines: {cmd!r}")
        if not cmd.strip():
            raise ValueError("empty commands print nothing and are not counted by zkCli.sh; drop them")
        if cmd.split() == [MARKER_COMMAND]:
            raise ValueError("a bare `printwatches` is the harness's per-command marker; use `printwatches on`")
        script.append(cmd)
        if cmd.split()[0] == "quit":
            break  # zkCli.sh exits here: later commands never run
    return script


def run_zkcli(address: str, commands: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S,
              extra_args: Sequence[str] = ()) -> ZkCliRun:
    """Run `commands` in one zkCli.sh session against `address` and cut its output per command.

    ``{server}`` in a command is replaced by `address` (for ``connect {server}``).  Commands after ``quit``
    are not sent.
    """
    zkcli = require_zkcli()
    script = _check_script(commands)
    stdin_lines = [MARKER_COMMAND]
    for cmd in script:
        stdin_lines.append(_expand(cmd, address))
        if cmd.split()[0] != "quit":
            stdin_lines.append(MARKER_COMMAND)
    env = dict(os.environ)
    # Client JVM: quick start, no JIT warm-up needed for a few dozen commands.
    env.setdefault("CLIENT_JVMFLAGS", "-XX:TieredStopAtLevel=1 -Xshare:auto")
    argv = [str(zkcli), "-waitforconnection", "-server", address, *extra_args]
    timed_out = False
    try:
        proc = subprocess.run(argv, input="\n".join(stdin_lines) + "\n", stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=env, timeout=timeout_s, text=True,
                              errors="replace")
        raw, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        raw = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
        rc, timed_out = None, True
    return parse_output(address, script, raw, rc, timed_out)


def parse_output(address: str, commands: Sequence[str], raw: str, returncode: int | None,
                 timed_out: bool = False) -> ZkCliRun:
    """Cut the raw output of a session run by `run_zkcli` (markers included) per command."""
    run = ZkCliRun(address=address, commands=_check_script(commands), raw=raw, returncode=returncode,
                   timed_out=timed_out)
    _split(run)
    return run


def _split(run: ZkCliRun) -> None:
    """Fill preamble/outputs/events/trailing of `run` from its raw output."""
    # A leading newline so that an event printed first still has the newline its regex expects.
    text = "\n" + run.raw.replace("\r\n", "\n")
    text = _WATCHER_HEAD.sub("", text)
    events: list[str] = []

    def take_event(m: re.Match[str]) -> str:
        events.append(m.group(1))
        return ""

    text = _WATCHED_EVENT.sub(take_event, text)
    run.events = [e for e in events if "state:Closed " not in e]
    lines = [ln for ln in text[1:].split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln for ln in lines if not _NOISE_LINE.match(ln)]

    chunks: list[list[str]] = [[]]
    i = 0
    while i < len(lines):
        if _MARKER_LINE.fullmatch(lines[i]):
            if i + 1 < len(lines) and lines[i + 1] == "Not connected":
                i += 1  # printed by the marker itself when the session is closed
            chunks.append([])
        else:
            chunks[-1].append(lines[i])
        i += 1
    # stdin was: marker, cmd 0, marker, cmd 1, marker, ... so chunks[0] is the startup output and
    # body[k] what command k printed; a final `quit` has no marker after it (its output runs to EOF).
    run.preamble = chunks[0]
    body = chunks[1:]
    n = len(run.commands)
    ends_with_quit = n > 0 and run.commands[-1].split()[0] == "quit"
    outputs: list[list[str] | None] = []
    for k in range(n):
        if k >= len(body):
            outputs.append(None)  # never reached
        elif k < len(body) - 1 or (ends_with_quit and k == n - 1):
            outputs.append(body[k])  # closed by its marker (or the quit ran to EOF)
        else:
            outputs.append(body[k] + ["<<no end marker: zkCli.sh stopped inside this command>>"])
    run.outputs = outputs
    run.trailing = body[n] if len(body) > n else []


# ---------------------------------------------------------------------------------------------------------
# normalising


def _norm_time(value: str) -> str:
    year = value.rsplit(" ", 1)[-1]
    return "<epoch>" if year in ("1969", "1970") else "<time>"


def is_session_owner(owner: int) -> bool:
    """Whether an ephemeralOwner value is a session id (not 0, not a container/TTL marker)."""
    return owner != 0 and owner != _CONTAINER_OWNER and (owner & _TTL_OWNER_MASK) != _TTL_OWNER_MASK


class SessionNames:
    """Maps session ids to stable names in order of first appearance."""

    def __init__(self, prefix: str = "session") -> None:
        self.prefix = prefix
        self.names: dict[int, str] = {}

    def name(self, session_id: int) -> str:
        if session_id not in self.names:
            self.names[session_id] = f"<{self.prefix}-{len(self.names) + 1}>"
        return self.names[session_id]

    def bind(self, session_id: int, name: str) -> None:
        self.names.setdefault(session_id, name)


def _sort_list_line(line: str) -> str:
    m = _LIST_LINE.match(line)
    if not m or not m.group(1):
        return line
    return "[" + ", ".join(sorted(m.group(1).split(", "))) + "]"


def _command_words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def normalise_output(command: str, lines: Sequence[str], address: str, sessions: SessionNames) -> list[str]:
    """Normalise the lines one zkCli.sh command printed."""
    words = _command_words(command)
    name = words[0] if words else ""
    out: list[str] = []
    for line in lines:
        line = line.replace(address, "<server>")
        m = _TIME_LINE.match(line)
        if m:
            line = f"{m.group(1)} = {_norm_time(m.group(2))}"
        m = _OWNER_LINE.match(line)
        if m and is_session_owner(int(m.group(1), 16)):
            line = f"ephemeralOwner = {sessions.name(int(m.group(1), 16))}"
        out.append(line)
    if name == "ls" and "-R" in words[1:]:
        paths = sorted(ln for ln in out if ln.startswith("/"))
        it = iter(paths)
        out = [next(it) if ln.startswith("/") else ln for ln in out]
    elif name == "ls":
        out = [_sort_list_line(out[0]), *out[1:]] if out else out
    elif name == "getEphemerals":
        out = [_sort_list_line(ln) for ln in out]
    return out


def normalise(run: ZkCliRun) -> str:
    """The deterministic transcript of a run: each command with its normalised output, then the watch
    events, then the exit code."""
    sessions = SessionNames()
    parts: list[str] = []
    pre = [ln for ln in run.preamble if not _BANNER_LINE.match(ln)]
    if pre:
        parts.append("-- startup")
        parts.extend(normalise_output("", pre, run.address, sessions))
    for cmd, lines in zip(run.commands, run.outputs, strict=True):
        parts.append(f"$ {cmd}")
        if lines is None:
            parts.append("<<not run: zkCli.sh had stopped>>")
        else:
            parts.extend(normalise_output(_expand(cmd, run.address), lines, run.address, sessions))
    if run.trailing:
        parts.append("-- after the last command")
        parts.extend(normalise_output("", run.trailing, run.address, sessions))
    parts.append("-- watch events (in the order printed)")
    parts.extend(ev.replace(run.address, "<server>") for ev in run.events)
    parts.append("-- timed out" if run.timed_out else f"-- exit code {run.returncode}")
    return "\n".join(parts) + "\n"


def zkcli_transcript(address: str, commands: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Run a scripted zkCli.sh session and return its normalised transcript."""
    return normalise(run_zkcli(address, commands, timeout_s=timeout_s))


def zkcli_oneshot(address: str, command: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """zkCli.sh's one-shot mode (``zkCli.sh -server A cmd args``): one command, its raw output.

    Useful to prepare state from outside a scripted session; no state survives the call.
    """
    zkcli = require_zkcli()
    proc = subprocess.run([str(zkcli), "-waitforconnection", "-server", address, *shlex.split(command)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, text=True,
                          errors="replace")
    return proc.stdout


# ---------------------------------------------------------------------------------------------------------
# reference server vs target server (shared by the zkCli.sh and cli_mt diff tests)

T = TypeVar("T")


def target_kind() -> str:
    """`zkfast` (default) or `apache` (Apache vs Apache: proves the harness is deterministic)."""
    kind = os.environ.get(DIFF_TARGET_ENV, "zkfast").strip().lower() or "zkfast"
    if kind not in ("zkfast", "apache"):
        raise ValueError(f"{DIFF_TARGET_ENV} must be 'zkfast' or 'apache', not {kind!r}")
    return kind


@contextlib.contextmanager
def reference_and_target(cfg: Mapping[str, str] | None = None) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A fresh Apache ZooKeeper (the reference) and a fresh target server, started side by side."""
    if not apache_available():
        raise ClientMissing("Apache ZooKeeper 3.8 server jars (/usr/share/java/zookeeper.jar) or java are "
                            "missing: apt-get install zookeeper default-jre-headless")
    target_cls: type[ServerProcess] = ApacheZkProcess if target_kind() == "apache" else ZkfastProcess
    servers: list[ServerProcess] = [ApacheZkProcess(cfg), target_cls(cfg)]
    try:
        both(servers[0].start, servers[1].start)
        yield servers[0], servers[1]
    finally:
        for srv in servers:
            try:
                srv.stop()
            finally:
                srv.cleanup()


def both(first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """Run two calls at the same time (two servers, two client runs); re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        fa, fb = pool.submit(first), pool.submit(second)
        return fa.result(), fb.result()


def diff_transcripts(reference: str, target: str, target_name: str = "target") -> str:
    """A unified diff of two transcripts, empty when they are equal."""
    if reference == target:
        return ""
    return "".join(difflib.unified_diff(reference.splitlines(keepends=True), target.splitlines(keepends=True),
                                        fromfile="apache (reference)", tofile=target_name, n=4))
