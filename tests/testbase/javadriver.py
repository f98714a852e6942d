"""Build and run `tests/java/ZkDriver.java`: scripts of ZooKeeper client operations executed by Apache
ZooKeeper's own Java client (Debian's 3.8.0 jars) against one or more servers.

The script and output formats are documented at the top of ZkDriver.java. `run_script` returns the parsed
output lines, one list per server address (in the order given).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
JAVA_SRC_DIR = REPO_ROOT / "tests" / "java"
DRIVER_SOURCE = JAVA_SRC_DIR / "ZkDriver.java"
CLASSES_DIR = JAVA_SRC_DIR / "classes"
JAVA_DIR = Path("/usr/share/java")
# slf4j-nop: the client's own logging goes nowhere (and never to stdout, which carries the results)
CLIENT_JARS = ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-nop.jar")
JVM_FLAGS = ("-Dzookeeper.sasl.client=false", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k")
DEFAULT_OP_TIMEOUT_MS = 10000

Line = dict[str, Any]


class DriverError(RuntimeError):
    """The Java driver could not be built or did not finish normally."""


def driver_available() -> bool:
    return (shutil.which("java") is not None and shutil.which("javac") is not None
            and all((JAVA_DIR / j).exists() for j in CLIENT_JARS))


def _jars() -> list[str]:
    missing = [j for j in CLIENT_JARS if not (JAVA_DIR / j).exists()]
    if missing:
        raise DriverError(f"missing jars in {JAVA_DIR}: {missing}")
    return [str(JAVA_DIR / j) for j in CLIENT_JARS]


def _is_fresh() -> bool:
    main_class = CLASSES_DIR / "ZkDriver.class"
    return main_class.exists() and main_class.stat().st_mtime >= DRIVER_SOURCE.stat().st_mtime


def ensure_built() -> Path:
    """Compile ZkDriver.java into tests/java/classes/ unless the classes there are newer than the source."""
    if _is_fresh():
        return CLASSES_DIR
    JAVA_SRC_DIR.mkdir(parents=True, exist_ok=True)
    lock_path = Path(tempfile.gettempdir()) / "zkfast-zkdriver-build.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_fresh():
                return CLASSES_DIR
            tmp = Path(tempfile.mkdtemp(prefix="classes-", dir=JAVA_SRC_DIR))
            os.chmod(tmp, 0o755)
            try:
                cmd = ["javac", "-nowarn", "-implicit:none", "-proc:none", "-encoding", "UTF-8", "-d", str(tmp),
                       "-cp", ":".join(_jars()), str(DRIVER_SOURCE)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    raise DriverError(f"javac failed:\n{res.stdout}\n{res.stderr}")
                if CLASSES_DIR.exists():
                    shutil.rmtree(CLASSES_DIR)
                os.replace(tmp, CLASSES_DIR)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return CLASSES_DIR


def classpath() -> str:
    return ":".join([str(ensure_built()), *_jars()])


def script_text(script: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(op, ensure_ascii=True) + "\n" for op in script)


def run_script(script: Sequence[Mapping[str, Any]], addresses: Sequence[str], *,
               op_timeout_ms: int = DEFAULT_OP_TIMEOUT_MS, timeout_s: float | None = None) -> list[list[Line]]:
    """Run `script` once against each address (one after the other, one JVM); return the lines per address.

    A driver problem inside a run (an op without callback, a session that does not connect) is reported
    as a `{"fatal": ...}` line in that run's output, not as an exception.
    """
    if not addresses:
        return []
    cmd = ["java", *JVM_FLAGS, "-cp", classpath(), "ZkDriver", "--op-timeout-ms", str(op_timeout_ms),
           *addresses]
    if timeout_s is None:
        timeout_s = 60.0 + len(addresses) * (30.0 + len(script) * 0.5)
    try:
        res = subprocess.run(cmd, input=script_text(script).encode("ascii"), capture_output=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise DriverError(f"ZkDriver did not finish within {timeout_s}s") from e
    if res.returncode != 0:
        raise DriverError(f"ZkDriver exited with {res.returncode}:\n"
                          f"{res.stderr.decode('utf-8', 'replace')[-4000:]}")
    per_target: list[list[Line]] = [[] for _ in addresses]
    for raw in res.stdout.decode("utf-8").splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DriverError(f"unparsable driver output line: {raw!r}") from e
        per_target[int(line["t"])].append(line)
    return per_target
