"""`zkfast start|start-foreground|stop|restart|status|version|print-cmd [CFG]`, as `zkServer.sh` behaves.

What an operator's scripts see is kept: the pid file `zookeeper_server.pid` in dataDir (or `$ZOOPIDFILE`),
the `Starting zookeeper ... STARTED` / `Stopping zookeeper ... STOPPED` lines, `status` printing
`Client port found: ...` and the server's `Mode:` line, and the exit codes. Two things are stricter:
`start` says STARTED only once the server answers `srvr`, and `stop` escalates to SIGKILL after a bounded
wait, so a server that ignores SIGTERM cannot hang a script.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from zkfast.config import EMBEDDED_SOURCE, ConfigError, ServerConfig, load_config
from zkfast.log import level_name, resolve_level, setup_logging
from zkfast.version import FULL_VERSION, built_on

PID_FILE_NAME = "zookeeper_server.pid"
LOG_FILE_NAME = "zkfast.log"
DEFAULT_START_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0
POLL_INTERVAL_S = 0.1
EXIT_CONFIG_ERROR = 2
NOT_RUNNING = "Error contacting service. It is probably not running."
COMMANDS = ("start", "start-foreground", "stop", "restart", "status", "version", "print-cmd", "cleanup",
            "log-dump", "snap-dump", "import-zk", "export-zk", "shell")
NO_CONFIG_COMMANDS = ("version", "log-dump", "snap-dump")

log = logging.getLogger("zkfast.cli")


# ------------------------------------------------------------------------------------------ arguments

def _add_common(parser: argparse.ArgumentParser, suffix: str) -> None:
    """Options accepted both before and after the command (separate dests, merged later)."""
    parser.add_argument("-D", dest=f"props{suffix}", action="append", default=[], metavar="KEY=VALUE",
                        help="set a system property, as the JVM's -D (e.g. -Dzookeeper.snapCount=1000)")
    parser.add_argument("--log-level", dest=f"log_level{suffix}", default=None, metavar="LEVEL",
                        help="server log level: TRACE, DEBUG, INFO, WARN, ERROR, FATAL or OFF (default: "
                             "$ZKFAST_LOG_LEVEL, else the level in $ZOO_LOG4J_PROP, else INFO)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zkfast", description="A ZooKeeper server; commands and files as Apache ZooKeeper's zkServer.sh.")
    parser.add_argument("--config", dest="conf_dir", metavar="CONF_DIR",
                        help="configuration directory: CFG names are looked up there; without CFG, "
                             "CONF_DIR/zoo.cfg (as zkServer.sh --config)")
    _add_common(parser, "")
    commands = parser.add_subparsers(dest="command", metavar="{" + "|".join(COMMANDS) + "}")
    commands.required = True
    helps = {
        "start": "start the server in the background; STARTED once it answers",
        "start-foreground": "run the server in this process until SIGTERM/SIGINT",
        "stop": "stop the server named by the pid file (SIGTERM, then SIGKILL after --stop-timeout)",
        "restart": "stop, then start",
        "status": "ask the server its mode with the srvr four-letter word",
        "version": "print the version",
        "print-cmd": "print the command that start runs",
        "cleanup": "remove old snapshots and txn logs, keeping the newest -n snapshots (as zkCleanup.sh)",
        "log-dump": "print the txns of a txn log file, one per line (as TxnLogToolkit)",
        "snap-dump": "print the znodes of a snapshot (a zkfast snapshot dir or an Apache snapshot file)",
        "import-zk": "load Apache ZooKeeper's dataDir into this server's store",
        "shell": "the ZooKeeper shell (zkCli.sh's commands): zkfast shell -server host:port [cmd args]",
        "export-zk": "write this server's data as a dataDir Apache ZooKeeper 3.8 starts on",
    }
    for name in COMMANDS:
        sub = commands.add_parser(name, help=helps[name])
        _add_common(sub, "_sub")
        if name == "shell":
            continue  # handled before argparse (see main)
        if name in ("log-dump", "snap-dump"):
            sub.add_argument("target", metavar="FILE" if name == "log-dump" else "SNAPSHOT")
            sub.add_argument("--json", action="store_true", help="one JSON document instead of text")
            if name == "snap-dump":
                sub.add_argument("--data", action="store_true", help="include znode data (base64)")
            continue
        if name in ("import-zk", "export-zk"):
            sub.add_argument("target", metavar="ZK_DATADIR" if name == "import-zk" else "OUT_DIR")
        if name != "version":
            sub.add_argument("cfg", nargs="?", metavar="CFG",
                             help="zoo.cfg path (default: the embedded default configuration)")
        if name == "cleanup":
            sub.add_argument("-n", dest="retain", type=int, default=3, metavar="COUNT",
                             help="snapshots to keep (at least 3)")
        if name in ("start", "start-foreground", "restart"):
            sub.add_argument("--truncate-log-at", metavar="FILE:OFFSET", default=None,
                             help="accept losing every txn from this point of a damaged txn log "
                                  "(start-up names file and offset when it finds damage)")
        if name in ("start", "restart"):
            sub.add_argument("--start-timeout", type=float, default=DEFAULT_START_TIMEOUT_S, metavar="S",
                             help=f"seconds to wait for the server to answer ({DEFAULT_START_TIMEOUT_S:g})")
        if name == "start-foreground":
            sub.add_argument("--log-file", default=None, metavar="FILE",
                             help="log to FILE, rotated at 10 MB keeping 10 old files, instead of stderr "
                                  "(what `start` asks of the server it starts)")
        if name in ("stop", "restart"):
            sub.add_argument("--stop-timeout", type=float, default=DEFAULT_STOP_TIMEOUT_S, metavar="S",
                             help=f"seconds to wait after SIGTERM before SIGKILL ({DEFAULT_STOP_TIMEOUT_S:g})")
    return parser


def parse_properties_options(values: Sequence[str]) -> dict[str, str]:
    """-D KEY=VALUE options; `-DKEY` alone sets an empty value, as the JVM does."""
    props = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key:
            raise ValueError(f"-D{item}: a property needs a name")
        props[key] = value
    return props


class Invocation:
    """The parsed command line and what follows from it (config path, files)."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ
        self.command: str = args.command
        self.properties = parse_properties_options([*args.props, *args.props_sub])
        self.log_level: str = level_name(resolve_level(args.log_level_sub or args.log_level, environ))
        self.log_file: Path | None = None  # where a server started by `start` logs
        self.cfg_path = resolve_cfg(getattr(args, "cfg", None), args.conf_dir, environ)

    def load(self) -> ServerConfig:
        return load_config(self.cfg_path, self.properties, self.environ)

    def cfg_label(self) -> str:
        return str(self.cfg_path) if self.cfg_path is not None else EMBEDDED_SOURCE

    def child_command(self) -> list[str]:
        """What `start` runs in the background: start-foreground with the same properties and config."""
        # -P: not the working directory's zkfast (a source checkout, where README's `zkfast start` runs,
        # has no compiled modules) but the installed one this CLI came from
        cmd = [sys.executable, "-P", "-m", "zkfast"]
        cmd += [f"-D{key}={value}" for key, value in self.properties.items()]
        cmd += ["--log-level", self.log_level, "start-foreground"]
        if self.log_file is not None:
            cmd += ["--log-file", str(self.log_file.absolute())]
        truncate = getattr(self.args, "truncate_log_at", None)
        if truncate:
            cmd += ["--truncate-log-at", truncate]
        if self.cfg_path is not None:
            cmd.append(str(self.cfg_path.absolute()))
        return cmd


def resolve_cfg(cfg: str | None, conf_dir: str | None, environ: Mapping[str, str]) -> Path | None:
    """A path as given; else a name inside --config DIR or $ZOOCFGDIR (as zkServer.sh); None = embedded."""
    base = conf_dir or environ.get("ZOOCFGDIR")
    if cfg is None:
        return Path(conf_dir) / "zoo.cfg" if conf_dir else None
    path = Path(cfg)
    if not path.exists() and base and not path.is_absolute() and (Path(base) / cfg).exists():
        return Path(base) / cfg
    return path


# ------------------------------------------------------------------------------------ files, processes

def pid_file_path(cfg: ServerConfig, environ: Mapping[str, str]) -> Path:
    return Path(environ["ZOOPIDFILE"]) if environ.get("ZOOPIDFILE") else cfg.data_dir / PID_FILE_NAME


def log_file_path(cfg: ServerConfig, environ: Mapping[str, str]) -> Path:
    directory = Path(environ["ZOO_LOG_DIR"]) if environ.get("ZOO_LOG_DIR") else cfg.data_dir
    return directory / (environ.get("ZOO_LOG_FILE") or LOG_FILE_NAME)


def read_pid(path: Path) -> int | None:
    """The pid in a pid file; None if the file is missing or holds no positive number."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(path: Path, pid: int) -> None:
    """Atomically, and without a newline, as zkServer.sh's `echo -n $! > $ZOOPIDFILE`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(str(pid), encoding="ascii")
    os.replace(tmp, path)


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def process_alive(pid: int) -> bool:
    """True if pid runs (a zombie, killed but not yet reaped by its parent, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def looks_like_zookeeper(pid: int) -> bool:
    """Guards against a stale pid file naming a pid the OS has since given to an unrelated program.
    zkfast's own and Apache ZooKeeper's (QuorumPeerMain) command lines both qualify."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").lower()
    except OSError:
        return True  # no procfs, or it raced away: do what zkServer.sh does and trust the pid file
    return b"zkfast" in cmdline or b"zookeeper" in cmdline


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)


def four_letter_word(host: str, port: int, cmd: str, timeout_s: float = 2.0) -> str:
    """Send a four-letter word and read the answer to the end (the server closes after it)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(cmd.encode("ascii"))
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def mode_line(cfg: ServerConfig, timeout_s: float = 2.0) -> str | None:
    """The `Mode: ...` line of the server's srvr answer, or None if nothing answers with one."""
    answer = srvr_answer(cfg, timeout_s)
    return next((ln for ln in (answer or "").splitlines() if ln.startswith("Mode:")), None)


def srvr_answer(cfg: ServerConfig, timeout_s: float = 2.0) -> str | None:
    address = cfg.local_client_address()
    if address is None:
        return None
    try:
        return four_letter_word(*address, "srvr", timeout_s=timeout_s)
    except OSError:
        return None


def out_file_path(log_path: Path) -> Path:
    """Where a daemon's stdout and stderr go (zkServer.sh's zookeeper-$USER-server-$HOSTNAME.out)."""
    return log_path.with_suffix(".out")


def log_tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def say(text: str, end: str = "\n") -> None:
    print(text, end=end, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- start

def cmd_start(inv: Invocation, cfg: ServerConfig) -> int:
    pid_file = pid_file_path(cfg, inv.environ)
    say("Starting zookeeper ... ", end="")
    running = _running_pid(pid_file)
    if running is not None:
        say(f"already running as process {running}.")
        return 1
    if not cfg.datadir_autocreate and not (cfg.data_dir / "version-2").is_dir():
        say(f"ZooKeeper data directory is missing at {cfg.data_dir} fix the path or run initialize")
        return 1
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_file_path(cfg, inv.environ)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    inv.log_file = log_path
    with open(out_file_path(log_path), "ab") as out:
        proc = subprocess.Popen(inv.child_command(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=dict(inv.environ))
    write_pid(pid_file, proc.pid)
    return _wait_started(proc, cfg, pid_file, log_path, inv.args.start_timeout)


def _running_pid(pid_file: Path) -> int | None:
    pid = read_pid(pid_file)
    if pid is not None and process_alive(pid) and looks_like_zookeeper(pid):
        return pid
    return None


def _wait_started(proc: subprocess.Popen[bytes], cfg: ServerConfig, pid_file: Path, log_path: Path,
                  timeout_s: float) -> int:
    """STARTED once the server answers srvr: with a Mode (standalone), or at all (a quorum member may
    wait for its peers before it has a mode). Without a plain client port, alive after a second."""
    deadline = time.monotonic() + timeout_s
    alive_since = time.monotonic()
    while True:
        if proc.poll() is not None:
            remove_pid_file(pid_file)
            say("FAILED TO START")
            note(f"zkfast exited with code {proc.returncode}; {_tails(log_path)}")
            return 1
        if cfg.local_client_address() is None:
            if time.monotonic() - alive_since >= 1.0:
                say("STARTED")
                return 0
        else:
            answer = srvr_answer(cfg, timeout_s=1.0)
            if answer and ("Mode:" in answer or cfg.is_quorum):
                say("STARTED")
                return 0
        if time.monotonic() >= deadline:
            say("FAILED TO START")
            note(f"process {proc.pid} is running but did not answer srvr on "
                 f"{_address_text(cfg)} within {timeout_s:g} s; it was left running (`zkfast stop` ends "
                 f"it). {_tails(log_path)}")
            return 1
        time.sleep(POLL_INTERVAL_S)


def _tails(log_path: Path) -> str:
    """The ends of the daemon's output file and of its log, the ones that have anything."""
    parts = [f"The end of {path}:\n{text}" for path in (out_file_path(log_path), log_path)
             if (text := log_tail(path))]
    return "\n".join(parts) or f"Nothing in {out_file_path(log_path)} nor {log_path}."


def _address_text(cfg: ServerConfig) -> str:
    address = cfg.local_client_address()
    return f"{address[0]}:{address[1]}" if address else "(no client port)"


# ---------------------------------------------------------------------------------------------- stop

def cmd_stop(inv: Invocation, cfg: ServerConfig) -> int:
    pid_file = pid_file_path(cfg, inv.environ)
    say("Stopping zookeeper ... ", end="")
    if not pid_file.exists():
        say(f"no zookeeper to stop (could not find file {pid_file})")
        return 0
    pid = read_pid(pid_file)
    stale = _stale_reason(pid)
    if pid is None or stale:
        remove_pid_file(pid_file)
        say(f"no zookeeper to stop ({pid_file} {stale}; removed it)")
        return 0
    return _terminate(pid, pid_file, inv.args.stop_timeout)


def _stale_reason(pid: int | None) -> str:
    """Why a pid file names nothing to stop, or "" if it names a running ZooKeeper server."""
    if pid is None:
        return "holds no process id"
    if not process_alive(pid):
        return f"names process {pid}, which is not running"
    if not looks_like_zookeeper(pid):
        return f"names process {pid}, which is not a ZooKeeper server"
    return ""


def _terminate(pid: int, pid_file: Path, timeout_s: float) -> int:
    """SIGTERM, wait up to timeout_s, then SIGKILL: a stuck server never hangs the caller."""
    try:
        os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not process_alive(pid), timeout_s):
            note(f"process {pid} did not stop within {timeout_s:g} s of SIGTERM; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not process_alive(pid), KILL_WAIT_S)
    except ProcessLookupError:
        pass  # it ended between two checks
    except PermissionError:
        say("FAILED")
        note(f"not allowed to signal process {pid} (from {pid_file}); is it someone else's?")
        return 1
    if process_alive(pid):
        say("FAILED")
        note(f"process {pid} is still running after SIGKILL")
        return 1
    remove_pid_file(pid_file)
    say("STOPPED")
    return 0


# --------------------------------------------------------------------------------- the other commands

def cmd_restart(inv: Invocation, cfg: ServerConfig) -> int:
    if cmd_stop(inv, cfg) != 0:
        return 1
    return cmd_start(inv, cfg)


def cmd_status(inv: Invocation, cfg: ServerConfig) -> int:
    if cfg.client_port is None:
        if cfg.secure_client_port is None:
            say("Unable to find either secure or unsecure client port in any configs. Terminating.")
            return 1
        say(f"Client port found: {cfg.secure_client_port}. Client address: "
            f"{cfg.secure_client_port_address or 'localhost'}. Client SSL: true.")
        note("zkfast status does not speak TLS; configure a plain clientPort to use it.")
        say(NOT_RUNNING)
        return 1
    say(f"Client port found: {cfg.client_port}. Client address: {cfg.client_port_address or 'localhost'}. "
        "Client SSL: false.")
    mode = mode_line(cfg)
    if mode is None:
        say(NOT_RUNNING)
        return 1
    say(mode)
    return 0


def cmd_version() -> int:
    say(version_text())
    return 0


def version_text() -> str:
    """As `zkServer.sh version` (VersionInfoMain): `Apache ZooKeeper, version <version> <build time>`."""
    return f"Apache ZooKeeper, version {FULL_VERSION} {built_on()}"


def cmd_print_cmd(inv: Invocation, cfg: ServerConfig) -> int:
    log_path = log_file_path(cfg, inv.environ)
    inv.log_file = log_path
    say(f"{shlex.join(inv.child_command())} > {shlex.quote(str(out_file_path(log_path)))} 2>&1 < /dev/null")
    return 0


def cmd_start_foreground(inv: Invocation, cfg: ServerConfig) -> int:
    if cfg.source == EMBEDDED_SOURCE:
        note("No configuration file given; using the embedded default:\n" + cfg.describe())
    try:
        from zkfast.server.main import serve  # imported late: the CLI works without the server
    except ImportError as e:
        note(f"zkfast: the server cannot be loaded: {e}")
        return 1
    truncate = None
    if getattr(inv.args, "truncate_log_at", None):
        name, _, offset = inv.args.truncate_log_at.rpartition(":")
        if not name or not offset.isdigit():
            note("zkfast: --truncate-log-at wants FILE:OFFSET, e.g. log.1f:4096")
            return EXIT_CONFIG_ERROR
        truncate = (Path(name).name, int(offset))
    return serve(cfg, truncate_log_at=truncate)


def _storage_dirs(cfg: ServerConfig) -> tuple[Path, Path]:
    return cfg.data_dir / "version-2", cfg.data_log_dir / "version-2"


def cmd_cleanup(inv: Invocation, cfg: ServerConfig) -> int:
    from zkfast.storage.tools import cleanup

    return cleanup(*_storage_dirs(cfg), inv.args.retain, say)


def cmd_import_zk(inv: Invocation, cfg: ServerConfig) -> int:
    from zkfast.storage.tools import import_zk

    src = Path(inv.args.target)
    return import_zk(src, src, *_storage_dirs(cfg), say)


def cmd_export_zk(inv: Invocation, cfg: ServerConfig) -> int:
    from zkfast.storage.tools import export_zk

    return export_zk(*_storage_dirs(cfg), Path(inv.args.target), say)


def cmd_log_dump(inv: Invocation) -> int:
    from zkfast.storage.tools import log_dump

    return log_dump(Path(inv.args.target), inv.args.json, say)


def cmd_snap_dump(inv: Invocation) -> int:
    from zkfast.storage.tools import snap_dump

    return snap_dump(Path(inv.args.target), inv.args.json, say, inv.args.data)


# ---------------------------------------------------------------------------------------------- main

_COMMANDS: dict[str, Callable[[Invocation, ServerConfig], int]] = {
    "start": cmd_start, "stop": cmd_stop, "restart": cmd_restart, "status": cmd_status,
    "print-cmd": cmd_print_cmd, "start-foreground": cmd_start_foreground, "cleanup": cmd_cleanup,
    "import-zk": cmd_import_zk, "export-zk": cmd_export_zk,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["shell"]:
        # zkCli.sh's single-dash options (-server, -timeout) are not argparse's: hand over as they are
        from zkfast.shell import main as shell_main

        return shell_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    env = os.environ if environ is None else environ
    try:
        inv = Invocation(args, env)
    except ValueError as e:
        parser.error(str(e))
    if inv.command == "version":
        return cmd_version()
    if inv.command in ("log-dump", "snap-dump"):
        setup_logging("WARNING", None)
        return cmd_log_dump(inv) if inv.command == "log-dump" else cmd_snap_dump(inv)
    # The server logs at the chosen level (to --log-file when `start` runs it); the other commands only
    # show config warnings.
    if inv.command == "start-foreground":
        log_file = getattr(args, "log_file", None)
        setup_logging(inv.log_level, Path(log_file) if log_file else None)
    else:
        setup_logging("WARNING", None)
    note(f"Using config: {inv.cfg_label()}")
    try:
        cfg = inv.load()
    except ConfigError as e:
        note(f"zkfast: {e}")
        return EXIT_CONFIG_ERROR
    try:
        return _COMMANDS[inv.command](inv, cfg)
    except KeyboardInterrupt:
        note("interrupted")
        return 128 + signal.SIGINT
