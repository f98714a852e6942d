"""Damaged txn logs and snapshots at start-up.

A pristine data directory is made once per module by a real server (writes acknowledged one by one
with known zxids, then kill -9); each case copies it, damages it at seeded random places, starts a
server on the copy and checks what it serves against the acknowledged history:

  - a log cut short anywhere: start-up keeps the whole entries before the cut, says in its log what it
    cut (file, offset, last zxid kept), and serves exactly that prefix;
  - a flipped byte in the last entry: a torn tail, handled the same way;
  - a flipped byte in an entry with whole entries after it: start-up stops (exit code != 0) naming the
    file and the offset; `--truncate-log-at FILE:OFFSET` then accepts the loss, serves the prefix, and a
    later plain start keeps it;
  - the newest snapshot without its completion marker, with a corrupt chunk, or without data.mdb: start-up
    falls back to the snapshot before it plus the logs, and serves everything;
  - a needed log missing from the middle: start-up stops with an error naming the gap.

Entries are located with an independent parser of Apache's log format (not zkfast's).
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb
import pytest
from fault.harness import FaultServer, tmp_dir
from fault.workload import (
    OP_CREATE2,
    OP_SET_DATA,
    RawConn,
    Stat,
    create_body,
    dump_children,
    set_body,
    snapshot_of,
)

SEED = 1234577
HEADER = 16  # magic, version, dbid


@dataclass(frozen=True)
class Entry:
    offset: int
    end: int
    zxid: int


def parse_log(path: Path) -> list[Entry]:
    """Apache's txn log: after a 16-byte header, entries of crc(8) len(4) txn(len) 'B'; zeros after."""
    data = path.read_bytes()
    assert data[:4] == b"ZKLG", path
    out = []
    off = HEADER
    while off + 12 <= len(data):
        crc, n = struct.unpack_from(">qi", data, off)
        if crc == 0 and n == 0:
            break
        assert n > 0 and data[off + 12 + n] == 0x42, f"{path} offset {off}"
        zxid = struct.unpack_from(">q", data, off + 12 + 12)[0]  # TxnHeader: clientId, cxid, zxid
        out.append(Entry(off, off + 12 + n + 1, zxid))
        off += 12 + n + 1
    return out


def log_files(data_dir: Path) -> list[Path]:
    files = [p for p in (data_dir / "version-2").iterdir() if p.name.startswith("log.")]
    return sorted(files, key=lambda p: int(p.name[4:], 16))


def snapshots(data_dir: Path) -> list[Path]:
    snaps = [p for p in (data_dir / "version-2").iterdir()
             if p.name.startswith("zkfast-snap.") and not p.name.endswith(".tmp")]
    return sorted(snaps, key=lambda p: int(p.name.split(".")[1], 16))


@dataclass
class History:
    """What was acknowledged: /d/n<i> creates and /d/reg sets, each with its zxid."""

    creates: dict[str, int]
    sets: list[int]
    last_zxid: int
    dump: dict[str, tuple[bytes, Stat]]

    def expect(self, upto: int) -> tuple[set[str], int]:
        names = {n for n, z in self.creates.items() if z <= upto}
        return names, sum(1 for z in self.sets if z <= upto)


async def _write(srv: FaultServer, n: int, pad: int = 0) -> History:
    conn = RawConn(srv.host, srv.port)
    assert await conn.connect(30000)
    await conn.ensure("/d")
    await conn.ensure("/d/reg", b"0")
    creates: dict[str, int] = {}
    sets: list[int] = []
    # pipelined in groups of 8: several entries per group commit, several fsyncs in all
    for start in range(0, n, 8):
        futs = []
        for i in range(start, min(start + 8, n)):
            if i % 4 == 3:
                futs.append(("set", "", conn.send(OP_SET_DATA, set_body("/d/reg", f"v{i}".encode(), -1))))
            else:
                name = f"n{i:04d}"
                data = f"data-{i}".encode() + b"." * pad
                futs.append(("create", name, conn.send(OP_CREATE2, create_body(f"/d/{name}", data))))
        for kind, name, fut in futs:
            r = await fut
            assert r.err == 0, (kind, name, r.err)
            if kind == "set":
                sets.append(r.zxid)
            else:
                creates[name] = r.zxid
    conn.abort()  # no closeSession: the log ends with our writes
    dump = await snapshot_of(srv.host, srv.port, ["/d"])
    return History(creates, sets, max([*creates.values(), *sets]), dump)


@dataclass
class Pristine:
    data: Path
    history: History


def _build(base: Path, n: int, snap_count: str, pad: int = 0) -> Pristine:
    srv = FaultServer(workdir=base / "build", cfg={"snapCount": snap_count})
    try:
        srv.start()
        hist = asyncio.run(_write(srv, n, pad))
        # the dump above opened a session: its createSession/closeSession are in the log too
        srv.kill9()
    finally:
        srv.kill9()
    return Pristine(srv.data_dir, hist)


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    with tmp_dir("zkfault-damage-") as d:
        yield d


@pytest.fixture(scope="module")
def one_log(workspace: Path) -> Pristine:
    """One log file (and the start-up snapshot at zxid 0)."""
    p = _build(workspace / "one", 240, "100000")
    assert len(log_files(p.data)) == 1
    return p


@pytest.fixture(scope="module")
def many_logs(workspace: Path) -> Pristine:
    """Several log files and snapshots (snapCount=60: a roll and a snapshot every 30..60 txns)."""
    p = _build(workspace / "many", 400, "60")
    assert len(log_files(p.data)) >= 5 and len(snapshots(p.data)) >= 5, (log_files(p.data), snapshots(p.data))
    return p


@pytest.fixture(scope="module")
def big_entries(workspace: Path) -> Pristine:
    """One log file whose create entries (6 KB of data each) span more than a 4 KiB page."""
    return _build(workspace / "big", 48, "100000", pad=6000)


_case_counter = [0]


def fresh_server(pristine: Pristine, workspace: Path) -> FaultServer:
    _case_counter[0] += 1
    work = workspace / f"case{_case_counter[0]}"
    shutil.copytree(pristine.data, work / "data")
    return FaultServer(workdir=work, cfg={"snapCount": "100000"})


def served(srv: FaultServer) -> tuple[int, set[str], int, dict[str, tuple[bytes, object]]]:
    """(last zxid before we connect, names under /d, /d/reg version, /d dump)."""
    last = srv.last_zxid()

    async def read() -> tuple[set[str], int, dict[str, tuple[bytes, object]]]:
        conn = RawConn(srv.host, srv.port)
        assert await conn.connect(30000)
        try:
            kids = await dump_children(conn, "/d")
        finally:
            await conn.close_session()
        reg = kids.pop("reg", None)
        return set(kids), (reg[1].version if reg else -1), dict(kids)

    names, version, dump = asyncio.run(read())
    return last, names, version, dump


def assert_prefix(srv: FaultServer, hist: History, upto: int, what: str) -> None:
    names, sets = hist.expect(upto)
    last, got_names, got_version, _ = served(srv)
    assert last >= upto, f"{what}: server at zxid 0x{last:x}, entries up to 0x{upto:x} were whole"
    missing = sorted(names - got_names)
    extra = sorted(got_names - set(hist.creates))
    after = sorted(got_names - names)
    assert not missing, f"{what}: acknowledged creates before the damage are missing: {missing[:10]}"
    assert not extra, f"{what}: znodes nobody created: {extra[:10]}"
    assert not after, f"{what}: znodes from after the damage are served: {after[:10]}"
    assert got_version == sets or (sets == 0 and got_version == -1), f"{what}: /d/reg version {got_version}, {sets} sets precede the damage"


def flip(path: Path, offset: int, rng: random.Random) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << rng.randrange(8))]))


# ---------------------------------------------------------------------------------------------------
# torn tails


def test_truncated_log_keeps_the_whole_entries_before_the_cut(one_log: Pristine, workspace: Path) -> None:
    rng = random.Random(SEED)
    entries = parse_log(log_files(one_log.data)[0])
    # mid-entry cuts at random (leaving at least an entry's 12-byte head: see the test after this one),
    # one exactly on an entry boundary, one inside the file header
    allowed = [c for e in entries for c in range(e.offset + 12, e.end)]
    cuts = sorted(rng.sample(allowed, 5)) + [entries[len(entries) // 2].end, 9]
    for cut in cuts:
        srv = fresh_server(one_log, workspace)
        log = log_files(srv.data_dir)[0]
        with open(log, "r+b") as f:
            f.truncate(cut)
        kept = [e for e in entries if e.end <= cut]
        upto = kept[-1].zxid if kept else 0
        try:
            srv.start()
            text = srv.log_since_start()
            mid_entry = cut not in {e.end for e in entries} and cut > HEADER
            if mid_entry:
                off = kept[-1].end if kept else HEADER
                want = f"txn log {log.name}: "
                assert want in text and f"at offset {off}" in text and f"(zxid 0x{upto:x})" in text, (
                    f"cut at {cut}: start-up does not say what it cut (want '{want}... at offset {off}... "
                    f"zxid 0x{upto:x}'):\n{text[-2500:]}")
            assert_prefix(srv, one_log.history, upto, f"log cut at {cut}")
            # a second start after the cut serves the same
            srv.stop()
            srv.start()
            assert_prefix(srv, one_log.history, upto, f"log cut at {cut}, second start")
        finally:
            srv.kill9()


def test_log_cut_inside_an_entry_head_is_reported(one_log: Pristine, workspace: Path) -> None:
    entries = parse_log(log_files(one_log.data)[0])
    e = entries[len(entries) // 3]
    cut = e.offset + 11
    srv = fresh_server(one_log, workspace)
    log = log_files(srv.data_dir)[0]
    with open(log, "r+b") as f:
        f.truncate(cut)
    try:
        srv.start()
        assert_prefix(srv, one_log.history, entries[entries.index(e) - 1].zxid, f"log cut at {cut}")
        text = srv.log_since_start()
        assert f"txn log {log.name}: " in text and f"at offset {e.offset}" in text, (
            f"cut at {cut} (11 bytes into the entry at {e.offset}) is not reported:\n{text[-1500:]}")
    finally:
        srv.kill9()


def test_flipped_byte_in_the_last_entry_is_a_torn_tail(one_log: Pristine, workspace: Path) -> None:
    rng = random.Random(SEED + 1)
    entries = parse_log(log_files(one_log.data)[0])
    last = entries[-1]
    for _ in range(3):
        # anywhere but the length field (see the test for that field)
        at = rng.choice([*range(last.offset, last.offset + 8), *range(last.offset + 12, last.end)])
        srv = fresh_server(one_log, workspace)
        log = log_files(srv.data_dir)[0]
        flip(log, at, rng)
        try:
            srv.start()
            text = srv.log_since_start()
            assert f"txn log {log.name}: " in text and f"at offset {last.offset}" in text, text[-2500:]
            assert_prefix(srv, one_log.history, entries[-2].zxid, f"byte {at} of the last entry flipped")
        finally:
            srv.kill9()


def test_flipped_byte_in_the_zero_tail_loses_nothing(one_log: Pristine, workspace: Path) -> None:
    rng = random.Random(SEED + 2)
    entries = parse_log(log_files(one_log.data)[0])
    srv = fresh_server(one_log, workspace)
    log = log_files(srv.data_dir)[0]
    flip(log, rng.randrange(entries[-1].end + 64, log.stat().st_size), rng)
    try:
        srv.start()
        assert_prefix(srv, one_log.history, entries[-1].zxid, "byte flipped in the preallocated zeros")
    finally:
        srv.kill9()


# ---------------------------------------------------------------------------------------------------
# damage with whole entries after it


def _refused(srv: FaultServer, log: Path, offset: int, what: str, extra: tuple[str, ...] = ()) -> str:
    rc, text = srv.run_to_exit(extra)
    assert rc not in (0, None), f"{what}: start-up went on (exit {rc}):\n{text[-2500:]}"
    assert log.name in text and f"offset {offset}" in text, (
        f"{what}: the refusal does not name {log.name} and offset {offset}:\n{text[-2500:]}")
    return text


def _flip_mid_entry_and_recover(pristine: Pristine, workspace: Path, rng: random.Random,
                                where: str) -> None:
    entries = parse_log(log_files(pristine.data)[0])
    i = rng.randrange(2, len(entries) - 3)
    e = entries[i]
    if where == "length":
        at = rng.randrange(e.offset + 8, e.offset + 12)
    else:
        at = rng.choice([*range(e.offset, e.offset + 8), *range(e.offset + 12, e.end)])
    what = f"byte {at} ({where}) of entry {i} at offset {e.offset} flipped"
    srv = fresh_server(pristine, workspace)
    log = log_files(srv.data_dir)[0]
    flip(log, at, rng)
    try:
        _refused(srv, log, e.offset, what)
        # the operator accepts the loss
        srv.proc = None
        rc, text = srv.run_to_exit(("--truncate-log-at", f"{log.name}:{e.offset}"))
        assert srv.proc is not None, f"{what}: --truncate-log-at did not start the server (exit {rc}):\n{text[-2500:]}"
        assert log.name in text and f"offset {e.offset}" in text, text[-2500:]
        assert_prefix(srv, pristine.history, entries[i - 1].zxid, f"{what}, after --truncate-log-at")
        srv.stop()
        srv.start()
        assert_prefix(srv, pristine.history, entries[i - 1].zxid, f"{what}, plain start after the truncation")
    finally:
        srv.kill9()


def test_flipped_byte_mid_log_stops_startup_until_the_loss_is_accepted(one_log: Pristine,
                                                                      workspace: Path) -> None:
    rng = random.Random(SEED + 3)
    for _ in range(3):
        _flip_mid_entry_and_recover(one_log, workspace, rng, "checksum, body or end marker")


def test_flipped_length_field_mid_log_stops_startup(one_log: Pristine, workspace: Path) -> None:
    rng = random.Random(SEED + 4)
    _flip_mid_entry_and_recover(one_log, workspace, rng, "length")


def test_zeroed_page_with_whole_entries_after_it_stops_startup(big_entries: Pristine, workspace: Path) -> None:
    """A zeroed page inside an entry, whole entries after it: what a power cut leaves when the kernel
    wrote back part of a never-fsynced batch, and also what a disk that lost an acknowledged write
    leaves. The two cannot be told apart from the log, so zkfast does not guess (nor does Apache): it
    stops, naming file and offset, and --truncate-log-at is the operator's way to accept the loss."""
    entries = parse_log(log_files(big_entries.data)[0])
    # an entry of the last batch, with two whole entries after it, and a page-aligned page inside it
    victim = next(e for e in reversed(entries[:-2]) if (e.offset + 12 + 4095) // 4096 * 4096 + 4096 < e.end - 1)
    page = (victim.offset + 12 + 4095) // 4096 * 4096
    srv = fresh_server(big_entries, workspace)
    log = log_files(srv.data_dir)[0]
    with open(log, "r+b") as f:
        f.seek(page)
        f.write(bytes(4096))  # the page the power cut kept from the disk
    try:
        _refused(srv, log, victim.offset, "zeroed page")
        srv.extra_args = ("--truncate-log-at", f"{log.name}:{victim.offset}")
        srv.start()
        assert_prefix(srv, big_entries.history, entries[entries.index(victim) - 1].zxid, "zeroed page")
    finally:
        srv.kill9()


def test_damaged_log_header_stops_startup(one_log: Pristine, workspace: Path) -> None:
    srv = fresh_server(one_log, workspace)
    log = log_files(srv.data_dir)[0]
    flip(log, 1, random.Random(SEED + 5))
    try:
        _refused(srv, log, 0, "log magic damaged")
    finally:
        srv.kill9()


# ---------------------------------------------------------------------------------------------------
# snapshots and gaps


def _meta_edit(snap: Path, fn: object) -> None:
    env = lmdb.open(str(snap), max_dbs=4, subdir=True, lock=False)
    try:
        fn(env)  # type: ignore[operator]
        env.sync(True)
    finally:
        env.close()


def drop_marker(snap: Path) -> None:
    def edit(env: lmdb.Environment) -> None:
        meta = env.open_db(b"meta", create=False)
        with env.begin(write=True) as txn:
            assert txn.delete(b"complete", db=meta)

    _meta_edit(snap, edit)


def corrupt_chunk(snap: Path, rng: random.Random) -> None:
    def edit(env: lmdb.Environment) -> None:
        chunks = env.open_db(b"chunks", create=False)
        with env.begin(write=True) as txn:
            keys = [k for k, _ in txn.cursor(db=chunks)]
            key = rng.choice(keys)
            v = bytearray(txn.get(key, db=chunks) or b"")
            at = rng.randrange(len(v) - 4)
            v[at] ^= 0x20
            txn.put(key, bytes(v), db=chunks)

    _meta_edit(snap, edit)


def assert_everything(srv: FaultServer, pristine: Pristine, what: str) -> None:
    last, names, version, dump = served(srv)
    hist = pristine.history
    assert last >= hist.last_zxid, f"{what}: server at 0x{last:x}, 0x{hist.last_zxid:x} was acknowledged"
    assert names == set(hist.creates), f"{what}: missing {sorted(set(hist.creates) - names)[:10]}"
    assert version == len(hist.sets), f"{what}: /d/reg version {version}, {len(hist.sets)} sets acknowledged"
    for name, (data, st) in dump.items():
        want = hist.dump.get(f"/d/{name}")
        assert want is not None and want[0] == data and want[1] == st, f"{what}: /d/{name} differs"


@pytest.mark.parametrize("damage", ["no completion marker", "corrupt chunk", "no data.mdb", "two newest unusable"])
def test_unusable_newest_snapshot_falls_back_to_the_previous_one(many_logs: Pristine, workspace: Path,
                                                                 damage: str) -> None:
    rng = random.Random(f"{SEED}{damage}")
    srv = fresh_server(many_logs, workspace)
    snaps = snapshots(srv.data_dir)
    newest = snaps[-1]
    if damage == "no completion marker":
        drop_marker(newest)
    elif damage == "corrupt chunk":
        corrupt_chunk(newest, rng)
    elif damage == "no data.mdb":
        (newest / "data.mdb").unlink()
    else:
        drop_marker(newest)
        corrupt_chunk(snaps[-2], rng)
    # and an interrupted snapshot's directory, which start-up removes
    leftover = srv.data_dir / "version-2" / f"{snaps[-1].name}0.tmp"
    leftover.mkdir()
    (leftover / "data.mdb").write_bytes(b"half a snapshot")
    try:
        srv.start()
        text = srv.log_since_start()
        assert f"snapshot {newest.name} is not usable" in text, text[-2500:]
        fallback = snaps[-3] if damage == "two newest unusable" else snaps[-2]
        assert f"loaded snapshot {fallback.name}" in text, text[-2500:]
        # (the snapshot start-up takes after replaying the logs may be under way as a .tmp of its own)
        assert not leftover.exists(), "interrupted snapshot left in place"
        assert_everything(srv, many_logs, f"newest snapshot: {damage}")
    finally:
        srv.kill9()


def test_gap_in_the_needed_logs_stops_startup(many_logs: Pristine, workspace: Path) -> None:
    srv = fresh_server(many_logs, workspace)
    snaps = snapshots(srv.data_dir)
    # recovery must go back to the third-newest snapshot, so it needs the logs from there on
    drop_marker(snaps[-1])
    drop_marker(snaps[-2])
    base = int(snaps[-3].name.split(".")[1], 16)
    logs = log_files(srv.data_dir)
    needed = [p for p in logs if int(p.name[4:], 16) > base]
    assert len(needed) >= 2, (base, logs)
    victim = needed[0]
    victim.unlink()
    try:
        rc, text = srv.run_to_exit()
        assert rc not in (0, None), f"start-up went on over a missing log {victim.name}:\n{text[-2500:]}"
        assert re.search(r"gap", text), f"the refusal does not say there is a gap:\n{text[-2500:]}"
    finally:
        srv.kill9()


def test_a_log_wholly_before_the_snapshot_is_not_read(many_logs: Pristine, workspace: Path) -> None:
    """The log file the newest snapshot falls in, when the next file starts right after the snapshot,
    holds nothing recovery needs (Apache reads it anyway; reading it was half of a 10M-znode
    start-up): start-up leaves it unread, so damage in it is neither reported nor cut (a read would
    take it for a torn tail, as no entry past the snapshot follows it), and everything acknowledged
    is served."""
    srv = fresh_server(many_logs, workspace)
    snap_zxid = int(snapshots(srv.data_dir)[-1].name.split(".")[1], 16)
    logs = log_files(srv.data_dir)
    starts = [int(p.name[4:], 16) for p in logs]
    covering = max(i for i, z in enumerate(starts) if z <= snap_zxid)
    assert covering + 1 < len(logs) and starts[covering + 1] == snap_zxid + 1, (hex(snap_zxid), logs)
    victim = logs[covering]
    entries = parse_log(victim)
    assert len(entries) >= 3, victim
    flip(victim, entries[1].offset + 14, random.Random(SEED + 6))  # a body byte, whole entries after it
    damaged = victim.read_bytes()
    try:
        srv.start()
        assert_everything(srv, many_logs, f"damage in {victim.name}, wholly before snapshot 0x{snap_zxid:x}")
        text = srv.log_since_start()
        assert victim.name not in text, f"{victim.name} was read:\n{text[-2500:]}"
        assert victim.read_bytes() == damaged, f"{victim.name} was changed"
    finally:
        srv.kill9()
