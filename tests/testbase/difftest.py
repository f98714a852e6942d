"""Differential testing: the same script of client operations against Apache ZooKeeper 3.8.0 and a target
server (zkfast), outputs compared after normalisation.

(a) `generate_script(seed)`: seeded random scripts over every client operation (see ZkDriver.java for the
    format), several sessions, a small path namespace so that operations collide.
(b) `normalize(lines)`: removes what legitimately differs between two correct servers:
      - session ids → `sid:<session name>` (by the session whose `open` returned them; unknown ones by
        order of first appearance),
      - ctime/mtime → `t@<zxid>` (the zxid that wrote them: czxid for ctime, mzxid for mtime). The
        normaliser checks instead that one zxid always maps to one time, that time does not go backwards
        with the zxid, and that times fall inside the run; violations become `check` lines,
      - children lists, getEphemerals lists and the path lists of setWatches requests are sorted,
      - the watch events fired by one session close are sorted (Apache takes the paths from a HashSet),
      - what a client sent after an auth packet that got AUTHFAILED is dropped (a race with the close).
    Everything else (zxids, versions, error codes, event order, reply header zxids, body lengths) is kept.
(c) `compare(ref, target)`: a readable diff of the first differences, stream by stream.

`DiffHarness` starts a fresh pair of servers for each script (so that zxids line up from the start and
no timer of an earlier script can fire), runs the script against both in one driver JVM and compares.
Run `python -m testbase.difftest --help` for a command line (e.g. many seeds, Apache vs Apache).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import difflib
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbase import javadriver
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess

Op = dict[str, Any]
Line = dict[str, Any]

READ, WRITE, CREATE, DELETE, ADMIN, ALL = 1, 2, 4, 8, 16, 31
USERS = {"u1": "p1", "u2": "p2"}


def digest_id(user: str, password: str) -> str:
    """The id that digest auth `user:password` produces: user:base64(sha1("user:password"))."""
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode('ascii')}"


# ------------------------------------------------------------------------------------------ generator

NAMES = ("a", "b")
SPECIAL_PATHS = ("/zookeeper", "/zookeeper/config", "/zookeeper/quota", "/")
CREATE_MODES = (
    ("PERSISTENT", 34), ("EPHEMERAL", 14), ("PERSISTENT_SEQUENTIAL", 12), ("EPHEMERAL_SEQUENTIAL", 10),
    ("CONTAINER", 10), ("PERSISTENT_WITH_TTL", 10), ("PERSISTENT_SEQUENTIAL_WITH_TTL", 10),
)
MODE_FLAGS = {"PERSISTENT": 0, "EPHEMERAL": 1, "PERSISTENT_SEQUENTIAL": 2, "EPHEMERAL_SEQUENTIAL": 3,
              "CONTAINER": 4, "PERSISTENT_WITH_TTL": 5, "PERSISTENT_SEQUENTIAL_WITH_TTL": 6}
MAX_TTL = 0xFFFFFFFFFF
# Apache ZooKeeper 3.8.0 passes createTTL (op 21) with one of these (non-TTL) flags and a negative ttl
# through its checks and then dies in SyncThread (IllegalArgumentException from the TTL encoding, JVM exit
# code 2). Generated scripts never send that; it is not behaviour for zkfast to copy.
APACHE_CRASH_CREATE_TTL_FLAGS = (0, 1, 2, 3, 4)
ACL_NAMES: dict[str, Any] = {
    "open": [[ALL, "world", "anyone"]],
    "read": [[READ, "world", "anyone"]],
}


def _universe() -> list[str]:
    out: list[str] = []
    level = [""]
    for _ in range(3):
        level = [f"{p}/{n}" for p in level for n in NAMES]
        out.extend(level)
    return out


UNIVERSE = _universe()


def _parent(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def _child(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


@dataclass
class _Node:
    acl: list[list[Any]]
    owner: str | None = None     # session name of an ephemeral
    version: int = 0
    aversion: int = 0
    creates: int = 0             # children ever created: the next sequence number
    children: set[str] = field(default_factory=set)


class TreeModel:
    """A rough model of the server's tree (existence, versions, ACLs, ephemerals, sequence numbers).

    It only steers the generator towards operations that meet existing nodes; it is not an oracle (the
    oracle is Apache ZooKeeper), so where it is wrong the scripts are merely less interesting."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {
            "/": _Node(ACL_NAMES["open"], children={"zookeeper"}),
            "/zookeeper": _Node(ACL_NAMES["open"], children={"config", "quota"}),
            "/zookeeper/config": _Node(ACL_NAMES["read"]),
            "/zookeeper/quota": _Node(ACL_NAMES["open"]),
        }
        self.auth: dict[str, set[str]] = {}

    def copy(self) -> TreeModel:
        other = TreeModel()
        other.nodes = {p: _Node([list(a) for a in n.acl], n.owner, n.version, n.aversion, n.creates,
                                set(n.children)) for p, n in self.nodes.items()}
        other.auth = {k: set(v) for k, v in self.auth.items()}
        return other

    def allowed(self, session: str, path: str, perm: int) -> bool:
        acl = self.nodes[path].acl
        if not acl:
            return True
        for perms, scheme, ident in acl:
            if not perms & perm:
                continue
            if scheme == "world" and ident == "anyone":
                return True
            if scheme == "ip" and ident == "127.0.0.1":
                return True
            if scheme == "digest" and any(digest_id(u, USERS[u]) == ident for u in self.auth.get(session, ())):
                return True
        return False

    def resolve_acl(self, session: str, spec: Any) -> list[list[Any]] | None:
        """The stored ACL for a create/setACL, or None for INVALIDACL."""
        if spec == "creator":
            users = sorted(self.auth.get(session, ()))
            return [[ALL, "digest", digest_id(u, USERS[u])] for u in users] or None
        if spec == "empty":
            return None
        acl = ACL_NAMES[spec] if isinstance(spec, str) else spec
        for _, scheme, ident in acl:
            if scheme == "digest" and ":" not in ident:
                return None
        return [list(a) for a in acl]

    def create(self, session: str, path: str, mode: str, acl: Any, ttl: int | None = None) -> str | None:
        if "TTL" in mode and not (ttl is not None and 0 < ttl <= MAX_TTL):
            return None
        if "TTL" not in mode and ttl is not None and ttl >= 0:
            return None
        if not path.startswith("/") or path.endswith("/") and "SEQUENTIAL" not in mode:
            return None
        parent = _parent(path)
        resolved = self.resolve_acl(session, acl)
        pnode = self.nodes.get(parent)
        if resolved is None or pnode is None or not self.allowed(session, parent, CREATE):
            return None
        if "SEQUENTIAL" in mode:
            path = f"{path}{pnode.creates:010d}"
        if path in self.nodes or pnode.owner is not None:
            return None
        pnode.creates += 1
        pnode.children.add(path.rsplit("/", 1)[1])
        self.nodes[path] = _Node(resolved, session if mode.startswith("EPHEMERAL") else None)
        return path

    def _version_ok(self, have: int, want: int) -> bool:
        return want == -1 or want == have

    def delete(self, session: str, path: str, version: int) -> bool:
        node = self.nodes.get(path)
        if node is None or path.startswith("/zookeeper") or path == "/":
            return False
        parent = _parent(path)
        if not self.allowed(session, parent, DELETE) or not self._version_ok(node.version, version):
            return False
        if node.children:
            return False
        del self.nodes[path]
        self.nodes[parent].children.discard(path.rsplit("/", 1)[1])
        return True

    def set_data(self, session: str, path: str, version: int) -> bool:
        node = self.nodes.get(path)
        if node is None or not self.allowed(session, path, WRITE) or not self._version_ok(node.version, version):
            return False
        node.version += 1
        return True

    def set_acl(self, session: str, path: str, acl: Any, version: int) -> bool:
        node = self.nodes.get(path)
        resolved = self.resolve_acl(session, acl)
        if node is None or resolved is None or not self.allowed(session, path, ADMIN):
            return False
        if not self._version_ok(node.aversion, version):
            return False
        node.aversion += 1
        node.acl = resolved
        return True

    def check(self, session: str, path: str, version: int) -> bool:
        node = self.nodes.get(path)
        return node is not None and self.allowed(session, path, READ) and self._version_ok(node.version, version)

    def multi(self, session: str, ops: Sequence[Op]) -> bool:
        trial = self.copy()
        for op in ops:
            kind = op["op"]
            if kind == "create":
                ok = trial.create(session, op["path"], op.get("mode", "PERSISTENT"), op.get("acl", "open"),
                                  op.get("ttl")) is not None
            elif kind == "delete":
                ok = trial.delete(session, op["path"], op.get("version", -1))
            elif kind == "setData":
                ok = trial.set_data(session, op["path"], op.get("version", -1))
            elif kind == "check":
                ok = trial.check(session, op["path"], op.get("version", -1))
            else:
                ok = True  # reads
            if not ok:
                return False
        self.nodes, self.auth = trial.nodes, trial.auth
        return True

    def close(self, session: str) -> None:
        for path in sorted((p for p, n in self.nodes.items() if n.owner == session), reverse=True):
            self.delete_force(path)

    def delete_force(self, path: str) -> None:
        if path in self.nodes:
            del self.nodes[path]
            self.nodes[_parent(path)].children.discard(path.rsplit("/", 1)[1])

    def apply(self, session: str, op: Op) -> None:
        """Update the model with the probable effect of one script op."""
        kind = op["op"]
        if kind == "create":
            self.create(session, op["path"], op.get("mode", "PERSISTENT"), op.get("acl", "open"), op.get("ttl"))
        elif kind == "delete":
            self.delete(session, op["path"], op.get("version", -1))
        elif kind == "setData":
            self.set_data(session, op["path"], op.get("version", -1))
        elif kind == "setACL":
            self.set_acl(session, op["path"], op.get("acl", "open"), op.get("version", -1))
        elif kind == "multi":
            self.multi(session, op["ops"])
        elif kind == "addAuth" and op.get("scheme") == "digest" and op.get("auth", "").count(":") == 1:
            user, password = op["auth"].split(":")
            if USERS.get(user) == password:
                self.auth.setdefault(session, set()).add(user)
        elif kind == "rawCreate" and op["type"] in (1, 15) and 0 <= op["flags"] <= 3 and "ttl" not in op:
            modes = {v: k for k, v in MODE_FLAGS.items()}
            self.create(session, op["path"], modes[op["flags"]], op.get("acl", "open"))


class ScriptGen:
    """Builds one random script: a few sessions, a small namespace (/a, /b, three levels deep, plus
    sequential children) so that operations collide, every client operation, watches of every kind,
    connection cuts with setWatches on reconnect, session closes. No op waits for a timer."""

    def __init__(self, seed: int, steps: int = 110, max_sessions: int = 4, cuts: int = 2) -> None:
        self.rnd = random.Random(seed)
        self.steps = steps
        self.max_sessions = max_sessions
        self.cuts_left = cuts
        self.script: list[Op] = []
        self.model = TreeModel()
        self.watched: dict[str, set[str]] = {}     # session → paths it probably watches
        self.live: list[str] = []                  # open, usable sessions (including a cut one)
        self.next_session = 0
        self.cut: str | None = None
        self.cut_steps = 0

    # -- helpers
    def chance(self, p: float) -> bool:
        return self.rnd.random() < p

    def weighted(self, items: Sequence[tuple[str, int]]) -> str:
        total = sum(w for _, w in items)
        x = self.rnd.uniform(0, total)
        for name, w in items:
            x -= w
            if x <= 0:
                return name
        return items[-1][0]

    def emit(self, op: Op) -> None:
        self.script.append(op)

    def open_session(self) -> str:
        name = f"c{self.next_session}"
        self.next_session += 1
        self.emit({"op": "open", "s": name, "timeout": 30000})
        self.live.append(name)
        self.watched[name] = set()
        return name

    def usable(self) -> list[str]:
        return [s for s in self.live if s != self.cut]

    def user_nodes(self) -> list[str]:
        return sorted(p for p in self.model.nodes if p != "/" and not p.startswith("/zookeeper"))

    def existing_path(self) -> str:
        r = self.rnd.random()
        nodes = self.user_nodes()
        if r < 0.04:
            return self.rnd.choice(SPECIAL_PATHS)
        if r < 0.84 and nodes:
            return self.rnd.choice(nodes)
        if r < 0.90:
            parent = self.rnd.choice(["/", *nodes])
            return _child(parent, f"s-{self.rnd.randrange(0, 4):010d}")
        return self.rnd.choice(UNIVERSE)

    def create_target(self) -> tuple[str, str]:
        """(parent, path) for a create; the parent usually exists."""
        parents = ["/", *[p for p in self.user_nodes() if p.count("/") < 3]]
        if self.chance(0.1):
            parent = _parent(self.rnd.choice(UNIVERSE))
        else:
            parent = self.rnd.choice(parents)
        return parent, _child(parent, self.rnd.choice(NAMES))

    def data(self) -> Op:
        r = self.rnd.random()
        if r < 0.05:
            return {"data": None}
        if r < 0.15:
            return {"data": ""}
        if r < 0.20:
            return {"data": "\u00e9t\u00e9-\u2603"}
        if r < 0.24:
            return {"data_b64": base64.b64encode(bytes(self.rnd.randrange(256) for _ in range(7))).decode()}
        return {"data": "".join(self.rnd.choice("xyz0123") for _ in range(self.rnd.randrange(1, 12)))}

    def acl(self) -> Any:
        kind = self.weighted((("open", 60), ("read", 6), ("creator", 7), ("d1", 8), ("d2rw", 4), ("ip", 4),
                              ("ipnet", 2), ("mixed", 5), ("empty", 1), ("baddigest", 1), ("d1+read", 2)))
        u1 = digest_id("u1", USERS["u1"])
        u2 = digest_id("u2", USERS["u2"])
        table: dict[str, Any] = {
            "open": "open", "read": "read", "creator": "creator", "empty": "empty",
            "d1": [[ALL, "digest", u1]],
            "d2rw": [[READ | WRITE, "digest", u2]],
            "ip": [[ALL, "ip", "127.0.0.1"]],
            "ipnet": [[READ, "ip", "10.0.0.0/8"]],
            "mixed": [[READ | CREATE | DELETE, "world", "anyone"]],
            "baddigest": [[ALL, "digest", "nocolon"]],
            "d1+read": [[ALL, "digest", u1], [READ, "world", "anyone"]],
        }
        return table[kind]

    def version(self, path: str, acl_version: bool = False) -> int:
        node = self.model.nodes.get(path)
        r = self.rnd.random()
        if node is None or r < 0.35:
            return -1
        have = node.aversion if acl_version else node.version
        return have if r < 0.85 else have + self.rnd.choice((1, 2, -2))

    # -- operations (without the session field)
    def op_create(self) -> Op:
        parent, path = self.create_target()
        mode = self.weighted(CREATE_MODES)
        if "SEQUENTIAL" in mode:
            path = _child(parent, "s-")
        op: Op = {"op": "create", "path": path, **self.data(), "acl": self.acl(), "mode": mode,
                  "stat": self.chance(0.5)}
        if "TTL" in mode:
            op["ttl"] = self.rnd.choice((1, 1000, 60000, MAX_TTL, 1000, 0 if self.chance(0.1) else 5000))
        elif self.chance(0.03):
            op["ttl"] = 1000  # rejected by the client library (ttl with a non-TTL mode)
        if self.chance(0.02):
            op["path"] = self.rnd.choice(("/a/", "a", "/a//b", "/./a"))  # rejected by the client library
        return op

    def op_multi(self) -> Op:
        ops: list[Op] = []
        for _ in range(self.rnd.randrange(1, 5)):
            kind = self.weighted((("create", 4), ("delete", 2), ("setData", 3), ("check", 3)))
            if kind == "create":
                parent, path = self.create_target()
                mode = self.weighted(CREATE_MODES[:5])
                if "SEQUENTIAL" in mode:
                    path = _child(parent, "s-")
                acl = self.acl() if self.chance(0.3) else "open"
                ops.append({"op": "create", "path": path, **self.data(), "acl": acl, "mode": mode})
                if self.chance(0.15):
                    ops[-1]["mode"] = "PERSISTENT_WITH_TTL"
                    ops[-1]["ttl"] = 5000
            elif kind == "delete":
                path = self.existing_path()
                ops.append({"op": "delete", "path": path, "version": self.version(path)})
            elif kind == "setData":
                path = self.existing_path()
                ops.append({"op": "setData", "path": path, **self.data(), "version": self.version(path)})
            else:
                path = self.existing_path()
                ops.append({"op": "check", "path": path, "version": self.version(path)})
        return {"op": "multi", "ops": ops}

    def op_multi_read(self) -> Op:
        ops: list[Op] = []
        for _ in range(self.rnd.randrange(1, 5)):
            ops.append({"op": self.rnd.choice(("getData", "getChildren")), "path": self.existing_path()})
        return {"op": "multi", "ops": ops}

    def op_raw_create(self) -> Op:
        parent, path = self.create_target()
        if self.chance(0.2):
            path = self.rnd.choice(("/a/", "/a/./b", "//", "/a\u0001", "/b/../a", "/zookeeper/x"))
        op: Op = {"op": "rawCreate", "type": self.rnd.choice((1, 15, 19, 21)), "path": path, **self.data(),
                  "acl": self.acl(), "flags": self.rnd.choice((0, 1, 2, 3, 4, 5, 6, 7, -1))}
        if op["type"] == 21 or self.chance(0.2):
            op["ttl"] = self.rnd.choice((0, 1, 5000, -1, MAX_TTL + 1))
        if op["type"] == 21 and op["flags"] in APACHE_CRASH_CREATE_TTL_FLAGS and op.get("ttl", 0) < 0:
            op["ttl"] = 5000
        return op

    def op_raw_multi(self) -> Op:
        ops: list[Op] = []
        for _ in range(self.rnd.randrange(0, 3)):
            kind = self.rnd.choice(("create", "getData", "check", "getChildren"))
            ops.append({"op": kind, "path": self.existing_path(), "version": -1})
        return {"op": "rawMulti", "type": self.rnd.choice((14, 22)), "ops": ops}

    def api_op(self, session: str, allow_auth: bool = True) -> Op:
        kinds: list[tuple[str, int]] = [
            ("create", 18), ("delete", 8), ("exists", 8), ("getData", 8), ("setData", 10), ("getACL", 3),
            ("setACL", 4), ("getChildren", 7), ("sync", 2), ("multi", 6), ("multiRead", 3), ("addWatch", 4),
            ("removeWatches", 4), ("getEphemerals", 2), ("getAllChildrenNumber", 2), ("whoAmI", 1),
            ("rawCreate", 1), ("rawMulti", 1),
        ]
        if allow_auth:
            kinds.append(("addAuth", 2))
        kind = self.weighted(kinds)
        op: Op
        if kind == "create":
            op = self.op_create()
        elif kind == "delete":
            path = self.existing_path()
            op = {"op": "delete", "path": path, "version": self.version(path)}
        elif kind in ("exists", "getData"):
            op = {"op": kind, "path": self.existing_path(), "watch": self.chance(0.6)}
            if op["watch"]:
                self.watched[session].add(op["path"])
        elif kind == "setData":
            path = self.existing_path()
            op = {"op": "setData", "path": path, **self.data(), "version": self.version(path)}
        elif kind == "getACL":
            op = {"op": "getACL", "path": self.existing_path()}
        elif kind == "setACL":
            path = self.existing_path()
            op = {"op": "setACL", "path": path, "acl": self.acl(), "version": self.version(path, True)}
        elif kind == "getChildren":
            op = {"op": "getChildren", "path": self.existing_path(), "watch": self.chance(0.6),
                  "stat": self.chance(0.5)}
            if op["watch"]:
                self.watched[session].add(op["path"])
        elif kind == "sync":
            op = {"op": "sync", "path": self.existing_path()}
        elif kind == "multi":
            op = self.op_multi()
        elif kind == "multiRead":
            op = self.op_multi_read()
        elif kind == "addWatch":
            op = {"op": "addWatch", "path": self.existing_path(),
                  "mode": self.rnd.choice(("PERSISTENT", "PERSISTENT_RECURSIVE"))}
            self.watched[session].add(op["path"])
        elif kind == "removeWatches":
            watched = sorted(self.watched[session])
            path = self.rnd.choice(watched) if watched and self.chance(0.8) else self.existing_path()
            op = {"op": "removeWatches", "path": path,
                  "type": self.rnd.choice(("Children", "Data", "Any")), "all": self.chance(0.5),
                  "local": self.chance(0.2)}
        elif kind == "getEphemerals":
            op = {"op": "getEphemerals"}
            if self.chance(0.6):
                op["prefix"] = self.rnd.choice(("/", "/a", "/a/", "/b/s", "/zz", ""))
        elif kind == "getAllChildrenNumber":
            op = {"op": "getAllChildrenNumber", "path": self.existing_path()}
        elif kind == "whoAmI":
            op = {"op": "whoAmI"}
        elif kind == "rawCreate":
            op = self.op_raw_create()
        elif kind == "rawMulti":
            op = self.op_raw_multi()
        else:
            user = self.rnd.choice(sorted(USERS))
            if self.chance(0.1):
                op = {"op": "addAuth", "scheme": "digest", "auth": "nocolon"}
            elif self.chance(0.05):
                op = {"op": "addAuth", "scheme": "bogus", "auth": "x"}
            else:
                op = {"op": "addAuth", "scheme": "digest", "auth": f"{user}:{USERS[user]}"}
        self.model.apply(session, op)
        op["s"] = session
        return op

    # -- the script
    def step(self) -> None:
        if self.cut is not None:
            self.cut_steps -= 1
            if self.cut_steps <= 0:
                self.emit({"op": "heal", "s": self.cut})
                self.cut = None
                return
        usable = self.usable()
        if len(usable) < 2 and self.next_session < 12:
            self.open_session()
            return
        r = self.rnd.random()
        if r < 0.025 and self.cut is None and self.cuts_left > 0 and len(usable) >= 2:
            victim = self.rnd.choice(usable)
            self.emit({"op": "cut", "s": victim})
            self.cut = victim
            self.cut_steps = self.rnd.randrange(1, 7)
            self.cuts_left -= 1
            return
        if r < 0.035 and len(usable) > 2:
            victim = self.rnd.choice(usable)
            self.emit({"op": "close", "s": victim})
            self.live.remove(victim)
            self.model.close(victim)
            return
        if r < 0.045 and len(self.live) < self.max_sessions and self.next_session < 12:
            self.open_session()
            return
        session = self.rnd.choice(usable)
        if r < 0.07:
            ops = [self.api_op(session, allow_auth=False) for _ in range(self.rnd.randrange(2, 5))]
            for o in ops:
                del o["s"]
            self.emit({"op": "pipeline", "s": session, "ops": ops})
            return
        op = self.api_op(session)
        self.emit(op)
        if op["op"] == "addAuth" and op["scheme"] == "bogus":
            # AUTHFAILED: the server closes the connection, the client object is dead; its session (and
            # its ephemerals) live on until they expire, which no script waits for
            self.live.remove(session)

    def generate(self) -> list[Op]:
        for _ in range(3):
            self.open_session()
        # a couple of identities so that digest ACLs collide with NOAUTH
        for session, user in (("c1", "u1"), ("c2", "u2")):
            op = {"op": "addAuth", "s": session, "scheme": "digest", "auth": f"{user}:{USERS[user]}"}
            self.model.apply(session, op)
            self.emit(op)
        # a small base tree, so that most operations find something
        for path in ("/a", "/b", "/a/a", "/a/b", "/b/a"):
            if self.chance(0.8):
                op = {"op": "create", "s": "c0", "path": path, "data": path, "acl": "open", "mode": "PERSISTENT"}
                self.model.apply("c0", op)
                self.emit(op)
        for _ in range(self.steps):
            self.step()
        if self.cut is not None:
            self.emit({"op": "heal", "s": self.cut})
            self.cut = None
        return self.script


def generate_script(seed: int, steps: int = 110) -> list[Op]:
    return ScriptGen(seed, steps=steps).generate()


# ------------------------------------------------------------------------------------------ normaliser

@dataclass
class Normalized:
    """Per stream ("c0 api", "c0 sent", "c0 recv", ..., "run"): normalised lines, in order."""

    streams: dict[str, list[Line]] = field(default_factory=dict)


_TIME_SLACK_MS = 5000


def _walk_stats(obj: Any, fn: Callable[[dict[str, Any]], None]) -> None:
    if isinstance(obj, dict):
        if "czxid" in obj and "ctime" in obj:
            fn(obj)
        for v in obj.values():
            _walk_stats(v, fn)
    elif isinstance(obj, list):
        for v in obj:
            _walk_stats(v, fn)


def _sort_blocks(stream: list[Line], begins: Callable[[Line], bool], ends: Callable[[Line], bool],
                 movable: Callable[[Line], bool]) -> None:
    """Sort, in place, the movable lines strictly inside each begin…end block (among their own places)."""
    k = 0
    while k < len(stream):
        if not begins(stream[k]):
            k += 1
            continue
        end = k + 1
        while end < len(stream) and not ends(stream[end]):
            end += 1
        places = [j for j in range(k + 1, end) if movable(stream[j])]
        for j, line in zip(places, sorted((stream[j] for j in places), key=_render), strict=True):
            stream[j] = line
        k = end


def _segments(stream: list[Line]) -> list[list[Line]]:
    """Split a wire stream at its "connect" markers (one segment per TCP connection)."""
    segs: list[list[Line]] = [[]]
    for ln in stream:
        if ln.get("w") == "connect":
            segs.append([])
        segs[-1].append(ln)
    return segs


def _drop_after_auth_failure(streams: dict[str, list[Line]]) -> None:
    """After an auth packet that gets AUTHFAILED, whether the client managed to write its next request
    before the server closed the connection is a race: drop what the client sent after that auth packet."""
    for name in list(streams):
        if not name.endswith(" sent"):
            continue
        recv = _segments(streams.get(name[:-5] + " recv", []))
        sent = _segments(streams[name])
        for j, seg in enumerate(sent):
            failed = j < len(recv) and any(x.get("xid") == -4 and x.get("err") == -115 for x in recv[j])
            auths = [k for k, x in enumerate(seg) if x.get("type") == 100]
            if failed and auths:
                del seg[auths[-1] + 1:]
        streams[name] = [x for seg in sent for x in seg]


def normalize(lines: Sequence[Line], strict_close_order: bool = False) -> Normalized:
    """Normalise one server's driver output (see the module docstring for the rules).

    The paths a closeSession deletes come, in Apache ZooKeeper, from a java.util.HashSet, so the order of
    the watch events that a session close fires is a hash order. Unless `strict_close_order`, the events
    (and notification frames) inside the begin/end markers that the driver puts around every close are
    sorted."""
    lines = [json.loads(json.dumps(x)) for x in lines]  # deep copy
    start_ms = end_ms = None
    for ln in lines:
        if ln.get("run") == "start":
            start_ms = ln.get("start_ms")
        elif ln.get("run") == "end":
            end_ms = ln.get("end_ms")

    # session ids: named by the session whose open (or first connect response) returned them
    sid_names: dict[int, str] = {}
    opens: dict[str, int] = {}
    for ln in lines:
        sid = None
        if ln.get("op") == "open" and "session" in ln:
            sid = ln["session"]
        elif ln.get("w") == "<connect" and ln.get("session"):
            sid = ln["session"]
        if sid and sid not in sid_names:
            name = ln["s"]
            opens[name] = opens.get(name, 0) + 1
            sid_names[sid] = f"sid:{name}" + (f"#{opens[name]}" if opens[name] > 1 else "")
    unknown: dict[int, str] = {}

    def sid_label(v: Any) -> Any:
        if not isinstance(v, int) or v == 0:
            return v
        if v in sid_names:
            return sid_names[v]
        if v not in unknown:
            unknown[v] = f"sid:?{len(unknown) + 1}"
        return unknown[v]

    # zxid → time, from every stat
    checks: list[Line] = []
    times: dict[int, set[int]] = {}

    def collect(st: dict[str, Any]) -> None:
        for zk, tk in (("czxid", "ctime"), ("mzxid", "mtime")):
            times.setdefault(int(st[zk]), set()).add(int(st[tk]))

    for ln in lines:
        _walk_stats(ln, collect)
    for z, ts in sorted(times.items()):
        if len(ts) > 1:
            checks.append({"check": "one zxid, several times", "zxid": z, "times": len(ts)})
    last_t: int | None = None
    for z, ts in sorted(times.items()):
        if z == 0 or len(ts) != 1:
            continue
        t = next(iter(ts))
        if last_t is not None and t < last_t:
            checks.append({"check": "time goes backwards", "zxid": z})
        last_t = t

    def tmark(zxid: int, t: int) -> Any:
        if t == 0 and zxid == 0:
            return 0
        if start_ms is not None and end_ms is not None and not (
                start_ms - _TIME_SLACK_MS <= t <= end_ms + _TIME_SLACK_MS):
            return f"t!outside-run@{zxid}"
        return f"t@{zxid}"

    def fix_stat(st: dict[str, Any]) -> None:
        st["ctime"] = tmark(int(st["czxid"]), int(st["ctime"]))
        st["mtime"] = tmark(int(st["mzxid"]), int(st["mtime"]))
        st["ephemeralOwner"] = sid_label(st["ephemeralOwner"])

    def sort_lists(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in ("children", "ephemerals") and isinstance(v, list):
                    obj[k] = sorted(v)
                else:
                    sort_lists(v)
        elif isinstance(obj, list):
            for v in obj:
                sort_lists(v)

    out = Normalized()
    run_stream: list[Line] = []
    for ln in lines:
        ln.pop("t", None)
        if "run" in ln:
            continue
        if "fatal" in ln:
            run_stream.append({"fatal": ln["fatal"]})
            continue
        s = ln.pop("s", "?")
        _walk_stats(ln, fix_stat)
        sort_lists(ln)
        if "session" in ln:
            ln["session"] = sid_label(ln["session"])
        if "w" in ln:
            for k in ("data", "exist", "child", "persistent", "recursive"):
                if isinstance(ln.get(k), list):
                    ln[k] = sorted(ln[k])
            # the two directions are recorded by two threads: each is exact, their interleaving is not
            w = ln["w"]
            if not w.startswith("<"):
                out.streams.setdefault(f"{s} sent", []).append(ln)
            if not w.startswith(">"):
                out.streams.setdefault(f"{s} recv", []).append(ln)
        else:
            out.streams.setdefault(f"{s} api", []).append(ln)
    _drop_after_auth_failure(out.streams)
    run_stream.extend(checks)
    out.streams["run"] = run_stream
    if not strict_close_order:
        for name, stream in out.streams.items():
            if name.endswith(" api"):
                _sort_blocks(stream, lambda x: x.get("close") == "begin",
                             lambda x: x.get("close") == "end" or x.get("op") == "close",
                             lambda x: "event" in x)
            elif name.endswith((" sent", " recv")):
                _sort_blocks(stream, lambda x: x.get("w") == "mark" and x.get("close") == "begin",
                             lambda x: x.get("w") == "mark" and x.get("close") == "end",
                             lambda x: x.get("xid") == -1)
    return out


# ------------------------------------------------------------------------------------------ comparer

def _render(line: Line) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _stream_order(a: Normalized, b: Normalized) -> list[str]:
    names = list(a.streams)
    names += [n for n in b.streams if n not in a.streams]
    return names


def compare(ref: Normalized, target: Normalized, script: Sequence[Op] | None = None, *,
            ref_name: str = "apache", target_name: str = "target", max_streams: int = 3,
            max_lines: int = 40) -> list[str]:
    """Differences between two normalised outputs, as readable text blocks (empty list = identical)."""
    blocks: list[str] = []
    differing = [n for n in _stream_order(ref, target) if ref.streams.get(n, []) != target.streams.get(n, [])]
    for name in differing[:max_streams]:
        a = [_render(x) for x in ref.streams.get(name, [])]
        b = [_render(x) for x in target.streams.get(name, [])]
        first = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        head = f"stream {name!r}: first difference at line {first} ({len(a)} vs {len(b)} lines)"
        src = ref.streams.get(name, []) + target.streams.get(name, [])
        op_i = None
        for k in range(min(first, len(ref.streams.get(name, []))), -1, -1):
            lines_ = ref.streams.get(name, [])
            if k < len(lines_) and isinstance(lines_[k].get("i"), int):
                op_i = lines_[k]["i"]
                break
        if op_i is None and src:
            op_i = next((x["i"] for x in src if isinstance(x.get("i"), int)), None)
        if script is not None and op_i is not None and 0 <= op_i < len(script):
            head += f"\n  near script line {op_i}: {json.dumps(script[op_i])}"
        diff = list(difflib.unified_diff(a, b, fromfile=f"{ref_name} {name}", tofile=f"{target_name} {name}",
                                         n=3, lineterm=""))
        if len(diff) > max_lines:
            diff = diff[:max_lines] + [f"... ({len(diff) - max_lines} more diff lines)"]
        blocks.append(head + "\n" + "\n".join(diff))
    if len(differing) > max_streams:
        blocks.append(f"... and {len(differing) - max_streams} more differing streams: "
                      f"{differing[max_streams:]}")
    return blocks


# ------------------------------------------------------------------------------------------ harness

TARGET_KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}


@dataclass
class DiffResult:
    name: str
    script: list[Op]
    ref_lines: list[Line]
    target_lines: list[Line]
    diffs: list[str]
    seconds: float

    def report(self) -> str:
        return f"{self.name}: {len(self.diffs)} differing stream(s)\n" + "\n\n".join(self.diffs)

    def dump(self, directory: Path) -> Path:
        """Write the script and both raw outputs (to reproduce a failure); returns the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "script.jsonl").write_text(javadriver.script_text(self.script))
        (directory / "apache.jsonl").write_text("".join(json.dumps(x) + "\n" for x in self.ref_lines))
        (directory / "target.jsonl").write_text("".join(json.dumps(x) + "\n" for x in self.target_lines))
        (directory / "diff.txt").write_text(self.report() + "\n")
        return directory


class DiffHarness:
    """Runs scripts against a fresh Apache ZooKeeper and a fresh target server each time."""

    def __init__(self, target_kind: str = "zkfast", cfg: Mapping[str, str] | None = None,
                 op_timeout_ms: int = javadriver.DEFAULT_OP_TIMEOUT_MS) -> None:
        if target_kind not in TARGET_KINDS:
            raise ValueError(f"unknown target kind {target_kind!r}; expected one of {sorted(TARGET_KINDS)}")
        self.target_kind = target_kind
        self.target_cls = TARGET_KINDS[target_kind]
        self.cfg = dict(cfg or {})
        self.op_timeout_ms = op_timeout_ms

    def _start_pair(self) -> tuple[ServerProcess, ServerProcess]:
        ref: ServerProcess = ApacheZkProcess(cfg=self.cfg)
        tgt: ServerProcess = self.target_cls(cfg=self.cfg)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futs = [pool.submit(ref.start), pool.submit(tgt.start)]
            errors = []
            for f in futs:
                try:
                    f.result()
                except Exception as e:  # reported below, after both servers are cleaned up
                    errors.append(e)
        if errors:
            for p in (ref, tgt):
                p.cleanup()
            raise RuntimeError(f"could not start the servers: {errors[0]}") from errors[0]
        return ref, tgt

    @staticmethod
    def _stop_pair(servers: Sequence[ServerProcess]) -> None:
        for p in servers:
            p.cleanup()  # SIGKILL: the dataDirs are thrown away anyway

    def check_target(self) -> None:
        """Start and stop one target server; raises with the server's log tail if it cannot serve."""
        tgt = self.target_cls(cfg=self.cfg)
        try:
            tgt.start(timeout_s=30.0)
        finally:
            tgt.stop()
            tgt.cleanup()

    def run(self, script: Sequence[Op], name: str = "script") -> DiffResult:
        t0 = time.monotonic()
        ref, tgt = self._start_pair()
        try:
            ref_lines, tgt_lines = javadriver.run_script(script, [ref.address, tgt.address],
                                                         op_timeout_ms=self.op_timeout_ms)
        finally:
            self._stop_pair((ref, tgt))
        diffs = compare(normalize(ref_lines), normalize(tgt_lines), script,
                        target_name=self.target_kind + "-target")
        fatal = [x["fatal"] for x in ref_lines if "fatal" in x]
        if fatal:
            diffs.insert(0, f"the reference run itself failed (harness problem): {fatal[0]}")
        return DiffResult(name, list(script), ref_lines, tgt_lines, diffs, time.monotonic() - t0)


# ------------------------------------------------------------------------------------------ command line

def _seed_range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run random differential scripts: Apache ZooKeeper vs a target.")
    ap.add_argument("--seeds", default="0-9", help="e.g. 0-49 or 3,7,11")
    ap.add_argument("--target", default="zkfast", choices=sorted(TARGET_KINDS))
    ap.add_argument("--steps", type=int, default=110)
    ap.add_argument("--dump", type=Path, default=None, help="directory for failing cases")
    ap.add_argument("--print-script", action="store_true", help="only print the script of each seed")
    args = ap.parse_args(argv)
    seeds = _seed_range(args.seeds)
    if args.print_script:
        for seed in seeds:
            sys.stdout.write(javadriver.script_text(generate_script(seed, args.steps)))
        return 0
    harness = DiffHarness(args.target)
    failed = 0
    dump_root = args.dump or Path(tempfile.mkdtemp(prefix="zk-difftest-"))
    for seed in seeds:
        res = harness.run(generate_script(seed, args.steps), name=f"seed {seed}")
        status = "ok" if not res.diffs else "DIFF"
        print(f"seed {seed}: {status} ({len(res.script)} ops, {res.seconds:.1f}s)", flush=True)
        if res.diffs:
            failed += 1
            print(res.report(), flush=True)
            print(f"  dumped to {res.dump(dump_root / f'seed-{seed}')}", flush=True)
    print(f"{len(seeds) - failed}/{len(seeds)} seeds identical")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
