"""Differential tests: zkfast must give the same results as Apache ZooKeeper 3.8.0.

Every script runs, through Apache ZooKeeper's own Java client (tests/java/ZkDriver.java), against a fresh
Apache ZooKeeper and a fresh target server; the outputs (results, watch events, reply headers) must be
identical after normalisation (tests/testbase/difftest.py explains what is normalised).

Environment:
  ZKFAST_DIFF_TARGET     zkfast (default) | apache (a second Apache server: proves the harness is deterministic)
  ZKFAST_DIFF_SEEDS      number of random scripts (default 10)
  ZKFAST_DIFF_SEED_BASE  first seed (default 0)
  ZKFAST_DIFF_STEPS      steps per random script (default 110)
  ZKFAST_DIFF_DUMP       directory for the script and raw outputs of failing cases (default: pytest tmp_path)
A failing case can be replayed with `python -m testbase.difftest --seeds N --target zkfast`.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testbase import javadriver
from testbase.difftest import (
    ADMIN,
    ALL,
    CREATE,
    DELETE,
    READ,
    WRITE,
    DiffHarness,
    DiffResult,
    compare,
    digest_id,
    generate_script,
    normalize,
)
from testbase.process import ApacheZkProcess, apache_available

TARGET = os.environ.get("ZKFAST_DIFF_TARGET", "zkfast")
N_SEEDS = int(os.environ.get("ZKFAST_DIFF_SEEDS", "10"))
SEED_BASE = int(os.environ.get("ZKFAST_DIFF_SEED_BASE", "0"))
STEPS = int(os.environ.get("ZKFAST_DIFF_STEPS", "110"))

Op = dict[str, Any]
U1 = digest_id("u1", "p1")
U2 = digest_id("u2", "p2")


def o(op: str, s: str = "c0", **kw: Any) -> Op:
    """One script line (see ZkDriver.java for the fields)."""
    return {"op": op, "s": s, **kw}


def opened(*names: str) -> list[Op]:
    return [o("open", n, timeout=30000) for n in names]


# ------------------------------------------------------------------------------------------ edge scripts

def sequence_numbers_count_creates_not_deletes() -> list[Op]:
    return [
        *opened("c0"),
        o("create", path="/q", data="q"),
        o("create", path="/q/n-", mode="PERSISTENT_SEQUENTIAL", stat=True),
        o("create", path="/q/n-", mode="PERSISTENT_SEQUENTIAL"),
        o("delete", path="/q/n-0000000000"),
        o("create", path="/q/n-", mode="EPHEMERAL_SEQUENTIAL", stat=True),
        o("create", path="/q/m-", mode="PERSISTENT_SEQUENTIAL", stat=True),  # the counter is per parent
        o("create", path="/q/", mode="PERSISTENT_SEQUENTIAL"),  # empty prefix: "/q/0000000004"
        o("create", path="/q/n-0000000006", data="clash"),  # counts as a create too (counter 5 → 6) …
        o("create", path="/q/n-", mode="PERSISTENT_SEQUENTIAL"),  # … so this is n-0000000006: NODEEXISTS
        o("getChildren", path="/q", stat=True),
        o("create", path="/s-", mode="PERSISTENT_SEQUENTIAL"),  # at the root (which has /zookeeper)
        o("create", path="/s-", mode="PERSISTENT_SEQUENTIAL_WITH_TTL", ttl=60000, stat=True),
        o("multi", ops=[{"op": "create", "path": "/q/x-", "mode": "PERSISTENT_SEQUENTIAL"},
                        {"op": "create", "path": "/q/x-", "mode": "PERSISTENT_SEQUENTIAL"}]),
        o("multi", ops=[{"op": "create", "path": "/q/y-", "mode": "PERSISTENT_SEQUENTIAL"},
                        {"op": "check", "path": "/q", "version": 9}]),  # fails: no number is used
        o("create", path="/q/z-", mode="PERSISTENT_SEQUENTIAL", stat=True),
        o("exists", path="/q"),
    ]


def cversion_pzxid_aversion_and_numchildren() -> list[Op]:
    return [
        *opened("c0"),
        o("create", path="/p", data="p", stat=True),
        o("create", path="/p/a", stat=True),
        o("create", path="/p/b"),
        o("exists", path="/p"),
        o("delete", path="/p/a"),
        o("getChildren", path="/p", stat=True),
        o("setData", path="/p", data="p2"),
        o("setACL", path="/p", acl="open"),
        o("setACL", path="/p", acl=[[ALL, "world", "anyone"]], version=1),
        o("getACL", path="/p"),
        o("create", path="/p/a"),
        o("getData", path="/p"),
        o("setData", path="/p/b", data=None),
        o("delete", path="/p/b", version=1),
        o("delete", path="/p/a", version=0),
        o("exists", path="/p"),
        o("exists", path="/"),
    ]


def null_empty_and_binary_data() -> list[Op]:
    blob = base64.b64encode(bytes([0, 1, 0xFF, 0xFE, 0x80, 0x7F, 10])).decode()
    return [
        *opened("c0"),
        o("create", path="/d-null", data=None, stat=True),
        o("create", path="/d-empty", data="", stat=True),
        o("create", path="/d-bin", data_b64=blob, stat=True),
        o("create", path="/d-utf8", data="\u00e9t\u00e9 \u2603 \U0001f600"),
        o("getData", path="/d-null"),
        o("getData", path="/d-empty"),
        o("getData", path="/d-bin"),
        o("getData", path="/d-utf8"),
        o("setData", path="/d-bin", data=None),
        o("getData", path="/d-bin"),
        o("setData", path="/d-null", data="x" * 3000),
        o("getData", path="/d-null"),
        o("multi", ops=[{"op": "getData", "path": "/d-null"}, {"op": "getData", "path": "/d-empty"},
                        {"op": "getData", "path": "/d-bin"}]),
    ]


def all_create_modes_with_and_without_stat() -> list[Op]:
    script = [*opened("c0", "c1"), o("create", path="/m", data="m")]
    for k, mode in enumerate(("PERSISTENT", "EPHEMERAL", "PERSISTENT_SEQUENTIAL", "EPHEMERAL_SEQUENTIAL",
                              "CONTAINER", "PERSISTENT_WITH_TTL", "PERSISTENT_SEQUENTIAL_WITH_TTL")):
        for stat in (False, True):
            op = o("create", "c1", path=f"/m/{k}{'s' if stat else ''}-", data=mode, mode=mode, stat=stat)
            if "TTL" in mode and stat:
                op["ttl"] = 5000
            script.append(op)  # TTL without Stat: refused by the client library
    script += [
        o("getChildren", path="/m", stat=True),
        o("getData", path="/m/1s-"),
        o("exists", path="/m/4s-"),
        o("exists", path="/m/5s-"),
        o("getEphemerals", "c1"),
        o("getEphemerals", "c0"),
        o("create", "c1", path="/m/4s-/kid"),     # a child in a container
        o("delete", "c1", path="/m/4s-/kid"),     # the container is now empty (no reaper runs in a script)
        o("exists", path="/m/4s-"),
        o("create", "c1", path="/m/5s-/kid"),     # a child in a TTL node
        o("create", "c1", path="/m/1s-/kid"),     # a child in an ephemeral: NOCHILDRENFOREPHEMERALS
        o("create", "c1", path="/m/t", mode="PERSISTENT_WITH_TTL", ttl=0xFFFFFFFFFF, stat=True),
        o("create", "c1", path="/m/u", mode="PERSISTENT_WITH_TTL", ttl=0, stat=True),   # refused locally
        o("create", "c1", path="/m/v", mode="PERSISTENT", ttl=100, stat=True),          # refused locally
        o("multi", "c1", ops=[{"op": "create", "path": "/m/mc", "mode": "CONTAINER"},
                              {"op": "create", "path": "/m/mt", "mode": "PERSISTENT_WITH_TTL", "ttl": 99},
                              {"op": "create", "path": "/m/me", "mode": "EPHEMERAL_SEQUENTIAL"}]),
        o("getChildren", path="/m"),
    ]
    return script


def raw_create_argument_checks() -> list[Op]:
    def raw(type_: int, path: str, flags: int, **kw: Any) -> Op:
        return o("rawCreate", type=type_, path=path, flags=flags, **kw)

    return [
        *opened("c0"),
        o("create", path="/r"),
        raw(1, "/r/f7", 7),
        raw(1, "/r/fneg", -1),
        raw(15, "/r/f7", 7),
        raw(1, "/r/ttl-by-create", 5),            # a TTL flag through plain create
        raw(15, "/r/ttl-by-create2", 6),
        raw(19, "/r/container-flag0", 0),         # createContainer with a non-container flag
        raw(15, "/r/container-by-create2", 4),
        raw(1, "/r/container-by-create", 4),
        raw(21, "/r/ttl0", 5, ttl=0),
        raw(21, "/r/ttl-max", 5, ttl=0xFFFFFFFFFF),
        raw(21, "/r/ttl-too-big", 5, ttl=0xFFFFFFFFFF + 1),
        raw(21, "/r/ttl-neg", 5, ttl=-1),
        raw(21, "/r/ttl-flag0", 0, ttl=100),
        raw(21, "/r/ttl-ephemeral", 1, ttl=100),
        raw(21, "/r/ttl-seq-", 6, ttl=100),
        raw(1, "/r/ttl-field-with-create", 0, ttl=100),  # create with a CreateTTLRequest body
        raw(1, "/r/", 0),
        raw(1, "/r/./x", 0),
        raw(1, "/r/../x", 0),
        raw(1, "//", 0),
        raw(1, "/r//x", 0),
        raw(1, "/r/\u0001", 0),
        raw(1, "/r/\u007f", 0),
        raw(1, "/r/\ufff5", 0),
        raw(1, "/r/", 2),                         # sequential: "/r/" + number is valid
        raw(1, "/missing/./x", 0),                 # the parent check comes first
        raw(1, "r-no-slash", 0),
        raw(1, "", 0),
        raw(1, "/r/empty-acl", 0, acl="empty"),
        raw(1, "/zookeeper/x", 0),
        raw(1, "/zookeeper/config/x", 0),
        o("getChildren", path="/r"),
    ]


def digest_ip_world_acls_and_noauth() -> list[Op]:
    return [
        *opened("c0", "c1", "c2"),
        o("addAuth", "c1", scheme="digest", auth="u1:p1"),
        o("addAuth", "c2", scheme="digest", auth="u2:p2"),
        o("create", "c1", path="/sec", data="secret", acl=[[ALL, "digest", U1]], stat=True),
        o("getData", "c0", path="/sec"),
        o("exists", "c0", path="/sec"),
        o("getACL", "c0", path="/sec"),
        o("getChildren", "c0", path="/sec"),
        o("getAllChildrenNumber", "c0", path="/sec"),
        o("setData", "c0", path="/sec", data="x"),
        o("create", "c0", path="/sec/kid"),
        o("getData", "c1", path="/sec"),
        o("getACL", "c1", path="/sec"),
        o("create", "c1", path="/sec/kid", acl="creator"),
        o("getACL", "c1", path="/sec/kid"),
        o("addAuth", "c1", scheme="digest", auth="u2:p2"),
        o("create", "c1", path="/sec/both", acl="creator"),   # creator-all expands to every digest id
        o("getACL", "c1", path="/sec/both"),
        o("delete", "c0", path="/sec/kid"),
        o("create", "c1", path="/mixed", acl=[[READ | CREATE, "world", "anyone"], [ADMIN, "digest", U1]]),
        o("getACL", "c0", path="/mixed"),          # READ but no ADMIN: digest ids come back masked
        o("getACL", "c1", path="/mixed"),
        o("setACL", "c0", path="/mixed", acl="open"),
        o("create", "c0", path="/mixed/kid"),
        o("delete", "c0", path="/mixed/kid"),      # no DELETE on the parent
        o("setData", "c0", path="/mixed", data="y"),
        o("create", "c2", path="/ro", acl="read"),
        o("create", "c2", path="/ro/kid"),
        o("setData", "c2", path="/ro", data="z"),
        o("getACL", "c2", path="/ro"),
        o("create", "c2", path="/rw2", acl=[[READ | WRITE, "digest", U2]]),
        o("setData", "c2", path="/rw2", data="ok"),
        o("setData", "c1", path="/rw2", data="ok-too"),   # c1 has u2 as well now
        o("setData", "c0", path="/rw2", data="nope"),
        o("getACL", "c2", path="/rw2"),
        o("create", "c0", path="/ip", acl=[[ALL, "ip", "127.0.0.1"]]),
        o("setData", "c0", path="/ip", data="ip"),
        o("create", "c0", path="/ipnet", acl=[[READ, "ip", "10.0.0.0/8"], [ADMIN, "ip", "127.0.0.0/24"]]),
        o("getData", "c0", path="/ipnet"),
        o("getACL", "c0", path="/ipnet"),
        o("setACL", "c0", path="/ipnet", acl=[[ALL, "ip", "127.0.0.1/32"]]),
        o("getData", "c0", path="/ipnet"),
        o("create", "c0", path="/world-mixed", acl=[[READ | CREATE | DELETE, "world", "anyone"]]),
        o("create", "c0", path="/world-mixed/k"),
        o("delete", "c0", path="/world-mixed/k"),
        o("setData", "c0", path="/world-mixed", data="no write"),
        o("multi", "c0", ops=[{"op": "check", "path": "/sec", "version": -1}]),
        o("multi", "c0", ops=[{"op": "getData", "path": "/sec"}, {"op": "getChildren", "path": "/sec"},
                              {"op": "getData", "path": "/ro"}]),
    ]


def invalid_acls() -> list[Op]:
    return [
        *opened("c0"),
        o("create", path="/ok"),
        o("create", path="/empty", acl="empty"),
        o("create", path="/creator-no-auth", acl="creator"),
        o("create", path="/bad-digest", acl=[[ALL, "digest", "nocolon"]]),
        o("create", path="/bad-ip", acl=[[ALL, "ip", "10.0.0.0/33"]]),
        o("create", path="/bad-ip2", acl=[[ALL, "ip", "not.an.ip"]]),
        o("create", path="/unknown-scheme", acl=[[ALL, "foo", "bar"]]),
        o("create", path="/world-someone", acl=[[ALL, "world", "someone"]]),
        o("create", path="/dups", acl=[[ALL, "world", "anyone"], [ALL, "world", "anyone"]]),
        o("getACL", path="/dups"),
        o("create", path="/perm0", acl=[[0, "world", "anyone"]]),
        o("getACL", path="/perm0"),
        o("setACL", path="/ok", acl="empty"),
        o("setACL", path="/ok", acl="creator"),
        o("setACL", path="/ok", acl=[[ALL, "digest", "nocolon"]]),
        o("setACL", path="/ok", acl=[[ALL, "ip", "1.2.3.4/40"]]),
        o("setACL", path="/ok", acl=[[ALL, "super", "x"]]),
        o("addAuth", scheme="digest", auth="u1:p1"),
        o("create", path="/creator", acl="creator"),
        o("getACL", path="/creator"),
        o("create", path="/auth-scheme", acl=[[READ, "auth", ""], [ALL, "world", "anyone"]]),
        o("getACL", path="/auth-scheme"),
        o("multi", ops=[{"op": "create", "path": "/in-multi", "acl": "empty"}]),
        o("exists", path="/ok"),
    ]


def multi_partial_failure_results() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("create", path="/m"),
        o("getChildren", "c1", path="/m", watch=True),
        o("multi", ops=[{"op": "create", "path": "/m/1"}, {"op": "setData", "path": "/nope", "data": "x"},
                        {"op": "create", "path": "/m/2"}]),
        o("multi", ops=[{"op": "create", "path": "/m/x", "data": "x"}, {"op": "check", "path": "/m/x",
                                                                          "version": 0},
                        {"op": "setData", "path": "/m/x", "data": "y", "version": 0},
                        {"op": "check", "path": "/m/x", "version": 1},
                        {"op": "create", "path": "/m/x/y", "mode": "EPHEMERAL"}]),
        o("multi", ops=[{"op": "create", "path": "/m/p"}, {"op": "create", "path": "/m/p/q"},
                        {"op": "delete", "path": "/m/p"}]),           # NOTEMPTY inside the multi
        o("multi", ops=[{"op": "delete", "path": "/m/x/y"}, {"op": "delete", "path": "/m/x"},
                        {"op": "create", "path": "/m/x"}]),
        o("multi", ops=[{"op": "check", "path": "/m", "version": 3}]),
        o("multi", ops=[{"op": "create", "path": "/m/x"}]),            # NODEEXISTS
        o("multi", ops=[{"op": "create", "path": "/m/e", "mode": "EPHEMERAL"},
                        {"op": "create", "path": "/m/e/k"}]),          # NOCHILDRENFOREPHEMERALS
        o("multi", ops=[{"op": "delete", "path": "/m/x", "version": 5}]),
        o("rawMulti", type=14, ops=[]),
        o("rawMulti", type=22, ops=[]),
        o("rawMulti", type=14, ops=[{"op": "create", "path": "/m/mix"}, {"op": "getData", "path": "/m"}]),
        o("rawMulti", type=22, ops=[{"op": "getData", "path": "/m"}, {"op": "create", "path": "/m/mix"}]),
        o("rawMulti", type=22, ops=[{"op": "check", "path": "/m", "version": -1}]),
        o("rawMulti", type=14, ops=[{"op": "getChildren", "path": "/m"}]),
        o("multi", ops=[{"op": "create", "path": "/m/1"}, {"op": "delete", "path": "/m/1"}]),
        o("multi", ops=[{"op": "create", "path": "/m/ok", "data": "1", "mode": "EPHEMERAL"},
                        {"op": "setData", "path": "/m", "data": "2"}]),
        o("multi", ops=[{"op": "delete", "path": "/m/bad/"}, {"op": "create", "path": "/m/z"}]),  # local
        o("getChildren", "c1", path="/m", stat=True),
        o("exists", path="/m/1"),
    ]


def multi_read_mixed_results() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("create", path="/r", data="r"),
        o("create", path="/r/a", data="a"),
        o("create", path="/r/b", data=None),
        o("addAuth", "c1", scheme="digest", auth="u1:p1"),
        o("create", "c1", path="/r/sec", data="s", acl=[[ALL, "digest", U1]]),
        o("multi", ops=[{"op": "getData", "path": "/r"}, {"op": "getChildren", "path": "/r"},
                        {"op": "getData", "path": "/r/missing"}, {"op": "getChildren", "path": "/r/missing"},
                        {"op": "getData", "path": "/r/sec"}, {"op": "getChildren", "path": "/r/sec"},
                        {"op": "getData", "path": "/r/b"}, {"op": "getChildren", "path": "/r/a"}]),
        o("multi", "c1", ops=[{"op": "getData", "path": "/r/sec"}, {"op": "getData", "path": "/zookeeper"},
                              {"op": "getChildren", "path": "/"}]),
    ]


def one_shot_watches_across_sessions() -> list[Op]:
    return [
        *opened("c0", "c1", "c2"),
        o("create", path="/w", data="0"),
        o("getData", "c1", path="/w", watch=True),
        o("exists", "c1", path="/w", watch=True),          # the same data watch again
        o("exists", "c1", path="/w/new", watch=True),      # a watch on a missing node
        o("getChildren", "c1", path="/w", watch=True),
        o("getData", "c2", path="/w", watch=True),
        o("setData", path="/w", data="1"),                  # NodeDataChanged to c1 and c2, once
        o("setData", path="/w", data="2"),                  # nothing: one-shot
        o("create", path="/w/new"),                         # NodeCreated + NodeChildrenChanged to c1
        o("create", path="/w/new2"),                        # nothing
        o("getData", "c1", path="/w/new", watch=True),
        o("getChildren", "c1", path="/w/new", watch=True),
        o("delete", path="/w/new"),                         # one NodeDeleted for both watches
        o("getData", "c1", path="/w", watch=True),
        o("setACL", path="/w", acl="open"),                 # setACL fires nothing
        o("exists", "c1", path="/gone", watch=True),
        o("create", path="/gone"),
        o("exists", "c1", path="/gone", watch=True),
        o("delete", path="/gone"),
        o("getData", "c1", path="/missing", watch=True),    # NONODE: no watch is left
        o("getChildren", "c1", path="/missing", watch=True),
        o("create", path="/missing"),
        o("addAuth", "c2", scheme="digest", auth="u2:p2"),
        o("exists", "c1", path="/private", watch=True),
        o("create", "c2", path="/private", acl=[[ALL, "digest", U2]]),  # c1 lacks READ: no event
        o("exists", "c1", path="/private", watch=True),
        o("setData", "c2", path="/private", data="x"),
        o("getChildren", "c1", path="/", watch=True),
        o("create", path="/x", mode="EPHEMERAL"),
        o("getData", "c1", path="/x", watch=True),
        o("close"),                                          # deleting c0's ephemeral fires c1's watches
        o("sync", "c1", path="/"),
    ]


def persistent_and_recursive_watches() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("addWatch", "c1", path="/p", mode="PERSISTENT"),
        o("addWatch", "c1", path="/r", mode="PERSISTENT_RECURSIVE"),
        o("addWatch", "c1", path="/missing/deep", mode="PERSISTENT_RECURSIVE"),
        o("create", path="/p", data="1"),
        o("setData", path="/p", data="2"),
        o("setData", path="/p", data="3"),
        o("create", path="/p/c"),                  # NodeChildrenChanged for the persistent watch
        o("setData", path="/p/c", data="x"),       # nothing: not recursive
        o("create", path="/r"),
        o("create", path="/r/x"),
        o("create", path="/r/x/y", data="y"),
        o("setData", path="/r/x/y", data="z"),
        o("delete", path="/r/x/y"),
        o("create", path="/r/x/s-", mode="EPHEMERAL_SEQUENTIAL"),
        o("getData", "c1", path="/r/x", watch=True),   # a one-shot watch under the recursive one
        o("setData", path="/r/x", data="both"),
        o("multi", ops=[{"op": "create", "path": "/r/m"}, {"op": "setData", "path": "/r", "data": "m"},
                        {"op": "create", "path": "/p/m"}]),
        o("create", path="/missing"),
        o("create", path="/missing/deep"),
        o("create", path="/missing/deep/er"),
        o("removeWatches", "c1", path="/p", type="Data", all=True),
        o("setData", path="/p", data="4"),
        o("removeWatches", "c1", path="/p", type="Any", all=True),
        o("setData", path="/p", data="5"),
        o("removeWatches", "c1", path="/r", type="Children", all=False),
        o("removeWatches", "c1", path="/r", type="Any", all=False),
        o("setData", path="/r", data="after"),
        o("addWatch", "c1", path="/", mode="PERSISTENT_RECURSIVE"),
        o("create", path="/top"),
        o("delete", path="/top"),
        o("addWatch", "c1", path="/p", mode="PERSISTENT"),
        o("addWatch", "c1", path="/p", mode="PERSISTENT_RECURSIVE"),
        o("setData", path="/p/c", data="deep"),
        o("delete", path="/p/c"),
    ]


def remove_watches_variants() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("create", path="/a"),
        o("create", path="/b"),
        o("removeWatches", "c1", path="/a", type="Data"),            # NOWATCHER (checkWatches)
        o("removeWatches", "c1", path="/a", type="Any", all=True),   # NOWATCHER (removeWatches)
        o("getData", "c1", path="/a", watch=True),
        o("getChildren", "c1", path="/a", watch=True),
        o("removeWatches", "c1", path="/a", type="Children"),
        o("create", path="/a/k"),                                     # no child event any more
        o("setData", path="/a", data="1"),                            # the data watch still fires
        o("getData", "c1", path="/a", watch=True),
        o("getChildren", "c1", path="/a", watch=True),
        o("removeWatches", "c1", path="/a", type="Any"),
        o("setData", path="/a", data="2"),
        o("exists", "c1", path="/nope", watch=True),
        o("removeWatches", "c1", path="/nope", type="Data", all=True),
        o("create", path="/nope"),
        o("exists", "c1", path="/b", watch=True),
        o("removeWatches", "c1", path="/b", type="Children", all=True),
        o("removeWatches", "c1", path="/b", type="Data", local=True),
        o("setData", path="/b", data="b"),
        o("getChildren", "c1", path="/b", watch=True),
        o("removeWatches", "c1", path="/b", type="Any", all=True, local=True),
        o("create", path="/b/k"),
        o("removeWatches", "c1", path="/zookeeper", type="Any"),
    ]


def reconnect_set_watches_synthesises_events() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("create", path="/x", data="x"),
        o("create", path="/z"),
        o("create", path="/del", data="d"),
        o("create", path="/keep", data="k"),
        o("create", path="/kc"),
        o("getData", "c1", path="/x", watch=True),
        o("exists", "c1", path="/y", watch=True),
        o("getChildren", "c1", path="/z", watch=True),
        o("getData", "c1", path="/del", watch=True),
        o("getChildren", "c1", path="/del", watch=True),
        o("getData", "c1", path="/keep", watch=True),
        o("getChildren", "c1", path="/kc", watch=True),
        o("exists", "c1", path="/never", watch=True),
        o("cut", "c1"),
        o("setData", path="/x", data="x2"),
        o("create", path="/y"),
        o("create", path="/z/k"),
        o("delete", path="/del"),
        o("setData", path="/kc", data="no child change"),
        o("heal", "c1"),
        o("setData", path="/keep", data="k2"),       # re-registered watches fire normally
        o("create", path="/kc/child"),
        o("create", path="/never"),
        o("setData", path="/x", data="x3"),          # already fired during the resync: nothing
        o("cut", "c1"),
        o("heal", "c1"),                               # nothing to re-send
        o("getData", "c1", path="/x", watch=True),
        o("cut", "c1"),
        o("delete", path="/x"),
        o("create", path="/x"),                        # deleted and re-created while away
        o("heal", "c1"),
    ]


def reconnect_set_watches2_with_persistent_watches() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("create", path="/p"),
        o("addWatch", "c1", path="/p", mode="PERSISTENT"),
        o("addWatch", "c1", path="/r", mode="PERSISTENT_RECURSIVE"),
        o("getData", "c1", path="/p", watch=True),
        o("cut", "c1"),
        o("setData", path="/p", data="missed"),      # persistent watches are not resynthesised
        o("create", path="/r"),
        o("create", path="/r/a"),
        o("heal", "c1"),
        o("setData", path="/p", data="seen"),
        o("create", path="/r/a/b"),
        o("create", path="/p/c"),
        o("cut", "c1"),
        o("delete", path="/p/c"),
        o("heal", "c1"),
        o("delete", path="/r/a/b"),
    ]


def reconnect_replays_auth() -> list[Op]:
    return [
        *opened("c0", "c1", "c2"),
        o("addAuth", "c0", scheme="digest", auth="u1:p1"),
        o("addAuth", "c1", scheme="digest", auth="u1:p1"),
        o("addAuth", "c1", scheme="digest", auth="u1:p1"),   # both are sent again on reconnect
        o("create", "c1", path="/s", data="s", acl=[[ALL, "digest", U1]]),
        o("getData", "c1", path="/s", watch=True),
        o("cut", "c1"),
        o("setData", "c0", path="/s", data="changed while c1 was away"),
        o("heal", "c1"),                                      # the auth comes before setWatches
        o("whoAmI", "c1"),
        o("getData", "c1", path="/s", watch=True),
        o("getData", "c2", path="/s"),
        o("setData", "c0", path="/s", data="again"),
    ]


def ephemerals_close_and_get_ephemerals() -> list[Op]:
    return [
        *opened("c0", "c1", "c2"),
        o("create", path="/e"),
        o("create", "c1", path="/e1", mode="EPHEMERAL", stat=True),
        o("create", "c1", path="/e/x", mode="EPHEMERAL"),
        o("create", "c1", path="/e/s-", mode="EPHEMERAL_SEQUENTIAL"),
        o("create", "c1", path="/e/s-", mode="EPHEMERAL_SEQUENTIAL"),
        o("create", "c2", path="/e/c2", mode="EPHEMERAL"),
        o("create", "c1", path="/e1/child"),
        o("create", "c1", path="/e1/child", mode="EPHEMERAL"),
        o("getEphemerals", "c1"),
        o("getEphemerals", "c1", prefix="/"),
        o("getEphemerals", "c1", prefix="/e"),
        o("getEphemerals", "c1", prefix="/e/"),
        o("getEphemerals", "c1", prefix="/e/s"),
        o("getEphemerals", "c1", prefix=""),
        o("getEphemerals", "c1", prefix="/nomatch"),
        o("getEphemerals", "c0"),
        o("getEphemerals", "c2", prefix="/e"),
        o("getData", path="/e1", watch=True),
        o("getChildren", path="/e", watch=True),
        o("exists", path="/e/x", watch=True),
        o("addWatch", "c2", path="/e", mode="PERSISTENT_RECURSIVE"),
        o("delete", path="/e1"),                      # anyone may delete another session's ephemeral
        o("getData", path="/e1", watch=True),
        o("close", "c1"),
        o("getChildren", path="/e", stat=True),
        o("getEphemerals", "c2"),
        *opened("c3"),
        o("getEphemerals", "c3"),
        o("create", "c3", path="/e/c3", mode="EPHEMERAL"),
        o("close", "c2"),
        o("getAllChildrenNumber", path="/e"),
    ]


def whoami_and_auth_schemes() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("whoAmI"),
        o("addAuth", scheme="digest", auth="u1:p1"),
        o("whoAmI"),
        o("addAuth", scheme="digest", auth="u1:p1"),
        o("addAuth", scheme="digest", auth="u1:wrong"),
        o("addAuth", scheme="digest", auth="u2:p2"),
        o("whoAmI"),
        o("addAuth", scheme="digest", auth="nocolon"),
        o("addAuth", scheme="digest", auth=""),
        o("addAuth", scheme="ip", auth="10.1.2.3"),
        o("whoAmI"),
        o("create", path="/mine", acl="creator"),
        o("getACL", path="/mine"),
        o("addAuth", "c1", scheme="bogus", auth="x"),     # AUTHFAILED, then the server closes
        o("getData", "c1", path="/mine"),                  # the client object is dead
        o("whoAmI"),
        o("getData", path="/mine"),
    ]


def session_timeout_negotiation() -> list[Op]:
    return [
        o("open", "c0", timeout=1000),
        o("open", "c1", timeout=100000),
        o("open", "c2", timeout=10000),
        o("open", "c3", timeout=4000),
        o("open", "c4", timeout=40001),
        o("close", "c0"),
        o("close", "c1"),
        o("close", "c2"),
        o("close", "c3"),
        o("close", "c4"),
        *opened("c5"),
        o("exists", "c5", path="/"),
    ]


def builtin_nodes() -> list[Op]:
    return [
        *opened("c0"),
        o("exists", path="/"),
        o("getData", path="/"),
        o("getChildren", path="/", stat=True),
        o("getData", path="/zookeeper"),
        o("getChildren", path="/zookeeper", stat=True),
        o("getData", path="/zookeeper/config"),
        o("getACL", path="/zookeeper/config"),
        o("getData", path="/zookeeper/quota"),
        o("getACL", path="/"),
        o("getAllChildrenNumber", path="/"),
        o("getAllChildrenNumber", path="/zookeeper"),
        o("setData", path="/zookeeper/config", data="x"),
        o("setData", path="/zookeeper", data="x"),
        o("getData", path="/zookeeper"),
        o("delete", path="/zookeeper"),
        o("delete", path="/zookeeper/quota"),
        o("delete", path="/"),
        o("create", path="/", data="root"),
        o("create", path="/zookeeper/x"),
        o("create", path="/zookeeper/quota/y"),
        o("setData", path="/", data="root-data"),
        o("getData", path="/"),
        o("setACL", path="/zookeeper/quota", acl="read"),
        o("sync", path="/"),
        o("sync", path="/zookeeper/nope"),
        o("getAllChildrenNumber", path="/"),
    ]


def version_checks() -> list[Op]:
    return [
        *opened("c0"),
        o("create", path="/v", data="0"),
        o("setData", path="/v", data="1", version=1),
        o("setData", path="/v", data="1", version=0),
        o("setData", path="/v", data="2", version=1),
        o("setData", path="/v", data="3", version=-1),
        o("setData", path="/v", data="3", version=-2),
        o("delete", path="/v", version=0),
        o("setACL", path="/v", acl="open", version=1),
        o("setACL", path="/v", acl="open", version=0),
        o("setACL", path="/v", acl="open", version=0),
        o("multi", ops=[{"op": "check", "path": "/v", "version": 3}, {"op": "check", "path": "/v",
                                                                       "version": 2}]),
        o("multi", ops=[{"op": "setData", "path": "/v", "data": "m", "version": 3},
                        {"op": "setData", "path": "/v", "data": "n", "version": 4},
                        {"op": "delete", "path": "/v", "version": 5}]),
        o("exists", path="/v"),
        o("delete", path="/v", version=3),
        o("exists", path="/v"),
    ]


def pipelined_ops_keep_order() -> list[Op]:
    return [
        *opened("c0", "c1"),
        o("pipeline", ops=[
            {"op": "create", "path": "/pl", "data": "a"},
            {"op": "getData", "path": "/pl", "watch": True},
            {"op": "setData", "path": "/pl", "data": "b"},      # own watch fires before this reply
            {"op": "exists", "path": "/pl/k", "watch": True},
            {"op": "create", "path": "/pl/k", "mode": "EPHEMERAL"},
            {"op": "getChildren", "path": "/pl", "watch": True, "stat": True},
            {"op": "delete", "path": "/pl/k"},
            {"op": "sync", "path": "/pl"},
            {"op": "whoAmI"},
            {"op": "getEphemerals"},
            {"op": "getAllChildrenNumber", "path": "/pl"},
            {"op": "delete", "path": "/pl"},
            {"op": "exists", "path": "/pl"},
        ]),
        o("pipeline", "c1", ops=[
            {"op": "exists", "path": "/pl2", "watch": True},
            {"op": "getData", "path": "/pl2", "watch": True},
            {"op": "create", "path": "/pl2", "mode": "PERSISTENT_SEQUENTIAL"},
            {"op": "multi", "ops": [{"op": "create", "path": "/pl2"}, {"op": "setData", "path": "/pl2"}]},
            {"op": "getData", "path": "/pl2", "watch": True},
            {"op": "addWatch", "path": "/pl2", "mode": "PERSISTENT"},
            {"op": "setData", "path": "/pl2", "data": "x"},
            {"op": "removeWatches", "path": "/pl2", "type": "Any", "all": True},
            {"op": "delete", "path": "/pl2"},
        ]),
    ]


def missing_nodes_and_odd_paths() -> list[Op]:
    return [
        *opened("c0"),
        o("sync", path="/missing"),
        o("exists", path="/missing"),
        o("getData", path="/missing"),
        o("getChildren", path="/missing"),
        o("getChildren", path="/missing", stat=True),
        o("getAllChildrenNumber", path="/missing"),
        o("getACL", path="/missing"),
        o("setACL", path="/missing", acl="open"),
        o("setData", path="/missing", data="x"),
        o("delete", path="/missing"),
        o("delete", path="/missing/deeper"),
        o("create", path="/missing/child"),
        o("create", path="/\u00fc"),
        o("create", path="/\u00fc/\u2603", data="snow"),
        o("create", path="/\u00fc/\U0001f600", data="emoji"),
        o("getChildren", path="/\u00fc"),
        o("getData", path="/\u00fc/\u2603"),
        o("create", path="/" + "n" * 300),
        o("getChildren", path="/"),
        o("create", path="/with space"),
        o("create", path="/dot.name"),
        o("create", path="/..."),
        o("getData", path="/bad/"),          # refused by the client library
        o("exists", path="no-slash"),
        o("create", path="/zookeeper"),
        o("getChildren", path="/", stat=True),
    ]


EDGE_SCRIPTS: dict[str, Callable[[], list[Op]]] = {f.__name__: f for f in (
    sequence_numbers_count_creates_not_deletes,
    cversion_pzxid_aversion_and_numchildren,
    null_empty_and_binary_data,
    all_create_modes_with_and_without_stat,
    raw_create_argument_checks,
    digest_ip_world_acls_and_noauth,
    invalid_acls,
    multi_partial_failure_results,
    multi_read_mixed_results,
    one_shot_watches_across_sessions,
    persistent_and_recursive_watches,
    remove_watches_variants,
    reconnect_set_watches_synthesises_events,
    reconnect_set_watches2_with_persistent_watches,
    reconnect_replays_auth,
    ephemerals_close_and_get_ephemerals,
    whoami_and_auth_schemes,
    session_timeout_negotiation,
    builtin_nodes,
    version_checks,
    pipelined_ops_keep_order,
    missing_nodes_and_odd_paths,
)}


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def harness() -> Iterator[DiffHarness]:
    """Checks once that the reference, the driver and the target can run (a failure here fails every test
    of the module with the reason, it never skips). Each script then gets a fresh pair of servers."""
    if not apache_available():
        pytest.fail("Apache ZooKeeper 3.8 (Debian's /usr/share/java/zookeeper.jar) and java are required")
    if not javadriver.driver_available():
        pytest.fail("javac/java or the ZooKeeper client jars are missing: the Java driver cannot run")
    javadriver.ensure_built()
    try:
        h = DiffHarness(TARGET)
        h.check_target()
    except Exception as e:
        pytest.fail(f"the target server {TARGET!r} is not runnable ({type(e).__name__}): {e}")
    yield h


def _dump_dir(tmp_path: Path, name: str) -> Path:
    root = os.environ.get("ZKFAST_DIFF_DUMP")
    return (Path(root) if root else tmp_path) / name


def assert_same(res: DiffResult, tmp_path: Path) -> None:
    if res.diffs:
        where = res.dump(_dump_dir(tmp_path, res.name.replace(" ", "-")))
        pytest.fail(f"{res.report()}\n\n(script and both outputs in {where})", pytrace=False)


# ------------------------------------------------------------------------------------------ tests

@pytest.mark.parametrize("name", list(EDGE_SCRIPTS))
def test_edge_case(harness: DiffHarness, name: str, tmp_path: Path) -> None:
    assert_same(harness.run(EDGE_SCRIPTS[name](), name), tmp_path)


@pytest.mark.parametrize("seed", range(SEED_BASE, SEED_BASE + N_SEEDS))
def test_random_script(harness: DiffHarness, seed: int, tmp_path: Path) -> None:
    assert_same(harness.run(generate_script(seed, STEPS), f"seed {seed}"), tmp_path)


def test_generator_is_seeded_and_covers_every_operation() -> None:
    assert generate_script(3) == generate_script(3)
    assert generate_script(3) != generate_script(4)
    kinds: set[str] = set()
    for seed in range(30):
        for op in generate_script(seed):
            kinds.add(op["op"])
            if op["op"] == "create":
                kinds.add(f"mode:{op['mode']}")
            for sub in op.get("ops", []):
                kinds.add(f"{op['op']}/{sub['op']}")
    expected = {"open", "close", "cut", "heal", "pipeline", "create", "delete", "exists", "getData", "setData",
                "getACL", "setACL", "getChildren", "sync", "multi", "addWatch", "removeWatches",
                "getEphemerals", "getAllChildrenNumber", "whoAmI", "addAuth", "rawCreate", "rawMulti",
                "multi/create", "multi/delete", "multi/setData", "multi/check", "multi/getData",
                "multi/getChildren",
                *(f"mode:{m}" for m in ("PERSISTENT", "EPHEMERAL", "PERSISTENT_SEQUENTIAL", "EPHEMERAL_SEQUENTIAL",
                                        "CONTAINER", "PERSISTENT_WITH_TTL", "PERSISTENT_SEQUENTIAL_WITH_TTL"))}
    assert expected <= kinds, expected - kinds


def _planted_reference() -> list[dict[str, Any]]:
    script = [
        *opened("c0", "c1"),
        o("create", path="/a", data="x", stat=True),
        o("create", path="/a/k1", mode="EPHEMERAL"),
        o("create", path="/a/k2"),
        o("getData", "c1", path="/a", watch=True),
        o("setData", path="/a", data="y"),
        o("getChildren", "c1", path="/a", stat=True),
        o("getData", "c1", path="/a/k1"),
        o("create", "c1", path="/e1", mode="EPHEMERAL"),
        o("create", "c1", path="/e2", mode="EPHEMERAL"),
        o("exists", path="/e1", watch=True),
        o("exists", path="/e2", watch=True),
        o("close", "c1"),                     # two NodeDeleted events for c0, in HashSet order
    ]
    with ApacheZkProcess() as zk:
        return javadriver.run_script(script, [zk.address])[0]


def test_driver_detects_difference() -> None:
    """The comparer must fail on a planted difference and must not fail on what normalisation removes."""
    if not (apache_available() and javadriver.driver_available()):
        pytest.fail("Apache ZooKeeper and the Java driver are required")
    ref = _planted_reference()
    base = normalize(ref)
    assert compare(base, normalize(copy.deepcopy(ref))) == []

    def mutated(fn: Callable[[list[dict[str, Any]]], None]) -> list[str]:
        lines = copy.deepcopy(ref)
        fn(lines)
        return compare(base, normalize(lines))

    def first(lines: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return next(x for x in lines if pred(x))

    # 1. one zxid changed in one stat
    def bump_czxid(lines: list[dict[str, Any]]) -> None:
        first(lines, lambda x: x.get("op") == "setData")["stat"]["czxid"] += 1
    diffs = mutated(bump_czxid)
    assert diffs and "czxid" in diffs[0], diffs

    # 2. a watch event delivered after the reply that should follow it
    def swap_event(lines: list[dict[str, Any]]) -> None:
        k = next(i for i, x in enumerate(lines) if x.get("event") == "NodeDataChanged")
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
    assert mutated(swap_event)

    # 3. a reply header zxid on the wire
    def wire_zxid(lines: list[dict[str, Any]]) -> None:
        first(lines, lambda x: x.get("w") == "<" and x.get("xid", 0) > 0)["zxid"] += 1
    assert mutated(wire_zxid)

    # 4. an mtime that does not belong to its mzxid (the same zxid with two different times)
    def odd_mtime(lines: list[dict[str, Any]]) -> None:
        st = first(lines, lambda x: x.get("op") == "getChildren")["stat"]
        st["mtime"] += 1
    assert any("several times" in d or "mtime" in d for d in mutated(odd_mtime))

    # 5. an ephemeralOwner naming the wrong session
    def wrong_owner(lines: list[dict[str, Any]]) -> None:
        sids = [x["session"] for x in lines if x.get("op") == "open"]
        first(lines, lambda x: x.get("op") == "getData" and x.get("path") == "/a/k1")["stat"][
            "ephemeralOwner"] = sids[1]
    assert mutated(wrong_owner)

    # 6. the order of the events one session close fires: sorted, unless strict_close_order
    def swap_close_events(lines: list[dict[str, Any]]) -> None:
        k = next(i for i, x in enumerate(lines) if x.get("event") == "NodeDeleted" and x["s"] == "c0")
        assert lines[k + 1].get("event") == "NodeDeleted", lines[k:k + 2]
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
        n = [i for i, x in enumerate(lines) if x.get("xid") == -1 and x["s"] == "c0" and x["ev"][0] == 2]
        lines[n[0]], lines[n[1]] = lines[n[1]], lines[n[0]]
    assert mutated(swap_close_events) == []
    swapped = copy.deepcopy(ref)
    swap_close_events(swapped)
    assert compare(normalize(ref, strict_close_order=True), normalize(swapped, strict_close_order=True))

    # 7. not differences: other session ids, other times, another child order
    def harmless(lines: list[dict[str, Any]]) -> None:
        sids = {x["session"] for x in lines if x.get("op") == "open"}

        def shift(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: shift(x) for k, x in v.items()}
            if isinstance(v, list):
                return [shift(x) for x in v]
            return v + 1000 if isinstance(v, int) and v in sids else v

        lines[:] = shift(lines)
        for x in lines:
            if x.get("children"):
                x["children"].reverse()
            for st in [x.get("stat")]:
                if isinstance(st, dict) and st["ctime"]:
                    st["ctime"] += 7
                    st["mtime"] += 7
    assert mutated(harmless) == []
