"""Start and stop real ZooKeeper servers (zkfast or Apache ZooKeeper 3.8) for tests and benchmarks.

Both kinds take the same zoo.cfg keys, listen on 127.0.0.x and a free port, and count as started
only once `srvr` answers with a `Mode:` line (Apache ZooKeeper answers `ruok` before it serves).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

APACHE_JARS = ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar",
               "netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-codec.jar",
               "netty-resolver.jar", "netty-transport.jar", "netty-transport-native-epoll.jar",
               "netty-transport-native-unix-common.jar")
JAVA_DIR = Path("/usr/share/java")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


_PORTS_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it), never one this process handed out
    before: the OS may offer a just-closed port again, and an ensemble's client, quorum and election
    ports are picked one after another before any server binds them."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port after 1000 tries")


def four_letter(host: str, port: int, cmd: str, timeout_s: float = 5.0) -> str:
    """Send a four-letter word and return the whole answer (the server closes after it)."""
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(cmd.encode("ascii"))
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def apache_available() -> bool:
    return (JAVA_DIR / "zookeeper.jar").exists() and shutil.which("java") is not None


def apache_classpath() -> str:
    jars = [str(JAVA_DIR / j) for j in APACHE_JARS if (JAVA_DIR / j).exists()]
    return ":".join(jars)


class ServerProcess:
    """One standalone server process with its own temporary dataDir and zoo.cfg."""

    kind = "abstract"

    def __init__(self, cfg: Mapping[str, str] | None = None, host: str = "127.0.0.1",
                 port: int | None = None, workdir: Path | None = None,
                 env: Mapping[str, str] | None = None, jvm_flags: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"zk-{self.kind}-"))
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cfg: dict[str, str] = {
            "tickTime": "2000",
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": host,
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
            "extendedTypesEnabled": "true",
        }
        self.cfg.update(cfg or {})
        self.env = dict(env or {})
        self.jvm_flags = jvm_flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.cfg_path = self.workdir / "zoo.cfg"
        self.log_path = self.workdir / "server.log"

    # -- what differs between kinds
    def command(self) -> list[str]:
        raise NotImplementedError

    # -- lifecycle
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def write_cfg(self) -> None:
        self.cfg_path.write_text("".join(f"{k}={v}\n" for k, v in self.cfg.items()))

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ServerProcess:
        self.launch()
        self.wait_serving(timeout_s)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to serve (an ensemble member needs its peers)."""
        self.write_cfg()
        env = dict(os.environ)
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=self.workdir, start_new_session=True)

    def wait_serving(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if "Mode:" in four_letter(self.host, self.port, "srvr", timeout_s=1.0):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.kind} on {self.address} did not serve within {timeout_s}s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, n_bytes: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n_bytes:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.kill9()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def four_letter(self, cmd: str) -> str:
        return four_letter(self.host, self.port, cmd)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


class ZkfastProcess(ServerProcess):
    """`python -m zkfast start-foreground zoo.cfg`, the way an operator runs it."""

    kind = "zkfast"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "zkfast", "start-foreground", str(self.cfg_path)]


class ApacheZkProcess(ServerProcess):
    """Debian's Apache ZooKeeper 3.8.0, started as zkServer.sh starts it."""

    kind = "apache"

    def command(self) -> list[str]:
        return ["java", "-cp", apache_classpath(), *self.jvm_flags,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.cfg_path)]
