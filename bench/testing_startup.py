"""How long a test waits for its ZooKeeper: zkfast.testing's ZkServer and ZkCluster, zkfast against
Apache ZooKeeper 3.8 started the same way (ZkServer(kind="apache"): plain `java`, QuorumPeerMain).

    python bench/testing_startup.py [--rounds 10] [--kazoo]

1. launch to a served request: `ZkServer().start()`, from the process launch until `srvr` answers with a
   Mode (and `conf` shows the server's own dataDir), median and range of --rounds fresh servers per
   kind, and zkfast's median over Apache's;
2. a 3-node `ZkCluster(3).start()`: until every member serves and one leads;
3. kazoo 2.11.0's own suite, wall time per cluster size: through the plugin (zkfast.testing) on zkfast
   and on Apache, through the java stand-in (kazoo's harness running zkfast), and Apache through
   kazoo's own harness, each over the last. Read from tests/compat/run_kazoo_suite.py's last results in
   its cache; --kazoo runs the missing ones first (about 25 minutes).

Printed, not asserted. Every server listens on 127.0.0.x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from zkfast.testing import ZkCluster, ZkServer, apache_available

RUNNER = Path(__file__).resolve().parent.parent / "tests" / "compat" / "run_kazoo_suite.py"
# (runner arguments, results file label): the runner names its results kazoo-LABEL-sizeN.json
KAZOO_RUNS = {
    "zkfast, plugin": (["--target", "zkfast"], "zkfast"),
    "apache, plugin": (["--target", "apache", "--harness", "plugin"], "apache-plugin"),
    "zkfast, java stand-in": (["--target", "zkfast", "--harness", "java"], "zkfast-java"),
    "apache, kazoo's harness": (["--target", "apache"], "apache"),
}
KAZOO_REFERENCE = "apache, kazoo's harness"
KAZOO_RUN_TIMEOUT_S = 1800


def timed(start: Callable[[], object], close: Callable[[], None]) -> float:
    began = time.monotonic()
    try:
        start()
        return time.monotonic() - began
    finally:
        close()


def server_start_s(kind: str) -> float:
    server = ZkServer(kind=kind)
    return timed(server.start, server.close)


def cluster_start_s(kind: str) -> float:
    cluster = ZkCluster(3, kind=kind)
    return timed(cluster.start, cluster.close)


def summary(samples: list[float]) -> str:
    """The median and the range, in ms."""
    return f"{statistics.median(samples) * 1000:6.0f} ms ({min(samples) * 1000:.0f}-{max(samples) * 1000:.0f})"


def measure(rounds: int) -> None:
    if rounds < 1:
        return  # --rounds 0: the kazoo table only
    kinds = ["zkfast", "apache"] if apache_available() else ["zkfast"]
    if len(kinds) == 1:
        print("Apache ZooKeeper is not installed: zkfast only")
    rows: dict[str, dict[str, list[float]]] = {"ZkServer()": {}, "ZkCluster(3)": {}}
    for _ in range(rounds):  # kinds alternate, so that a busy moment of the machine hits both
        for kind in kinds:
            rows["ZkServer()"].setdefault(kind, []).append(server_start_s(kind))
            rows["ZkCluster(3)"].setdefault(kind, []).append(cluster_start_s(kind))
    print(f"launch to a served request, median (range) of {rounds} round(s):")
    print(f"  {'':14}{'zkfast':>24}{'apache':>24}   zkfast/apache")
    for what, by_kind in rows.items():
        line = f"  {what:14}{summary(by_kind['zkfast']):>24}"
        if "apache" in by_kind:
            ratio = statistics.median(by_kind["zkfast"]) / statistics.median(by_kind["apache"])
            line += f"{summary(by_kind['apache']):>24}   {ratio:.2f}"
        print(line)


def kazoo_results_dir() -> Path:
    probe = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import run_kazoo_suite as r; print(r.cache_dir())", str(RUNNER.parent)],
                           capture_output=True, text=True, check=True)
    return Path(probe.stdout.strip()) / "results"


def kazoo(run_missing: bool) -> None:
    results = kazoo_results_dir()
    print("kazoo 2.11.0's suite, wall time (tests/compat/run_kazoo_suite.py):")
    for size in (1, 3):
        measured: dict[str, dict[str, object]] = {}
        for name, (args, label) in KAZOO_RUNS.items():
            path = results / f"kazoo-{label}-size{size}.json"
            if not path.exists() and run_missing:
                subprocess.run([sys.executable, str(RUNNER), *args, "--cluster-size", str(size), "--quiet"],
                               timeout=KAZOO_RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
            if path.exists():
                measured[name] = json.loads(path.read_text())
        reference = measured.get(KAZOO_REFERENCE)
        for name in KAZOO_RUNS:
            result = measured.get(name)
            if result is None:
                print(f"  size {size}, {name:24} not measured (--kazoo runs it)")
                continue
            c = result["counts"]  # type: ignore[index]
            subset = f"   (a subset: {' '.join(result['pytest_args'])})" if result.get("pytest_args") else ""  # type: ignore[arg-type]
            ratio = (f"   {result['duration_s'] / reference['duration_s']:.2f} of {KAZOO_REFERENCE}"  # type: ignore[operator]
                     if reference is not None and name != KAZOO_REFERENCE else "")
            print(f"  size {size}, {name:24} {result['duration_s']:6.0f} s   "
                  f"{c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped{ratio}{subset}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=10, help="fresh servers and clusters per kind (default 10; 0: only the kazoo table)")
    p.add_argument("--kazoo", action="store_true", help="run the kazoo suites whose results are missing")
    args = p.parse_args(argv)
    measure(args.rounds)
    kazoo(args.kazoo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
