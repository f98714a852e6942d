"""What an attack costs a server: its resident memory (RssSampler), the service a well-behaved
client gets meanwhile (Probe: exists() every 20 ms on its own session, in its own process so the
attackers' threads cannot delay it), and whether an acknowledged write went missing (the probe
process also runs a writer that creates numbered znodes; `lost_writes` checks them afterwards).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from testbase.rawclient import RawSession, connect_request

from abuse.protocol import (
    CREATE,
    EXISTS,
    GET_CHILDREN,
    OK,
    children_of,
    create_body,
    path_watch,
    reply_header,
    req_frame,
)

MIB = 1024 * 1024
RSS_SAMPLE_INTERVAL_S = 0.005
MAX_SAMPLING_S = 1800.0  # a sampler left running stops by itself

PROBE_INTERVAL_S = 0.020
PROBE_SESSION_TIMEOUT_MS = 10_000
PROBE_START_TIMEOUT_S = 30.0
STOP_POLL_S = 0.05  # how soon a waiting probe notices it was stopped
MAX_PROBE_RUN_S = 1800.0
LOST_CHECK_TIMEOUT_S = 10.0  # a server still busy this long after the attack fails anyway


# ------------------------------------------------------------------------------------ memory

def proc_status_bytes(pid: int, key: str) -> int:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's VmHWM of a process to its current RSS (Linux >= 4.0: clear_refs 5); False
    where not permitted, when only the samples show the peak."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def java_heap_used(pid: int) -> int | None:
    """A JVM's live heap: `jcmd GC.run`, then the `used` of `jcmd GC.heap_info` (None without jcmd,
    which comes with a JDK, not with every JRE)."""
    if shutil.which("jcmd") is None:
        return None
    try:
        subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, check=True, timeout=60)
        info = subprocess.run(["jcmd", str(pid), "GC.heap_info"], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"heap\s+total \d+K, used (\d+)K", info)
    return int(m.group(1)) * 1024 if m else None


def live_bytes(kind: str, pid: int) -> int:
    """What a server holds, as well as it can be read from outside: a JVM's live heap, or VmRSS."""
    heap = java_heap_used(pid) if kind == "apache" else None
    return heap if heap is not None else proc_status_bytes(pid, "VmRSS")


class RssSampler:
    """VmRSS of one process: the baseline when entered, the peak while inside. The peak is the
    larger of the samples (every RSS_SAMPLE_INTERVAL_S) and VmHWM, which the kernel keeps between
    samples once reset at entry, so a peak shorter than a sampling interval is not missed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = 0
        self.peak = 0
        self.end = 0
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = proc_status_bytes(self.pid, "VmRSS")
        self._hwm_reset = reset_peak_rss(self.pid)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SAMPLING_S
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S) and time.monotonic() < deadline:
            try:
                self.peak = max(self.peak, proc_status_bytes(self.pid, "VmRSS"))
            except (OSError, RuntimeError):
                return  # the server died: what was sampled stands

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.end = proc_status_bytes(self.pid, "VmRSS")
            self.peak = max(self.peak, self.end)
            if self._hwm_reset:
                self.peak = max(self.peak, proc_status_bytes(self.pid, "VmHWM"))
        except (OSError, RuntimeError):
            pass

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


# ------------------------------------------------------------------------------------ probe

@dataclass
class ProbeReport:
    latencies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0       # requests given up after the session timeout
    expired: int = 0          # reconnects the server refused: the session was gone
    reconnects: int = 0
    acked: list[int] = field(default_factory=list)  # the writer's acknowledged znode numbers
    errors: list[str] = field(default_factory=list)

    @property
    def worst_ms(self) -> float:
        return max(self.latencies_ms, default=0.0)

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


class _Client:
    """One session that survives its connection: a connection the server closes is reopened with
    the same session id and password; a refused reopen counts as an expired session (and a new
    session carries on, so the rest of the run is still measured)."""

    def __init__(self, host: str, port: int, report: ProbeReport) -> None:
        self.host, self.port, self.report = host, port, report
        self.s = RawSession(host, port)
        self.xid = 0
        self.s.open(connect_request(timeout_ms=PROBE_SESSION_TIMEOUT_MS))
        if not self.s.session_id:
            raise ConnectionError(f"{host}:{port} refused the probe's session")

    def reopen(self) -> None:
        self.report.reconnects += 1
        old_id, old_passwd = self.s.session_id, self.s.passwd
        self.s.close()
        self.s = RawSession(self.host, self.port)
        resp = self.s.open(connect_request(timeout_ms=PROBE_SESSION_TIMEOUT_MS, session_id=old_id,
                                           passwd=old_passwd))
        if not resp or self.s.timeout_ms <= 0:
            self.report.expired += 1
            self.s.close()
            self.s = RawSession(self.host, self.port)
            self.s.open(connect_request(timeout_ms=PROBE_SESSION_TIMEOUT_MS))

    def call(self, op: int, body: bytes, stop: threading.Event) -> tuple[float, int | None]:
        """(seconds until the reply, its err); err None when no reply came within the session
        timeout or before the probe was stopped, or the connection closed first (then the session
        is reopened, unless stopping)."""
        self.xid += 1
        t0 = time.perf_counter()
        give_up = t0 + PROBE_SESSION_TIMEOUT_MS / 1000
        try:
            self.s.send(req_frame(self.xid, op, body))
            while True:
                if stop.is_set():
                    # still waiting when the run ended: what it waited so far is a lower bound
                    return time.perf_counter() - t0, None
                left = give_up - time.perf_counter()
                if left <= 0:
                    raise TimeoutError("no reply within the session timeout")
                try:
                    payload = self.s.read_frame(min(left, STOP_POLL_S))
                except TimeoutError:
                    continue
                if payload is None:
                    break
                xid, _, err = reply_header(payload)
                if xid == self.xid:
                    return time.perf_counter() - t0, err
        except TimeoutError:
            self.report.unanswered += 1
        except OSError as e:
            self.report.errors.append(f"{type(e).__name__}: {e}")
        elapsed = time.perf_counter() - t0
        if not stop.is_set():
            try:
                self.reopen()
            except OSError as e:
                self.report.errors.append(f"reopen: {type(e).__name__}: {e}")
        return elapsed, None


def _every_interval(stop: threading.Event, step: Any) -> None:
    """Call step() every PROBE_INTERVAL_S (from its start) until stop is set; bounded."""
    deadline = time.monotonic() + MAX_PROBE_RUN_S
    while not stop.is_set() and time.monotonic() < deadline:
        t0 = time.monotonic()
        step()
        stop.wait(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - t0)))


def _probe_main(host: str, port: int, writes_under: str, pipe: multiprocessing.connection.Connection,
                stop_event: Any) -> None:
    report = ProbeReport()
    try:
        prober = _Client(host, port, report)
        writer = _Client(host, port, report)
        writer.call(CREATE, create_body(writes_under), threading.Event())
    except OSError as e:
        pipe.send(f"probe could not start: {e}")
        return
    pipe.send("ready")
    stop = threading.Event()
    counter = iter(range(10**9))

    def probe_step() -> None:
        seconds, _ = prober.call(EXISTS, path_watch("/"), stop)
        report.latencies_ms.append(seconds * 1000)

    def write_step() -> None:
        n = next(counter)
        _, err = writer.call(CREATE, create_body(f"{writes_under}/n{n:07d}"), stop)
        if err == OK:
            report.acked.append(n)

    threads = [threading.Thread(target=_every_interval, args=(stop, fn), daemon=True)
               for fn in (probe_step, write_step)]
    for t in threads:
        t.start()
    stop_event.wait(MAX_PROBE_RUN_S)
    stop.set()
    for t in threads:
        t.join(PROBE_SESSION_TIMEOUT_MS / 1000 * 3)
    for c in (prober, writer):
        c.s.close()
    pipe.send(report)


class Probe:
    """The well-behaved client, in a child process while inside the `with`."""

    def __init__(self, host: str, port: int, writes_under: str) -> None:
        self.host, self.port, self.writes_under = host, port, writes_under
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._pipe, child_pipe = ctx.Pipe()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_probe_main, name="abuse-probe", daemon=True,
                                 args=(host, port, writes_under, child_pipe, self._stop))
        self.report = ProbeReport()

    def __enter__(self) -> Probe:
        self._proc.start()
        if not self._pipe.poll(PROBE_START_TIMEOUT_S):
            self._kill()
            raise TimeoutError("the probe process did not start")
        first = self._pipe.recv()
        if first != "ready":
            self._kill()
            raise RuntimeError(str(first))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._pipe.poll(PROBE_SESSION_TIMEOUT_MS / 1000 * 4):
            self.report = self._pipe.recv()
        else:
            self.report.errors.append("the probe process did not report")
        self._kill()

    def _kill(self) -> None:
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()

    def lost_writes(self) -> list[int]:
        """The acknowledged znode numbers that are not on the server now (a server still busy
        with the attack is given LOST_CHECK_TIMEOUT_S to answer)."""
        end = time.monotonic() + LOST_CHECK_TIMEOUT_S
        while True:
            s = RawSession(self.host, self.port)
            try:
                s.open(connect_request(timeout_ms=PROBE_SESSION_TIMEOUT_MS))
                s.send(req_frame(1, GET_CHILDREN, path_watch(self.writes_under)))
                payload = s.read_frame(max(0.1, end - time.monotonic()))
                if payload is not None:
                    break
            except OSError:
                if time.monotonic() > end:
                    raise
            finally:
                s.close()
            if time.monotonic() > end:
                raise ConnectionError("the server closed the lost-write check's connection")
            time.sleep(STOP_POLL_S)
        present = {int(name[1:]) for name in children_of(payload)} if reply_header(payload)[2] == OK else set()
        return sorted(set(self.report.acked) - present)
