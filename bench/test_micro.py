"""Micro benchmarks of zkfast's hot paths (pytest-benchmark); every timed call is one record / op.

    python -m pytest bench/test_micro.py                       # timings
    python -m pytest bench/test_micro.py --benchmark-disable   # each once, as a test

Groups: codec (WriteBuffer writes, decode_request, Txn.to_bytes / decode_txn, log entries),
datatree (create / get / exists / set / getChildren through DataTree.apply and DataTree.read),
watch (register + fire + deliver), txnlog (append encoding; write + fdatasync of a batch),
snapshot (serialising / loading one chunk of 2000 node records), and
memory (bytes per znode of a DataTree with ZKBENCH_TREE_ZNODES znodes of 100 bytes, default
1,000,000, measured by bench/tree_memory.py in a process of its own).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from zkfast._datatree import DataTree, Watcher, load_chunk, serialize_chunk
from zkfast._jute import (
    OP_CREATE,
    OP_EXISTS,
    OP_GET_CHILDREN,
    OP_GET_DATA,
    OP_SET_DATA,
    Txn,
    WriteBuffer,
    append_log_entry,
    decode_request,
    decode_txn,
    read_log_entry,
)

from zkfast.storage.durable import DurableCommit
from zkfast.storage.txnlog import Batch, LogWriter

HERE = Path(__file__).resolve().parent
OPEN = [(31, "world", "anyone")]
DATA = b"x" * 100
PATH = b"/zkbench/k/00000042"
TREE_ZNODES = int(os.environ.get("ZKBENCH_TREE_ZNODES", "1000000"))


# ------------------------------------------------------------------------------------ helpers

def create_request_body(path: bytes = PATH, data: bytes = DATA) -> bytes:
    wb = WriteBuffer(256)
    wb.write_ustring(path)
    wb.write_buffer(data)
    wb.write_acl_list(OPEN)
    wb.write_int(0)
    return bytes(wb.take())


def read_body(path: bytes, watch: bool = False) -> bytes:
    wb = WriteBuffer(64)
    wb.write_ustring(path)
    wb.write_bool(watch)
    return bytes(wb.take())


def create_txn(path: bytes, zxid: int, data: bytes = DATA) -> Txn:
    t = Txn(0x1000000000001, 7, zxid, 1_700_000_000_000 + zxid, OP_CREATE)
    t.path = path
    t.data = data
    t.acl = OPEN
    return t


def set_txn(path: bytes, zxid: int, data: bytes = DATA) -> Txn:
    t = Txn(0x1000000000001, 8, zxid, 1_700_000_000_000 + zxid, OP_SET_DATA)
    t.path = path
    t.data = data
    t.version = -1
    return t


@pytest.fixture
def tree() -> DataTree:
    """/zkbench/k with 10,000 znodes of 100 bytes, /zkbench/c with 10 children."""
    t = DataTree()
    zxid = 1
    for p in (b"/zkbench", b"/zkbench/k", b"/zkbench/c"):
        t.apply(create_txn(p, zxid, b""))
        zxid += 1
    for i in range(10):
        t.apply(create_txn(b"/zkbench/c/kid%02d" % i, zxid, b"x" * 10))
        zxid += 1
    for i in range(10_000):
        t.apply(create_txn(b"/zkbench/k/%08d" % i, zxid))
        zxid += 1
    return t


# ------------------------------------------------------------------------------------ codec

@pytest.mark.benchmark(group="codec")
def test_encode_create_request(benchmark) -> None:
    wb = WriteBuffer(4096)

    def encode() -> None:
        s = wb.frame_start()
        wb.write_int(42)
        wb.write_int(OP_CREATE)
        wb.write_ustring(PATH)
        wb.write_buffer(DATA)
        wb.write_acl_list(OPEN)
        wb.write_int(0)
        wb.frame_end(s)
        wb.clear()

    benchmark(encode)


@pytest.mark.benchmark(group="codec")
def test_encode_get_request(benchmark) -> None:
    wb = WriteBuffer(4096)

    def encode() -> bytes:
        s = wb.frame_start()
        wb.write_int(42)
        wb.write_int(OP_GET_DATA)
        wb.write_ustring(PATH)
        wb.write_bool(False)
        wb.frame_end(s)
        return bytes(wb.take())

    assert len(benchmark(encode)) == 4 + 8 + 4 + len(PATH) + 1


@pytest.mark.benchmark(group="codec")
def test_decode_create_request(benchmark) -> None:
    body = create_request_body()
    rec = benchmark(decode_request, OP_CREATE, body)
    assert rec[0] in (PATH, PATH.decode())


@pytest.mark.benchmark(group="codec")
def test_decode_set_request(benchmark) -> None:
    wb = WriteBuffer(256)
    wb.write_ustring(PATH)
    wb.write_buffer(DATA)
    wb.write_int(-1)
    body = bytes(wb.take())
    benchmark(decode_request, OP_SET_DATA, body)


@pytest.mark.benchmark(group="codec")
def test_txn_to_bytes(benchmark) -> None:
    t = create_txn(PATH, 1000)
    payload = benchmark(t.to_bytes)
    assert decode_txn(payload).path == PATH


@pytest.mark.benchmark(group="codec")
def test_decode_txn(benchmark) -> None:
    payload = create_txn(PATH, 1000).to_bytes()
    t = benchmark(decode_txn, payload)
    assert t.zxid == 1000


@pytest.mark.benchmark(group="codec")
def test_append_log_entry(benchmark) -> None:
    wb = WriteBuffer(1 << 16)
    t = create_txn(PATH, 1000)

    def append() -> None:
        append_log_entry(wb, t)
        wb.clear()

    benchmark(append)


@pytest.mark.benchmark(group="codec")
def test_read_log_entry(benchmark) -> None:
    wb = WriteBuffer(1 << 16)
    append_log_entry(wb, create_txn(PATH, 1000))
    buf = bytes(wb.take())
    status, nxt, payload = benchmark(read_log_entry, buf, 0)
    assert nxt == len(buf) and payload is not None


# ------------------------------------------------------------------------------------ datatree

@pytest.mark.benchmark(group="datatree")
def test_tree_create(benchmark, tree: DataTree) -> None:
    counter = itertools.count(1_000_000)

    def create() -> int:
        i = next(counter)
        return tree.apply(create_txn(b"/zkbench/k/%08d" % i, i))

    assert benchmark(create) == 0


@pytest.mark.benchmark(group="datatree")
def test_tree_set(benchmark, tree: DataTree) -> None:
    counter = itertools.count(1_000_000)
    assert benchmark(lambda: tree.apply(set_txn(PATH, next(counter)))) == 0


@pytest.mark.benchmark(group="datatree")
@pytest.mark.parametrize("op", ["getData", "exists", "getChildren"])
def test_tree_read(benchmark, tree: DataTree, op: str) -> None:
    code, path = {"getData": (OP_GET_DATA, PATH), "exists": (OP_EXISTS, PATH),
                  "getChildren": (OP_GET_CHILDREN, b"/zkbench/c")}[op]
    body = read_body(path)
    w = Watcher()
    out = WriteBuffer(1 << 16)

    def read() -> bool:
        ok = tree.read(code, 42, body, w, out)
        out.clear()
        return bool(ok)

    assert benchmark(read)


# ------------------------------------------------------------------------------------ watches

@pytest.mark.benchmark(group="watch")
def test_watch_register_fire_deliver(benchmark, tree: DataTree) -> None:
    """getData with watch=true, then a setData that fires it into the watcher's buffer."""
    w = Watcher()
    out = WriteBuffer(1 << 16)
    body = read_body(PATH, watch=True)
    counter = itertools.count(1_000_000)

    def fire() -> int:
        tree.read(OP_GET_DATA, 42, body, w, out)
        out.clear()
        tree.apply(set_txn(PATH, next(counter)))
        tree.take_dirty()
        n = len(w.out)
        w.out.clear()
        return n

    assert benchmark(fire) > 0


# ------------------------------------------------------------------------------------ txn log

@pytest.mark.benchmark(group="txnlog")
def test_txnlog_append(benchmark, tmp_path: Path) -> None:
    """DurableCommit.append: one txn encoded into the group-commit batch."""
    commit = DurableCommit(tmp_path, prealloc_bytes=1 << 20, force_sync=True, snap_count=1 << 30,
                           snap_size_limit_bytes=0)
    counter = itertools.count(1)
    t = create_txn(PATH, 1)

    def append() -> None:
        t.zxid = next(counter)
        commit.append(t)
        if commit.count >= 1000:  # keep the batch small, as flush would, without the thread
            commit.batch.clear()
            commit.count = 0

    benchmark(append)


@pytest.fixture
def log_writer(tmp_path: Path) -> Iterator[tuple[LogWriter, threading.Event]]:
    durable = threading.Event()
    w = LogWriter(tmp_path, prealloc_bytes=64 << 20, force_sync=True, snap_count=1 << 30,
                  snap_size_limit_bytes=0, on_durable=lambda zxid, n: durable.set(),
                  on_error=lambda e, b: durable.set(), on_roll=lambda: None)
    w.start()
    yield w, durable
    w.close()


@pytest.mark.benchmark(group="txnlog")
@pytest.mark.parametrize("batch", [1, 100])
def test_txnlog_write_fsync(benchmark, log_writer: tuple[LogWriter, threading.Event], batch: int) -> None:
    """One group commit of `batch` create txns: write + fdatasync on the log thread, until durable."""
    writer, durable = log_writer
    counter = itertools.count(1)

    def commit() -> None:
        wb = WriteBuffer(1 << 16)
        first = 0
        for _ in range(batch):
            z = next(counter)
            first = first or z
            append_log_entry(wb, create_txn(PATH, z))
        durable.clear()
        writer.submit(Batch(bytes(wb.take()), first, z, batch))
        assert durable.wait(30)

    benchmark(commit)
    assert not writer.failed


# ------------------------------------------------------------------------------------ snapshots

SNAP_CHUNK = 2000  # zkfast.storage.snapshot.CHUNK_NODES: the node records of one LMDB record


@pytest.mark.benchmark(group="snapshot")
def test_snapshot_serialize_chunk(benchmark, tree: DataTree) -> None:
    """One chunk of a snapshot (its child process writes them one after the other)."""
    stack: list[bytes] = []
    acl_map: dict = {}
    acl_out: list = []
    out = WriteBuffer(1 << 20)

    def chunk() -> int:
        if not stack:
            stack.append(b"/")
            acl_map.clear()
            acl_out.clear()
        n = serialize_chunk(tree, stack, SNAP_CHUNK, out, acl_map, acl_out)
        out.clear()
        return int(n)

    assert benchmark(chunk) > 0


@pytest.mark.benchmark(group="snapshot")
def test_snapshot_load_chunk(benchmark, tree: DataTree) -> None:
    """Recovery: one chunk of node records loaded into a fresh tree."""
    stack = [b"/"]
    out = WriteBuffer(1 << 20)
    acl_out: list = []
    serialize_chunk(tree, stack, SNAP_CHUNK, out, {}, acl_out)
    payload = bytes(out.take())
    acls = dict(acl_out)

    def load() -> int:
        return int(load_chunk(DataTree(), payload, acls)[0])

    assert benchmark(load) == SNAP_CHUNK


# ------------------------------------------------------------------------------------ memory

@pytest.mark.benchmark(group="memory")
def test_tree_memory_per_znode(benchmark) -> None:
    """Bytes per znode of a DataTree of ZKBENCH_TREE_ZNODES znodes of 100 B (RSS delta)."""
    def run() -> dict[str, float]:
        out = subprocess.run([sys.executable, str(HERE / "tree_memory.py"), "--znodes", str(TREE_ZNODES),
                              "--json"], capture_output=True, text=True, check=True, timeout=600)
        return json.loads(out.stdout)

    r = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(r)
    print(f"\nDataTree: {r['bytes_per_znode']:.0f} bytes per znode with {r['znodes']:,} znodes of 100 B")
    assert 0 < r["bytes_per_znode"] < 10_000
