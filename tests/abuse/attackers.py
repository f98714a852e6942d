"""Hostile clients, as plain sockets: each one bounded by a deadline, so an attack ends by itself
whatever the server does (a blocked send gives up at the deadline; a read waits at most until it).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from testbase.process import ServerProcess
from testbase.rawclient import RawSession, connect_request, frame

from abuse.protocol import reply_header

TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8  # include/net/tcp_states.h
ATTACKER_SESSION_TIMEOUT_MS = 40_000  # the longest tickTime=2000 allows: it outlives every attack
CONNECT_TIMEOUT_S = 5.0


def source_ips(first: int, count: int) -> list[str]:
    """127.0.0.<first>, 127.0.0.<first+1>, ...: loopback source addresses, one per attacking host."""
    return [f"127.0.0.{first + i}" for i in range(count)]


def spread(n: int, first_ip: int, per_ip: int) -> list[str]:
    """The source address of each of n attackers, at most per_ip to an address."""
    ips = source_ips(first_ip, (n + per_ip - 1) // per_ip)
    return [ips[i // per_ip] for i in range(n)]


class Attacker:
    """One TCP connection from a chosen 127.0.0.x, optionally with a small receive buffer (set
    before connect, so the window the server sees is small from the start)."""

    def __init__(self, host: str, port: int, source_ip: str = "127.0.0.1", rcvbuf: int | None = None,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout_s)
        self.sock.bind((source_ip, 0))
        try:
            self.sock.connect((host, port))
        except (BrokenPipeError, ConnectionResetError):
            # refused at accept (past maxClientCnxns) before this connect() saw its handshake done, as
            # happens on a loaded machine: a socket the server closed, as the attack expects
            pass
        self.source_ip = source_ip
        self.buf = bytearray()  # appended to and consumed from the front: linear for big replies
        self.session_id = 0

    def handshake(self, timeout_ms: int = ATTACKER_SESSION_TIMEOUT_MS, wait_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Send a ConnectRequest and read the ConnectResponse within wait_s; False if the server
        refused it (or did not answer)."""
        try:
            self.sock.sendall(frame(connect_request(timeout_ms=timeout_ms)))
            payload = self.read_frame(time.monotonic() + wait_s)
        except OSError:
            return False
        if payload is None or len(payload) < 16:
            return False
        self.session_id = struct.unpack_from(">q", payload, 8)[0]
        return self.session_id != 0

    def send_until(self, data: bytes, deadline: float) -> int:
        """Send as much of data as the server takes before the deadline; the bytes sent."""
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                sent += self.sock.send(view[sent:sent + 1024 * 1024])
            except OSError:  # the deadline (TimeoutError), or the server closed or reset
                break
        return sent

    def read_frame(self, deadline: float) -> bytes | None:
        """The next frame's payload; None when the server closed or the deadline passed."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack_from(">i", self.buf, 0)
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1024 * 1024)
            except (TimeoutError, OSError):
                return None
            if not data:
                return None
            self.buf += data

    def read_replies(self, n: int, deadline: float) -> list[tuple[int, int]]:
        """(xid, err) of up to n replies (notifications skipped) read before the deadline."""
        out: list[tuple[int, int]] = []
        while len(out) < n:
            payload = self.read_frame(deadline)
            if payload is None:
                break
            xid, _, err = reply_header(payload)
            if xid != -1:
                out.append((xid, err))
        return out

    def server_closed(self) -> bool:
        """The server closed or reset this connection (seen in the socket's TCP state, without
        reading: a never-reading attacker still has replies waiting in its receive buffer)."""
        try:
            state = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except OSError:
            return True
        return state in (TCP_CLOSE, TCP_CLOSE_WAIT)

    def close(self) -> None:
        self.sock.close()


def open_attackers(server: ServerProcess, ips: Sequence[str], *, rcvbuf: int | None = None,
                   handshake: bool = True, port: int | None = None) -> list[Attacker]:
    """One attacker per source address in ips (connected, and with a session if handshake)."""
    out = []
    try:
        for ip in ips:
            a = Attacker(server.host, port or server.port, ip, rcvbuf)
            out.append(a)
            if handshake and not a.handshake():
                raise ConnectionError(f"{server.kind} refused an attacker's session from {ip}")
    except BaseException:
        close_all(out)
        raise
    return out


def close_all(attackers: Iterable[Attacker]) -> None:
    for a in attackers:
        a.close()


def in_threads(fns: Sequence[Callable[[], object]], timeout_s: float) -> list[object]:
    """Run each fn in its own thread and return their results (None for one still running after
    timeout_s: every fn here is deadline-bound, so that only happens when a deadline is wrong)."""
    results: list[object] = [None] * len(fns)
    errors: list[BaseException] = []

    def run(i: int, fn: Callable[[], object]) -> None:
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    if errors:
        raise errors[0]
    return results


def hold(seconds: float) -> None:
    """Keep an attack in place while the sampler watches the server."""
    time.sleep(seconds)


# ------------------------------------------------------------------------- connection admission

@dataclass
class Admission:
    admitted_after_s: float | None  # None: never admitted before the deadline
    tries: int


def session_from(host: str, port: int, source_ip: str, tls: ssl.SSLContext | None = None) -> bool:
    """A real client from source_ip: connect (and TLS handshake), ConnectRequest, ConnectResponse."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.bind((source_ip, 0))
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        s = RawSession(host, port, sock=sock)
        try:
            s.send(frame(connect_request(timeout_ms=ATTACKER_SESSION_TIMEOUT_MS)))
            payload = s.read_frame(CONNECT_TIMEOUT_S)
        finally:
            s.close()
    except (OSError, TimeoutError):
        return False
    return payload is not None and len(payload) >= 16 and struct.unpack_from(">q", payload, 8)[0] != 0


def wait_admitted(host: str, port: int, source_ip: str, deadline: float, interval_s: float = 0.1,
                  tls: ssl.SSLContext | None = None) -> Admission:
    """Try a real client from source_ip until one gets a session or the deadline passes; the time
    from now to the start of the attempt that succeeded."""
    t0 = time.monotonic()
    tries = 0
    while True:
        start = time.monotonic()
        tries += 1
        if session_from(host, port, source_ip, tls):
            return Admission(start - t0, tries)
        if time.monotonic() + interval_s > deadline:
            return Admission(None, tries)
        time.sleep(interval_s)


def client_tls_context() -> ssl.SSLContext:
    """A TLS client that checks nothing: the servers run with ssl.clientAuth=none and a self-signed key."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_hello() -> bytes:
    """The first flight of a real TLS client (its ClientHello records)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_tls_context().wrap_bio(incoming, outgoing, server_side=False, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
