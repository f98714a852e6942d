"""ZkServer: one real ZooKeeper server process (zkfast, or Apache ZooKeeper 3.8) for a test."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from zkfast.testing.kinds import launcher_for
from zkfast.testing.lifecycle import Started
from zkfast.testing.ports import check_loopback, free_port
from zkfast.testing.reaper import ProcessGroup, track
from zkfast.testing.words import four_letter, mode_of, setting_of

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from zkfast.testing.proxy import TcpProxy

# 500 ms: sessions of 1 s to 10 s (2 and 20 ticks), kazoo's default 10 s session fits
DEFAULT_TICK_TIME_MS = 500
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
CLIENT_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.01
PROBE_TIMEOUT_S = 1.0
# picking another port when the one picked was taken meanwhile (only before the server first served)
PORT_ATTEMPTS = 3
SUPER_USER = "super"
SUPER_DIGEST_PROPERTY = "zookeeper.DigestAuthenticationProvider.superDigest"
BIND_FAILURE = "address already in use"  # zkfast's and Java's BindException message, any case
LOG_TAIL_BYTES = 4000


class ServerExited(RuntimeError):
    """The server process exited before it served."""


def _text(value: object) -> str:
    """A zoo.cfg or -D value: booleans as Java writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def digest(user: str, password: str) -> str:
    """`user:base64(sha1(user:password))`, the id ZooKeeper's digest scheme stores (superDigest's form)."""
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode()}"


class ZkServer(Started):
    """A real ZooKeeper server process on 127.0.0.x, for a test.

    `kind="zkfast"` runs `python -m zkfast start-foreground zoo.cfg`; `kind="apache"` runs Apache
    ZooKeeper 3.8's QuorumPeerMain on `java` (Debian's package, or the release at `zookeeper_path`).
    Both get the same zoo.cfg: `tickTime`, `dataDir`, `clientPort`, `clientPortAddress`, every
    four-letter word allowed, no AdminServer, then `config` on top. `jvm_flags` are Java system
    properties (`{"zookeeper.snapCount": 1000}`), given as `-Dkey=value` to either kind.

    The port is free when picked (or the one given). A server counts as started once `srvr` shows a
    `Mode:` line and `conf` shows this server's dataDir (so a server that another process started on the
    same port meanwhile is never taken for this one); if the port was taken, another is picked.

    Without `workdir`, zoo.cfg, the log and the dataDir live in a temporary directory that `close()`
    removes (unless `keep_data`); a `data_dir` that is given is never removed. Every process is killed
    and every temporary directory removed at the latest when the test process exits, including on
    SIGTERM and SIGHUP.
    """

    def __init__(self, port: int | None = None, data_dir: Path | str | None = None, *, kind: str = "zkfast",
                 host: str = "127.0.0.1", tick_time_ms: int = DEFAULT_TICK_TIME_MS,
                 config: Mapping[str, object] | None = None, jvm_flags: Mapping[str, object] | None = None,
                 workdir: Path | str | None = None, server_id: int | None = None,
                 env: Mapping[str, str] | None = None, python: str | None = None,
                 zookeeper_path: Path | str | None = None, super_password: str | None = None,
                 keep_data: bool = False, start_timeout_s: float = START_TIMEOUT_S,
                 stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        """`env`: the server's whole environment (default: this process's). `python`: the interpreter
        that runs zkfast (default: this one). `server_id`: written to dataDir/myid (ensemble members).
        `super_password`: a `super` digest user with this password (see `super_auth`)."""
        self.kind = kind
        self.launcher = launcher_for(kind, python=python, zookeeper_path=zookeeper_path)
        self.host = check_loopback(host)
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port(host)
        self._group = ProcessGroup()
        self._group.keep_dirs = keep_data
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"zk-{kind}-"))
        self.owns_workdir = workdir is None
        self._finalizer = track(self, self._group)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cfg_path = self.workdir / "zoo.cfg"
        self.log_path = self.workdir / "server.log"
        self.server_id = server_id
        self.env = dict(env) if env is not None else None
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.config: dict[str, str] = {
            "tickTime": str(tick_time_ms),
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": host,
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
        }
        self.config.update({key: _text(value) for key, value in (config or {}).items()})
        self.system_properties: dict[str, str] = {key: _text(v) for key, v in (jvm_flags or {}).items()}
        self.super_password = super_password
        if super_password is not None:
            self.system_properties.setdefault(SUPER_DIGEST_PROPERTY, digest(SUPER_USER, super_password))
        self.paused = False
        self._log_offset = 0
        self._proxies: list[TcpProxy] = []
        self._closed = False

    # ------------------------------------------------------------------------------ what it is

    @property
    def connect_string(self) -> str:
        """`host:port`, what a client is given."""
        return f"{self.host}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._group.process

    @process.setter
    def process(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._group.process = proc

    @property
    def owns_workdir(self) -> bool:
        """Whether close() removes the working directory (it does for a temporary one it made; a
        server taking over another's directory may take this over too)."""
        return self.workdir in self._group.temp_dirs

    @owns_workdir.setter
    def owns_workdir(self, owns: bool) -> None:
        if owns and not self.owns_workdir:
            self._group.temp_dirs.append(self.workdir)
        elif not owns and self.owns_workdir:
            self._group.temp_dirs.remove(self.workdir)

    @property
    def pid(self) -> int | None:
        proc = self.process
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """The process is alive (it may not serve yet, or be paused)."""
        return self.pid is not None

    @property
    def mode(self) -> str | None:
        """`srvr`'s Mode (standalone, leader, follower, observer, read-only), None when not serving."""
        try:
            return mode_of(self.four_letter("srvr", timeout_s=PROBE_TIMEOUT_S))
        except OSError:
            return None

    @property
    def super_auth(self) -> tuple[str, str]:
        """kazoo's `auth_data` entry of the super user (with `super_password`)."""
        if self.super_password is None:
            raise ValueError("this server has no super user: give ZkServer(super_password=...)")
        return ("digest", f"{SUPER_USER}:{self.super_password}")

    def command(self) -> list[str]:
        """The command line that runs the server (a subclass may wrap or replace it)."""
        return self.launcher.command(self.cfg_path, self.system_properties)

    def four_letter(self, word: str, timeout_s: float = 5.0) -> str:
        return four_letter(self.host, self.port, word, timeout_s)

    def log_text(self, since_start: bool = False) -> str:
        """The server's output (all of it, or since the latest start)."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n_bytes: int = LOG_TAIL_BYTES) -> str:
        return self.log_text()[-n_bytes:]

    def __repr__(self) -> str:
        return f"ZkServer(kind={self.kind!r}, {self.connect_string}, pid={self.pid})"

    # ------------------------------------------------------------------------------ life cycle

    def write_config(self) -> None:
        self.cfg_path.write_text("".join(f"{key}={value}\n" for key, value in self.config.items()))
        if self.server_id is not None:
            (Path(self.config["dataDir"]) / "myid").write_text(f"{self.server_id}\n")

    def start(self, timeout_s: float | None = None, *, wait: bool = True) -> Self:
        """Start the process (nothing if it runs) and, with `wait`, return once it serves. On a
        failure the process is killed and ServerExited or TimeoutError says why, with the log's tail."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self.running:
            if wait:
                self.wait_serving(timeout_s)
            return self
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._launch()
            if not wait:
                return self
            try:
                self.wait_serving(timeout_s)
                return self
            except ServerExited:
                if self._port_fixed or attempt == PORT_ATTEMPTS or BIND_FAILURE not in self.log_text(True).lower():
                    raise
                self._pick_port()
            except BaseException:
                self.kill()
                raise
        raise AssertionError("unreachable")

    def _pick_port(self) -> None:
        self.port = free_port(self.host)
        self.config["clientPort"] = str(self.port)

    def _launch(self) -> None:
        self.write_config()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, cwd=self.workdir,
                                            start_new_session=True)
        self.paused = False

    def wait_serving(self, timeout_s: float | None = None) -> str:
        """Wait until this server serves; its Mode. ServerExited if the process exits first,
        TimeoutError after `timeout_s` (default: the start time-out)."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            mode = self.serving_mode()
            if mode is not None:
                return mode
            if time.monotonic() >= deadline:
                raise self.not_serving(timeout_s)
            time.sleep(POLL_INTERVAL_S)

    def serving_mode(self) -> str | None:
        """One look: the Mode once this server serves, else None; ServerExited if its process has exited
        (what wait_serving polls; a cluster polls its members with it)."""
        proc = self.process
        if proc is not None and proc.poll() is not None:
            raise ServerExited(f"{self.kind} server on {self.connect_string} exited with {proc.returncode} "
                               f"before serving:\n{self.log_text(True)[-LOG_TAIL_BYTES:]}")
        mode = self.mode
        if mode is not None and self._answers_for_itself():
            self._port_fixed = True
            return mode
        return None

    def not_serving(self, timeout_s: float) -> TimeoutError:
        return TimeoutError(f"{self.kind} server on {self.connect_string} did not serve within "
                            f"{timeout_s:g} s:\n{self.log_text(True)[-LOG_TAIL_BYTES:]}")

    def _answers_for_itself(self) -> bool:
        """Whether the server answering on our port is this one: its `conf` shows our dataDir (as
        dataDir/version-2). True when conf is not allowed (nothing to tell them apart by)."""
        try:
            shown = setting_of(self.four_letter("conf", timeout_s=PROBE_TIMEOUT_S), "dataDir")
        except OSError:
            return False
        if shown is None:
            return True
        # both are relative to the server's working directory when relative
        ours = (self.workdir / self.config["dataDir"]).resolve()
        return (self.workdir / shown).resolve() in (ours, ours / "version-2")

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s` (default: the stop time-out); the exit code, None if
        it was not running. Data stays."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            if self.paused:
                self.resume()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self._group.kill()
        self.process = None
        self.paused = False
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash (nothing flushed, no goodbye to clients or peers). Data stays."""
        self._group.kill()
        self.paused = False

    def restart(self, timeout_s: float | None = None) -> Self:
        """Stop, then start again on the same port and dataDir."""
        self.stop()
        return self.start(timeout_s)

    def pause(self) -> None:
        """SIGSTOP: the process stays, answers nothing (a long GC pause, a frozen VM)."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, signum: int) -> None:
        if self.pid is None:
            raise RuntimeError(f"{self!r} is not running")
        os.killpg(self.pid, signum)

    def close(self) -> None:
        """Stop the server, close its proxies and remove its temporary directory (unless keep_data)."""
        for proxy in self._proxies:
            proxy.close()
        self._proxies.clear()
        self.stop()
        self._closed = True
        self._finalizer()

    # ------------------------------------------------------------------------------ for tests

    def client(self, timeout_s: float = CLIENT_TIMEOUT_S, **kwargs: Any) -> KazooClient:
        """A started kazoo client of this server (KazooClient's keyword arguments); stop and close it."""
        from kazoo.client import KazooClient

        client = KazooClient(hosts=self.connect_string, **kwargs)
        try:
            client.start(timeout=timeout_s)
        except BaseException:
            client.close()
            raise
        return client

    def reset(self, timeout_s: float = CLIENT_TIMEOUT_S) -> None:
        """Delete every znode but /zookeeper (as the super user when there is one, so ACLs cannot stop it)."""
        auth = [self.super_auth] if self.super_password is not None else []
        client = self.client(timeout_s, auth_data=auth)
        try:
            for child in client.get_children("/"):
                if child != "zookeeper":
                    client.delete(f"/{child}", recursive=True)
        finally:
            client.stop()
            client.close()

    def proxy(self) -> TcpProxy:
        """A started TCP proxy in front of this server (closed with it): a client connected through it
        can lose its connection without losing its session (`TcpProxy.drop_connections`)."""
        from zkfast.testing.proxy import TcpProxy

        proxy = TcpProxy(self.host, self.port).start()
        self._proxies.append(proxy)
        return proxy
