"""Nothing a test starts outlives it: server processes, their temporary directories and iptables rules
are released when their owner is closed, garbage-collected, at interpreter exit, or when the test
process gets SIGTERM or SIGHUP (a CI runner's time-out, a closed terminal).

SIGINT needs nothing here: it raises KeyboardInterrupt, and the interpreter's exit runs the finalizers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import weakref
from pathlib import Path
from types import FrameType
from typing import Protocol

KILL_WAIT_S = 10.0
REAPED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Releasable(Protocol):
    def release(self) -> None: ...


_live: dict[int, Releasable] = {}
_lock = threading.RLock()  # the signal handler may run while its own thread holds it
_handlers_installed = False


def track(owner: object, resource: Releasable) -> weakref.finalize:
    """Release `resource` once `owner` is garbage-collected, at exit, or on SIGTERM/SIGHUP; calling
    the returned finalizer releases it now (once)."""
    _install_signal_handlers()
    with _lock:
        _live[id(resource)] = resource
    return weakref.finalize(owner, _release, resource)


def _release(resource: Releasable) -> None:
    with _lock:
        _live.pop(id(resource), None)
    resource.release()


def release_all() -> None:
    """Release everything still tracked (what the signal handlers do before the process dies)."""
    with _lock:
        resources = list(_live.values())
        _live.clear()
    for resource in resources:
        with contextlib.suppress(Exception):  # one failure must not keep the others alive
            resource.release()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    release_all()
    # then die of the signal, as the process would have without us
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Only where nobody else handles the signal, and only from the main thread (Python's rule)."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for signum in REAPED_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _on_signal)


class ProcessGroup:
    """A server process started in a session of its own (its process group id is its pid), and the
    temporary directories that go with it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.temp_dirs: list[Path] = []
        self.keep_dirs = False

    def kill(self) -> int | None:
        """SIGKILL the whole group (a stopped process dies of it too) and reap it."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(KILL_WAIT_S)
        self.process = None
        return proc.returncode

    def release(self) -> None:
        self.kill()
        if not self.keep_dirs:
            for path in self.temp_dirs:
                shutil.rmtree(path, ignore_errors=True)
