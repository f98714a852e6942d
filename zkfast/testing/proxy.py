"""TcpProxy: a small TCP proxy a test puts between its clients and a server, to break their connections
(the session lives on: the client reconnects within its session timeout) or refuse new ones."""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from typing import Self

from zkfast.testing.lifecycle import Started
from zkfast.testing.ports import check_loopback, free_port

BUFFER_LIMIT_BYTES = 1 << 20  # per direction: past it the proxy stops reading the sending side
RECV_BYTES = 65536
SELECT_TIMEOUT_S = 0.5
COMMAND_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 5.0
LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends RST: the peer sees the connection reset


class _Side:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outgoing = bytearray()  # bytes read from the other side, not yet written to this one
        self.eof = False  # this side sent FIN: nothing more to read from it


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = _Side(client)
        self.upstream = _Side(upstream)
        self.connected = False  # the upstream connect() has completed

    def other(self, side: _Side) -> _Side:
        return self.upstream if side is self.client else self.client


class TcpProxy(Started):
    """Listens on `host` (127.0.0.x) and a free port; every connection accepted is forwarded to
    `target_host:target_port` by one thread. `connect_string` is what the client is given."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.target = (check_loopback(target_host), target_port)
        self.host = check_loopback(host)
        self.port = port if port is not None else free_port(host)
        self.refusing = False
        self._pairs: list[_Pair] = []
        self._commands: list[tuple[Callable[[], object], list[object], threading.Event]] = []
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def connect_string(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections being forwarded now."""
        return self._call(lambda: len(self._pairs))  # type: ignore[return-value]

    def start(self) -> Self:
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=f"zk-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def drop_connections(self) -> int:
        """Reset every connection going through the proxy now (both ends see a connection reset, as
        when a network path fails); how many there were. New connections are still forwarded."""
        return self._call(self._drop_all)  # type: ignore[return-value]

    def refuse(self, refusing: bool = True) -> None:
        """While refusing, connections are reset as soon as they are accepted (a server that cannot
        be reached); connections already forwarded go on."""
        self.refusing = refusing

    def close(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join(JOIN_TIMEOUT_S)
        self._thread = None

    # -- the proxy thread owns the sockets: other threads hand it commands

    def _call(self, fn: Callable[[], object]) -> object:
        if self._thread is None:
            return fn()
        done = threading.Event()
        result: list[object] = []
        with self._lock:
            self._commands.append((fn, result, done))
        self._wake()
        if not done.wait(COMMAND_TIMEOUT_S):
            raise TimeoutError("the proxy thread did not answer")
        return result[0]

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select(SELECT_TIMEOUT_S):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._run_commands()
                    else:
                        self._service(key.data, mask)
        finally:
            self._drop_all()
            for sock in (self._listener, self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._selector.close()

    def _run_commands(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)
        with self._lock:
            commands, self._commands = self._commands, []
        for fn, result, done in commands:
            result.append(fn())
            done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if self.refusing:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            client.close()
            return
        client.setblocking(False)
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        code = upstream.connect_ex(self.target)
        pair = _Pair(client, upstream)
        self._pairs.append(pair)
        if code not in (0, errno.EINPROGRESS):
            self._close(pair, reset=True)
            return
        pair.connected = code == 0
        self._update(pair)

    def _service(self, data: tuple[_Pair, _Side], mask: int) -> None:
        pair, side = data
        if pair not in self._pairs:
            return
        if side is pair.upstream and not pair.connected:
            if side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._close(pair, reset=True)
                return
            pair.connected = True
        try:
            if mask & selectors.EVENT_READ:
                chunk = side.sock.recv(RECV_BYTES)
                if chunk:
                    pair.other(side).outgoing += chunk
                else:
                    side.eof = True
            if mask & selectors.EVENT_WRITE and side.outgoing:
                sent = side.sock.send(side.outgoing)
                del side.outgoing[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(pair, reset=True)
            return
        # a side that ended: close once what it sent has reached the other side
        for ended in (pair.client, pair.upstream):
            if ended.eof and not pair.other(ended).outgoing:
                self._close(pair, reset=False)
                return
        self._update(pair)

    def _update(self, pair: _Pair) -> None:
        """Watch each side for what it can do now: read while the other side's backlog is small,
        write while it has backlog, and the upstream for writability until its connect completes."""
        for side in (pair.client, pair.upstream):
            events = 0
            if pair.connected and not side.eof and len(pair.other(side).outgoing) < BUFFER_LIMIT_BYTES:
                events |= selectors.EVENT_READ
            if side.outgoing or (side is pair.upstream and not pair.connected):
                events |= selectors.EVENT_WRITE
            self._watch(side.sock, events, (pair, side))

    def _watch(self, sock: socket.socket, events: int, data: tuple[_Pair, _Side]) -> None:
        try:
            registered = self._selector.get_key(sock).events
        except KeyError:
            registered = 0
        if events == registered:
            return
        if not events:
            self._selector.unregister(sock)
        elif not registered:
            self._selector.register(sock, events, data)
        else:
            self._selector.modify(sock, events, data)

    def _drop_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair, reset=True)
        return len(pairs)

    def _close(self, pair: _Pair, reset: bool) -> None:
        if pair in self._pairs:
            self._pairs.remove(pair)
        for side in (pair.client, pair.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(side.sock)
            with contextlib.suppress(OSError):
                if reset:
                    side.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                side.sock.close()
