"""Byte-level differential tests: the same hand-built frames to Apache ZooKeeper 3.8 and to zkfast.

The frames are built with `struct` (tests/testbase/rawclient.py), not with zkfast's codec, and
the answers are compared as bytes after zeroing ctime/mtime and renaming session ids. These cover
the protocol corners real clients rarely reach: bad flags, bad opcodes, malformed records, auth
failures, setWatches after a reconnect, oversized frames.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

import pytest
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available
from testbase.rawclient import OPEN, RawSession, connect_request, frame, request, u_acl, u_str

pytestmark = pytest.mark.skipif(not apache_available() and os.environ.get("CI") != "true",
                                reason="Apache ZooKeeper (Debian package) is not installed")

CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_ACL, SET_ACL, GET_CHILDREN, SYNC = 1, 2, 3, 4, 5, 6, 7, 8, 9
PING, GET_CHILDREN2, CHECK, MULTI, CREATE2, RECONFIG, CHECK_WATCHES, REMOVE_WATCHES = 11, 12, 13, 14, 15, 16, 17, 18
CREATE_CONTAINER, DELETE_CONTAINER, CREATE_TTL, MULTI_READ = 19, 20, 21, 22
AUTH, SET_WATCHES, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER, SET_WATCHES2, ADD_WATCH, WHO_AM_I = (
    100, 101, 103, 104, 105, 106, 107)
CLOSE_SESSION = -11

Transcript = list[tuple[str, bytes]]


class Recorder:
    """Sessions of one scenario against one server, and what they saw."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.sessions: list[RawSession] = []
        self.out: Transcript = []
        self.ids: dict[int, int] = {}

    def session(self, connect_body: bytes | None = None) -> RawSession:
        s = RawSession(self.server.host, self.server.port)
        resp = s.open(connect_body)
        self.sessions.append(s)
        self.ids.setdefault(s.session_id, len(self.ids) + 1)
        self.out.append(("connect", self._norm_connect(resp)))
        return s

    def _norm_connect(self, resp: bytes) -> bytes:
        if len(resp) < 16:
            return resp
        proto, timeout, sid = struct.unpack(">iiq", resp[:16])
        rest = resp[16:]
        n = struct.unpack(">i", rest[:4])[0]
        tail = rest[4 + max(n, 0):]
        return struct.pack(">iiq", proto, timeout, self.ids.get(sid, sid and -1)) + struct.pack(">i", n) + tail

    def call(self, s: RawSession, op: int, body: bytes = b"", xid: int = 1, label: str = "") -> None:
        for f in s.call(xid, op, body):
            self.out.append((label or f"op{op}", self.norm(op, f)))

    def drain(self, s: RawSession, wait_s: float = 0.3) -> None:
        for f in s.drain(wait_s):
            self.out.append(("drain", f))

    def norm(self, op: int, f: bytes) -> bytes:
        if len(f) <= 16 or f == b"<closed>":
            return f
        xid, zxid, err = struct.unpack(">iqi", f[:16])
        if err != 0 or xid < 0:
            return f
        body = f[16:]
        try:
            if op in (EXISTS, SET_DATA, SET_ACL):
                body = self._stat(body, 0)
            elif op == GET_DATA:
                body = self._stat(body, 4 + max(0, struct.unpack(">i", body[:4])[0]))
            elif op in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
                body = self._stat(body, 4 + struct.unpack(">i", body[:4])[0])
            elif op == GET_CHILDREN2:
                n = struct.unpack(">i", body[:4])[0]
                names, pos = [], 4
                for _ in range(n):
                    ln = struct.unpack(">i", body[pos:pos + 4])[0]
                    names.append(body[pos:pos + 4 + ln])
                    pos += 4 + ln
                body = body[:4] + b"".join(sorted(names)) + self._stat(body[pos:], 0)
            elif op == GET_CHILDREN:
                n = struct.unpack(">i", body[:4])[0]
                names, pos = [], 4
                for _ in range(n):
                    ln = struct.unpack(">i", body[pos:pos + 4])[0]
                    names.append(body[pos:pos + 4 + ln])
                    pos += 4 + ln
                body = body[:4] + b"".join(sorted(names))
            elif op in (MULTI, MULTI_READ):
                body = self._multi(body)
            elif op == GET_ACL:
                n = struct.unpack(">i", body[:4])[0]
                pos = 4
                for _ in range(n):
                    pos += 4
                    for _ in range(2):
                        pos += 4 + struct.unpack(">i", body[pos:pos + 4])[0]
                body = self._stat(body, pos)
        except struct.error:
            pass
        return f[:16] + body

    def _multi(self, body: bytes) -> bytes:
        out, pos = b"", 0
        while True:
            typ, done, err = struct.unpack(">i?i", body[pos:pos + 9])
            start, pos = pos, pos + 9
            if done:
                return out + body[start:]
            if typ in (CREATE, CREATE2):
                pos += 4 + struct.unpack(">i", body[pos:pos + 4])[0]
            elif typ == GET_DATA:
                pos += 4 + max(0, struct.unpack(">i", body[pos:pos + 4])[0])
            elif typ == GET_CHILDREN:
                n = struct.unpack(">i", body[pos:pos + 4])[0]
                pos += 4
                for _ in range(max(n, 0)):
                    pos += 4 + struct.unpack(">i", body[pos:pos + 4])[0]
            elif typ == -1:
                pos += 4
            if typ in (CREATE2, SET_DATA, GET_DATA):
                chunk = self._stat(body[start:pos + 68], pos - start)
                out += chunk
                pos += 68
            else:
                out += body[start:pos]

    def _stat(self, body: bytes, at: int) -> bytes:
        if len(body) < at + 68:
            return body
        st = bytearray(body[at:at + 68])
        st[16:32] = bytes(16)  # ctime, mtime
        owner = struct.unpack(">q", bytes(st[44:52]))[0]
        if owner in self.ids:
            st[44:52] = struct.pack(">q", self.ids[owner])
        return body[:at] + bytes(st) + body[at + 68:]

    def close(self) -> None:
        for s in self.sessions:
            s.close()


def create_body(path: str, data: bytes | None = b"", flags: int = 0, acl=OPEN, ttl: int | None = None) -> bytes:
    body = u_str(path) + u_str(data) + u_acl(acl) + struct.pack(">i", flags)
    if ttl is not None:
        body += struct.pack(">q", ttl)
    return body


def multi_body(ops: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for op, body in ops:
        out += struct.pack(">i?i", op, False, -1) + body
    return out + struct.pack(">i?i", -1, True, -1)


# ---------------------------------------------------------------------------------------- scenarios

def sc_bad_create_flags(r: Recorder) -> None:
    s = r.session()
    r.call(s, CREATE, create_body("/f7", flags=7))
    r.call(s, CREATE, create_body("/fm1", flags=-1))
    r.call(s, CREATE_TTL, create_body("/t0", flags=5, ttl=0))
    r.call(s, CREATE_TTL, create_body("/tflag0", flags=0, ttl=100))
    r.call(s, CREATE_TTL, create_body("/tok", flags=5, ttl=100000))
    r.call(s, CREATE_TTL, create_body("/tseq", flags=6, ttl=100000))
    r.call(s, EXISTS, u_str("/tok") + b"\0")
    r.call(s, CREATE_CONTAINER, create_body("/c", flags=4))
    r.call(s, CREATE, create_body("/c/x", flags=0))
    r.call(s, EXISTS, u_str("/c") + b"\0")


def sc_paths(r: Recorder) -> None:
    s = r.session()
    r.call(s, GET_DATA, u_str("nolead") + b"\0")
    r.call(s, GET_DATA, u_str("/a\0b") + b"\0")
    r.call(s, EXISTS, u_str("/a\0b") + b"\0")
    r.call(s, CREATE, create_body("/trail/"))
    r.call(s, CREATE, create_body("/./x"))
    r.call(s, CREATE, create_body("/p"))
    r.call(s, CREATE, create_body("/p/"))
    r.call(s, CREATE, create_body("/p/."))
    r.call(s, CREATE, create_body("/p/.."))
    r.call(s, CREATE, create_body("/p//q"))
    r.call(s, CREATE, create_body("/p/\u0001"))
    r.call(s, CREATE, create_body("/p/\ufff5"))
    r.call(s, CREATE, create_body("/p/ok\u00e9"))
    r.call(s, CREATE, create_body("noslash"))
    r.call(s, DELETE, u_str("/") + struct.pack(">i", -1))
    r.call(s, DELETE, u_str("/zookeeper") + struct.pack(">i", -1))
    r.call(s, SET_DATA, u_str("/p/") + u_str(b"x") + struct.pack(">i", -1))
    r.call(s, SYNC, u_str("/any/path"))
    r.call(s, SYNC, u_str(b"/bad\xffutf8"))


def sc_sequential_and_cversion(r: Recorder) -> None:
    s = r.session()
    r.call(s, CREATE2, create_body("/q"))
    r.call(s, CREATE, create_body("/q/a-", flags=2))
    r.call(s, CREATE, create_body("/q/b-", flags=2))
    r.call(s, DELETE, u_str("/q/a-0000000000") + struct.pack(">i", -1))
    r.call(s, CREATE2, create_body("/q/c-", flags=3))
    r.call(s, GET_CHILDREN2, u_str("/q") + b"\0")
    r.call(s, EXISTS, u_str("/") + b"\0")
    r.call(s, EXISTS, u_str("/zookeeper") + b"\0")
    r.call(s, GET_DATA, u_str("/zookeeper/config") + b"\0")
    r.call(s, GET_ACL, u_str("/zookeeper/config"))
    r.call(s, GET_ALL_CHILDREN_NUMBER, u_str("/"))
    r.call(s, GET_ALL_CHILDREN_NUMBER, u_str("/q"))
    r.call(s, GET_ALL_CHILDREN_NUMBER, u_str("/missing"))
    r.call(s, GET_CHILDREN2, u_str("/missing") + b"\0")
    r.call(s, CREATE, create_body("/q/c-0000000002/under", flags=0))
    r.call(s, DELETE, u_str("/q") + struct.pack(">i", -1))
    r.call(s, SET_DATA, u_str("/q") + u_str(None) + struct.pack(">i", 5))
    r.call(s, SET_DATA, u_str("/q") + u_str(None) + struct.pack(">i", 0))
    r.call(s, GET_DATA, u_str("/q") + b"\0")


def sc_multi(r: Recorder) -> None:
    s = r.session()
    r.call(s, MULTI, multi_body([]))
    r.call(s, MULTI, multi_body([(CREATE, create_body("/m")), (CHECK, u_str("/m") + struct.pack(">i", 3)),
                                 (CREATE, create_body("/m2"))]))
    r.call(s, MULTI, multi_body([(CREATE, create_body("/m")), (CREATE, create_body("/m/s-", flags=2)),
                                 (SET_DATA, u_str("/m") + u_str(b"d") + struct.pack(">i", 0)),
                                 (CHECK, u_str("/m") + struct.pack(">i", 1)),
                                 (CREATE2, create_body("/m/c", flags=4)),
                                 (DELETE, u_str("/m/s-0000000000") + struct.pack(">i", -1))]))
    r.call(s, MULTI, multi_body([(GET_DATA, u_str("/m") + b"\0")]))
    r.call(s, MULTI, multi_body([(CREATE, create_body("/m3")), (GET_DATA, u_str("/m") + b"\0")]))
    r.call(s, MULTI_READ, multi_body([(GET_DATA, u_str("/m") + b"\0"), (GET_CHILDREN, u_str("/m") + b"\0"),
                                      (GET_DATA, u_str("/nope") + b"\0")]))
    r.call(s, MULTI_READ, multi_body([(CREATE, create_body("/m4"))]))
    r.call(s, MULTI, multi_body([(CREATE_TTL, create_body("/mt", flags=5, ttl=1000))]))
    r.call(s, MULTI, multi_body([(CREATE, create_body("/mt2", flags=5))]))
    r.call(s, MULTI, multi_body([(CREATE_TTL, create_body("/mt3", flags=0, ttl=1000))]))
    r.call(s, MULTI, multi_body([(DELETE_CONTAINER, u_str("/m"))]))
    r.call(s, MULTI, b"\0\0")
    r.call(s, EXISTS, u_str("/mt3") + b"\0")


def sc_opcodes(r: Recorder) -> None:
    s = r.session()
    r.call(s, RECONFIG, u_str(None) + u_str(None) + u_str(None) + struct.pack(">q", -1))
    r.call(s, REMOVE_WATCHES, u_str("/") + struct.pack(">i", 1))
    r.call(s, CHECK_WATCHES, u_str("/") + struct.pack(">i", 3))
    r.call(s, ADD_WATCH, u_str("/") + struct.pack(">i", 7))
    r.call(s, REMOVE_WATCHES, u_str("/") + struct.pack(">i", 9))
    r.call(s, WHO_AM_I)
    r.call(s, PING, xid=-2)
    r.call(s, GET_EPHEMERALS, u_str("/"))
    r.call(s, 999)
    s2 = r.session()
    r.call(s2, 0)
    s3 = r.session()
    r.call(s3, CREATE, create_body("/before-check"))
    # a top-level check: Apache 3.8.0 applies it (a zxid is spent) but cannot serialise its
    # reply, so nothing comes back and the connection stays open
    s3.send(frame(request(7, CHECK, u_str("/before-check") + struct.pack(">i", 0))))
    r.drain(s3, 1.0)
    r.call(s3, EXISTS, u_str("/before-check") + b"\0", xid=8)
    s4 = r.session()
    r.call(s4, EXISTS, u_str("/before-check") + b"\0")


def sc_acl(r: Recorder) -> None:
    s = r.session()
    r.call(s, SET_ACL, u_str("/") + u_acl([(31, "digest", "nocolon")]) + struct.pack(">i", -1))
    r.call(s, SET_ACL, u_str("/") + u_acl([(31, "auth", "")]) + struct.pack(">i", -1))
    r.call(s, SET_ACL, u_str("/") + u_acl([(31, "ip", "10.0.0.1/33")]) + struct.pack(">i", -1))
    r.call(s, SET_ACL, u_str("/") + u_acl([(31, "nosuch", "x")]) + struct.pack(">i", -1))
    r.call(s, CREATE, create_body("/e", acl=[]))
    r.call(s, AUTH, struct.pack(">i", 0) + u_str("digest") + u_str(b"nocolon"), xid=-4)
    r.call(s, AUTH, struct.pack(">i", 0) + u_str("digest") + u_str(b"user:pw"), xid=-4)
    r.call(s, WHO_AM_I)
    r.call(s, CREATE, create_body("/secret", b"s", acl=[(31, "auth", ""), (1, "world", "anyone")]))
    r.call(s, GET_ACL, u_str("/secret"))
    r.call(s, CREATE, create_body("/locked", b"l", acl=[(31, "digest", "other:xyz"), (16, "ip", "127.0.0.1")]))
    r.call(s, CREATE, create_body("/ipnode", b"i", acl=[(1, "ip", "127.0.0.0/8")]))
    r.call(s, CREATE, create_body("/dup", b"", acl=[(31, "world", "anyone"), (31, "world", "anyone")]))
    r.call(s, GET_ACL, u_str("/dup"))
    t = r.session()
    r.call(t, GET_DATA, u_str("/locked") + b"\0")
    r.call(t, GET_ACL, u_str("/locked"))
    r.call(t, GET_ACL, u_str("/secret"))
    r.call(t, GET_DATA, u_str("/ipnode") + b"\0")
    r.call(t, GET_CHILDREN, u_str("/locked") + b"\0")
    r.call(t, SET_DATA, u_str("/secret") + u_str(b"n") + struct.pack(">i", -1))
    r.call(t, CREATE, create_body("/locked/c"))
    r.call(t, MULTI_READ, multi_body([(GET_DATA, u_str("/locked") + b"\0"), (GET_DATA, u_str("/secret") + b"\0")]))
    r.call(t, AUTH, struct.pack(">i", 0) + u_str("nosuchscheme") + u_str(b"x"), xid=-4)


def sc_watches(r: Recorder) -> None:
    a = r.session()
    b = r.session()
    r.call(a, CREATE, create_body("/w"))
    r.call(a, EXISTS, u_str("/w/x") + b"\1")
    r.call(a, GET_DATA, u_str("/w") + b"\1")
    r.call(a, GET_CHILDREN, u_str("/w") + b"\1")
    r.call(a, ADD_WATCH, u_str("/w") + struct.pack(">i", 1))
    r.call(b, CREATE, create_body("/w/x"))
    r.drain(a)
    r.call(b, SET_DATA, u_str("/w/x") + u_str(b"1") + struct.pack(">i", -1))
    r.drain(a)
    r.call(b, DELETE, u_str("/w/x") + struct.pack(">i", -1))
    r.drain(a)
    r.call(a, CHECK_WATCHES, u_str("/w") + struct.pack(">i", 1))
    r.call(a, REMOVE_WATCHES, u_str("/w") + struct.pack(">i", 3))
    r.call(a, REMOVE_WATCHES, u_str("/w") + struct.pack(">i", 3))
    r.call(a, ADD_WATCH, u_str("/w") + struct.pack(">i", 0))
    r.call(b, CREATE, create_body("/w/y", flags=1))
    r.call(b, SET_DATA, u_str("/w") + u_str(b"2") + struct.pack(">i", -1))
    r.drain(a)
    r.call(b, CLOSE_SESSION, xid=5)
    r.drain(a)
    r.drain(b)


def sc_set_watches(r: Recorder) -> None:
    a = r.session()
    b = r.session()
    r.call(a, CREATE, create_body("/sw"))
    r.call(a, CREATE, create_body("/sw/gone"))
    r.call(a, CREATE, create_body("/sw/same"))
    zxid_before = 4
    r.call(b, SET_DATA, u_str("/sw/same") + u_str(b"v") + struct.pack(">i", -1))
    r.call(b, DELETE, u_str("/sw/gone") + struct.pack(">i", -1))
    r.call(b, CREATE, create_body("/sw/new"))
    lists = (u_str_list(["/sw/same", "/sw/gone", "/sw"]) + u_str_list(["/sw/new", "/sw/absent"])
             + u_str_list(["/sw", "/sw/gone"]))
    r.call(a, SET_WATCHES, struct.pack(">q", zxid_before) + lists, xid=-8)
    r.drain(a)
    r.call(a, SET_WATCHES2, struct.pack(">q", 100) + lists + u_str_list(["/p1"]) + u_str_list(["/p2"]), xid=-8)
    r.drain(a)
    r.call(b, CREATE, create_body("/sw/absent"))
    r.drain(a)


def u_str_list(items: list[str]) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(u_str(i) for i in items)


def sc_handshakes(r: Recorder) -> None:
    a = r.session()
    r.call(a, CREATE, create_body("/h", flags=1))
    old = r.session(connect_request(read_only=None))
    r.call(old, EXISTS, u_str("/h") + b"\0")
    r.session(connect_request(timeout_ms=1))
    r.session(connect_request(timeout_ms=10_000_000))
    r.session(connect_request(last_zxid=1 << 40))
    r.session(connect_request(session_id=a.session_id, passwd=b"x" * 16))
    again = r.session(connect_request(session_id=a.session_id, passwd=a.passwd))
    r.call(again, EXISTS, u_str("/h") + b"\0")
    r.call(again, GET_EPHEMERALS, u_str(""))
    r.call(again, GET_EPHEMERALS, u_str("/x"))
    r.drain(a)


def sc_bad_frames(r: Recorder) -> None:
    a = r.session()
    a.send(struct.pack(">i", 0x7FFFFFFF))
    r.drain(a)
    b = r.session()
    b.send(frame(request(1, EXISTS, b"\0\0\0")))
    r.drain(b)
    c = r.session()
    c.send(frame(b"\0\0"))
    r.drain(c)
    d = r.session()
    r.call(d, GET_DATA, struct.pack(">i", -5) + b"\0")
    r.call(d, CREATE, struct.pack(">i", 100) + b"/x")


SCENARIOS: dict[str, Callable[[Recorder], None]] = {
    name[3:]: fn for name, fn in globals().items() if name.startswith("sc_") and callable(fn)
}


def run_scenario(server: ServerProcess, fn: Callable[[Recorder], None]) -> Transcript:
    r = Recorder(server)
    try:
        fn(r)
    finally:
        r.close()
    return r.out


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _target() -> ServerProcess:
    if os.environ.get("ZKFAST_DIFF_TARGET") == "apache":
        return ApacheZkProcess()
    return ZkfastProcess()


@pytest.fixture
def servers() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    ref, target = ApacheZkProcess(), _target()
    try:
        ref.start()
        target.start()
        yield ref, target
    finally:
        for p in (ref, target):
            p.stop()
            p.cleanup()


def test_same_bytes_as_apache(scenario: str, servers: tuple[ServerProcess, ServerProcess]) -> None:
    ref, target = servers
    expected = run_scenario(ref, SCENARIOS[scenario])
    got = run_scenario(target, SCENARIOS[scenario])
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        assert e == g, f"{scenario}: step {i} ({e[0]}) differs:\n apache {e[1].hex()}\n target {g[1].hex()}"
    assert len(expected) == len(got), f"{scenario}: {len(expected)} frames from Apache, {len(got)} from target"


def test_comparison_catches_a_difference(servers: tuple[ServerProcess, ServerProcess]) -> None:
    """The check can fail: one more write on one side shifts the zxids it compares."""
    ref, target = servers
    extra = Recorder(target)
    s = extra.session()
    extra.call(s, CREATE, create_body("/planted"))
    extra.close()
    expected = run_scenario(ref, SCENARIOS["sequential_and_cversion"])
    got = run_scenario(target, SCENARIOS["sequential_and_cversion"])
    assert expected != got
