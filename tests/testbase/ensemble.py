"""Ensembles of real server processes (zkfast or Apache ZooKeeper 3.8) on 127.0.0.x, started through
zkfast.testing's ZkCluster, with what only this suite needs on top: members of mixed kinds, a member
replaced by another kind on the same dataDir (a migration), and members named by their server id."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbase.process import START_TIMEOUT_S, ApacheZkProcess, ServerProcess, ZkfastProcess
from zkfast.config.properties import java_trim, parse_properties
from zkfast.testing import ZkCluster, ZkServer

KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}


class _MixedCluster(ZkCluster):
    """A ZkCluster whose members are the suite's ServerProcess classes, each of its own kind."""

    def __init__(self, kinds: Mapping[int, str], **options: Any) -> None:
        self.kinds = dict(kinds)  # make_member runs inside ZkCluster.__init__
        super().__init__(**options)

    def make_member(self, server_id: int, **options: Any) -> ZkServer:
        kind = self.kinds[server_id]
        props = options.pop("jvm_flags") or {}
        options.pop("kind")
        return KINDS[kind](cfg=options.pop("config"), host=options.pop("host"),
                           workdir=options.pop("workdir"), jvm_flags=tuple(f"-D{k}={v}" for k, v in props.items()),
                           env=None, server_id=server_id, **{k: v for k, v in options.items() if k != "env"})


class Ensemble:
    """Members 1..n (voters) and n+1..n+observers, on 127.0.0.<first_host + i - 1>. Each member
    has its own temporary directory, or with `workdir` the directory workdir/server<i> (which
    cleanup() leaves in place)."""

    def __init__(self, kind: str, voters: int = 3, observers: int = 0, *, first_host: int = 2,
                 tick_ms: int = 200, init_limit: int = 10, sync_limit: int = 5,
                 cfg: Mapping[str, str] | None = None, system_properties: Mapping[str, str] | None = None,
                 workdir: Path | None = None, kinds: Mapping[int, str] | None = None) -> None:
        """kinds: members of another kind than `kind` (a mixed ensemble), e.g. {3: "apache"}.
        system_properties: Java system properties of every member (-D flags on either command line)."""
        self.kind = kind
        total = voters + observers
        self.kinds = {i: (kinds or {}).get(i, kind) for i in range(1, total + 1)}
        self.tick_ms = tick_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.cluster = _MixedCluster(self.kinds, n=voters, observers=observers, kind=kind, first_host=first_host,
                                     tick_time_ms=tick_ms, init_limit=init_limit, sync_limit=sync_limit,
                                     config=cfg, jvm_flags=system_properties, workdir=workdir)
        self.ids = self.cluster.ids
        self.observer_ids = set(self.cluster.observer_ids)
        self.ports = self.cluster.peer_ports  # member → (quorum port, election port)

    @property
    def members(self) -> dict[int, ServerProcess]:
        return self.cluster.members  # type: ignore[return-value]

    # -- lifecycle

    def launch(self, i: int) -> None:
        self.members[i].launch()

    def start(self, ids: list[int] | None = None, timeout_s: float = START_TIMEOUT_S) -> Ensemble:
        ids = ids or self.ids
        for i in ids:
            self.launch(i)
        for i in ids:
            self.members[i].wait_serving(timeout_s)
        return self

    def restart(self, i: int, timeout_s: float = START_TIMEOUT_S) -> None:
        self.launch(i)
        self.members[i].wait_serving(timeout_s)

    def replace(self, i: int, kind: str, fresh_data: bool = False, config_on_disk: bool = False) -> None:
        """Stop member i (SIGTERM) and make it a server of `kind` with the same zoo.cfg, myid, ports
        and, unless fresh_data, the same dataDir: a node-by-node migration. Not started. With
        config_on_disk, zoo.cfg is the file as the old server left it (a reconfig rewrites it), not as
        the ensemble first wrote it."""
        old = self.members[i]
        old.stop()
        cfg = dict(old.cfg)
        if config_on_disk:
            cfg = {java_trim(e.key): java_trim(e.value) for e in parse_properties(old.cfg_path.read_text("latin-1"))}
        new = KINDS[kind](cfg, host=old.host, port=old.port, jvm_flags=old.jvm_flags,
                          workdir=old.workdir, server_id=i, tick_time_ms=self.tick_ms)
        if fresh_data:
            shutil.rmtree(new.data_dir, ignore_errors=True)
            new.data_dir.mkdir(parents=True)
        new.owns_workdir, old.owns_workdir = old.owns_workdir, False
        self.cluster.members[i] = new
        self.kinds[i] = kind
        self.cluster.kinds[i] = kind

    def kill9(self, i: int) -> None:
        self.members[i].kill9()

    def stop(self, i: int) -> None:
        self.members[i].stop()

    def cleanup(self) -> None:
        self.cluster.close()

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- looking at it

    def running(self) -> list[int]:
        return [i for i, m in self.members.items() if m.running]

    def mode(self, i: int) -> str | None:
        return self.members[i].mode

    def leader(self) -> int | None:
        leader = self.cluster.leader
        return None if leader is None else leader.server_id

    def wait_leader(self, timeout_s: float = 30.0, exclude: int | None = None) -> int:
        leader = self.cluster.wait_leader(timeout_s, other_than=exclude)
        assert leader.server_id is not None
        return leader.server_id

    def wait_serving(self, ids: list[int] | None = None, timeout_s: float = 30.0) -> None:
        for i in ids or self.running():
            self.members[i].wait_serving(timeout_s)

    def hosts(self, ids: list[int] | None = None) -> str:
        return ",".join(self.members[i].address for i in (ids or self.ids))

    def address(self, i: int) -> str:
        return self.members[i].address

    def endpoints(self, ids: list[int] | None = None) -> list[tuple[str, int]]:
        """(host, client port) of each member, in the order of `ids` (default: all)."""
        return [(self.members[i].host, self.members[i].port) for i in (ids or self.ids)]

    def pids(self, ids: list[int] | None = None) -> list[int]:
        """The process ids of the running members among `ids` (default: all)."""
        return [pid for i in (ids or self.ids) if (pid := self.members[i].pid) is not None]

    def peer_ports(self, i: int) -> list[int]:
        """Member i's quorum and election ports."""
        return list(self.ports[i])

    def log_of(self, i: int) -> str:
        return self.members[i].log_text()

    def data_dir(self, i: int) -> Path:
        return self.members[i].data_dir

    def failover_bound_s(self) -> float:
        """Leader loss noticed within syncLimit ticks, an election (a few finalize waits of 200 ms
        each, with the notification back-off), then the new leader syncs a quorum within initLimit
        ticks: the README's bound."""
        tick_s = self.tick_ms / 1000
        return self.sync_limit * tick_s + 2.0 + self.init_limit * tick_s
