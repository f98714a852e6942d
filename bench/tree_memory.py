#!/usr/bin/env python3
"""Bytes per znode of zkfast's DataTree: VmRSS (from /proc/self/status) after creating N znodes of
100 bytes, minus VmRSS before, divided by N. Paths look like the load generator's
(`/zkbench/m/00000042`), ACL OPEN_ACL_UNSAFE, persistent.

    python bench/tree_memory.py                  # 1,000,000 znodes
    python bench/tree_memory.py --znodes 10000 --json

Run it in a process of its own: memory freed earlier in the same process would be reused and hide
part of the growth.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from zkfast._datatree import DataTree
from zkfast._jute import OP_CREATE, Txn

OPEN_ACL_UNSAFE = [(31, "world", "anyone")]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def create(tree: DataTree, path: bytes, data: bytes, zxid: int) -> int:
    t = Txn(0, 1, zxid, 1_700_000_000_000 + zxid, OP_CREATE)
    t.path = path
    t.data = data
    t.acl = OPEN_ACL_UNSAFE
    return int(tree.apply(t))


def measure(znodes: int, data_size: int = 100) -> dict[str, Any]:
    tree = DataTree()
    zxid = 1
    for p in (b"/zkbench", b"/zkbench/m"):
        create(tree, p, b"", zxid)
        zxid += 1
    data = b"x" * data_size
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    for i in range(znodes):
        if create(tree, b"/zkbench/m/%08d" % i, data, zxid):
            raise RuntimeError(f"create {i} failed")
        zxid += 1
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_bytes()
    assert tree.node_count() >= znodes
    return {"znodes": znodes, "data_size": data_size, "rss_before": rss0, "rss_after": rss1,
            "bytes_per_znode": (rss1 - rss0) / max(1, znodes), "seconds": elapsed,
            "creates_per_s": znodes / elapsed if elapsed > 0 else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--znodes", type=int, default=1_000_000, help="znodes to create (default %(default)s)")
    ap.add_argument("--data-size", type=int, default=100, help="bytes of data per znode (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="print a JSON object")
    a = ap.parse_args(argv)
    r = measure(a.znodes, a.data_size)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"DataTree with {r['znodes']:,} znodes of {r['data_size']} B: "
              f"{r['bytes_per_znode']:.0f} bytes per znode (RSS {r['rss_before'] / 1e6:.0f} MB -> "
              f"{r['rss_after'] / 1e6:.0f} MB), {r['creates_per_s']:,.0f} creates/s via DataTree.apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
