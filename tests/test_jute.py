"""The jute codec against byte strings spelled out by hand from Apache's records and encoders:
zookeeper-jute/src/main/resources/zookeeper.jute,
zookeeper-jute/src/main/java/org/apache/jute/BinaryOutputArchive.java, and for log entries
zookeeper-server/src/main/java/org/apache/zookeeper/server/persistence/FileTxnLog.java and Util.java."""

from __future__ import annotations

import struct
import zlib

import pytest

from zkfast import _jute as jute

STAT = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
STAT_BYTES = struct.pack(">qqqqiiiqiiq", *STAT)


def test_primitives_are_big_endian_and_null_is_minus_one() -> None:
    b = jute.WriteBuffer()
    b.write_int(-2)
    b.write_long(0x0102030405060708)
    b.write_bool(True)
    b.write_buffer(None)
    b.write_buffer(b"")
    b.write_ustring(b"/a")
    assert b.getvalue() == (b"\xff\xff\xff\xfe" + bytes(range(1, 9)) + b"\x01" + b"\xff\xff\xff\xff"
                            + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x02/a")
    r = jute.Reader(b.getvalue())
    assert (r.read_int(), r.read_long(), r.read_bool()) == (-2, 0x0102030405060708, True)
    assert r.read_buffer() is None
    assert r.read_buffer() == b""
    assert r.read_ustring() == b"/a"
    assert r.remaining == 0


def test_boolean_reads_any_nonzero_byte_as_true() -> None:
    assert jute.Reader(b"\x07").read_bool() is True


def test_stat_is_68_bytes_in_wire_order() -> None:
    b = jute.WriteBuffer()
    b.write_stat(STAT)
    assert b.getvalue() == STAT_BYTES
    assert len(STAT_BYTES) == jute.STAT_BYTES == 68
    assert jute.Reader(STAT_BYTES).read_stat() == STAT


def test_reply_frame_is_length_then_16_byte_header() -> None:
    b = jute.WriteBuffer()
    b.reply(5, 0x100000002, -101)
    assert b.getvalue() == struct.pack(">iiqi", 16, 5, 0x100000002, -101)


def test_java_writes_non_bmp_characters_as_cesu8() -> None:
    assert jute.jencode("/\U0001f600") == b"/" + "\ud83d".encode("utf-8", "surrogatepass") \
        + "\ude00".encode("utf-8", "surrogatepass")
    assert len(jute.jencode("\U0001f600")) == 6
    assert jute.jstr(b"/plain") == b"/plain"
    assert jute.jstr(b"/bad\xff") == "/bad\ufffd".encode()


def test_connect_request_with_and_without_the_read_only_byte() -> None:
    # the C client's 45-byte ConnectRequest: proto 0, zxid, timeout, session 0, 16-byte passwd, readOnly
    body = struct.pack(">iqiq", 0, 7, 30000, 0) + struct.pack(">i", 16) + bytes(16) + b"\x00"
    assert len(body) + 4 == 45 + 4
    assert jute.decode_connect_request(body) == (0, 7, 30000, 0, bytes(16), False)
    assert jute.decode_connect_request(body[:-1])[5] is None
    with pytest.raises(jute.JuteError):
        jute.decode_connect_request(body[:10])


def test_connect_response_is_41_bytes_with_the_trailing_byte() -> None:
    frame = jute.encode_connect_response(30000, 0x123, bytes(range(16)), False)
    assert len(frame) == 41  # what the C client reads
    assert frame == (struct.pack(">iiiq", 37, 0, 30000, 0x123) + struct.pack(">i", 16)
                     + bytes(range(16)) + b"\x00")
    assert len(jute.encode_connect_response(30000, 1, bytes(16), None)) == 40


def test_notification_frame() -> None:
    frame = jute.encode_notification(3, 3, b"/x")
    assert frame == struct.pack(">iiqiii", 30, -1, -1, 0, 3, 3) + struct.pack(">i", 2) + b"/x"


def test_request_records_decode() -> None:
    acl = struct.pack(">i", 1) + struct.pack(">i", 31) + struct.pack(">i", 5) + b"world" \
        + struct.pack(">i", 6) + b"anyone"
    create = struct.pack(">i", 2) + b"/a" + struct.pack(">i", 1) + b"d" + acl + struct.pack(">i", 3)
    assert jute.decode_request(jute.OP_CREATE, create) == (b"/a", b"d", [(31, "world", "anyone")], 3)
    assert jute.decode_request(jute.OP_CREATE_TTL, create + struct.pack(">q", 99))[4] == 99
    assert jute.decode_request(jute.OP_GET_DATA, struct.pack(">i", 2) + b"/a\x01") == (b"/a", True)
    with pytest.raises(jute.JuteError):
        jute.decode_request(jute.OP_GET_DATA, struct.pack(">i", 9) + b"/a")


def test_multi_request_is_headers_and_records_closed_by_done() -> None:
    check = struct.pack(">i?i", 13, False, -1) + struct.pack(">i", 2) + b"/a" + struct.pack(">i", 4)
    done = struct.pack(">i?i", -1, True, -1)
    assert jute.decode_request(jute.OP_MULTI, check + done) == [(13, (b"/a", 4))]
    assert jute.decode_request(jute.OP_MULTI, done) == []
    with pytest.raises(jute.JuteError):
        jute.decode_request(jute.OP_MULTI, struct.pack(">i?i", 99, False, -1) + done)


def _create_txn() -> jute.Txn:
    t = jute.Txn(0x55, 7, 0x100000001, 1700000000000, jute.OP_CREATE)
    t.path = b"/a"
    t.data = b"x"
    t.acl = [(31, "world", "anyone")]
    t.ephemeral = True
    t.parent_cversion = 3
    return t


def test_txn_bytes_are_header_then_create_txn() -> None:
    header = struct.pack(">qiqqi", 0x55, 7, 0x100000001, 1700000000000, 1)
    body = (struct.pack(">i", 2) + b"/a" + struct.pack(">i", 1) + b"x" + struct.pack(">ii", 1, 31)
            + struct.pack(">i", 5) + b"world" + struct.pack(">i", 6) + b"anyone" + b"\x01"
            + struct.pack(">i", 3))
    assert _create_txn().to_bytes() == header + body
    back = jute.decode_txn(header + body)
    assert (back.type, back.path, back.data, back.ephemeral, back.parent_cversion) == (1, b"/a", b"x", True, 3)


def test_multi_txn_nests_serialized_sub_txns() -> None:
    t = jute.Txn(1, 2, 3, 4, jute.OP_MULTI)
    err = jute.Txn(1, 2, 3, 4, jute.OP_ERROR)
    err.err = -101
    t.subtxns = [_create_txn(), err]
    back = jute.decode_txn(t.to_bytes())
    assert [s.type for s in back.subtxns] == [jute.OP_CREATE, jute.OP_ERROR]
    assert back.subtxns[1].err == -101
    assert back.subtxns[0].path == b"/a"


def test_log_entry_checksum_covers_only_the_payload() -> None:
    b = jute.WriteBuffer()
    n = jute.append_log_entry(b, _create_txn())
    entry = b.getvalue()
    assert n == len(entry)
    crc, length = struct.unpack(">qi", entry[:12])
    payload = entry[12:12 + length]
    assert crc == zlib.adler32(payload)
    assert entry[-1:] == b"B"
    assert jute.read_log_entry(entry, 0) == (jute.ENTRY_OK, len(entry), payload)
    assert jute.read_log_entry(entry[:-1], 0)[0] == jute.ENTRY_TORN
    assert jute.read_log_entry(bytes(32), 0)[0] == jute.ENTRY_END
    flipped = bytearray(entry)
    flipped[20] ^= 0xFF
    assert jute.read_log_entry(bytes(flipped), 0)[0] == jute.ENTRY_BAD_CRC


def test_log_and_snapshot_magic_numbers() -> None:
    assert struct.pack(">i", jute.LOG_MAGIC) == b"ZKLG"
    assert struct.pack(">i", jute.SNAP_MAGIC) == b"ZKSN"
