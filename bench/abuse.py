#!/usr/bin/env python3
"""The abuse suite at larger sizes: the cases of tests/test_abuse.py (tests/abuse/cases.py), run
against Apache ZooKeeper 3.8 and zkfast, printing the same table.

    python bench/abuse.py                       # every case at 4x the CI sizes (~4 min on 2 cores)
    python bench/abuse.py --scale 1             # exactly what CI runs
    python bench/abuse.py --scale 10 --cases unread-1MB,watch-fanout,admin-loops --hold 5
    python bench/abuse.py --list

--scale multiplies every count (attackers, pipelined requests, watches, children, connections,
maxCnxns) and leaves durations, per-address figures and frame sizes alone. The verdict column
applies the suite's zkfast bounds (the sum of zkfast.limits a case can fill, plus the noise
allowance; every probe request within tickTime; nothing lost); as a benchmark, this command prints
them and exits 0 whatever they say.
"""

from __future__ import annotations

import argparse
import sys
import time

import _tests_path  # noqa: F401  (tests/ on sys.path: testbase, abuse)
from abuse.cases import CASES, Case, Sizes
from abuse.report import Row, table
from abuse.run import run_case
from abuse.servers import KINDS, Pairs
from testbase.process import apache_available


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=4.0, help="multiply every count of the CI sizes (default 4)")
    p.add_argument("--hold", type=float, default=None,
                   help=f"seconds each attack is held in place (default {Sizes().hold_s})")
    p.add_argument("--cases", default="", help="comma-separated case names (default: all; see --list)")
    p.add_argument("--servers", default=",".join(KINDS), help="apache,zkfast or one of them")
    p.add_argument("--out", default=None, help="also write the table to this file")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p.parse_args(argv)


def selected(names: str) -> list[Case]:
    if not names:
        return list(CASES)
    by_name = {c.name: c for c in CASES}
    unknown = [n for n in names.split(",") if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(unknown)} (--list shows them)")
    return [by_name[n] for n in names.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name:16} {c.summary}")
        return 0
    kinds = [k for k in KINDS if k in args.servers.split(",")]
    if "apache" in kinds and not apache_available():
        print("Apache ZooKeeper (Debian package) is not installed: zkfast only", file=sys.stderr)
        kinds.remove("apache")
    sizes = Sizes().scaled(args.scale)
    if args.hold is not None:
        sizes = Sizes(**{**vars(sizes), "hold_s": args.hold})
    cases = selected(args.cases)
    pairs = Pairs((c.pair for c in cases), sizes.max_cnxns)
    rows: list[Row] = []
    errors: list[str] = []
    t0 = time.monotonic()
    try:
        for case in cases:
            pair = pairs.get(case.pair)
            for kind in kinds:
                started = time.monotonic()
                try:
                    rows.append(run_case(case, kind, pair.servers[kind], sizes, pair.secure_ports.get(kind)))
                except Exception as e:  # noqa: BLE001 - one case's breakage is reported, the others still run
                    errors.append(f"{case.name} ({kind}): {type(e).__name__}: {e}")
                print(f"{case.name} {kind}: {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
            pairs.done(case.pair)
    finally:
        pairs.stop()
    text = table(rows) + "".join(f"ERROR {e}\n" for e in errors)
    print(text)
    print(f"scale {args.scale:g}, hold {sizes.hold_s:g}s, {time.monotonic() - t0:.0f}s in all")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
