"""Server processes and environment probes shared by the fault tests."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from testbase.process import ZkfastProcess

from fault.planted_server import command as planted_command

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(problem: str | None, what: str) -> None:
    """Skip outside CI, fail in CI (a fault test that skips there counts as failed)."""
    if problem is None:
        return
    msg = f"{what}: {problem}"
    if IN_CI:
        pytest.fail(f"{msg} (CI=true: fault tests must not skip)", pytrace=False)
    pytest.skip(msg)


def is_root() -> str | None:
    return None if os.geteuid() == 0 else "needs root"


class FaultServer(ZkfastProcess):
    """A zkfast process whose dataDir (and dataLogDir) may live elsewhere, restartable after kill -9;
    with `planted_bug`, started through tests/fault/planted_server.py with that bug in its txn log."""

    def __init__(self, data_dir: Path | None = None, data_log_dir: Path | None = None,
                 cfg: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
                 workdir: Path | None = None, planted_bug: str | None = None) -> None:
        merged = {"tickTime": "2000", "snapCount": "100000", "preAllocSize": "1024"}
        merged.update(cfg or {})
        super().__init__(cfg=merged, env=env, workdir=workdir)
        if data_dir is not None:
            self.data_dir = data_dir
            self.cfg["dataDir"] = str(data_dir)
        if data_log_dir is not None:
            self.cfg["dataLogDir"] = str(data_log_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_offset_at_start = 0
        self.extra_args: tuple[str, ...] = ()  # appended to the command line (e.g. --truncate-log-at)
        self.planted_bug = planted_bug
        # called if SIGKILL does not end the process in time: it may be waiting on a frozen crashfs
        self.on_stuck: Callable[[], None] | None = None

    def command(self) -> list[str]:
        if self.planted_bug is None:
            return [*super().command(), *self.extra_args]
        return planted_command(self.planted_bug, "start-foreground", str(self.cfg_path), *self.extra_args)

    def start(self, timeout_s: float = 60.0) -> FaultServer:
        try:
            self.log_offset_at_start = self.log_path.stat().st_size
        except OSError:
            self.log_offset_at_start = 0
        self.starts += 1
        super().start(timeout_s)
        return self

    def kill9(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                if self.on_stuck is not None:
                    self.on_stuck()
                proc.wait(30)
        self.proc = None

    def log_since_start(self) -> str:
        """The server log written since the latest start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset_at_start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def run_to_exit(self, extra_args: tuple[str, ...] = (), timeout_s: float = 60.0) -> tuple[int | None, str]:
        """Start it expecting it to stop by itself (a refused start-up): exit code and the log it wrote."""
        self.write_cfg()
        try:
            self.log_offset_at_start = self.log_path.stat().st_size
        except OSError:
            self.log_offset_at_start = 0
        env = dict(os.environ)
        env.update(self.env)
        with open(self.log_path, "ab") as logf:
            proc = subprocess.Popen([*self.command(), *extra_args], stdout=logf, stderr=subprocess.STDOUT,
                                    env=env, cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return None, self.log_since_start()
            try:
                if "Mode:" in self.four_letter("srvr"):
                    # it serves: hand it to the normal life cycle
                    self.proc = proc
                    return None, self.log_since_start()
            except OSError:
                pass
            time.sleep(0.05)
        return proc.returncode, self.log_since_start()

    def last_zxid(self) -> int:
        m = re.search(r"Zxid: 0x([0-9a-f]+)", self.four_letter("srvr"))
        assert m is not None
        return int(m.group(1), 16)

    def snapshot_lines(self) -> tuple[int, int]:
        """(snapshots started, snapshots finished) since the latest start."""
        text = self.log_since_start()
        return text.count("snapshotting: 0x"), len(re.findall(r"snapshot 0x[0-9a-f]+ taken", text))


@contextlib.contextmanager
def fault_server(**kwargs: object) -> Iterator[FaultServer]:
    srv = FaultServer(**kwargs)  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        srv.kill9()
        srv.cleanup()


@contextlib.contextmanager
def tmp_dir(prefix: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def version2(data_dir: Path) -> Path:
    return data_dir / "version-2"
