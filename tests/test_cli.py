"""The zkfast command line: zkServer.sh's commands, outputs, pid file and exit codes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbase.process import free_port

from zkfast import cli
from zkfast.config import ServerConfig

REPO = Path(__file__).resolve().parent.parent
NOT_RUNNING = "Error contacting service. It is probably not running.\n"



def needs_server(fn):  # type: ignore[no-untyped-def]
    """Tests that run the real server (kept as a marker-like name for readability)."""
    return fn


# --------------------------------------------------------------------------------------------- helpers

def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a zkfast subprocess: no inherited JVM flags or ZOO_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZOO") and k not in ("JVMFLAGS", "SERVER_JVMFLAGS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["HOME"] = str(tmp_path / "home")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env.update(extra)
    return env


def run_cli(tmp_path: Path, *args: str, timeout_s: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zkfast", *args], capture_output=True, text=True,
                          env=clean_env(tmp_path, **env), cwd=tmp_path, timeout=timeout_s)


def write_cfg(tmp_path: Path, port: int | None = None, extra: str = "", address: str | None = "127.0.0.1") -> Path:
    data = tmp_path / "data"
    lines = [f"dataDir={data}", "tickTime=2000", "admin.enableServer=false", "4lw.commands.whitelist=*"]
    if port is not None:
        lines.append(f"clientPort={port}")
        if address is not None:
            lines.append(f"clientPortAddress={address}")
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("\n".join(lines) + "\n" + extra)
    return cfg


def pid_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "zookeeper_server.pid"


def write_pid_file(tmp_path: Path, content: object) -> None:
    pid_file(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    pid_file(tmp_path).write_text(str(content))


DUMMY = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def spawn_dummy(mode: str, name: str = "zkfast-dummy") -> subprocess.Popen[str]:
    """A process whose command line says `name`; with mode "ignore" it ignores SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-c", DUMMY, mode, name], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; whatever still runs at the end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def kill_pid(pid: int) -> None:
    """SIGKILL one process a test started; pid 0 or less (no pid known) is ignored, never a group."""
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class FakeSrvr:
    """A TCP server answering every connection with a srvr-like text, like a running ZooKeeper."""

    def __init__(self, port: int, answer: str = "Zookeeper version: 3.8.0\nMode: standalone\nNode count: 5\n"):
        self.sock = socket.create_server(("127.0.0.1", port))
        self.answer = answer.encode()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------- version, usage, errors

def test_version_prints_what_zkserver_sh_version_prints(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "version")
    assert result.returncode == 0
    assert re.fullmatch(r"Apache ZooKeeper, version 3\.8\.0-zkfast-\S+ \d{4}-\d\d-\d\d \d\d:\d\d UTC\n",
                        result.stdout)


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "bogus")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_a_config_error_is_one_line_on_stderr_and_exit_code_2(tmp_path: Path) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path}\ntickTime=abc\nclientPort=2181\n")
    for command in ("start-foreground", "start", "status", "stop"):
        result = run_cli(tmp_path, command, str(cfg))
        assert result.returncode == 2, command
        assert result.stdout == ""
        assert result.stderr == (f"Using config: {cfg}\n"
                                 f"zkfast: {cfg}:2: tickTime: must be an integer, got 'abc'\n")


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "status", str(tmp_path / "nope.cfg"))
    assert result.returncode == 2
    assert f"zkfast: {tmp_path / 'nope.cfg'}:0: config file: cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_warnings_are_shown(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, free_port(), extra="tickTme=5\n")
    result = run_cli(tmp_path, "status", str(cfg))
    assert "tickTme: unknown setting, ignored (did you mean tickTime?)" in result.stderr


# ------------------------------------------------------------------------------------------------ status

def test_status_with_nothing_running(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli(tmp_path, "status", str(write_cfg(tmp_path, port)))
    assert result.returncode == 1
    assert result.stdout == (f"Client port found: {port}. Client address: 127.0.0.1. Client SSL: false.\n"
                             + NOT_RUNNING)


def test_status_prints_the_servers_mode(tmp_path: Path) -> None:
    port = free_port()
    fake = FakeSrvr(port)
    try:
        result = run_cli(tmp_path, "status", str(write_cfg(tmp_path, port, address=None)))
    finally:
        fake.close()
    assert result.returncode == 0
    assert result.stdout == (f"Client port found: {port}. Client address: localhost. Client SSL: false.\n"
                             "Mode: standalone\n")


def test_status_of_a_server_that_does_not_serve(tmp_path: Path) -> None:
    port = free_port()
    fake = FakeSrvr(port, "This ZooKeeper instance is not currently serving requests\n")
    try:
        result = run_cli(tmp_path, "status", str(write_cfg(tmp_path, port)))
    finally:
        fake.close()
    assert result.returncode == 1 and result.stdout.endswith(NOT_RUNNING)


def test_status_without_any_client_port(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("1\n")
    cfg = write_cfg(tmp_path, None, extra="initLimit=5\nsyncLimit=2\nserver.1=a:1:2\nserver.2=b:1:2\n")
    result = run_cli(tmp_path, "status", str(cfg))
    assert result.returncode == 1
    assert result.stdout == "Unable to find either secure or unsecure client port in any configs. Terminating.\n"


def test_status_finds_the_client_port_in_this_servers_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("2\n")
    port = free_port()
    cfg = write_cfg(tmp_path, None, extra=f"initLimit=5\nsyncLimit=2\nserver.1=a:1:2\n"
                                          f"server.2=127.0.0.1:3:4;127.0.0.1:{port}\n")
    result = run_cli(tmp_path, "status", str(cfg))
    assert result.stdout.startswith(f"Client port found: {port}. Client address: 127.0.0.1. Client SSL: false.")


def test_config_dir_option_and_zoocfgdir(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    port = free_port()
    (conf / "zoo.cfg").write_text(f"dataDir={tmp_path / 'data'}\nclientPort={port}\n")
    (conf / "other.cfg").write_text(f"dataDir={tmp_path / 'data'}\nclientPort={port + 1}\n")
    result = run_cli(tmp_path, "--config", str(conf), "status")
    assert result.stderr.startswith(f"Using config: {conf / 'zoo.cfg'}\n")
    assert f"Client port found: {port}." in result.stdout
    result = run_cli(tmp_path, "--config", str(conf), "status", "other.cfg")
    assert f"Client port found: {port + 1}." in result.stdout
    result = run_cli(tmp_path, "status", "other.cfg", ZOOCFGDIR=str(conf))
    assert f"Client port found: {port + 1}." in result.stdout


def test_without_cfg_the_embedded_default_is_used(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "stop")
    assert result.stderr.startswith("Using config: <embedded default>\n")
    expected_pid = tmp_path / "xdg" / "zkfast" / "zookeeper_server.pid"
    assert result.stdout == f"Stopping zookeeper ... no zookeeper to stop (could not find file {expected_pid})\n"


# -------------------------------------------------------------------------------------------------- stop

def test_stop_without_a_pid_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "stop", str(write_cfg(tmp_path, free_port())))
    assert result.returncode == 0
    assert result.stdout == ("Stopping zookeeper ... no zookeeper to stop (could not find file "
                             f"{pid_file(tmp_path)})\n")


def test_stop_with_a_stale_pid_file_removes_it(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, free_port())
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_pid_file(tmp_path, gone.pid)
    result = run_cli(tmp_path, "stop", str(cfg))
    assert result.returncode == 0
    assert result.stdout == (f"Stopping zookeeper ... no zookeeper to stop ({pid_file(tmp_path)} names process "
                             f"{gone.pid}, which is not running; removed it)\n")
    assert not pid_file(tmp_path).exists()


def test_stop_with_a_garbage_pid_file(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, free_port())
    write_pid_file(tmp_path, "not a pid")
    result = run_cli(tmp_path, "stop", str(cfg))
    assert result.returncode == 0 and "holds no process id; removed it" in result.stdout
    assert not pid_file(tmp_path).exists()


def test_stop_leaves_an_unrelated_process_alone(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    """The pid of a long-dead server may belong to another program by now."""
    cfg = write_cfg(tmp_path, free_port())
    other = subprocess.Popen(["sleep", "60"], text=True)
    processes.append(other)
    write_pid_file(tmp_path, other.pid)
    result = run_cli(tmp_path, "stop", str(cfg))
    assert result.returncode == 0 and "which is not a ZooKeeper server; removed it" in result.stdout
    assert other.poll() is None
    assert not pid_file(tmp_path).exists()


def test_stop_sends_sigterm(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    cfg = write_cfg(tmp_path, free_port())
    server = spawn_dummy("exit")
    processes.append(server)
    write_pid_file(tmp_path, server.pid)
    result = run_cli(tmp_path, "stop", str(cfg))
    assert result.returncode == 0
    assert result.stdout == "Stopping zookeeper ... STOPPED\n"
    assert server.wait(5) == -signal.SIGTERM
    assert not pid_file(tmp_path).exists()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    cfg = write_cfg(tmp_path, free_port())
    server = spawn_dummy("ignore")
    processes.append(server)
    write_pid_file(tmp_path, server.pid)
    started = time.monotonic()
    result = run_cli(tmp_path, "stop", "--stop-timeout", "1", str(cfg))
    assert time.monotonic() - started < 15
    assert result.returncode == 0
    assert result.stdout == "Stopping zookeeper ... STOPPED\n"
    assert f"process {server.pid} did not stop within 1 s of SIGTERM; sending SIGKILL" in result.stderr
    assert server.wait(5) == -signal.SIGKILL
    assert not pid_file(tmp_path).exists()


def test_zoopidfile_moves_the_pid_file(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    cfg = write_cfg(tmp_path, free_port())
    server = spawn_dummy("exit")
    processes.append(server)
    elsewhere = tmp_path / "run" / "zk.pid"
    elsewhere.parent.mkdir()
    elsewhere.write_text(str(server.pid))
    result = run_cli(tmp_path, "stop", str(cfg), ZOOPIDFILE=str(elsewhere))
    assert result.stdout == "Stopping zookeeper ... STOPPED\n" and not elsewhere.exists()


# ------------------------------------------------------------------------------------------------- start

def test_start_refuses_when_the_pid_file_names_a_running_server(tmp_path: Path,
                                                               processes: list[subprocess.Popen[str]]) -> None:
    cfg = write_cfg(tmp_path, free_port())
    server = spawn_dummy("exit")
    processes.append(server)
    write_pid_file(tmp_path, server.pid)
    result = run_cli(tmp_path, "start", str(cfg))
    assert result.returncode == 1
    assert result.stdout == f"Starting zookeeper ... already running as process {server.pid}.\n"
    assert server.poll() is None


def test_start_needs_the_data_dir_when_autocreate_is_off(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, free_port())
    result = run_cli(tmp_path, "start", str(cfg), ZOO_DATADIR_AUTOCREATE_DISABLE="1")
    assert result.returncode == 1
    assert result.stdout == (f"Starting zookeeper ... ZooKeeper data directory is missing at {tmp_path / 'data'} "
                             "fix the path or run initialize\n")


FAKE_SERVER = """
import signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("fake server starting", flush=True)
time.sleep(float(sys.argv[3]))
if sys.argv[2] == "exit":
    print("boom: cannot start", flush=True)
    sys.exit(3)
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = srv.accept()
    with conn:
        conn.recv(4)
        if sys.argv[2] == "serve":
            conn.sendall(b"Zookeeper version: 3.8.0\\nMode: standalone\\n")
"""


def start_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cfg: Path,
                     port: int, behaviour: str, delay_s: float = 0.3, extra_args: tuple[str, ...] = (),
                     env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`zkfast start CFG` with a fake server (`serve`, `mute` or `exit` after delay_s) as the child."""
    command = [sys.executable, "-c", FAKE_SERVER, str(port), behaviour, str(delay_s), "zkfast-fake"]
    monkeypatch.setattr(cli.Invocation, "child_command", lambda self: command)
    rc = cli.main(["start", *extra_args, str(cfg)], env if env is not None else {})
    out, err = capsys.readouterr()
    return rc, out, err


def test_start_says_started_once_the_server_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    rc, out, _ = start_in_process(monkeypatch, capsys, write_cfg(tmp_path, port), port, "serve")
    pid = int(pid_file(tmp_path).read_text())
    try:
        assert rc == 0 and out == "Starting zookeeper ... STARTED\n"
        assert pid_file(tmp_path).read_text() == str(pid)  # no newline, as `echo -n`
        assert cli.four_letter_word("127.0.0.1", port, "srvr").endswith("Mode: standalone\n")
        assert "fake server starting" in (tmp_path / "data" / "zkfast.out").read_text()
        assert cli.main(["stop", str(tmp_path / "zoo.cfg")], {}) == 0
        assert capsys.readouterr().out == "Stopping zookeeper ... STOPPED\n"
        assert not cli.process_alive(pid)
    finally:
        kill_pid(pid)


def test_start_reports_a_server_that_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    rc, out, err = start_in_process(monkeypatch, capsys, write_cfg(tmp_path, port), port, "exit")
    assert rc == 1 and out == "Starting zookeeper ... FAILED TO START\n"
    assert "zkfast exited with code 3" in err and "boom: cannot start" in err
    assert not pid_file(tmp_path).exists()


def test_start_gives_up_waiting_but_leaves_the_server_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    rc, out, err = start_in_process(monkeypatch, capsys, write_cfg(tmp_path, port), port, "mute",
                                    extra_args=("--start-timeout", "1"))
    pid = int(pid_file(tmp_path).read_text())
    try:
        assert rc == 1 and out == "Starting zookeeper ... FAILED TO START\n"
        assert f"process {pid} is running but did not answer srvr on 127.0.0.1:{port} within 1 s" in err
        assert cli.process_alive(pid)
    finally:
        kill_pid(pid)


def test_start_writes_its_log_to_zoo_log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    env = {"ZOO_LOG_DIR": str(tmp_path / "logs"), "ZOO_LOG_FILE": "zk.log"}
    rc, _, _ = start_in_process(monkeypatch, capsys, write_cfg(tmp_path, port), port, "exit", delay_s=0, env=env)
    assert rc == 1
    assert "boom" in (tmp_path / "logs" / "zk.out").read_text()


def test_start_replaces_a_stale_pid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    cfg = write_cfg(tmp_path, port)
    write_pid_file(tmp_path, "999999999")
    rc, out, _ = start_in_process(monkeypatch, capsys, cfg, port, "serve", delay_s=0)
    pid = int(pid_file(tmp_path).read_text())
    kill_pid(pid)
    assert rc == 0 and out == "Starting zookeeper ... STARTED\n" and pid != 999999999


def test_print_cmd_passes_properties_and_the_config(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, free_port())
    for args in (["-D", "zookeeper.snapCount=5", "print-cmd", str(cfg)],
                 ["print-cmd", "-Dzookeeper.snapCount=5", str(cfg)]):
        result = run_cli(tmp_path, *args)
        assert result.returncode == 0
        assert result.stdout.endswith(
            f" -m zkfast -Dzookeeper.snapCount=5 --log-level INFO start-foreground --log-file "
            f"{tmp_path / 'data' / 'zkfast.log'} {cfg} > {tmp_path / 'data' / 'zkfast.out'} 2>&1 < /dev/null\n")


def test_properties_from_the_command_line_reach_the_config(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["-Dzookeeper.snapCount=5", "-D", "jute.maxbuffer=7", "status",
                                          "-Dzookeeper.forceSync=no", "-Dflag", str(write_cfg(tmp_path, 1))])
    invocation = cli.Invocation(args, {})
    assert invocation.properties == {"zookeeper.snapCount": "5", "jute.maxbuffer": "7",
                                     "zookeeper.forceSync": "no", "flag": ""}
    cfg = invocation.load()
    assert (cfg.snap_count, cfg.jute_max_buffer_bytes, cfg.force_sync) == (5, 7, False)


def test_start_foreground_hands_the_config_to_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[ServerConfig] = []
    fake = types.ModuleType("zkfast.server.main")
    fake.serve = lambda config, truncate_log_at=None: seen.append(config) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zkfast.server.main", fake)
    cfg = write_cfg(tmp_path, 2181)
    assert cli.main(["-Dzookeeper.snapCount=9", "start-foreground", str(cfg)], {}) == 7
    assert seen[0].source == str(cfg) and seen[0].snap_count == 9
    assert "embedded default" not in capsys.readouterr().err


def test_start_foreground_prints_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake = types.ModuleType("zkfast.server.main")
    fake.serve = lambda config, truncate_log_at=None: 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zkfast.server.main", fake)
    assert cli.main(["start-foreground"], {"XDG_DATA_HOME": str(tmp_path)}) == 0
    err = capsys.readouterr().err
    assert "using the embedded default" in err
    assert f"dataDir={tmp_path / 'zkfast'}\n" in err and "clientPortAddress=127.0.0.1\n" in err


# -------------------------------------------------------------------------------- with the real server

def server_cfg(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    return write_cfg(tmp_path, port), port


def read_pid_or_zero(tmp_path: Path) -> int:
    return cli.read_pid(pid_file(tmp_path)) or 0


@pytest.fixture
def server_pids(tmp_path: Path) -> Iterator[list[int]]:
    """Pids of servers a test started in the background; at the end they (and the pid file's) are killed."""
    pids: list[int] = []
    yield pids
    for pid in [*pids, read_pid_or_zero(tmp_path)]:
        kill_pid(pid)


def start_real(tmp_path: Path, cfg: Path, pids: list[int]) -> subprocess.CompletedProcess[str]:
    result = run_cli(tmp_path, "start", "--start-timeout", "30", str(cfg))
    pids.append(read_pid_or_zero(tmp_path))
    return result


@needs_server
def test_start_status_stop_with_the_real_server(tmp_path: Path, server_pids: list[int]) -> None:
    cfg, port = server_cfg(tmp_path)
    result = start_real(tmp_path, cfg, server_pids)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Starting zookeeper ... STARTED\n"
    pid = server_pids[0]
    status = run_cli(tmp_path, "status", str(cfg))
    assert status.returncode == 0
    assert status.stdout == (f"Client port found: {port}. Client address: 127.0.0.1. Client SSL: false.\n"
                             "Mode: standalone\n")
    again = run_cli(tmp_path, "start", str(cfg))
    assert again.returncode == 1 and again.stdout.endswith(f"already running as process {pid}.\n")
    stop = run_cli(tmp_path, "stop", str(cfg))
    assert stop.returncode == 0 and stop.stdout == "Stopping zookeeper ... STOPPED\n"
    assert "SIGKILL" not in stop.stderr  # it stopped on SIGTERM
    assert not cli.process_alive(pid) and not pid_file(tmp_path).exists()
    assert run_cli(tmp_path, "status", str(cfg)).returncode == 1


@needs_server
def test_start_from_a_source_checkout_runs_the_installed_server(tmp_path: Path, server_pids: list[int]) -> None:
    """README's first command runs `zkfast start` in the repository, whose `zkfast/` has no compiled
    modules: the server it starts in the background must still be the installed one."""
    shadow = tmp_path / "zkfast"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the source tree, not the installed zkfast')\n")
    cfg, _ = server_cfg(tmp_path)
    def installed_cli(*args: str) -> subprocess.CompletedProcess[str]:
        # in tmp_path, as a console script runs: the installed zkfast, whatever the directory holds
        return subprocess.run([sys.executable, "-P", "-m", "zkfast", *args], capture_output=True, text=True,
                              env=clean_env(tmp_path), cwd=tmp_path, timeout=60)

    result = installed_cli("start", "--start-timeout", "30", str(cfg))
    server_pids.append(read_pid_or_zero(tmp_path))
    assert result.returncode == 0 and result.stdout == "Starting zookeeper ... STARTED\n", result
    assert installed_cli("stop", str(cfg)).returncode == 0


@needs_server
def test_restart_with_the_real_server(tmp_path: Path, server_pids: list[int]) -> None:
    cfg, _ = server_cfg(tmp_path)
    assert start_real(tmp_path, cfg, server_pids).returncode == 0
    result = run_cli(tmp_path, "restart", "--start-timeout", "30", str(cfg))
    server_pids.append(read_pid_or_zero(tmp_path))
    first, second = server_pids
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Stopping zookeeper ... STOPPED\nStarting zookeeper ... STARTED\n"
    assert second != first and not cli.process_alive(first)
    assert run_cli(tmp_path, "status", str(cfg)).returncode == 0
    assert run_cli(tmp_path, "stop", str(cfg)).returncode == 0


@needs_server
def test_stop_kills_a_real_server_that_does_not_answer_sigterm(tmp_path: Path, server_pids: list[int]) -> None:
    cfg, _ = server_cfg(tmp_path)
    assert start_real(tmp_path, cfg, server_pids).returncode == 0
    pid = server_pids[0]
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM; SIGKILL still works
    result = run_cli(tmp_path, "stop", "--stop-timeout", "1", str(cfg))
    assert result.returncode == 0 and result.stdout == "Stopping zookeeper ... STOPPED\n"
    assert "sending SIGKILL" in result.stderr
    assert not cli.process_alive(pid)


@needs_server
def test_start_foreground_exits_0_on_sigterm(tmp_path: Path) -> None:
    cfg, port = server_cfg(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "zkfast", "start-foreground", str(cfg)],
                            env=clean_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        loaded = ServerConfig(data_dir=tmp_path, data_log_dir=tmp_path, client_port=port,
                              client_port_address="127.0.0.1")
        assert cli.wait_for(lambda: cli.mode_line(loaded) is not None or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
