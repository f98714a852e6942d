"""Loopback addresses and free TCP ports for test servers."""

from __future__ import annotations

import ipaddress
import socket
import threading

PORT_TRIES = 1000

_handed_out: set[int] = set()
_lock = threading.Lock()


def check_loopback(host: str) -> str:
    """`host` itself if it is a 127.0.0.x address: test servers never listen anywhere else."""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{host!r}: test servers listen on 127.0.0.x addresses only") from None
    if address not in ipaddress.IPv4Network("127.0.0.0/24"):
        raise ValueError(f"{host}: test servers listen on 127.0.0.x addresses only")
    return host


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at `host` right now, never one this process handed out before
    (on any address: a server may bind a port on every address, as Apache does its secure port).

    The OS offers a just-closed port again, and an ensemble's ports are all picked before any member
    binds them: remembering what was handed out keeps two picks in one process apart. Another process
    may still take the port first; ZkServer notices (the server's bind fails, or another server
    answers) and picks again."""
    check_loopback(host)
    for _ in range(PORT_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no fresh free port on {host} after {PORT_TRIES} tries")
