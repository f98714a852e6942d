"""Expire a client's session now, from the client side, as Curator's KillSession does: a second
connection takes the session (its id and password), then closes it. Any ZooKeeper server goes along
(nothing to switch on in it); the first client's connection is closed by the server and its next
reconnect is told the session expired."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kazoo.client import KazooClient

EXPIRE_TIMEOUT_S = 15.0


def close_session(connect_string: str, session_id: int, password: bytes,
                  timeout_s: float = EXPIRE_TIMEOUT_S) -> None:
    """Connect with session `session_id` and `password`, then close the session (for clients other
    than kazoo's: any client library's session id and password will do)."""
    from kazoo.client import KazooClient

    thief = KazooClient(hosts=connect_string, client_id=(session_id, password), connection_retry=None)
    try:
        thief.start(timeout=timeout_s)
        thief.stop()  # stop() sends closeSession: the session ends for every connection
    finally:
        thief.close()


def expire_session(client: KazooClient, timeout_s: float = EXPIRE_TIMEOUT_S) -> None:
    """Expire `client`'s session; return once the client has seen it (its state went LOST: its
    ephemeral nodes are gone, its watches fired) and kazoo has connected it again with a new session.
    TimeoutError if that does not happen within `timeout_s`."""
    from kazoo.protocol.states import KazooState

    session = client.client_id
    if session is None:
        raise ValueError("the client has no session (start it first)")
    lost = threading.Event()
    back = threading.Event()

    def watch(state: KazooState) -> bool:
        if state == KazooState.LOST:
            lost.set()
        elif state == KazooState.CONNECTED and lost.is_set():
            back.set()
            return True  # kazoo removes a listener that returns True
        return False

    client.add_listener(watch)
    try:
        hosts = ",".join(f"{host}:{port}" for host, port in client.hosts)
        close_session(hosts, session[0], session[1], timeout_s)
        if not back.wait(timeout_s):
            seen = "expired, not reconnected" if lost.is_set() else "did not see the session expire"
            raise TimeoutError(f"session 0x{session[0]:x}: the client {seen} within {timeout_s:g} s")
    finally:
        client.remove_listener(watch)
