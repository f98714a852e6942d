"""kazoo 2.11 against a real zkfast process: every client call, watches, ACL schemes, sessions
(close, expiry, reconnect through a TCP proxy the test controls) and the kazoo recipes.

Tests named `*_match_apache` run the same kazoo function against Apache ZooKeeper 3.8 and zkfast
(`on_both`, tests/conftest.py) and compare the normalised results; they also assert what the
answer is, so they fail if both servers agree on something wrong. Tests taking `any_server` run
once per server with the same expectations.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    SUPER_PASSWORD,
    SUPER_USER,
    DiffContext,
    Differential,
    KazooFactory,
    digest_id,
    unique_root,
    wait_until,
)
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    ReconfigDisabledError,
    RolledBackError,
)
from kazoo.protocol.states import EventType, WatchedEvent, ZnodeStat
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.security import (
    ACL,
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
)
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available
from testbase.rawclient import RawSession, connect_request, frame, request, u_str

Events = list[WatchedEvent]


def recorder() -> tuple[Events, Callable[[WatchedEvent], None]]:
    events: Events = []
    return events, events.append


def wait_events(events: list[Any], n: int, timeout_s: float = 10.0) -> list[Any]:
    wait_until(lambda: len(events) >= n, timeout_s, f"{n} events (have {events!r})")
    return list(events)


# ------------------------------------------------------------------------------- a TCP proxy


class TcpProxy:
    """A 127.0.0.1 proxy in front of one server. `partition()` drops every proxied connection and
    refuses new ones (the client sees a dead network, the server sees the client go away);
    `heal()` lets connections through again; `drop()` only drops the current connections."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.refusing = False
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.refusing or self.closed:
                    down.close()
                    continue
                try:
                    up = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    down.close()
                    continue
                up.settimeout(None)
                self.accepted += 1
                self.socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def partition(self) -> None:
        with self.lock:
            self.refusing = True
        self.drop()

    def heal(self) -> None:
        with self.lock:
            self.refusing = False

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.drop()


@pytest.fixture
def proxy_for() -> Any:
    proxies: list[TcpProxy] = []

    def make(server: ServerProcess) -> TcpProxy:
        p = TcpProxy((server.host, server.port))
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()


class StateLog:
    """Every KazooState a client goes through, in order."""

    def __init__(self, zk: KazooClient) -> None:
        self.states: list[str] = []
        zk.add_listener(self.states.append)

    def wait_for(self, state: str, after: int = 0, timeout_s: float = 15.0) -> int:
        """Index of the first `state` at or after position `after`."""
        def found() -> bool:
            return state in self.states[after:]
        wait_until(found, timeout_s, f"state {state} (have {self.states})")
        return self.states.index(state, after)


# ------------------------------------------------------------------------- basic calls vs Apache


def test_create_variants_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        out["plain"] = zk.create(f"{r}/plain", b"v")
        out["include_data"] = zk.create(f"{r}/withstat", b"abc", include_data=True)
        out["ephemeral"] = zk.create(f"{r}/eph", ephemeral=True, include_data=True)
        out["seq"] = [zk.create(f"{r}/seq-", sequence=True) for _ in range(3)]
        out["eph_seq"] = zk.create(f"{r}/es-", ephemeral=True, sequence=True, include_data=True)
        out["makepath"] = zk.create(f"{r}/a/b/c", b"deep", makepath=True, include_data=True)
        out["parent_of_makepath"] = zk.exists(f"{r}/a/b")
        out["with_acl"] = zk.create(f"{r}/ro", b"x", acl=READ_ACL_UNSAFE, include_data=True)
        for name, kwargs in (("exists", {"path": f"{r}/plain"}), ("no_parent", {"path": f"{r}/nope/x"}),
                             ("under_ephemeral", {"path": f"{r}/eph/child"}),
                             ("seq_under_ephemeral", {"path": f"{r}/es-0000000006/c", "sequence": True})):
            try:
                out[name] = zk.create(**kwargs)
            except Exception as e:
                out[name] = e
        out["children"] = sorted(zk.get_children(r))
        out["root_stat"] = zk.exists(r)
        return out

    res = on_both(fn)
    assert res["plain"] == "ROOT/plain"
    assert res["seq"] == [f"ROOT/seq-{i:010d}" for i in (3, 4, 5)]
    assert res["ephemeral"][1]["ephemeralOwner"] == "session1"
    assert res["exists"] == ("error", NodeExistsError.__name__)
    assert res["no_parent"] == ("error", NoNodeError.__name__)
    assert res["under_ephemeral"] == ("error", NoChildrenForEphemeralsError.__name__)
    assert res["seq_under_ephemeral"] == ("error", NoChildrenForEphemeralsError.__name__)
    assert res["eph_seq"][0] == "ROOT/es-0000000006" and res["eph_seq"][1]["ephemeralOwner"] == "session1"
    assert res["with_acl"][1]["aversion"] == 0 and res["parent_of_makepath"]["numChildren"] == 1
    assert res["makepath"][1]["dataLength"] == 4


def test_get_set_exists_ensure_path_sync_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        out["missing"] = zk.exists(f"{r}/x")
        zk.create(f"{r}/x", b"one")
        out["get"] = zk.get(f"{r}/x")
        out["set"] = zk.set(f"{r}/x", b"two")
        out["set_v1"] = zk.set(f"{r}/x", b"three", version=1)
        for name, fn2 in (("bad_version", lambda: zk.set(f"{r}/x", b"four", version=7)),
                          ("set_missing", lambda: zk.set(f"{r}/missing", b"")),
                          ("get_missing", lambda: zk.get(f"{r}/missing"))):
            try:
                out[name] = fn2()
            except Exception as e:
                out[name] = e
        out["after"] = zk.get(f"{r}/x")
        out["empty"] = zk.set(f"{r}/x", b"")
        out["big"] = zk.set(f"{r}/x", bytes(range(256)) * 1000)
        out["big_get"] = zk.get(f"{r}/x")[1]
        out["ensure"] = zk.ensure_path(f"{r}/e1/e2/e3")
        out["ensure_again"] = zk.ensure_path(f"{r}/e1/e2/e3")
        out["ensure_stat"] = zk.exists(f"{r}/e1/e2")
        out["sync"] = zk.sync(f"{r}/x")
        out["sync_missing"] = zk.sync(f"{r}/not/there")
        return out

    res = on_both(fn)
    assert res["missing"] is None
    assert res["get"][0] == b"one" and res["get"][1]["version"] == 0
    assert res["set_v1"]["version"] == 2
    assert res["bad_version"] == ("error", BadVersionError.__name__)
    assert res["set_missing"] == ("error", NoNodeError.__name__)
    assert res["after"][0] == b"three"
    assert res["big_get"]["dataLength"] == 256000
    assert res["ensure"] == "ROOT/e1/e2/e3" and res["ensure_again"] is True
    assert res["ensure_stat"]["numChildren"] == 1
    assert res["sync"] == "ROOT/x" and res["sync_missing"] == "ROOT/not/there"


def test_children_and_delete_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        for name in ("c", "a", "b"):
            zk.create(f"{r}/p/{name}", name.encode(), makepath=True)
        zk.create(f"{r}/p/a/deep/er", makepath=True)
        kids, stat = zk.get_children(f"{r}/p", include_data=True)
        out["children"] = sorted(kids)
        out["children_stat"] = stat
        out["plain_children"] = sorted(zk.get_children(f"{r}/p"))
        for name, fn2 in (("children_missing", lambda: zk.get_children(f"{r}/none")),
                          ("delete_not_empty", lambda: zk.delete(f"{r}/p/a")),
                          ("delete_bad_version", lambda: zk.delete(f"{r}/p/b", version=3)),
                          ("delete_missing", lambda: zk.delete(f"{r}/p/zz")),
                          ("delete_v0", lambda: zk.delete(f"{r}/p/b", version=0)),
                          ("delete_recursive", lambda: zk.delete(f"{r}/p/a", recursive=True)),
                          ("delete_recursive_missing", lambda: zk.delete(f"{r}/p/q", recursive=True))):
            try:
                out[name] = fn2()
            except Exception as e:
                out[name] = e
        out["left"] = zk.get_children(f"{r}/p", include_data=True)
        return out

    res = on_both(fn)
    assert res["children"] == ["a", "b", "c"]
    assert res["children_stat"]["numChildren"] == 3 and res["children_stat"]["cversion"] == 3
    assert res["children_missing"] == ("error", NoNodeError.__name__)
    assert res["delete_not_empty"] == ("error", NotEmptyError.__name__)
    assert res["delete_bad_version"] == ("error", BadVersionError.__name__)
    assert res["delete_missing"] == ("error", NoNodeError.__name__)
    assert res["delete_v0"] is True and res["delete_recursive"] is None
    assert res["delete_recursive_missing"] is True
    assert res["left"][0] == ["c"]


def test_acls_get_set_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        zk.create(f"{r}/n", b"d")
        out["default"] = zk.get_acls(f"{r}/n")
        try:
            zk.set_acls(f"{r}/n", OPEN_ACL_UNSAFE, version=9)
        except Exception as e:
            out["bad_version"] = e
        digest = make_digest_acl("alice", "pw", all=True)
        out["set"] = zk.set_acls(f"{r}/n", [digest, make_acl("world", "anyone", read=True)])
        out["get"] = zk.get_acls(f"{r}/n")
        for name, fn2 in (("write_denied", lambda: zk.set(f"{r}/n", b"w")),
                          ("acl_denied", lambda: zk.set_acls(f"{r}/n", OPEN_ACL_UNSAFE)),
                          ("missing", lambda: zk.get_acls(f"{r}/none")),
                          ("set_missing", lambda: zk.set_acls(f"{r}/none", OPEN_ACL_UNSAFE)),
                          ("invalid_scheme", lambda: zk.create(f"{r}/bad", acl=[make_acl("nosuch", "x", all=True)])),
                          ("invalid_ip", lambda: zk.create(f"{r}/bad", acl=[make_acl("ip", "300.1.1.1", all=True)])),
                          ("auth_without_auth", lambda: zk.create(f"{r}/bad", acl=CREATOR_ALL_ACL))):
            try:
                out[name] = fn2()
            except Exception as e:
                out[name] = e
        out["read_still_ok"] = zk.get(f"{r}/n")
        return out

    res = on_both(fn)
    assert res["default"][0] == [[31, ["world", "anyone"]]]
    acls, stat = res["get"]
    assert stat["aversion"] == 1 and res["set"]["aversion"] == 1
    # without ADMIN on the node, getACL hides the digest (Apache's CVE-2024-23944 fix)
    assert acls == [[31, ["digest", "alice:x"]], [1, ["world", "anyone"]]]
    assert res["missing"] == res["set_missing"] == ("error", NoNodeError.__name__)
    assert res["bad_version"] == ("error", BadVersionError.__name__)
    assert res["write_denied"] == ("error", NoAuthError.__name__)
    assert res["acl_denied"] == ("error", NoAuthError.__name__)
    assert res["invalid_scheme"] == ("error", InvalidACLError.__name__)
    assert res["invalid_ip"] == ("error", InvalidACLError.__name__)
    assert res["auth_without_auth"] == ("error", InvalidACLError.__name__)
    assert res["read_still_ok"][0] == b"d"


def test_acl_schemes_match_apache(on_both: Differential) -> None:
    """world, digest, ip, auth (CREATOR_ALL_ACL after add_auth) and super (superDigest in zoo.cfg)."""

    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        zk.add_auth("digest", "alice:pw")
        zk.create(f"{r}/mine", b"secret", acl=AUTH_ACL)
        out["creator_acl"] = zk.get_acls(f"{r}/mine")[0]
        zk.create(f"{r}/digest", b"d", acl=[make_digest_acl("bob", "pw2", read=True)])
        zk.create(f"{r}/ip-ok", b"i", acl=[make_acl("ip", "127.0.0.1", all=True)])
        zk.create(f"{r}/ip-net", b"n", acl=[make_acl("ip", "127.0.0.0/8", read=True)])
        zk.create(f"{r}/ip-other", b"o", acl=[make_acl("ip", "10.9.8.7", all=True)])
        zk.create(f"{r}/world-ro", b"w", acl=READ_ACL_UNSAFE)

        anon = ctx.client()
        bob = ctx.client(auth_data=[("digest", "bob:pw2")])
        alice2 = ctx.client()
        alice2.add_auth("digest", "alice:pw")
        wrong = ctx.client(auth_data=[("digest", "alice:wrong")])
        root = ctx.client(auth_data=[("digest", f"{SUPER_USER}:{SUPER_PASSWORD}")])

        def attempt(name: str, f: Callable[[], Any]) -> None:
            try:
                out[name] = f()
            except Exception as e:
                out[name] = e

        attempt("anon_mine", lambda: anon.get(f"{r}/mine")[0])
        attempt("wrong_mine", lambda: wrong.get(f"{r}/mine")[0])
        attempt("alice2_mine", lambda: alice2.get(f"{r}/mine")[0])
        attempt("alice2_set_mine", lambda: alice2.set(f"{r}/mine", b"new").version)
        attempt("bob_digest", lambda: bob.get(f"{r}/digest")[0])
        attempt("bob_set_digest", lambda: bob.set(f"{r}/digest", b"x"))
        attempt("anon_digest", lambda: anon.get(f"{r}/digest"))
        attempt("anon_exists_digest", lambda: anon.exists(f"{r}/digest"))
        attempt("anon_acls_digest", lambda: anon.get_acls(f"{r}/digest"))
        attempt("ip_ok", lambda: anon.set(f"{r}/ip-ok", b"i2").version)
        attempt("ip_net_read", lambda: anon.get(f"{r}/ip-net")[0])
        attempt("ip_net_write", lambda: anon.set(f"{r}/ip-net", b"x"))
        attempt("ip_other", lambda: anon.get(f"{r}/ip-other"))
        attempt("world_read", lambda: anon.get(f"{r}/world-ro")[0])
        attempt("world_write", lambda: anon.set(f"{r}/world-ro", b"x"))
        attempt("world_child", lambda: anon.create(f"{r}/world-ro/c"))
        attempt("super_mine", lambda: root.get(f"{r}/mine")[0])
        attempt("super_other", lambda: root.set(f"{r}/ip-other", b"su").version)
        attempt("super_setacl", lambda: root.set_acls(f"{r}/digest", OPEN_ACL_UNSAFE).aversion)
        attempt("anon_after_super", lambda: anon.get(f"{r}/digest")[0])
        attempt("super_delete", lambda: root.delete(f"{r}/mine"))
        attempt("anon_children", lambda: sorted(c for c in anon.get_children(r)))
        return out

    res = on_both(fn)
    assert res["creator_acl"] == [[31, ["digest", digest_id("alice", "pw")]]]
    assert res["anon_mine"] == ("error", NoAuthError.__name__)
    assert res["wrong_mine"] == ("error", NoAuthError.__name__)
    assert res["alice2_mine"] == b"secret"
    assert res["bob_digest"] == b"d"
    assert res["bob_set_digest"] == ("error", NoAuthError.__name__)
    assert res["anon_digest"] == ("error", NoAuthError.__name__)
    assert res["ip_ok"] == 1 and res["ip_net_read"] == b"n"
    assert res["ip_net_write"] == ("error", NoAuthError.__name__)
    assert res["ip_other"] == ("error", NoAuthError.__name__)
    assert res["world_read"] == b"w"
    assert res["world_write"] == ("error", NoAuthError.__name__)
    assert res["world_child"] == ("error", NoAuthError.__name__)
    assert res["alice2_set_mine"] == 1
    assert res["super_mine"] == b"new" and res["super_other"] == 1 and res["super_setacl"] == 1
    assert res["anon_after_super"] == b"d" and res["super_delete"] is True


# kazoo's CREATOR_ALL_ACL is Id("auth", "") and kazoo writes "" as a null string; this one has an id
AUTH_ACL = [ACL(Permissions.ALL, Id("auth", "any-id-is-ignored"))]


def test_creator_all_acl_matches_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        zk.add_auth("digest", "alice:pw")
        zk.create(f"{r}/mine", b"secret", acl=CREATOR_ALL_ACL)
        t = zk.transaction()
        t.create(f"{r}/in-multi", acl=CREATOR_ALL_ACL)
        return zk.get_acls(f"{r}/mine")[0], t.commit(), zk.set_acls(f"{r}/mine", CREATOR_ALL_ACL).aversion

    acl, results, aversion = on_both(fn)
    assert acl == [[31, ["digest", digest_id("alice", "pw")]]]
    assert results == ["ROOT/in-multi"] and aversion == 1


@pytest.mark.parametrize("kind", ["zkfast", "apache"])
def test_super_digest_from_a_system_property(kazoo_client: KazooFactory, kind: str) -> None:
    """`-Dzookeeper.DigestAuthenticationProvider.superDigest=...` as zkServer.sh passes it (SERVER_JVMFLAGS
    for zkfast, a JVM flag for Apache) instead of a zoo.cfg key."""
    if kind == "apache" and not apache_available():
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")
    flag = f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest_id('root', 'r00t')}"
    server: ServerProcess = (ZkfastProcess(env={"SERVER_JVMFLAGS": flag}) if kind == "zkfast"
                             else ApacheZkProcess(jvm_flags=(flag,)))
    with server:
        owner = kazoo_client(server, auth_data=[("digest", "owner:pw")])
        owner.create("/locked", b"mine", acl=[make_digest_acl("owner", "pw", all=True)])
        anon = kazoo_client(server)
        with pytest.raises(NoAuthError):
            anon.get("/locked")
        wrong = kazoo_client(server, auth_data=[("digest", "root:wrong")])
        with pytest.raises(NoAuthError):
            wrong.get("/locked")
        root = kazoo_client(server, auth_data=[("digest", "root:r00t")])
        assert root.get("/locked")[0] == b"mine"
        root.delete("/locked")
        assert owner.exists("/locked") is None


def test_chroot_and_restart(kazoo_client: KazooFactory, zkfast_server: ZkfastProcess, zk_root: str) -> None:
    plain = kazoo_client()
    plain.ensure_path(zk_root)
    rooted = kazoo_client(hosts=f"{zkfast_server.address}{zk_root}")
    events, cb = recorder()
    assert rooted.exists("/x", watch=cb) is None
    assert rooted.create("/x", b"in-chroot") == "/x"
    (ev,) = wait_events(events, 1)
    assert (ev.type, ev.path) == (EventType.CREATED, "/x")  # event paths come back chroot-relative
    assert plain.get(f"{zk_root}/x")[0] == b"in-chroot"
    assert rooted.get_children("/") == ["x"]
    old = rooted.client_id
    rooted.restart()
    assert rooted.connected and rooted.client_id[0] != old[0]
    assert rooted.get("/x")[0] == b"in-chroot"


def test_transactions_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        zk.create(f"{r}/old", b"o")
        zk.create(f"{r}/gone", b"g")
        t = zk.transaction()
        t.create(f"{r}/new", b"n")
        t.create(f"{r}/new/seq-", b"s", sequence=True)
        t.create(f"{r}/eph", b"e", ephemeral=True)
        t.set_data(f"{r}/old", b"o2", version=0)
        t.check(f"{r}/old", 1)
        t.delete(f"{r}/gone", version=0)
        out["ok"] = t.commit()
        out["after_ok"] = (zk.get(f"{r}/old"), zk.exists(f"{r}/gone"), zk.exists(f"{r}/eph"),
                           sorted(zk.get_children(f"{r}/new")))
        t = zk.transaction()
        t.create(f"{r}/never", b"n")
        t.set_data(f"{r}/old", b"o3")
        t.check(f"{r}/old", 0)  # wrong version: the whole transaction fails
        t.delete(f"{r}/new/nope")
        out["failing"] = t.commit()
        out["after_failing"] = (zk.exists(f"{r}/never"), zk.get(f"{r}/old"))
        t = zk.transaction()
        t.create(f"{r}/dup", b"1")
        t.create(f"{r}/dup", b"2")
        out["duplicate"] = t.commit()
        t = zk.transaction()
        t.delete(f"{r}/new")  # not empty
        out["not_empty"] = t.commit()
        out["empty"] = zk.transaction().commit()
        return out

    res = on_both(fn)
    r = res["after_ok"]
    assert res["ok"][:3] == ["ROOT/new", "ROOT/new/seq-0000000000", "ROOT/eph"]
    assert res["ok"][3]["version"] == 1 and res["ok"][4:] == [True, True]
    assert r[0][0] == b"o2" and r[1] is None and r[2] is not None
    assert res["failing"] == [("error", RolledBackError.__name__), ("error", RolledBackError.__name__),
                              ("error", BadVersionError.__name__), ("error", "RuntimeInconsistency")]
    assert res["after_failing"][0] is None and res["after_failing"][1][0] == b"o2"
    assert res["duplicate"] == [("error", RolledBackError.__name__), ("error", NodeExistsError.__name__)]
    assert res["not_empty"] == [("error", NotEmptyError.__name__)]
    assert res["empty"] == []


def test_reconfig_on_standalone_matches_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        out: dict[str, Any] = {}
        for name, kw in (("joining", {"joining": "server.100=127.0.0.1:2888:3888;2181", "leaving": None,
                                      "new_members": None}),
                         ("leaving", {"joining": None, "leaving": "1", "new_members": None}),
                         ("new_members", {"joining": None, "leaving": None,
                                          "new_members": "server.1=127.0.0.1:2888:3888;2181"})):
            try:
                out[name] = ctx.zk.reconfig(**kw)
            except Exception as e:
                out[name] = e
        out["config_node"] = ctx.zk.get("/zookeeper/config")
        out["still_works"] = ctx.zk.exists(ctx.root) is not None
        return out

    res = on_both(fn)
    for name in ("joining", "leaving", "new_members"):
        assert res[name] == ("error", ReconfigDisabledError.__name__)
    assert res["still_works"] is True


def test_reconfig_with_reconfig_enabled_on_standalone_matches_apache(kazoo_client: KazooFactory) -> None:
    """reconfigEnabled=true on a standalone server: Apache answers UNIMPLEMENTED (it is no leader)
    before it looks at who asks."""
    if not apache_available():
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")
    cfg = {"reconfigEnabled": "true", "DigestAuthenticationProvider.superDigest": digest_id("su", "pw")}
    results = {}
    for kind, server in (("apache", ApacheZkProcess(cfg=cfg)), ("zkfast", ZkfastProcess(cfg=cfg))):
        with server:
            out = []
            for auth in ([], [("digest", "su:pw")]):
                zk = kazoo_client(server, auth_data=auth)
                for kw in ({"joining": "server.2=127.0.0.1:2888:3888;2182", "leaving": None, "new_members": None},
                           {"joining": None, "leaving": "1", "new_members": None}):
                    try:
                        out.append(zk.reconfig(**kw))
                    except Exception as e:
                        out.append(type(e).__name__)
                zk.stop()
            results[kind] = out
    assert results["apache"] == ["UnimplementedError"] * 4
    assert results["zkfast"] == results["apache"]


def test_add_auth_with_unknown_scheme_matches_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk = ctx.zk
        session_id, passwd = zk.client_id
        try:
            zk.add_auth("nosuchscheme", "whatever")
            result: Any = "ok"
        except Exception as e:
            result = e
        wait_until(lambda: zk.state == KazooState.LOST, what="LOST after AUTH_FAILED")
        # only the connection was closed: end the session now, not at some later test's expense
        raw = RawSession(ctx.server.host, ctx.server.port)
        raw.open(connect_request(session_id=session_id, passwd=passwd))
        (bye,) = raw.call(1, -11)
        raw.close()
        return result, zk.state, struct.unpack(">iqi", bye[:16])[2]

    assert on_both(fn) == [("error", AuthFailedError.__name__), KazooState.LOST, 0]


def test_invalid_arguments_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        out: dict[str, Any] = {}
        zk.create(f"{r}/seqparent")
        for name, f in (("seq_from_client_path", lambda: zk.create(f"{r}/seqparent/", sequence=True)),
                        ("delete_root", lambda: zk.delete("/")),
                        ("create_zookeeper", lambda: (zk.create(f"/zookeeper/x{r[1:]}"), zk.delete(f"/zookeeper/x{r[1:]}"))),
                        ("delete_zookeeper_quota", lambda: zk.delete("/zookeeper/quota")),
                        ("set_config", lambda: zk.set("/zookeeper/config", b"x"))):
            try:
                out[name] = f()
            except Exception as e:
                out[name] = e
        return out

    res = on_both(fn)
    assert res["delete_root"] == ("error", BadArgumentsError.__name__)
    assert res["delete_zookeeper_quota"] == ("error", BadArgumentsError.__name__)
    assert res["set_config"] == ("error", NoAuthError.__name__)
    assert res["create_zookeeper"][1] is True  # /zookeeper itself is not protected
    assert res["seq_from_client_path"] == "ROOT/seqparent/0000000000"


# --------------------------------------------------------------------------------- four-letter


def test_server_version_and_four_letter_words(kazoo_client: KazooFactory, zkfast_server: ZkfastProcess,
                                              apache_server: ServerProcess) -> None:
    zk = kazoo_client()
    assert zk.server_version() == (3, 8, 0)
    assert zk.command(b"ruok") == "imok"
    assert zk.command(b"isro") == "rw"
    ref = kazoo_client(apache_server)

    def keys(text: str, sep: str) -> list[str]:
        return [line.split(sep)[0] for line in text.splitlines() if line and not line.startswith(" ")]

    for cmd, sep in ((b"srvr", ":"), (b"conf", "="), (b"envi", "=")):
        assert keys(zk.command(cmd), sep) == keys(ref.command(cmd), sep), cmd
    srvr = dict(line.split(": ", 1) for line in zk.command(b"srvr").splitlines())
    assert srvr["Mode"] == "standalone"
    assert srvr["Zookeeper version"].startswith("3.8.0")
    conf = dict(line.split("=", 1) for line in zk.command(b"conf").splitlines() if "=" in line)
    assert conf["tickTime"] == "500" and conf["minSessionTimeout"] == "1000"
    assert conf["maxSessionTimeout"] == "10000"


def packets(server: ServerProcess) -> tuple[int, int]:
    srvr = dict(line.split(": ", 1) for line in server.four_letter("srvr").splitlines())
    return int(srvr["Received"]), int(srvr["Sent"])


def test_packet_counters_match_apache(zkfast_server: ZkfastProcess, apache_server: ServerProcess) -> None:
    deltas = {}
    for kind, server in (("apache", apache_server), ("zkfast", zkfast_server)):
        steps = []
        before = packets(server)
        for _ in range(3):
            assert server.four_letter("ruok") == "imok"
        s = RawSession(server.host, server.port)
        for step in ("4lw", "connect", "exists", "closeSession"):
            if step == "connect":
                s.open(connect_request())
            elif step == "exists":
                s.call(1, 3, u_str("/") + b"\0")
            elif step == "closeSession":
                s.call(2, -11)
            after = packets(server)  # each srvr counts itself too
            steps.append((after[0] - before[0], after[1] - before[1]))
            before = after
        s.close()
        deltas[kind] = steps
    assert deltas["apache"] == [(4, 4), (2, 2), (2, 2), (2, 2)]
    assert deltas["zkfast"] == deltas["apache"]


# ----------------------------------------------------------------------------------- watches


def test_one_shot_watches_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        other = ctx.client()
        events, cb = recorder()
        zk.create(f"{r}/d", b"0")
        zk.create(f"{r}/c")
        zk.get(f"{r}/d", watch=cb)
        zk.exists(f"{r}/missing", watch=cb)
        zk.get_children(f"{r}/c", watch=cb)
        zk.exists(f"{r}/d", watch=cb)  # same path, same kind of trigger: one event for both
        other.set(f"{r}/d", b"1")
        other.set(f"{r}/d", b"2")  # one-shot: no second event
        other.create(f"{r}/missing", b"m")
        other.create(f"{r}/c/k1")
        other.create(f"{r}/c/k2")
        wait_events(events, 3)
        zk.exists(f"{r}/end", watch=cb)
        other.create(f"{r}/end")  # ordered after all the events above on this session
        wait_events(events, 4)
        seen = [(e.type, e.path.removeprefix(r)) for e in events]
        return seen

    res = on_both(fn)
    assert res == [[EventType.CHANGED, "/d"], [EventType.CREATED, "/missing"], [EventType.CHILD, "/c"],
                   [EventType.CREATED, "/end"]]


def test_watch_events_on_delete_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        other = ctx.client()
        events, cb = recorder()
        zk.create(f"{r}/p/k", b"", makepath=True)
        zk.get(f"{r}/p", watch=cb)
        zk.get_children(f"{r}/p", watch=cb)
        zk.exists(f"{r}/p/k", watch=cb)
        zk.get_children(f"{r}/p/k", watch=cb)
        other.delete(f"{r}/p", recursive=True)
        wait_events(events, 4)
        zk.exists(f"{r}/end", watch=cb)
        other.create(f"{r}/end")
        wait_events(events, 5)
        return [(e.type, e.path.removeprefix(r)) for e in events]

    # /p/k's exists and child watches, /p's child watch (a child went) and then /p's data watch;
    # kazoo calls the callback once per watch it registered
    assert on_both(fn) == [[EventType.DELETED, "/p/k"], [EventType.DELETED, "/p/k"], [EventType.CHILD, "/p"],
                           [EventType.DELETED, "/p"], [EventType.CREATED, "/end"]]


def test_data_and_children_watch_recipes_match_apache(on_both: Differential) -> None:
    def fn(ctx: DiffContext) -> Any:
        zk, r = ctx.zk, ctx.root
        other = ctx.client()
        data_seen: list[Any] = []
        kids_seen: list[list[str]] = []

        @zk.DataWatch(f"{r}/node")
        def on_data(data: bytes | None, stat: ZnodeStat | None) -> None:
            data_seen.append((data, stat.version if stat else None))

        @zk.ChildrenWatch(r)
        def on_kids(children: list[str]) -> None:
            kids_seen.append(sorted(children))

        wait_events(data_seen, 1)
        wait_events(kids_seen, 1)
        other.create(f"{r}/node", b"a")
        wait_until(lambda: data_seen[-1] == (b"a", 0) and kids_seen[-1] == ["node"], what="create seen")
        other.set(f"{r}/node", b"b")
        wait_until(lambda: data_seen[-1] == (b"b", 1), what="set seen")
        other.create(f"{r}/second")
        wait_until(lambda: kids_seen[-1] == ["node", "second"], what="second child")
        other.delete(f"{r}/node")
        wait_until(lambda: data_seen[-1] == (None, None) and kids_seen[-1] == ["second"], what="delete seen")
        return data_seen, kids_seen

    data_seen, kids_seen = on_both(fn)
    assert data_seen == [[None, None], [b"a", 0], [b"b", 1], [None, None]]
    assert kids_seen == [[], ["node"], ["node", "second"], ["second"]]


def test_exists_watch_on_missing_node_then_create(kazoo_client: KazooFactory, zk_root: str) -> None:
    zk, other = kazoo_client(), kazoo_client()
    zk.ensure_path(zk_root)
    events, cb = recorder()
    assert zk.exists(f"{zk_root}/later", watch=cb) is None
    created = other.create(f"{zk_root}/later", b"x", include_data=True)[1]
    (ev,) = wait_events(events, 1)
    assert (ev.type, ev.path, ev.state) == (EventType.CREATED, f"{zk_root}/later", KazooState.CONNECTED)
    stat = zk.exists(f"{zk_root}/later")
    assert stat is not None and stat.czxid == created.czxid


# --------------------------------------------------------------------------- sessions, any server


def test_ephemeral_goes_away_when_its_session_closes(kazoo_client: KazooFactory, any_server: ServerProcess) -> None:
    root = unique_root("eph_close")
    owner, watcher = kazoo_client(any_server), kazoo_client(any_server)
    owner.ensure_path(root)
    _, stat = owner.create(f"{root}/e", b"", ephemeral=True, include_data=True)
    assert stat.ephemeralOwner == owner.client_id[0]
    events, cb = recorder()
    assert watcher.exists(f"{root}/e", watch=cb) is not None
    kids, kcb = recorder()
    watcher.get_children(root, watch=kcb)
    owner.stop()
    wait_events(events, 1)
    wait_events(kids, 1)
    assert (events[0].type, events[0].path) == (EventType.DELETED, f"{root}/e")
    assert (kids[0].type, kids[0].path) == (EventType.CHILD, root)
    assert watcher.exists(f"{root}/e") is None


def test_session_expiry_removes_ephemerals_and_client_gets_a_new_session(
        kazoo_client: KazooFactory, any_server: ServerProcess, proxy_for: Callable[[ServerProcess], TcpProxy]) -> None:
    root = unique_root("expiry")
    proxy = proxy_for(any_server)
    zk = kazoo_client(hosts=proxy.address, timeout=1.0)  # negotiated: minSessionTimeout = 1000 ms
    log = StateLog(zk)
    watcher = kazoo_client(any_server)
    zk.ensure_path(root)
    zk.create(f"{root}/e", b"", ephemeral=True)
    old_session = zk.client_id[0]
    events, cb = recorder()
    assert watcher.exists(f"{root}/e", watch=cb) is not None

    proxy.partition()  # the client can reach nobody; its session runs out on the server
    started = time.monotonic()
    (ev,) = wait_events(events, 1, timeout_s=10)
    took = time.monotonic() - started
    assert (ev.type, ev.path) == (EventType.DELETED, f"{root}/e")
    assert 0.5 < took < 5.0  # expired after the 1 s timeout (plus at most a tick or two), not at once
    assert f"0x{old_session:x}" not in any_server.four_letter("dump")

    proxy.heal()
    lost = log.wait_for(KazooState.LOST)
    log.wait_for(KazooState.CONNECTED, after=lost)
    assert log.states[:lost].count(KazooState.SUSPENDED) >= 1
    assert zk.client_id[0] != old_session
    assert zk.exists(f"{root}/e") is None
    zk.create(f"{root}/e", b"again", ephemeral=True)  # the new session works
    assert watcher.get(f"{root}/e")[1].ephemeralOwner == zk.client_id[0]


def test_reconnect_keeps_the_session_and_watches_recover(
        kazoo_client: KazooFactory, any_server: ServerProcess, proxy_for: Callable[[ServerProcess], TcpProxy]) -> None:
    root = unique_root("reconnect")
    proxy = proxy_for(any_server)
    zk = kazoo_client(hosts=proxy.address, timeout=4.0)
    log = StateLog(zk)
    other = kazoo_client(any_server)
    zk.create(f"{root}/d", b"before", makepath=True)
    zk.create(f"{root}/e", b"", ephemeral=True)
    session = zk.client_id
    data_seen: list[bytes | None] = []
    kids_seen: list[list[str]] = []
    zk.DataWatch(f"{root}/d")(lambda data, stat: data_seen.append(data))
    zk.ChildrenWatch(root)(lambda kids: kids_seen.append(sorted(kids)))
    wait_until(lambda: data_seen == [b"before"] and kids_seen == [["d", "e"]], what="initial watch calls")
    gone, gone_cb = recorder()
    assert other.exists(f"{root}/e", watch=gone_cb) is not None

    proxy.partition()
    suspended = log.wait_for(KazooState.SUSPENDED)
    other.set(f"{root}/d", b"while-away")
    other.create(f"{root}/new")
    proxy.heal()
    log.wait_for(KazooState.CONNECTED, after=suspended)
    assert KazooState.LOST not in log.states
    assert zk.client_id == session
    wait_until(lambda: data_seen[-1] == b"while-away", what="change made while away")
    wait_until(lambda: kids_seen[-1] == ["d", "e", "new"], what="child made while away")
    other.set(f"{root}/d", b"after")
    wait_until(lambda: data_seen[-1] == b"after", what="change after the reconnect")
    assert other.get(f"{root}/e")[1].ephemeralOwner == session[0]
    other.sync(root)
    assert gone == []  # the ephemeral never went away
    assert proxy.accepted >= 2


NOTIFICATION_XID = -1
SET_WATCHES_XID = -8


def read_notifications(s: RawSession, until_xid: int | None, count: int) -> list[tuple[int, int, str]]:
    """Notifications (type, state, path) until `count` of them arrived (and the reply `until_xid`)."""
    out: list[tuple[int, int, str]] = []
    got_reply = until_xid is None
    while len(out) < count or not got_reply:
        f = s.read_frame()
        assert f is not None, "server closed the connection"
        xid, _zxid, err = struct.unpack(">iqi", f[:16])
        if xid == NOTIFICATION_XID:
            typ, state, n = struct.unpack(">iii", f[16:28])
            out.append((typ, state, f[28:28 + n].decode()))
        elif xid == until_xid:
            assert err == 0
            got_reply = True
    return out


def test_set_watches_after_reconnect_fires_what_was_missed(kazoo_client: KazooFactory,
                                                           any_server: ServerProcess) -> None:
    """kazoo re-arms its watches with new reads; setWatches (what the Java client sends on a
    reconnect) is exercised with raw frames: watches set at lastZxid fire for what changed since."""
    root = unique_root("setwatches")
    zk = kazoo_client(any_server)
    zk.create(f"{root}/d", b"", makepath=True)
    zk.create(f"{root}/same", b"")
    zk.create(f"{root}/c")
    zk.create(f"{root}/del")
    first = RawSession(any_server.host, any_server.port)
    first.open(connect_request(timeout_ms=10000))
    (reply,) = first.call(1, 3, u_str(root) + b"\0")
    last_zxid = struct.unpack(">q", reply[4:12])[0]
    first.close()  # a dropped connection, the session lives on

    zk.set(f"{root}/d", b"changed")
    zk.create(f"{root}/appeared")
    zk.create(f"{root}/c/kid")
    zk.delete(f"{root}/del")
    again = RawSession(any_server.host, any_server.port)
    resp = again.open(connect_request(timeout_ms=10000, session_id=first.session_id, passwd=first.passwd,
                                      last_zxid=last_zxid))
    assert again.session_id == first.session_id and len(resp) > 20

    def strings(paths: list[str]) -> bytes:
        return struct.pack(">i", len(paths)) + b"".join(u_str(f"{root}{p}") for p in paths)

    body = struct.pack(">q", last_zxid) + strings(["/d", "/same", "/del"]) + strings(["/appeared", "/absent"]) \
        + strings(["/c"])
    again.send(frame(request(SET_WATCHES_XID, 101, body)))
    fired = read_notifications(again, SET_WATCHES_XID, 4)
    assert sorted(fired) == sorted([(3, 3, f"{root}/d"), (2, 3, f"{root}/del"), (1, 3, f"{root}/appeared"),
                                    (4, 3, f"{root}/c")])
    zk.set(f"{root}/same", b"now")  # a watch re-registered without firing fires on the next change
    zk.create(f"{root}/absent")
    assert sorted(read_notifications(again, None, 2)) == [(1, 3, f"{root}/absent"), (3, 3, f"{root}/same")]
    again.call(2, -11)  # closeSession
    again.close()


# ----------------------------------------------------------------------------------- recipes


def run_threads(targets: list[Callable[[], None]], timeout_s: float = 20.0) -> None:
    errors: list[BaseException] = []

    def wrap(f: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                f()
            except BaseException as e:
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
        assert not t.is_alive(), "recipe thread hung"
    if errors:
        raise errors[0]


def test_lock_recipe(kazoo_client: KazooFactory, zk_root: str) -> None:
    clients = [kazoo_client() for _ in range(3)]
    holders: list[str] = []
    max_holders = [0]
    order: list[str] = []
    guard = threading.Lock()

    def worker(i: int) -> Callable[[], None]:
        def run() -> None:
            lock = clients[i].Lock(f"{zk_root}/lock", f"worker{i}")
            for _ in range(4):
                with lock:
                    with guard:
                        holders.append(f"worker{i}")
                        max_holders[0] = max(max_holders[0], len(holders))
                        order.append(f"worker{i}")
                    time.sleep(0.002)
                    with guard:
                        holders.remove(f"worker{i}")
        return run

    run_threads([worker(i) for i in range(3)])
    assert max_holders[0] == 1 and len(order) == 12
    assert clients[0].get_children(f"{zk_root}/lock") == []
    lock = clients[0].Lock(f"{zk_root}/lock", "holder")
    assert lock.acquire(timeout=5)
    assert clients[1].Lock(f"{zk_root}/lock", "waiter").acquire(blocking=False) is False
    assert lock.contenders() == ["holder"]
    lock.release()


def test_election_recipe(kazoo_client: KazooFactory, zk_root: str) -> None:
    clients = [kazoo_client() for _ in range(3)]
    leaders: list[str] = []
    release = {f"c{i}": threading.Event() for i in range(3)}
    active = [0]
    overlap = [False]

    def lead(name: str) -> None:
        active[0] += 1
        overlap[0] |= active[0] > 1
        leaders.append(name)
        release[name].wait(15)
        active[0] -= 1

    targets = [lambda i=i: clients[i].Election(f"{zk_root}/el", f"c{i}").run(lead, f"c{i}") for i in range(3)]
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for n in range(1, 4):
        wait_until(lambda n=n: len(leaders) == n, what=f"leader #{n}")
        contenders = clients[0].Election(f"{zk_root}/el").contenders()
        assert contenders[0] == leaders[-1]  # the leader is the first contender
        release[leaders[-1]].set()
    for t in threads:
        t.join(10)
    assert sorted(leaders) == ["c0", "c1", "c2"] and not overlap[0]


def test_counter_recipe(kazoo_client: KazooFactory, zk_root: str) -> None:
    clients = [kazoo_client() for _ in range(3)]

    def bump(i: int) -> Callable[[], None]:
        def run() -> None:
            counter = clients[i].Counter(f"{zk_root}/count")
            for _ in range(10):
                counter += 1
        return run

    run_threads([bump(i) for i in range(3)])
    assert clients[0].Counter(f"{zk_root}/count").value == 30
    counter = clients[1].Counter(f"{zk_root}/float", default=0.0)
    counter += 1.5
    counter -= 0.25
    assert counter.value == 1.25 and counter.pre_value == 1.5 and counter.post_value == 1.25


def test_barrier_recipe(kazoo_client: KazooFactory, zk_root: str) -> None:
    clients = [kazoo_client() for _ in range(3)]
    gate = clients[0].Barrier(f"{zk_root}/gate")
    gate.create()
    passed: list[int] = []
    threads = [threading.Thread(target=lambda i=i: passed.append(i) if clients[i].Barrier(f"{zk_root}/gate").wait(15)
                                else None, daemon=True) for i in (1, 2)]
    for t in threads:
        t.start()
    assert clients[1].Barrier(f"{zk_root}/gate").wait(timeout=0.1) is False  # closed for now
    assert passed == []
    gate.remove()
    for t in threads:
        t.join(10)
    assert sorted(passed) == [1, 2]

    # double barrier: nobody enters until all three have arrived
    entered: list[int] = []

    def member(i: int) -> Callable[[], None]:
        def run() -> None:
            barrier = clients[i].DoubleBarrier(f"{zk_root}/double", 3)
            barrier.enter()
            entered.append(i)
            barrier.leave()
        return run

    run_threads([member(i) for i in range(3)])
    assert sorted(entered) == [0, 1, 2]


def test_queue_recipes(kazoo_client: KazooFactory, zk_root: str) -> None:
    producer, consumer = kazoo_client(), kazoo_client()
    q = producer.Queue(f"{zk_root}/q")
    for i, prio in ((1, 50), (2, 10), (3, 50), (4, 99)):
        q.put(f"item{i}".encode(), priority=prio)
    cq = consumer.Queue(f"{zk_root}/q")
    assert len(cq) == 4
    assert [cq.get() for _ in range(5)] == [b"item2", b"item1", b"item3", b"item4", None]

    lq = producer.LockingQueue(f"{zk_root}/lq")
    lq.put_all([b"a", b"b", b"c"])
    clq = consumer.LockingQueue(f"{zk_root}/lq")
    got = []
    for _ in range(3):
        got.append(clq.get(timeout=5))
        assert clq.holds_lock()
        assert clq.consume()
    assert got == [b"a", b"b", b"c"] and len(clq) == 0
    assert clq.get(timeout=0.1) is None


def test_party_recipe(kazoo_client: KazooFactory, zk_root: str) -> None:
    clients = [kazoo_client() for _ in range(3)]
    parties = [c.Party(f"{zk_root}/party", f"member{i}") for i, c in enumerate(clients)]
    for p in parties:
        p.join()
    assert all(len(p) == 3 for p in parties)
    assert sorted(parties[0]) == ["member0", "member1", "member2"]
    parties[1].leave()
    assert len(parties[0]) == 2
    clients[2].stop()  # a member whose session ends leaves the party
    wait_until(lambda: len(parties[0]) == 1, what="member2 gone with its session")
    shallow = clients[0].ShallowParty(f"{zk_root}/shallow", "solo")
    shallow.join()
    assert list(shallow) == ["solo"]


def test_tree_cache_recipe(kazoo_client: KazooFactory, zk_root: str) -> None:
    zk, writer = kazoo_client(), kazoo_client()
    writer.create(f"{zk_root}/a/x", b"1", makepath=True)
    events: list[tuple[int, str | None, bytes | None]] = []

    def listen(event: TreeEvent) -> None:
        data = event.event_data
        events.append((event.event_type, data.path if data else None, data.data if data else None))

    cache = TreeCache(zk, zk_root)
    cache.listen(listen)
    cache.start()
    try:
        wait_until(lambda: any(e[0] == TreeEvent.INITIALIZED for e in events), what="cache initialised")
        assert cache.get_data(f"{zk_root}/a/x").data == b"1"
        assert cache.get_children(f"{zk_root}/a") == frozenset({"x"})
        writer.set(f"{zk_root}/a/x", b"2")
        writer.create(f"{zk_root}/b", b"new")
        writer.delete(f"{zk_root}/a/x")
        wait_until(lambda: (TreeEvent.NODE_REMOVED, f"{zk_root}/a/x", b"2") in events
                   and (TreeEvent.NODE_ADDED, f"{zk_root}/b", b"new") in events, what="add and removal seen")
        assert (TreeEvent.NODE_UPDATED, f"{zk_root}/a/x", b"2") in events
        assert (TreeEvent.NODE_ADDED, f"{zk_root}/b", b"new") in events
        assert cache.get_data(f"{zk_root}/a/x") is None
        assert cache.get_children(zk_root) == frozenset({"a", "b"})
    finally:
        cache.close()
