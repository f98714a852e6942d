"""DataTree semantics (Apache's DataTree.processTxn), and its C index checked against a Python model."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from zkfast._datatree import (
    MODE_PERSISTENT,
    MODE_PERSISTENT_RECURSIVE,
    DataTree,
    Watcher,
    load_chunk,
    serialize_chunk,
)

from zkfast import _jute as jute

OPEN = [(31, "world", "anyone")]


def create(tree: DataTree, path: bytes, zxid: int, data: bytes | None = b"", owner_session: int = 0,
           parent_cversion: int = -1, typ: int = jute.OP_CREATE) -> int:
    t = jute.Txn(owner_session, 1, zxid, 1000 + zxid, typ)
    t.path, t.data, t.acl = path, data, OPEN
    t.ephemeral = owner_session != 0
    t.parent_cversion = parent_cversion
    return tree.apply(t)


def delete(tree: DataTree, path: bytes, zxid: int) -> int:
    t = jute.Txn(0, 1, zxid, 0, jute.OP_DELETE)
    t.path = path
    return tree.apply(t)


def set_data(tree: DataTree, path: bytes, data: bytes, version: int, zxid: int) -> int:
    t = jute.Txn(0, 1, zxid, 5000 + zxid, jute.OP_SET_DATA)
    t.path, t.data, t.version = path, data, version
    return tree.apply(t)


def events(w: Watcher) -> list[tuple[int, bytes]]:
    raw = w.out.take()
    out, pos = [], 0
    while pos < len(raw):
        n = struct.unpack(">i", raw[pos:pos + 4])[0]
        frame = raw[pos + 4:pos + 4 + n]
        typ = struct.unpack(">i", frame[16:20])[0]
        plen = struct.unpack(">i", frame[24:28])[0]
        out.append((typ, frame[28:28 + plen]))
        pos += 4 + n
    return out


def test_built_in_nodes_and_root_cversion() -> None:
    tree = DataTree()
    assert tree.stat(b"/")[5] == -1          # stored cversion 0, one child: 0*2-1
    assert tree.stat(b"/zookeeper")[5] == -2
    assert tree.stat(b"/zookeeper/config")[6] == -1  # aversion set by setACL(..., -1)
    assert sorted(tree.get_children(b"/zookeeper")) == [b"config", b"quota"]
    assert tree.get_acl(b"/zookeeper/config") == [(1, "world", "anyone")]


def test_cversion_counts_creates_and_deletes_for_clients() -> None:
    tree = DataTree()
    create(tree, b"/p", 1)
    create(tree, b"/p/a", 2)
    create(tree, b"/p/b", 3)
    delete(tree, b"/p/a", 4)
    stat = tree.stat(b"/p")
    assert stat[5] == 3 and stat[9] == 1 and stat[10] == 4  # cversion, numChildren, pzxid
    assert tree.record(b"/p")[0][5] == 2  # stored: creates only


def test_replayed_create_only_raises_parent_cversion() -> None:
    tree = DataTree()
    create(tree, b"/p", 1)
    create(tree, b"/p/a", 2, parent_cversion=1)
    # replay of the same txn (fuzzy snapshot): NODEEXISTS, parent unchanged
    assert create(tree, b"/p/a", 2, parent_cversion=1) == -110
    assert tree.record(b"/p")[0][5] == 1
    # a later create of an existing path still raises cversion/pzxid (Apache's processTxn fix-up)
    assert create(tree, b"/p/a", 9, parent_cversion=5) == -110
    assert tree.record(b"/p")[0][5] == 5 and tree.stat(b"/p")[10] == 9


def test_data_and_child_watches_fire_once_in_apache_order() -> None:
    tree = DataTree()
    w = Watcher()
    create(tree, b"/p", 1)
    tree.watch(b"/p/x", w, False)       # exists watch on a missing node
    tree.watch(b"/p", w, True)
    create(tree, b"/p/x", 2)
    assert events(w) == [(1, b"/p/x"), (4, b"/p")]
    create(tree, b"/p/y", 3)
    assert events(w) == []               # one-shot
    tree.watch(b"/p/x", w, False)
    tree.watch(b"/p/x", w, True)
    tree.watch(b"/p", w, True)
    delete(tree, b"/p/x", 4)
    # NodeDeleted once (the child watch is suppressed as already told), then the parent
    assert events(w) == [(2, b"/p/x"), (4, b"/p")]


def test_persistent_and_recursive_watches() -> None:
    tree = DataTree()
    pw, rw = Watcher(), Watcher()
    create(tree, b"/r", 1)
    tree.add_persistent_watch(b"/r", pw, MODE_PERSISTENT)
    tree.add_persistent_watch(b"/r", rw, MODE_PERSISTENT_RECURSIVE)
    create(tree, b"/r/a", 2)
    set_data(tree, b"/r/a", b"1", 1, 3)
    set_data(tree, b"/r", b"1", 1, 4)
    create(tree, b"/r/a/b", 5)
    assert events(pw) == [(4, b"/r"), (3, b"/r")]
    assert events(rw) == [(1, b"/r/a"), (3, b"/r/a"), (3, b"/r"), (1, b"/r/a/b")]
    assert tree.remove_watch(b"/r", rw, False) and tree.remove_watch(b"/r", rw, True)
    set_data(tree, b"/r/a", b"2", 2, 6)
    assert events(rw) == []


def test_failed_multi_applies_nothing() -> None:
    tree = DataTree()
    ok = jute.Txn(0, 1, 1, 1, jute.OP_CREATE)
    ok.path, ok.data, ok.acl, ok.parent_cversion = b"/m", b"", OPEN, -1
    bad = jute.Txn(0, 1, 1, 1, jute.OP_ERROR)
    bad.err = -101
    rest = jute.Txn(0, 1, 1, 1, jute.OP_ERROR)
    rest.err = -2
    multi = jute.Txn(0, 1, 1, 1, jute.OP_MULTI)
    multi.subtxns = [ok, bad, rest]
    tree.apply(multi)
    assert not tree.exists(b"/m")
    assert [(s.rc_type, s.rc_err) for s in multi.subtxns] == [(-1, 0), (-1, -101), (-1, -2)]
    assert tree.last_processed_zxid == 1


def test_close_session_removes_ephemerals() -> None:
    tree = DataTree()
    create(tree, b"/e1", 1, owner_session=77)
    create(tree, b"/e2", 2, owner_session=77)
    assert tree.stat(b"/e1")[7] == 77
    tree.kill_session(77, 3, [b"/e2"])
    assert not tree.exists(b"/e1") and not tree.exists(b"/e2")
    assert tree.ephemeral_paths(77) == []


def test_snapshot_chunks_round_trip() -> None:
    tree = DataTree(extended_types=True)
    create(tree, b"/a", 1, data=None)
    create(tree, b"/a/b", 2, data=b"x" * 100, owner_session=5)
    for i in range(50):
        create(tree, b"/a/c%d" % i, 3 + i)
    out = jute.WriteBuffer()
    acl_map: dict = {}
    acl_out: list = []
    stack = [b"/"]
    while stack:
        serialize_chunk(tree, stack, 7, out, acl_map, acl_out)
    fresh = DataTree(extended_types=True)
    loaded, orphans = load_chunk(fresh, out.getvalue(), dict(acl_out))
    assert orphans == 0 and loaded == tree.node_count()
    for path in tree.walk():
        assert fresh.stat(path) == tree.stat(path), path
        assert fresh.get_data(path) == tree.get_data(path)
    assert fresh.ephemeral_paths(5) == [b"/a/b"]


# data sizes around the inline room a node has (its path's allocation rounds up by up to 15 bytes,
# and the room is at least a pointer's 8), so setData moves data out of the node and back
DATA_SIZES = st.sampled_from([None, 0, 1, 7, 8, 9, 15, 16, 17, 31, 100, 300])


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["create", "delete", "set"]),
                              st.sampled_from([b"/n%d" % i for i in range(40)] + [b"/n1/c%d" % i for i in range(20)]),
                              DATA_SIZES),
                    max_size=300))
def test_index_and_children_match_a_python_model(ops: list[tuple[str, bytes, int | None]]) -> None:
    """Random creates/deletes/sets through the C hash index, sibling lists and inline or moved-out
    data, against a dict; the kept data size and digest against ones recounted from scratch."""
    tree = DataTree()
    model: dict[bytes, bytes | None] = {}
    zxid = 0
    for op, path, size in ops:
        zxid += 1
        data = None if size is None else (b"%d:" % zxid * size)[:size]
        parent = path[: path.rfind(b"/")] or b"/"
        if op == "create":
            err = create(tree, path, zxid, data=data)
            if path in model:
                assert err == -110
            elif parent != b"/" and parent not in model:
                assert err == -101
            else:
                assert err == 0
                model[path] = data
        elif op == "delete":
            has_children = any(p.startswith(path + b"/") for p in model)
            if path in model and not has_children:
                assert delete(tree, path, zxid) == 0
                del model[path]
        else:
            err = set_data(tree, path, data, -1, zxid)
            assert err == (0 if path in model else -101)
            if path in model:
                model[path] = data
    for path, data in model.items():
        assert tree.get_data(path) == data
    top = sorted(p[1:] for p in model if p.count(b"/") == 1)
    assert sorted(c for c in tree.get_children(b"/") if c != b"zookeeper") == top
    assert tree.node_count() == len(model) + 4
    assert tree.all_children_number(b"/") == len(model) + 3
    assert tree.data_bytes == sum(len(d) for d in model.values() if d)
    assert tree.recount_digest() == tree.tree_digest


def fire_model(model: dict[tuple[bool, bytes], dict[int, int]], child: bool, path: bytes,
               recursive_sees: bool = True) -> set[int]:
    """Apache: the standard watches at the path are used up; who saw the event (recursive
    watches at the path or above see all but NodeChildrenChanged)."""
    seen = set()
    for (c, p), modes in list(model.items()):
        for i, mode in list(modes.items()):
            if c != child:
                continue
            if mode == MODE_PERSISTENT_RECURSIVE:
                if recursive_sees and (p == path or path.startswith(p + b"/") or p == b"/"):
                    seen.add(i)
            elif p == path:
                seen.add(i)
                if mode == 0:
                    del modes[i]
        if not modes:
            del model[(c, p)]
    return seen


def test_watch_tables_against_a_model() -> None:
    """The compact watch tables (ids and modes in open-addressing sets) keep what a dict of dicts
    would: random watches, removals, closed watchers and events, checked after every step."""
    import random

    paths = [b"/a", b"/a/b", b"/a/b/c", b"/a/d", b"/e"]
    for seed in range(6):
        rng = random.Random(seed)
        tree = DataTree()
        watchers = [Watcher() for _ in range(7)]
        model: dict[tuple[bool, bytes], dict[int, int]] = {}  # (child, path) -> watcher index -> mode
        zxid = 1

        for _step in range(1500):
            op = rng.random()
            i = rng.randrange(len(watchers))
            w = watchers[i]
            path = rng.choice(paths)
            child = rng.random() < 0.5
            if op < 0.45:
                mode = rng.choice([0, 0, 0, MODE_PERSISTENT, MODE_PERSISTENT_RECURSIVE])
                tree.watch(path, w, child, mode)
                model.setdefault((child, path), {})[i] = mode
            elif op < 0.55:
                had = i in model.get((child, path), {})
                assert tree.remove_watch(path, w, child) == had
                if had:
                    del model[(child, path)][i]
                    if not model[(child, path)]:
                        del model[(child, path)]
            elif op < 0.58:
                held = {key for key, modes in model.items() if i in modes}
                budget = rng.choice([-1, 1, 2, 5])
                left = tree.remove_watcher(w, budget)
                assert left == (0 if budget < 0 else max(0, len(held) - budget))
                # which ones went is the tables' business: the model follows what is left
                kept = {(c, p) for c in (False, True) for p in tree.watched_paths(w, c)}
                assert kept <= held and len(kept) == left
                for key in held - kept:
                    del model[key][i]
                    if not model[key]:
                        del model[key]
            else:
                for x in watchers:
                    events(x)
                zxid += 1
                parent = path.rsplit(b"/", 1)[0] or b"/"
                want: dict[int, set[tuple[int, bytes]]] = {}
                if tree.stat(path) is None:
                    if tree.stat(parent) is None:
                        continue
                    create(tree, path, zxid)
                    seen = {(x, (1, path)) for x in fire_model(model, False, path)}
                    seen |= {(x, (4, parent)) for x in fire_model(model, True, parent, recursive_sees=False)}
                elif rng.random() < 0.5 or tree.get_children(path):
                    set_data(tree, path, b"x", -1, zxid)
                    seen = {(x, (3, path)) for x in fire_model(model, False, path)}
                else:
                    delete(tree, path, zxid)
                    seen = {(x, (2, path)) for x in fire_model(model, False, path) | fire_model(model, True, path)}
                    seen |= {(x, (4, parent)) for x in fire_model(model, True, parent, recursive_sees=False)}
                for x, event in seen:
                    want.setdefault(x, set()).add(event)
                for x, wx in enumerate(watchers):
                    assert sorted(events(wx)) == sorted(want.get(x, set()))
            # the tables agree with the model, and with each watcher's own view
            for child_table, table in ((False, tree.data_watches), (True, tree.child_watches)):
                assert {p for c, p in model if c == child_table} == set(table)
                for p, pw in table.items():
                    assert len(pw) == len(model[(child_table, p)]) > 0
                    assert {watchers.index(x) for x in pw} == set(model[(child_table, p)])
            for x, wx in enumerate(watchers):
                for c in (False, True):
                    mine = {p for (cc, p), modes in model.items() if cc == c and x in modes}
                    assert set(tree.watched_paths(wx, c)) == mine
                    assert (wx.child_watch_count if c else wx.data_watch_count) == len(mine)
                    for p in paths:
                        assert tree.watch_mode(p, wx, c) == model.get((c, p), {}).get(x)
            assert tree.watch_count() == sum(len(m) for m in model.values())
