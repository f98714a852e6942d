"""SASL DIGEST-MD5 authentication (RFC 2831) as Apache ZooKeeper 3.8.0 does it.

Servers are configured the way kazoo's own test harness configures Apache ZooKeeper: zoo.cfg
`authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider` and a JAAS file with a
`Server { org.apache.zookeeper.server.auth.DigestLoginModule required user_NAME="password"; };` section
passed as `-Djava.security.auth.login.config=...` (java's command line for Apache, $SERVER_JVMFLAGS for
zkfast). Clients: kazoo with `sasl_options` (pure-sasl), zkCli.sh with a client JAAS `Client` section,
and hand-built frames compared byte for byte with Apache's answers (nonces and rspauth hashes masked).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, InvalidACLError, KazooException, NoAuthError
from kazoo.retry import KazooRetry
from kazoo.security import make_acl
from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, apache_available
from testbase.rawclient import RawSession, u_acl, u_str

from zkfast.server.jaas import JaasError, expand_properties, parse_jaas
from zkfast.server.sasl import (
    AuthEnforcer,
    DigestMD5Server,
    NameCanonicalizer,
    SaslAbort,
    SaslConfigError,
    SaslFailure,
    build_sasl_server,
    kerberos_name_valid,
    parse_auth_to_local,
    parse_directives,
    response_value,
    sasl_acl_matches,
)

if os.environ.get("CI") == "true":
    import puresasl.client as puresasl_client
else:
    puresasl_client = pytest.importorskip("puresasl.client")

SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
REALM = "zk-sasl-md5"
URI = "zookeeper/zk-sasl-md5"
OP_CREATE, OP_EXISTS, OP_GET_DATA, OP_PING, OP_AUTH, OP_SASL, OP_WHO_AM_I = 1, 3, 4, 11, 100, 102, 107
AUTHFAILED, REQUIRE_SASL = -115, -124
ZKCLI = Path(os.environ.get("ZKCLI_SH", "/usr/share/zookeeper/bin/zkCli.sh"))

USERS = {"super": "adminsecret", "bob": "bobsecret", "carol": "carolsecret", "zoë": "pässwörd"}
SERVER_JAAS = """\
/* the server's users, as in kazoo's test harness */
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bobsecret"   // a comment
    user_carol="carolsecret"
    user_zoë="pässwörd";
};
"""
CLIENT_JAAS = """\
Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="%s"
    password="%s";
};
"""


def needs_apache() -> None:
    if not apache_available() and os.environ.get("CI") != "true":
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")


# --------------------------------------------------------------------------------------- servers

def _start(server: ServerProcess) -> ServerProcess:
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise


@contextlib.contextmanager
def server_pair(jaas: Path | None, flags: Sequence[str] = (), cfg: dict[str, str] | None = None,
                ) -> Iterator[dict[str, ServerProcess]]:
    """Apache ZooKeeper and zkfast with the same zoo.cfg, JAAS file and -D flags, started together."""
    needs_apache()
    all_flags = ([f"-Djava.security.auth.login.config={jaas}"] if jaas is not None else []) + list(flags)
    conf = {"authProvider.1": SASL_PROVIDER, **(cfg or {})}
    servers: dict[str, ServerProcess] = {
        "apache": ApacheZkProcess(cfg=conf, jvm_flags=tuple(all_flags)),
        "zkfast": ZkfastProcess(cfg=conf, env={"SERVER_JVMFLAGS": " ".join(all_flags)}),
    }
    try:
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(_start, s) for s in servers.values()]:
                f.result()
        yield servers
    finally:
        for s in servers.values():
            s.stop()
            s.cleanup()


def on_both(servers: dict[str, ServerProcess], fn: Callable[[ServerProcess], Any]) -> Any:
    """Run fn against Apache and zkfast; the results must be equal. Returns zkfast's."""
    with ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(fn, s) for k, s in servers.items()}
        results = {k: f.result() for k, f in futures.items()}
    assert results["zkfast"] == results["apache"], (
        f"zkfast differs from Apache ZooKeeper:\n apache: {results['apache']!r}\n zkfast: {results['zkfast']!r}")
    return results["zkfast"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sasl")
    out = {"server": d / "jaas.conf", "bob": d / "client-bob.conf", "bob_bad": d / "client-bob-bad.conf",
           "other_section": d / "other.conf"}
    out["server"].write_text(SERVER_JAAS, "utf-8")
    out["bob"].write_text(CLIENT_JAAS % ("bob", "bobsecret"), "utf-8")
    out["bob_bad"].write_text(CLIENT_JAAS % ("bob", "wrong"), "utf-8")
    out["other_section"].write_text(SERVER_JAAS.replace("Server {", "NotServer {"), "utf-8")
    return out


@pytest.fixture(scope="module")
def sasl_servers(files: dict[str, Path]) -> Iterator[dict[str, ServerProcess]]:
    """SASL on, with carol a zookeeper.superUser."""
    with server_pair(files["server"], ["-Dzookeeper.superUser=carol"]) as servers:
        yield servers


# ------------------------------------------------------------------------------------ raw frames

def latin1_or_utf8(s: str) -> bytes:
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def md5hex(b: bytes) -> bytes:
    return hashlib.md5(b).hexdigest().encode()


def digest_response(challenge: bytes, user: str, password: str, *, realm: str | None = REALM, uri: str = URI,
                    qop: str | None = "auth", nc: str = "00000001", authzid: str | None = None,
                    cnonce: bytes = b"Q2xpZW50Tm9uY2U", encode: Callable[[str], bytes] = latin1_or_utf8,
                    extra: bytes = b"", nonce: bytes | None = None) -> bytes:
    """A client's digest-response to `challenge`, computed here from RFC 2831 (not with zkfast's code)."""
    if nonce is None:
        m = re.search(rb'nonce="([^"]*)"', challenge)
        assert m, challenge
        nonce = m.group(1)
    a1 = hashlib.md5(encode(user) + b":" + encode(realm or "") + b":" + encode(password)).digest()
    a1 += b":" + nonce + b":" + cnonce + (b":" + authzid.encode() if authzid is not None else b"")
    a2 = b"AUTHENTICATE:" + uri.encode()
    kd = (md5hex(a1) + b":" + nonce + b":" + nc.encode() + b":" + cnonce + b":" + (qop or "auth").encode()
          + b":" + md5hex(a2))
    parts = [b'charset=utf-8', b'username="' + user.encode() + b'"']
    if realm is not None:
        parts.append(b'realm="' + realm.encode() + b'"')
    parts += [b'nonce="' + nonce + b'"', b"nc=" + nc.encode(), b'cnonce="' + cnonce + b'"',
              b'digest-uri="' + uri.encode() + b'"', b"response=" + md5hex(kd)]
    if qop is not None:
        parts.append(b"qop=" + qop.encode())
    if authzid is not None:
        parts.append(b'authzid="' + authzid.encode() + b'"')
    return b",".join(parts) + extra


def show(frames: Sequence[bytes], op: int = OP_SASL) -> list[str]:
    """Reply frames as text: the ReplyHeader (a zxid other than 0 as `>0`, since session expiries
    move it), and the body of SASL and whoAmI replies with DIGEST-MD5's random parts masked (other
    bodies hold Stats with times: only their length is shown)."""
    out = []
    for f in frames:
        if f == b"<closed>":
            out.append("<closed>")
            continue
        xid, zxid, err = struct.unpack(">iqi", f[:16])
        text = f"xid={xid} zxid={zxid if zxid <= 0 else '>0'} err={err}"
        rest = f[16:]
        if rest and op in (OP_SASL, OP_WHO_AM_I) and xid >= 0:
            rest = re.sub(rb"rspauth=[0-9a-f]{32}", b"rspauth=<32 hex>", rest)
            rest = re.sub(rb'nonce="[^"]*"', b'nonce="<40>"', rest)
            text += " body=" + rest.hex(" ")
        elif rest:
            text += f" body[{len(rest)}]"
        out.append(text)
    return out


def nonce_len(frame: bytes) -> int:
    m = re.search(rb'nonce="([^"]*)"', frame)
    return len(m.group(1)) if m else -1


class Sasl:
    """A raw session that speaks GetSASLRequest frames."""

    def __init__(self, server: ServerProcess) -> None:
        self.s = RawSession(server.host, server.port)
        self.s.open()
        self.xid = 0
        self.log: list[str] = []

    def call(self, op: int, body: bytes = b"") -> list[bytes]:
        self.xid += 1
        frames = self.s.call(self.xid, op, body)
        self.log += show(frames, op)
        return frames

    def token(self, tok: bytes | None) -> bytes:
        """Send one SASL token; the server's token (b'' when closed or null)."""
        frames = self.call(OP_SASL, u_str(tok))
        last = frames[-1]
        if last == b"<closed>" or len(last) < 20:
            return b""
        n = struct.unpack(">i", last[16:20])[0]
        return last[20:20 + n] if n >= 0 else b""

    def drain(self) -> None:
        self.log += show(self.s.drain(0.3), 0)

    def close(self) -> list[str]:
        self.s.close()
        return self.log


def login_puresasl(server: ServerProcess, user: str, password: str) -> Sasl:
    c = Sasl(server)
    client = puresasl_client.SASLClient(REALM, service="zookeeper", mechanism="DIGEST-MD5", username=user,
                                        password=password)
    challenge = c.token(client.process(None) or b"")
    answer = c.token(client.process(challenge))
    if answer.startswith(b"rspauth="):
        client.process(answer)  # checks the server's rspauth: raises if it is wrong
        assert client.complete
    return c


def whoami(c: Sasl) -> None:
    c.call(OP_WHO_AM_I)


# -------------------------------------------------------------------------- tests: raw protocol

def test_raw_exchange_matches_apache(sasl_servers: dict[str, ServerProcess]) -> None:
    def script(server: ServerProcess) -> list[list[str]]:
        runs = []
        # a full exchange with pure-sasl, whoami, then one SASL packet too many
        c = login_puresasl(server, "bob", "bobsecret")
        whoami(c)
        c.token(b"")
        c.drain()
        runs.append(c.close())
        # the challenge: realm, a 40-char nonce, no qop directive, charset and algorithm
        c = Sasl(server)
        ch = c.token(b"")
        runs.append([*c.close(), f"nonce length {nonce_len(ch)}"])
        # a non-empty first token is ignored (no "subsequent authentication")
        c = Sasl(server)
        c.token(b'username="bob"')
        runs.append(c.close())
        return runs

    runs = on_both(sasl_servers, script)
    assert "72 73 70 61 75 74 68 3d 3c 33 32 20 68 65 78 3e" in runs[0][1]  # rspauth=<32 hex>
    assert runs[0][2].endswith("00 00 00 02 00 00 00 04 73 61 73 6c 00 00 00 03 62 6f 62 00 00 00 02 69 70 "
                               "00 00 00 09 31 32 37 2e 30 2e 30 2e 31")  # whoami: sasl bob, ip
    assert runs[0][3:] == [f"xid=4 zxid=0 err={AUTHFAILED} body=ff ff ff ff", "<closed>"]
    assert runs[1][-1] == "nonce length 40"


@pytest.mark.parametrize("case", [
    "wrong_password", "unknown_user", "utf8_instead_of_latin1", "latin1_user", "uri_case", "authzid",
    "no_realm", "other_realm", "other_nonce", "no_cnonce", "other_uri", "no_uri", "qop_auth_int",
    "qop_bogus", "no_qop", "nc_2", "nonce_count_1", "nonce_count_2", "nonce_count_bad", "maxbuf_bad",
    "maxbuf_ok", "charset_latin1", "dup_username", "too_long", "super_user_name", "zookeeper_superuser",
    "null_first", "undecodable", "unknown_directive", "lws",
])
def test_digest_response_cases_match_apache(sasl_servers: dict[str, ServerProcess], case: str) -> None:
    def script(server: ServerProcess) -> list[str]:
        c = Sasl(server)
        if case == "null_first":
            c.token(None)
            return c.close()
        if case == "undecodable":
            c.call(OP_SASL, b"\x00\x00\x00\x10ab")  # a buffer longer than the frame
            c.drain()
            return c.close()
        ch = c.token(b"")
        user, pw, kw = "bob", "bobsecret", {}
        resp: bytes | None = None
        if case == "wrong_password":
            pw = "bobsecreT"
        elif case == "unknown_user":
            user, pw = "mallory", "x"
        elif case == "utf8_instead_of_latin1":
            user, pw = "zoë", "pässwörd"
            kw = {"encode": lambda s: s.encode("utf-8")}
        elif case == "latin1_user":
            user, pw = "zoë", "pässwörd"
        elif case == "uri_case":
            kw = {"uri": "ZooKeeper/ZK-SASL-md5"}
        elif case == "authzid":
            kw = {"authzid": "carol"}
        elif case == "no_realm":
            kw = {"realm": None}
        elif case == "other_realm":
            kw = {"realm": "example.com"}
        elif case == "other_nonce":
            kw = {"nonce": b"A" * 40}
        elif case == "other_uri":
            kw = {"uri": "zookeeper/localhost"}
        elif case == "qop_auth_int":
            kw = {"qop": "auth-int"}
        elif case == "qop_bogus":
            kw = {"qop": "bogus"}
        elif case == "no_qop":
            kw = {"qop": None}
        elif case == "nc_2":
            kw = {"nc": "00000002"}
        elif case == "nonce_count_1":
            kw = {"extra": b",nonce-count=00000001"}
        elif case == "nonce_count_2":
            kw = {"extra": b",nonce-count=2"}
        elif case == "nonce_count_bad":
            kw = {"extra": b",nonce-count=xyz"}
        elif case == "maxbuf_bad":
            kw = {"extra": b",maxbuf=lots"}
        elif case == "maxbuf_ok":
            kw = {"extra": b",maxbuf=65536"}
        elif case == "charset_latin1":
            resp = digest_response(ch, user, pw).replace(b"charset=utf-8", b"charset=iso-8859-1")
        elif case == "dup_username":
            kw = {"extra": b',username="bob"'}
        elif case == "too_long":
            kw = {"extra": b",auth-param=" + b"x" * 4100}
        elif case == "super_user_name":
            user, pw = "super", USERS["super"]
        elif case == "zookeeper_superuser":
            user, pw = "carol", USERS["carol"]
        elif case == "unknown_directive":
            kw = {"extra": b',foo="bar",auth-param=x'}
        elif case == "lws":
            resp = b"  " + digest_response(ch, user, pw).replace(b",", b" ,\r\n\t ") + b" "
        if case == "no_cnonce":
            resp = re.sub(rb',cnonce="[^"]*"', b"", digest_response(ch, user, pw))
        if case == "no_uri":
            resp = re.sub(rb',digest-uri="[^"]*"', b"", digest_response(ch, user, pw))
        if resp is None:
            resp = digest_response(ch, user, pw, **kw)
        c.token(resp)
        c.drain()
        if not c.s.closed:
            whoami(c)
        return c.close()

    log = on_both(sasl_servers, script)
    succeeded = any("72 73 70 61 75 74 68 3d" in line for line in log)  # rspauth=
    expect_success = case in ("latin1_user", "uri_case", "authzid", "no_qop", "nonce_count_1", "maxbuf_ok",
                              "super_user_name", "zookeeper_superuser", "unknown_directive", "lws")
    assert succeeded == expect_success, log


def test_sasl_not_configured_answers_ok_with_null_token(files: dict[str, Path]) -> None:
    """No `Server` section (here: the JAAS file has another one): Apache answers OK and a null token."""
    with server_pair(files["other_section"]) as servers:
        def script(server: ServerProcess) -> list[str]:
            c = Sasl(server)
            c.token(b"")
            c.token(b"anything")
            c.call(OP_EXISTS, u_str("/") + b"\0")
            return c.close()

        log = on_both(servers, script)
        assert log[:2] == ["xid=1 zxid=0 err=0 body=ff ff ff ff", "xid=2 zxid=0 err=0 body=ff ff ff ff"]


# ---------------------------------------------------------------------------------- tests: kazoo

def kazoo(server: ServerProcess, user: str | None = None, password: str | None = None) -> KazooClient:
    opts = None if user is None else {"mechanism": "DIGEST-MD5", "username": user, "password": password}
    zk = KazooClient(hosts=server.address, sasl_options=opts,
                     connection_retry=KazooRetry(max_tries=1, delay=0.05))
    zk.start(timeout=15)
    return zk


def outcome(fn: Callable[[], Any]) -> str:
    try:
        result = fn()
    except KazooException as e:
        return type(e).__name__
    if isinstance(result, tuple):
        result = result[0]
    return repr(result)


def test_kazoo_sasl_acl(sasl_servers: dict[str, ServerProcess]) -> None:
    """kazoo authenticates with DIGEST-MD5; `sasl:bob` guards a node as on Apache."""
    bob_only = [make_acl("sasl", "bob", all=True)]

    def script(server: ServerProcess) -> list[str]:
        out = []
        bob = kazoo(server, "bob", "bobsecret")
        anon = kazoo(server)
        carol = kazoo(server, "carol", "carolsecret")  # zookeeper.superUser
        sup = kazoo(server, "super", "adminsecret")  # a SASL user named "super"
        try:
            out.append(outcome(lambda: bob.create("/sasl-bob", b"secret", acl=bob_only)))
            out.append(outcome(lambda: bob.get("/sasl-bob")))
            out.append(outcome(lambda: anon.get("/sasl-bob")))
            out.append(outcome(lambda: anon.set("/sasl-bob", b"x")))
            out.append(outcome(lambda: carol.get("/sasl-bob")))
            out.append(outcome(lambda: sup.get("/sasl-bob")))
            out.append(outcome(lambda: bob.get_acls("/sasl-bob")))
            # an `auth` ACL expands to the connection's sasl id (kazoo would send an id "" as null)
            out.append(outcome(lambda: bob.create("/sasl-auth", b"", acl=[make_acl("auth", "x", all=True)])))
            out.append(outcome(lambda: bob.get_acls("/sasl-auth")))
            out.append(outcome(lambda: anon.get("/sasl-auth")))
            # ids must be Kerberos-style names (SASLAuthenticationProvider.isValid)
            out.append(outcome(lambda: bob.create("/sasl-bad", b"", acl=[make_acl("sasl", "a@b@c", all=True)])))
            out.append(outcome(lambda: bob.create("/sasl-krb", b"", acl=[make_acl("sasl", "svc/host@R", read=True)])))
            out.append(outcome(lambda: bob.delete("/sasl-krb")))
            out.append(outcome(lambda: bob.delete("/sasl-auth")))
            out.append(outcome(lambda: bob.delete("/sasl-bob")))
        finally:
            for zk in (bob, anon, carol, sup):
                zk.stop()
                zk.close()
        return out

    out = on_both(sasl_servers, script)
    assert out[0] == "'/sasl-bob'" and out[1] == "b'secret'"
    assert out[2] == out[3] == NoAuthError.__name__
    assert out[4] == out[5] == out[1]  # super user and the "super" SASL id read it
    assert out[9] == NoAuthError.__name__
    assert out[10] == InvalidACLError.__name__


def test_kazoo_wrong_password_fails_as_on_apache(sasl_servers: dict[str, ServerProcess]) -> None:
    """kazoo reports CONNECTED before its SASL exchange ends, so start() may return or raise; either way
    the client must end up AUTH_FAILED (Apache answers AUTHFAILED and drops the connection)."""
    def script(server: ServerProcess) -> list[str]:
        out = []
        # pure-sasl hashes non-ASCII credentials as UTF-8 where the JDK (RFC 2831) uses ISO-8859-1
        for user, pw in (("bob", "nope"), ("nobody", "x"), ("zoë", "pässwörd"), ("bob", "bobsecret")):
            zk = KazooClient(hosts=server.address, connection_retry=KazooRetry(max_tries=1, delay=0.05),
                             sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": pw})
            seen: list[str] = []
            session_callback = zk._session_callback  # kazoo 2.11 (pinned): every KeeperState goes here

            def record(state: Any, cb: Callable[[Any], None] = session_callback,
                       seen: list[str] = seen) -> None:
                seen.append(str(state))
                cb(state)

            zk._session_callback = record  # type: ignore[method-assign]
            try:
                zk.start(timeout=10)
            except AuthFailedError:
                pass
            try:
                if pw == USERS.get(user) and user.isascii():
                    out.append(f"{zk.get_children('/')!r} {zk.client_state}")
                else:
                    deadline = time.monotonic() + 10
                    while "AUTH_FAILED" not in seen and time.monotonic() < deadline:
                        time.sleep(0.01)
                    out.append("AUTH_FAILED" if "AUTH_FAILED" in seen else " ".join(seen))
            finally:
                zk.stop()
                zk.close()
        return out

    assert on_both(sasl_servers, script)[:3] == ["AUTH_FAILED"] * 3


# --------------------------------------------------------------------------------- tests: zkCli.sh

def zkcli(server: ServerProcess, client_jaas: Path, commands: Sequence[str]) -> list[str]:
    if not ZKCLI.exists():
        pytest.fail(f"zkCli.sh not found at {ZKCLI} (apt-get install zookeeper)")
    env = dict(os.environ, CLIENT_JVMFLAGS=f"-Djava.security.auth.login.config={client_jaas} "
                                           "-XX:TieredStopAtLevel=1 -Xshare:auto")
    proc = subprocess.run([str(ZKCLI), "-server", server.address], input="\n".join([*commands, "quit"]) + "\n",
                          capture_output=True, text=True, env=env, timeout=90)
    keep, events = [], []
    for line in proc.stdout.splitlines():
        if not line.strip() or line.startswith(("SLF4J", "Connecting to", "Welcome to", "JLine", "WATCHER::")):
            continue
        if line.startswith("WatchedEvent"):  # printed by the event thread: position not deterministic
            if "state:Closed" not in line:
                events.append(line)
            continue
        keep.append(line.replace(server.address, "<server>"))
    return [*keep, "events:", *sorted(events)]


def test_zkcli_with_client_jaas(sasl_servers: dict[str, ServerProcess], files: dict[str, Path]) -> None:
    def script(server: ServerProcess) -> list[str]:
        good = zkcli(server, files["bob"], ["whoami", "create /cli-bob data sasl:bob:cdrwa", "getAcl /cli-bob",
                                           "get /cli-bob", "delete /cli-bob"])
        bad = zkcli(server, files["bob_bad"], ["ls /"])
        # after AuthFailed, what the shell prints for a command depends on timing: keep the events only
        return [*good, "--- wrong password ---", *bad[bad.index("events:"):]]

    out = on_both(sasl_servers, script)
    assert "WatchedEvent state:SaslAuthenticated type:None path:null" in out
    assert "sasl: bob" in out and "data" in out
    assert "WatchedEvent state:AuthFailed type:None path:null" in out


# ----------------------------------------------------------------- tests: superUser, failures allowed

def test_allow_failed_clients_and_let_any_user(files: dict[str, Path]) -> None:
    flags = ["-Dzookeeper.allowSaslFailedClients=true", "-Dzookeeper.letAnySaslUserDoX=anyone-sasl",
             "-Dzookeeper.superUser.admins=zoë"]
    with server_pair(files["server"], flags) as servers:
        def script(server: ServerProcess) -> list[str]:
            c = Sasl(server)
            ch = c.token(b"")
            c.token(digest_response(ch, "bob", "wrong"))  # fails: OK, null token, connection kept
            c.call(OP_EXISTS, u_str("/") + b"\0")
            c.token(b"")  # the exchange is over: fails again, still kept
            c.call(OP_CREATE, u_str("/let-any") + u_str(b"v") + u_acl([(31, "sasl", "anyone-sasl")])
                   + struct.pack(">i", 0))
            log = c.close()
            c = login_puresasl(server, "bob", "bobsecret")
            c.call(OP_GET_DATA, u_str("/let-any") + b"\0")
            log += ["---", *c.close()]
            c = Sasl(server)
            ch = c.token(b"")
            c.token(digest_response(ch, "zoë", "pässwörd"))
            whoami(c)  # super via zookeeper.superUser.admins
            log += ["---", *c.close()]
            return log

        log = on_both(servers, script)
        assert log[1] == "xid=2 zxid=0 err=0 body=ff ff ff ff"
        assert log[3] == "xid=4 zxid=0 err=0 body=ff ff ff ff"


# -------------------------------------------------------------------------------- tests: enforcement

def test_session_require_client_sasl_auth(files: dict[str, Path]) -> None:
    with server_pair(files["server"], ["-Dzookeeper.sessionRequireClientSASLAuth=true"]) as servers:
        def script(server: ServerProcess) -> list[list[str]]:
            runs = []
            for op, body in ((OP_EXISTS, u_str("/") + b"\0"), (OP_PING, b""), (OP_GET_DATA, u_str("/") + b"\0"),
                             (OP_CREATE, u_str("/x") + u_str(b"") + u_acl([(31, "world", "anyone")])
                              + struct.pack(">i", 0))):
                c = Sasl(server)
                try:
                    c.call(op, body)
                except TimeoutError:
                    c.log.append("<no answer>")
                c.drain()
                runs.append(c.close())
            c = Sasl(server)  # digest auth does not count: only sasl
            c.call(OP_AUTH, struct.pack(">i", 0) + u_str("digest") + u_str("u:p"))
            c.call(OP_EXISTS, u_str("/") + b"\0")
            c.drain()
            runs.append(c.close())
            c = login_puresasl(server, "bob", "bobsecret")
            c.call(OP_EXISTS, u_str("/") + b"\0")
            runs.append(c.close())
            c = Sasl(server)
            ch = c.token(b"")
            c.token(digest_response(ch, "bob", "wrong"))
            c.drain()
            runs.append(c.close())
            return runs

        runs = on_both(servers, script)
        assert runs[0] == [f"xid=1 zxid=0 err={REQUIRE_SASL}", "<closed>"]
        assert runs[-1][-2:] == [f"xid=2 zxid=0 err={REQUIRE_SASL} body=ff ff ff ff", "<closed>"]


def test_enforce_auth_schemes_digest(files: dict[str, Path]) -> None:
    flags = ["-Dzookeeper.enforce.auth.enabled=true", "-Dzookeeper.enforce.auth.schemes=digest"]
    with server_pair(files["server"], flags) as servers:
        def script(server: ServerProcess) -> list[list[str]]:
            runs = []
            c = login_puresasl(server, "bob", "bobsecret")  # sasl does not count here
            c.call(OP_EXISTS, u_str("/") + b"\0")
            c.drain()
            runs.append(c.close())
            c = Sasl(server)
            ch = c.token(b"")
            c.token(digest_response(ch, "bob", "wrong"))  # AUTHFAILED (SASL itself is not required)
            c.drain()
            runs.append(c.close())
            c = Sasl(server)
            c.call(OP_AUTH, struct.pack(">i", 0) + u_str("digest") + u_str("u:p"))
            c.call(OP_EXISTS, u_str("/") + b"\0")
            runs.append(c.close())
            return runs

        runs = on_both(servers, script)
        assert runs[1][-2:] == [f"xid=2 zxid=0 err={AUTHFAILED} body=ff ff ff ff", "<closed>"]


# ----------------------------------------------------------------------------- tests: start-up

def start_outcome(server: ServerProcess) -> str:
    try:
        server.start(timeout_s=40)
    except (RuntimeError, TimeoutError):
        return "refused to start"
    finally:
        server.stop()
    return "started"


@pytest.mark.parametrize("case", ["bad_jaas", "missing_jaas", "enforce_without_schemes", "enforce_unknown"])
def test_startup_errors_match_apache(tmp_path: Path, case: str) -> None:
    needs_apache()
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(SERVER_JAAS, "utf-8")
    flags = [f"-Djava.security.auth.login.config={jaas}"]
    if case == "bad_jaas":
        jaas.write_text(SERVER_JAAS.replace('user_carol="carolsecret"', 'user_carol=carol:secret'), "utf-8")
    elif case == "missing_jaas":
        flags = [f"-Djava.security.auth.login.config={tmp_path / 'nope.conf'}"]
    elif case == "enforce_without_schemes":
        flags.append("-Dzookeeper.enforce.auth.enabled=true")
    elif case == "enforce_unknown":
        flags += ["-Dzookeeper.enforce.auth.enabled=true", "-Dzookeeper.enforce.auth.schemes=kerberos"]
    cfg = {"authProvider.1": SASL_PROVIDER}
    servers = [ApacheZkProcess(cfg=cfg, jvm_flags=tuple(flags)),
               ZkfastProcess(cfg=cfg, env={"SERVER_JVMFLAGS": " ".join(flags)})]
    try:
        with ThreadPoolExecutor(2) as pool:
            apache, zkfast = pool.map(start_outcome, servers)
        assert (apache, zkfast) == ("refused to start", "refused to start")
        log = servers[1].log_tail()
        if case == "bad_jaas":
            assert f"{jaas}:6:" in log, log
        elif case == "missing_jaas":
            assert "nope.conf" in log, log
        else:
            assert "enforce.auth" in log or "kerberos" in log, log
    finally:
        for s in servers:
            s.cleanup()


# ------------------------------------------------------------------------- unit tests: the pieces

def test_rfc2831_example_response_and_rspauth() -> None:
    args = ("imap/elwood.innosoft.com", "auth", "chris", "elwood.innosoft.com", "secret", b"OA6MG9tEQGm2hh",
            b"OA6MHXh6VqTrRk", 1, None)
    assert response_value("AUTHENTICATE", *args) == b"d388dad90d4bbd760a152321f2143af7"
    assert response_value("", *args) == b"ea40f60335c427b5527b84dbabcdfffd"


def test_digest_md5_server_with_puresasl() -> None:
    server = DigestMD5Server(USERS)
    client = puresasl_client.SASLClient(REALM, service="zookeeper", mechanism="DIGEST-MD5", username="bob",
                                        password="bobsecret")
    challenge = server.evaluate_response(client.process(None) or b"")
    assert re.fullmatch(rb'realm="zk-sasl-md5",nonce="[A-Za-z0-9+/]{40}",charset=utf-8,algorithm=md5-sess',
                        challenge)
    rspauth = server.evaluate_response(client.process(challenge))
    assert server.complete and server.authorization_id == "bob"
    assert client.process(rspauth) is None and client.complete
    with pytest.raises(SaslFailure, match="illegal state"):
        server.evaluate_response(b"")


def test_digest_md5_server_failures() -> None:
    def run(resp: Callable[[bytes], bytes], users: dict[str, str] = USERS,
            super_password: str | None = None) -> DigestMD5Server:
        server = DigestMD5Server(users, super_password)
        server.evaluate_response(resp(server.evaluate_response(b"")))
        return server

    with pytest.raises(SaslFailure, match="Mismatched response"):
        run(lambda ch: digest_response(ch, "bob", "nope"))
    with pytest.raises(SaslFailure, match="cannot acquire password"):
        run(lambda ch: digest_response(ch, "eve", "x"))
    with pytest.raises(SaslFailure, match="Nonexistent realm"):
        run(lambda ch: digest_response(ch, "bob", "bobsecret", realm=None))
    with pytest.raises(SaslFailure, match="Mismatched URI"):
        run(lambda ch: digest_response(ch, "bob", "bobsecret", uri="zookeeper/x"))
    with pytest.raises(SaslFailure, match="does not support"):
        run(lambda ch: digest_response(ch, "bob", "bobsecret", qop="auth-conf"))
    with pytest.raises(SaslFailure, match="more than one"):
        run(lambda ch: digest_response(ch, "bob", "bobsecret", extra=b',realm="zk-sasl-md5"'))
    with pytest.raises(SaslFailure, match="length"):
        run(lambda ch: b"x" * 4097)
    with pytest.raises(SaslAbort):
        run(lambda ch: digest_response(ch, "bob", "bobsecret", extra=b",maxbuf=x"))
    # zookeeper.SASLAuthenticationProvider.superPassword replaces the JAAS password of "super"
    assert run(lambda ch: digest_response(ch, "super", "override"), super_password="override").complete
    with pytest.raises(SaslFailure):
        run(lambda ch: digest_response(ch, "super", "adminsecret"), super_password="override")
    # the username is hashed as ISO-8859-1 when it can be (RFC 2831), as the JDK does
    assert run(lambda ch: digest_response(ch, "zoë", "pässwörd")).authorization_id == "zoë"


def test_parse_directives() -> None:
    d = parse_directives(b' username = "a\\"b" ,, realm="r",nc=00000001, qop=auth , cipher=rc4')
    assert d == {"username": b'a"b', "realm": b"r", "qop": b"auth", "cipher": b"rc4"}
    assert parse_directives(b"username") == {"username": b""}
    for bad in (b'username="x', b"=x", b'username="a"b', b"user name=x"):
        with pytest.raises(SaslFailure):
            parse_directives(bad)


def test_kerberos_names() -> None:
    assert kerberos_name_valid("bob") and kerberos_name_valid("svc/host@REALM") and kerberos_name_valid("a/b")
    assert not kerberos_name_valid("a@b@c")
    plain = NameCanonicalizer()
    assert plain.authorized_id("bob", "bob") == "bob"
    assert plain.authorized_id("svc/host", "x") == "svc/host"
    # a realm only the DEFAULT rule could map, and no default realm: the authzid is kept
    assert plain.authorized_id("bob@EXAMPLE.COM", "bob@EXAMPLE.COM") == "bob@EXAMPLE.COM"
    local = NameCanonicalizer(default_realm="EXAMPLE.COM", remove_realm=True, remove_host=True)
    assert local.authorized_id("svc/host@EXAMPLE.COM", "x") == "svc"
    kept = NameCanonicalizer(default_realm="EXAMPLE.COM")
    assert kept.authorized_id("svc/host@EXAMPLE.COM", "x") == "svc/host@EXAMPLE.COM"
    rules = tuple(parse_auth_to_local("RULE:[2:$1@$0](svc@.*EXAMPLE.COM)s/.*/service/ DEFAULT"))
    mapped = NameCanonicalizer(rules=rules, remove_host=True, remove_realm=True)
    assert mapped.authorized_id("svc/host@EXAMPLE.COM", "x") == "service"
    with pytest.raises(SaslAbort):
        plain.authorized_id("a@b@c", "a@b@c")
    with pytest.raises(ValueError):
        parse_auth_to_local("RULE:nonsense")


def test_sasl_acl_matches() -> None:
    assert sasl_acl_matches("bob", "bob", None)
    assert not sasl_acl_matches("bob", "carol", None)
    assert sasl_acl_matches("super", "carol", None)  # SASLAuthenticationProvider.matches
    assert sasl_acl_matches("bob", "everyone", "everyone")


def test_parse_jaas_file() -> None:
    cfg = parse_jaas(SERVER_JAAS + """
Client { org.apache.zookeeper.server.auth.DigestLoginModule OPTIONAL username=bob password="${user.name}x"; };
Empty { };
""", "jaas.conf", {"user.name": "me"})
    server = cfg.entries("Server")
    assert server is not None and len(server) == 1
    assert server[0].module == "org.apache.zookeeper.server.auth.DigestLoginModule"
    assert server[0].flag == "REQUIRED" and server[0].line == 3
    assert dict(server[0].options) == {"user_super": "adminsecret", "user_bob": "bobsecret",
                                       "user_carol": "carolsecret", "user_zoë": "pässwörd"}
    client = cfg.entries("Client")
    assert client is not None and dict(client[0].options) == {"username": "bob", "password": "mex"}
    assert cfg.entries("Empty") is None and cfg.entries("Nope") is None


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('Server {\n  M required\n  user_a=a:b;\n};\n', 3, "expected [option key], found [:]"),
    ('Server {\n  M mandatory;\n};\n', 2, "invalid control flag"),
    ('Server {\n  M required user_a="x";\n}\n', 3, "expected [;]"),
    ('Server {\n  M required user_a="x;\n};\n', 2, "unterminated"),
    ('Server {\n  M required user_a="x";\n};\nServer { };\n', 4, "multiple entries"),
    ('Server {\n  M required\n  user_a=123;\n};\n', 3, "expected [option value]"),
    ('Server {\n  M required user_a="${no.such.property}";\n};\n', 2, "no.such.property"),
    ('Server {\n  M required user_a=x\n', 2, "end of file"),
])
def test_parse_jaas_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(JaasError) as info:
        parse_jaas(text, "/etc/zk/jaas.conf")
    assert str(info.value).startswith(f"/etc/zk/jaas.conf:{line}: "), str(info.value)
    assert fragment in str(info.value)


def test_expand_properties() -> None:
    props = {"a": "1", "b.c": "two"}
    assert expand_properties("x${a}y${b.c}z", props) == "x1ytwoz"
    assert expand_properties("${{not}}${a}", props) == "${{not}}1"
    assert expand_properties("${/}", props) == os.sep
    assert expand_properties("${open", props) == "${open"
    with pytest.raises(KeyError):
        expand_properties("${missing}", props)


def test_build_sasl_server(tmp_path: Path) -> None:
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(SERVER_JAAS, "utf-8")
    key = "java.security.auth.login.config"
    on = build_sasl_server({key: str(jaas), "zookeeper.superUser": "bob", "zookeeper.superUser.2": "carol"})
    assert on.configured and dict(on.credentials or {}) == USERS
    assert on.is_super_user("bob") and on.is_super_user("carol") and not on.is_super_user("")
    assert not build_sasl_server({key: str(jaas), "zookeeper.sasl.serverconfig": "Other"}).configured
    assert build_sasl_server({key: f"file:{jaas}"}).configured
    assert build_sasl_server({key: f"={jaas}"}).configured
    home = tmp_path / "home"
    home.mkdir()
    assert not build_sasl_server({"user.home": str(home)}).configured
    with pytest.raises(SaslConfigError, match="nope.conf"):
        build_sasl_server({key: str(tmp_path / "nope.conf")})
    krb = tmp_path / "krb.conf"
    krb.write_text('Server { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true; };')
    with pytest.raises(SaslConfigError, match="Krb5LoginModule"):
        build_sasl_server({key: str(krb)})
    with pytest.raises(SaslConfigError, match="must be"):
        build_sasl_server({"zookeeper.enforce.auth.enabled": "true"})
    enforcer = AuthEnforcer.from_properties({"zookeeper.sessionRequireClientSASLAuth": "TRUE"}, None)
    assert enforcer.enabled and enforcer.sasl_required and enforcer.schemes == ("sasl",)
    enforcer = AuthEnforcer.from_properties({"zookeeper.enforce.auth.enabled": "true",
                                             "zookeeper.enforce.auth.schemes": " digest , sasl"}, None)
    assert enforcer.schemes == ("digest", "sasl") and enforcer.authenticated([("ip", "x"), ("digest", "u:p")])
    assert not enforcer.authenticated([("ip", "127.0.0.1")])
