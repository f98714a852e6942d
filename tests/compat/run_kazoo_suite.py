"""Run kazoo 2.11.0's own test suite, unchanged, against zkfast or against Apache ZooKeeper 3.8.0.

One command (from the repository root)::

    python tests/compat/run_kazoo_suite.py --target zkfast     # or --target apache; --cluster-size 1|3
    python tests/compat/run_kazoo_suite.py --target zkfast -- -k test_lock   # a subset (pytest args)
    python tests/compat/run_kazoo_suite.py --target apache --write-baseline  # re-measure the baseline
    python tests/compat/run_kazoo_suite.py --target zkfast --harness java    # through the java stand-in

What it does:

1. creates (or reuses) a venv under the cache dir (`$ZKFAST_COMPAT_CACHE`, else
   `$XDG_CACHE_HOME/zkfast-compat`, else `~/.cache/zkfast-compat`) with kazoo 2.11.0 and what its tests
   import (pytest, pytest-timeout, objgraph, pyjks, pyOpenSSL, gevent, eventlet, pure-sasl), pinned;
2. downloads kazoo 2.11.0's sdist from PyPI once (`pip download --no-binary :all:`) and unpacks it there:
   the sdist ships `kazoo/tests/` and the harness that starts servers (`kazoo/testing/`);
3. runs `pytest kazoo/tests` in the unpacked sdist, with the sdist's own pytest settings, as kazoo's CI
   does: `ZOOKEEPER_VERSION=3.8.0`, `ZOOKEEPER_CLUSTER_SIZE`, a free `ZOOKEEPER_PORT_OFFSET`, `CI` unset.
   `--target` is the server, `--harness` how kazoo's KazooTestHarness starts it:

   - `--harness plugin` (the default for zkfast): zkfast.testing's pytest plugin and
     `tests/compat/kazoo_conftest.py` are loaded into the run (`-p`), and the harness starts ZkServer /
     ZkCluster processes of `--target`'s kind; no `java` involved for zkfast. The venv imports
     zkfast.testing from this checkout (`PYTHONPATH`), the servers run on this script's Python (which
     must import zkfast);
   - `--harness java` (the default for apache): kazoo's own harness, `java -cp $ZOOKEEPER_CLASSPATH -D...
     QuorumPeerMain W/zoo.cfg`. For apache `ZOOKEEPER_CLASSPATH` is Debian's Apache ZooKeeper 3.8.0
     (/usr/share/java), run by the real java: the reference. For zkfast `tests/compat/java` (a `java`
     stand-in) is first on PATH and execs `zkfast -D... start-foreground W/zoo.cfg` with this script's
     Python;

   every zkfast server's log is appended to `.servers.log` beside the outcomes (the harness deletes W);

4. writes every test's outcome (passed/failed/error/skipped, with the failure message) as JSON
   (`--out`, default `CACHE/results/kazoo-TARGET[-HARNESS]-sizeN.json`, HARNESS when not the target's
   default; pytest's own output is beside it as
   `.log`), prints the counts and every test whose outcome differs from the checked-in baseline
   `tests/compat/baseline_sizeN.json` (Apache's outcomes, made with `--target apache --write-baseline`).

Exit status: 0 when every test that passes on Apache passes here too (with `--exact`: when every test
has the baseline's outcome); 1 when one does not (a regression); 2 when the suite could not be run.
Tests listed in KNOWN_GAPS (features zkfast does not implement yet) are reported apart and do not count
as regressions unless `--strict` is given; one of them that passes is reported so it can be taken off
the list.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

KAZOO_VERSION = "2.11.0"
ZOOKEEPER_VERSION = "3.8.0"
HERE = Path(__file__).resolve().parent
STAND_IN = HERE / "java"
INJECTED_CONFTEST = "kazoo_conftest"  # tests/compat/kazoo_conftest.py, loaded with -p
PLUGIN = "zkfast.testing.pytest_plugin"
HARNESSES = ("plugin", "java")
DEFAULT_HARNESS = {"zkfast": "plugin", "apache": "java"}
# What kazoo's tests import, pinned to the versions the baseline was measured with (pyOpenSSL 26.2
# drops the X509Extension kazoo's harness uses to make its TLS certificates).
REQUIREMENTS = (
    f"kazoo=={KAZOO_VERSION}",
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "objgraph==3.7.0",
    "pyjks==20.0.0",
    "pyOpenSSL==26.1.0",
    "cryptography==47.0.0",
    "gevent==26.9.0",
    "greenlet==3.5.6",
    "eventlet==0.41.3",
    "dnspython==2.9.2",
    "pure-sasl==0.6.2",
)
# Debian's Apache ZooKeeper 3.8.0: zookeeper.jar's manifest Class-Path names most of the rest.
APACHE_JAVA_DIR = Path("/usr/share/java")
APACHE_JARS = ("zookeeper.jar", "netty-codec.jar", "netty-resolver.jar",
               "netty-transport-native-unix-common.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")
# The harness needs a ZOOKEEPER_CLASSPATH (it globs an install path otherwise); the stand-in ignores it.
ZKFAST_CLASSPATH = "zkfast-java-stand-in"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
MESSAGE_LIMIT = 500
DEFAULT_PORT_OFFSET = 20000

# Tests that pass on Apache and fail on zkfast because zkfast does not implement the feature yet.
# Test id (as in the outcomes JSON) -> what is missing.
KNOWN_GAPS: dict[str, str] = {}


def cache_dir() -> Path:
    if os.environ.get("ZKFAST_COMPAT_CACHE"):
        return Path(os.environ["ZKFAST_COMPAT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zkfast-compat"


def log(message: str) -> None:
    print(f"[kazoo-suite] {message}", flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One set-up of the cache at a time (two runs may share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- set-up

def ensure_venv(cache: Path) -> Path:
    """The venv's python, with REQUIREMENTS installed (made again when the list changes)."""
    venv = cache / f"venv-kazoo-{KAZOO_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".zkfast-compat-requirements"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    log(f"creating {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    *REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return python


def ensure_sdist(cache: Path, python: Path) -> Path:
    """kazoo's unpacked sdist (with kazoo/tests and kazoo/testing)."""
    root = cache / f"kazoo-{KAZOO_VERSION}"
    if (root / "kazoo" / "tests" / "__init__.py").exists() and (root / ".complete").exists():
        return root
    download = cache / "download"
    download.mkdir(parents=True, exist_ok=True)
    archive = download / f"kazoo-{KAZOO_VERSION}.tar.gz"
    if not archive.exists():
        log(f"downloading kazoo {KAZOO_VERSION}'s sdist")
        subprocess.run([str(python), "-m", "pip", "download", "--disable-pip-version-check", "-q",
                        "--no-deps", "--no-binary", ":all:", "-d", str(download),
                        f"kazoo=={KAZOO_VERSION}"], check=True)
    if root.exists():
        shutil.rmtree(root)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    if not (root / "kazoo" / "tests" / "__init__.py").exists():
        raise SystemExit(f"{archive} has no kazoo/tests")
    (root / ".complete").write_text("")
    return root


def apache_classpath() -> str:
    missing = [jar for jar in APACHE_JARS if not (APACHE_JAVA_DIR / jar).exists()]
    if missing or shutil.which("java") is None:
        raise SystemExit(f"--target apache needs java and Debian's zookeeper package "
                         f"(missing: {', '.join(missing) or 'java'}); apt-get install zookeeper")
    return ":".join(str(APACHE_JAVA_DIR / jar) for jar in APACHE_JARS)


def ports_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_port_offset(start: int, cluster_size: int) -> int:
    """A base port whose range (10 ports a server, as the harness lays them out) is free now."""
    for base in range(start, 60000, 100):
        if ports_free(base, 10 * cluster_size):
            return base
    raise SystemExit("no free port range for the ZooKeeper servers")


def suite_environment(target: str, harness: str, cluster_size: int, port_offset: int, venv_python: Path,
                      server_log: Path, zkfast_import_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != "CI" and not k.startswith(("ZOOKEEPER_", "KRB5_", "PYTEST_"))
           and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({
        "ZOOKEEPER_VERSION": ZOOKEEPER_VERSION,
        "ZOOKEEPER_CLUSTER_SIZE": str(cluster_size),
        "ZOOKEEPER_PORT_OFFSET": str(port_offset),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    path = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != HERE]
    path.insert(0, str(venv_python.parent))
    if harness == "plugin":
        assert zkfast_import_dir is not None
        env["PYTHONPATH"] = os.pathsep.join([str(zkfast_import_dir), str(HERE)])
        env["ZKFAST_PYTHON"] = sys.executable
        env["ZKFAST_KAZOO_SERVERS_LOG"] = str(server_log)
    elif target == "zkfast":
        path.insert(0, str(HERE))
        env["ZOOKEEPER_CLASSPATH"] = ZKFAST_CLASSPATH
        env["ZKFAST_PYTHON"] = sys.executable
        env["ZKFAST_STANDIN_LOG"] = str(server_log)
    else:
        env["ZOOKEEPER_CLASSPATH"] = apache_classpath()
    env["PATH"] = os.pathsep.join(path)
    return env


def harness_arguments(target: str, harness: str) -> list[str]:
    """pytest arguments that load the plugin harness (none for kazoo's own)."""
    if harness != "plugin":
        return []
    return ["-p", PLUGIN, "-p", INJECTED_CONFTEST, f"--zk-kind={target}"]


def zkfast_package_dir() -> Path:
    """Where this script's Python imports zkfast from (which it must, for zkfast servers and the plugin)."""
    probe = subprocess.run([sys.executable, "-c", "import zkfast.cli, zkfast; print(zkfast.__path__[0])"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"{sys.executable} cannot import zkfast (pip install -e .):\n{probe.stderr}")
    return Path(probe.stdout.strip())


def ensure_zkfast_import_dir(cache: Path, package: Path) -> Path:
    """A directory holding only a link to the zkfast package: on the venv's PYTHONPATH it makes
    zkfast.testing importable there without the rest of this Python's site-packages."""
    directory = cache / "zkfast-import"
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "zkfast"
    if not (link.is_symlink() and link.resolve() == package.resolve()):
        tmp = directory / f".zkfast-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(package, target_is_directory=True)
        os.replace(tmp, link)
    return directory


# ------------------------------------------------------------------------------------------ running

def kill_group(pgid: int) -> None:
    """Stop what the suite left running in its process group (servers of a suite that was killed)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(2.0)


def run_suite(sdist: Path, venv_python: Path, env: Mapping[str, str], junit: Path, pytest_log: Path,
              per_test_timeout: float | None, deadline_s: float | None, pytest_args: list[str],
              quiet: bool) -> int:
    cmd = [str(venv_python), "-m", "pytest", "kazoo/tests", "-p", "no:cacheprovider",
           "-q", "--color=no", "-o", "log_cli=false", "-rfEs", f"--junitxml={junit}"]
    if per_test_timeout is not None:
        cmd.append(f"--timeout={per_test_timeout:g}")
    cmd += pytest_args
    log(f"running: {' '.join(cmd)}  (in {sdist}; output in {pytest_log})")
    junit.unlink(missing_ok=True)
    with open(pytest_log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=sdist, env=dict(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        stop_at = None if deadline_s is None else time.monotonic() + deadline_s
        try:
            for line in _lines_until(proc, stop_at):
                out.write(line)
                if not quiet:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()
            try:
                proc.wait(None if stop_at is None else max(0.0, stop_at - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"the suite ran past --deadline {deadline_s}s: stopping it")
                kill_group(proc.pid)
                proc.wait()
        finally:
            if proc.poll() is None:
                kill_group(proc.pid)
                proc.wait()
            kill_group(proc.pid)  # servers that outlived pytest (none when its atexit ran)
    return proc.returncode


def _lines_until(proc: subprocess.Popen[bytes], stop_at: float | None) -> Iterator[bytes]:
    """proc's output lines; stops early once stop_at (monotonic) has passed."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    pending = b""
    while True:
        timeout = 1.0 if stop_at is None else min(1.0, stop_at - time.monotonic())
        if timeout <= 0:
            break
        if not sel.select(timeout):
            if proc.poll() is not None:
                break  # pytest is gone; a server it left behind may hold the pipe open
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending
    sel.close()


# ---------------------------------------------------------------------------------------- outcomes

def parse_junit(path: Path) -> dict[str, dict[str, str]]:
    """{test id: {"outcome": ..., "message": ...}}; test id = `module.Class::test_name`."""
    tests: dict[str, dict[str, str]] = {}
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        failure, error, skipped = case.find("failure"), case.find("error"), case.find("skipped")
        record: dict[str, str]
        if failure is not None:
            record = {"outcome": "failed", "message": _message(failure)}
        elif error is not None:
            record = {"outcome": "error", "message": _message(error)}
        elif skipped is not None:
            outcome = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
            record = {"outcome": outcome, "message": _message(skipped)}
        else:
            record = {"outcome": "passed"}
        tests[test_id] = record
    return tests


def _message(element: ET.Element) -> str:
    text = (element.get("message") or element.text or "").strip()
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."


def counts(tests: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    found = Counter(t["outcome"] for t in tests.values())
    return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}


def counts_line(c: Mapping[str, int]) -> str:
    """'N passed, N failed, N skipped' (errors counted as failed), with the details after it."""
    extra = [f"{c[o]} {o}" for o in ("error", "xfailed") if c.get(o)]
    line = f"{c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped"
    return line + (f" ({', '.join(extra)})" if extra else "")


def compare(current: Mapping[str, Mapping[str, str]], baseline: Mapping[str, Mapping[str, str]],
            strict: bool, subset: bool = False, exact: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(regressions, known gaps that failed, every difference as a line). `subset`: only some tests
    were selected (extra pytest arguments), so a test that did not run is no difference. `exact`:
    every outcome that is not the baseline's is a regression, not only a test that passed there."""
    regressions: list[str] = []
    gaps: list[str] = []
    lines: list[str] = []
    for test_id in sorted(set(current) | (set() if subset else set(baseline))):
        was = baseline.get(test_id, {}).get("outcome", "absent")
        now = current.get(test_id, {}).get("outcome", "absent")
        if was == now:
            was_msg = baseline.get(test_id, {}).get("message", "")
            now_msg = current.get(test_id, {}).get("message", "")
            if now in ("failed", "error") and was_msg != now_msg:
                lines.append(f"  {test_id}: {now} on both, with another message (not a regression)"
                             f"\n      apache: {was_msg}\n      here:   {now_msg}")
            continue
        message = current.get(test_id, {}).get("message", "")
        note = ""
        if was == "passed" or exact:
            if test_id in KNOWN_GAPS and not strict:
                gaps.append(test_id)
                note = f"  [known gap: {KNOWN_GAPS[test_id]}]"
            else:
                regressions.append(test_id)
                note = "  [REGRESSION]"
        lines.append(f"  {test_id}: apache {was} -> {now}{note}" + (f"\n      {message}" if message else ""))
    return regressions, gaps, lines


def stale_gaps(current: Mapping[str, Mapping[str, str]]) -> list[str]:
    """KNOWN_GAPS entries that pass now."""
    return [t for t in sorted(KNOWN_GAPS) if current.get(t, {}).get("outcome") == "passed"]


# --------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--target", choices=("zkfast", "apache"), default="zkfast",
                   help="the server the harness starts (default zkfast)")
    p.add_argument("--harness", choices=HARNESSES, default=None,
                   help="plugin: zkfast.testing's, through tests/compat/kazoo_conftest.py; java: kazoo's own "
                        "(the java stand-in for zkfast). Default: plugin for zkfast, java for apache")
    p.add_argument("--cluster-size", type=int, choices=(1, 3), default=1,
                   help="ZOOKEEPER_CLUSTER_SIZE (default 1)")
    p.add_argument("--cache-dir", type=Path, default=None, help=f"default {cache_dir()}")
    p.add_argument("--out", type=Path, default=None,
                   help="outcomes JSON (default CACHE/results/kazoo-TARGET[-HARNESS]-sizeN.json)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="Apache's outcomes to compare with (default tests/compat/baseline_sizeN.json)")
    p.add_argument("--write-baseline", action="store_true",
                   help="write this run's outcomes to the baseline file (use with --target apache)")
    p.add_argument("--port-offset", type=int, default=DEFAULT_PORT_OFFSET,
                   help="first port to try for ZOOKEEPER_PORT_OFFSET (a free range at or above it is used)")
    p.add_argument("--per-test-timeout", type=float, default=None,
                   help="pytest-timeout seconds per test (default: the sdist's own setting, 180)")
    p.add_argument("--deadline", type=float, default=None,
                   help="stop the whole suite after this many seconds (its tests then count as absent)")
    p.add_argument("--strict", action="store_true", help="known gaps count as regressions too")
    p.add_argument("--exact", action="store_true",
                   help="every outcome must be the baseline's: a test failing on Apache must fail here too")
    p.add_argument("--quiet", action="store_true", help="do not echo pytest's output")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments, after -- (e.g. -- -k test_lock)")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so that run_suite stops the suite's processes
    cache = (args.cache_dir or cache_dir()).resolve()
    harness = args.harness or DEFAULT_HARNESS[args.target]
    label = args.target if harness == DEFAULT_HARNESS[args.target] else f"{args.target}-{harness}"
    baseline_path = args.baseline or HERE / f"baseline_size{args.cluster_size}.json"
    out = args.out or cache / "results" / f"kazoo-{label}-size{args.cluster_size}.json"
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    package = zkfast_package_dir() if args.target == "zkfast" or harness == "plugin" else None
    if args.target == "zkfast" and harness == "java" and not os.access(STAND_IN, os.X_OK):
        raise SystemExit(f"{STAND_IN} is not executable")
    with locked(cache / ".lock"):
        venv_python = ensure_venv(cache)
        sdist = ensure_sdist(cache, venv_python)
        import_dir = ensure_zkfast_import_dir(cache, package) if harness == "plugin" and package else None
    port_offset = pick_port_offset(args.port_offset, args.cluster_size)
    junit = out.with_suffix(".junit.xml")
    pytest_log = out.with_suffix(".log")
    server_log = out.with_suffix(".servers.log")
    server_log.unlink(missing_ok=True)
    env = suite_environment(args.target, harness, args.cluster_size, port_offset, venv_python, server_log,
                            import_dir)
    log(f"kazoo {KAZOO_VERSION} suite against {args.target} through the {harness} harness, cluster size "
        f"{args.cluster_size}, ports from {port_offset}")
    started = time.monotonic()
    rc = run_suite(sdist, venv_python, env, junit, pytest_log, args.per_test_timeout, args.deadline,
                   [*harness_arguments(args.target, harness), *args.pytest_args], args.quiet)
    elapsed = time.monotonic() - started
    if not junit.exists():
        log(f"pytest exited with {rc} and wrote no report; see {pytest_log}")
        return 2
    tests = parse_junit(junit)
    result: dict[str, Any] = {
        "kazoo": KAZOO_VERSION, "target": args.target, "harness": harness, "cluster_size": args.cluster_size,
        "zookeeper_version": ZOOKEEPER_VERSION, "pytest_exit_code": rc, "duration_s": round(elapsed, 1),
        "pytest_args": args.pytest_args,
        "counts": counts(tests), "tests": tests,
    }
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    log(f"outcomes written to {out}")
    if args.write_baseline:
        if args.target != "apache":
            log("warning: writing a baseline measured against zkfast, not Apache")
        baseline_path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        log(f"baseline written to {baseline_path}")
    print(f"kazoo {KAZOO_VERSION} on {args.target}, {harness} harness (cluster size {args.cluster_size}), "
          f"{elapsed:.0f} s:", flush=True)
    if rc not in (0, 1) or not tests:
        log(f"pytest exited with {rc} (not a plain pass/fail run); see {pytest_log}")
        print(counts_line(result["counts"]))
        return 2
    if not baseline_path.exists():
        log(f"no baseline {baseline_path}: nothing to compare with")
        print(counts_line(result["counts"]))
        return 0
    baseline = json.loads(baseline_path.read_text())
    subset = bool(args.pytest_args)
    regressions, gaps, lines = compare(tests, baseline["tests"], args.strict, subset, args.exact)
    ran = {k: v for k, v in baseline["tests"].items() if k in tests} if subset else baseline["tests"]
    print(f"apache baseline ({baseline_path.name}{', the tests that ran' if subset else ''}): "
          f"{counts_line(counts(ran))}")
    if lines:
        print(f"{len(lines)} test(s) differ from the baseline:")
        print("\n".join(lines))
    else:
        print("every test has the baseline's outcome")
    for test_id in stale_gaps(tests):
        print(f"  note: {test_id} passes but is listed in KNOWN_GAPS: take it off the list")
    if gaps:
        print(f"{len(gaps)} known gap(s) (not implemented in zkfast yet; --strict counts them)")
    what = "whose outcome is not Apache's" if args.exact else "that pass on Apache and not"
    print(f"{len(regressions)} regression(s): tests {what} on {args.target}")
    print(counts_line(result["counts"]), flush=True)
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
