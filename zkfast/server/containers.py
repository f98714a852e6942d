"""Container and TTL node reaping (Apache's ContainerManager)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from zkfast._datatree import ephemeral_kind, ttl_of_owner

if TYPE_CHECKING:
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)

KIND_TTL = 3


def candidates(server: ZooKeeperServer, max_never_used_ms: int, now_ms: int) -> list[bytes]:
    """Empty containers that once had children (or idle too long), and empty TTL nodes past their TTL."""
    tree = server.tree
    out: list[bytes] = []
    for path in list(tree.containers):
        info = tree.record(path)
        if info is None:
            continue
        stat, children, _ = info
        if children:
            continue
        cversion, mtime = stat[5], stat[3]
        if cversion > 0 or (max_never_used_ms and now_ms - mtime > max_never_used_ms):
            out.append(path)
    for path in list(tree.ttls):
        info = tree.record(path)
        if info is None:
            continue
        stat, children, _ = info
        if children:
            continue
        owner, mtime = stat[7], stat[3]
        if ephemeral_kind(owner, tree.extended_types) == KIND_TTL:
            ttl = ttl_of_owner(owner)
            if ttl and now_ms - mtime > ttl:
                out.append(path)
    return out


async def run_container_manager(server: ZooKeeperServer, check_interval_ms: int, max_per_minute: int,
                                max_never_used_ms: int) -> None:
    """Every check interval, ask for a deleteContainer of each candidate, at most max_per_minute."""
    min_gap_s = 60.0 / max_per_minute if max_per_minute > 0 else 0.0
    while True:
        await asyncio.sleep(check_interval_ms / 1000)
        for path in candidates(server, max_never_used_ms, int(time.time() * 1000)):
            log.info("attempting to delete candidate container: %s", path.decode("utf-8", "replace"))
            server.delete_container(path)
            server.end_batch()
            if min_gap_s:
                await asyncio.sleep(min_gap_s)
