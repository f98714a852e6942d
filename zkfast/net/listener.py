"""The client port: accepts connections, enforces maxClientCnxns per IP and maxCnxns overall."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from typing import TYPE_CHECKING

from zkfast.net.connection import ClientConnection

if TYPE_CHECKING:
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)


class ClientListener:
    """One listening socket (clientPort) and the connections it accepted."""

    def __init__(self, server: ZooKeeperServer, host: str | None, port: int, *,
                 max_client_cnxns: int = 60, max_cnxns: int = 0, backlog: int = -1,
                 max_frame_bytes: int = 0xFFFFF, tls: ssl.SSLContext | None = None,
                 x509_super_user: str | None = None) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.max_client_cnxns = max_client_cnxns
        self.max_cnxns = max_cnxns
        self.backlog = backlog if backlog > 0 else 100
        self.max_frame_bytes = max_frame_bytes
        self.per_ip: Counter[str] = Counter()
        self.live: set[ClientConnection] = set()
        self.rejected = 0
        self.tls = tls
        self.x509_super_user = x509_super_user
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.host if self.host not in (None, "", "0.0.0.0") else None
        self._server = await loop.create_server(
            lambda: ClientConnection(self.server, self), host=host, port=self.port,
            backlog=self.backlog, reuse_address=True, ssl=self.tls)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("binding to %sport %s:%d", "secure " if self.tls else "", self.host or "0.0.0.0", self.port)

    def admit(self, conn: ClientConnection) -> bool:
        ip = conn.remote_ip
        if self.max_client_cnxns > 0 and self.per_ip[ip] >= self.max_client_cnxns:
            log.warning("Too many connections from %s - max is %d", ip, self.max_client_cnxns)
            self.rejected += 1
            return False
        if self.max_cnxns > 0 and len(self.live) >= self.max_cnxns:
            log.warning("Too many connections - max is %d", self.max_cnxns)
            self.rejected += 1
            return False
        self.per_ip[ip] += 1
        self.live.add(conn)
        return True

    def release(self, conn: ClientConnection) -> None:
        if conn in self.live:
            self.live.discard(conn)
            self.per_ip[conn.remote_ip] -= 1
            if self.per_ip[conn.remote_ip] <= 0:
                del self.per_ip[conn.remote_ip]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.live):
                conn.close()
            await self._server.wait_closed()
            self._server = None
