"""Ensembles of real server processes (zkfast or Apache ZooKeeper 3.8) on 127.0.0.x, for tests and
benchmarks: each member has its own address, dataDir, myid and zoo.cfg, as an operator would set them up."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from testbase.process import (
    START_TIMEOUT_S,
    ApacheZkProcess,
    ServerProcess,
    ZkfastProcess,
    four_letter,
    free_port,
)

KINDS: dict[str, type[ServerProcess]] = {"zkfast": ZkfastProcess, "apache": ApacheZkProcess}


class Ensemble:
    """Members 1..n (voters) and n+1..n+observers, on 127.0.0.<first_host + i - 1>. Each member
    has its own temporary directory, or with `workdir` the directory workdir/server<i> (which
    cleanup() leaves in place)."""

    def __init__(self, kind: str, voters: int = 3, observers: int = 0, *, first_host: int = 2,
                 tick_ms: int = 200, init_limit: int = 10, sync_limit: int = 5,
                 cfg: Mapping[str, str] | None = None, system_properties: Mapping[str, str] | None = None,
                 workdir: Path | None = None, kinds: Mapping[int, str] | None = None) -> None:
        """kinds: members of another kind than `kind` (a mixed ensemble), e.g. {3: "apache"}."""
        self.kind = kind
        self.kinds = {i: (kinds or {}).get(i, kind) for i in range(1, voters + observers + 1)}
        self.tick_ms = tick_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        total = voters + observers
        self.ids = list(range(1, total + 1))
        self.observer_ids = set(range(voters + 1, total + 1))
        hosts = {i: f"127.0.0.{first_host + i - 1}" for i in self.ids}
        ports = {i: (free_port(hosts[i]), free_port(hosts[i])) for i in self.ids}
        lines = {}
        for i in self.ids:
            role = ":observer" if i in self.observer_ids else ""
            lines[f"server.{i}"] = f"{hosts[i]}:{ports[i][0]}:{ports[i][1]}{role}"
        self.members: dict[int, ServerProcess] = {}
        for i in self.ids:
            member_cfg = {"tickTime": str(tick_ms), "initLimit": str(init_limit), "syncLimit": str(sync_limit),
                          **lines, **(cfg or {})}
            if i in self.observer_ids:
                member_cfg["peerType"] = "observer"
            # Java system properties (-D...): the JVM's flags for Apache, $SERVER_JVMFLAGS for zkfast
            flags = tuple(f"-D{k}={v}" for k, v in (system_properties or {}).items())
            member_kind = self.kinds[i]
            proc = KINDS[member_kind](member_cfg, host=hosts[i], jvm_flags=flags,
                                      workdir=workdir / f"server{i}" if workdir is not None else None,
                                      env={"SERVER_JVMFLAGS": " ".join(flags)} if flags and member_kind == "zkfast"
                                      else None)
            (proc.data_dir / "myid").write_text(f"{i}\n")
            self.members[i] = proc
        self.ports = ports  # member → (quorum port, election port)

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

    def replace(self, i: int, kind: str, fresh_data: bool = False) -> None:
        """Stop member i (SIGTERM) and make it a server of `kind` with the same zoo.cfg, myid, ports
        and, unless fresh_data, the same dataDir: a node-by-node migration. Not started."""
        old = self.members[i]
        old.stop()
        flags = old.jvm_flags
        new = KINDS[kind](dict(old.cfg), host=old.host, port=old.port, jvm_flags=flags, workdir=old.workdir,
                          env={"SERVER_JVMFLAGS": " ".join(flags)} if flags and kind == "zkfast" else None)
        if fresh_data:
            shutil.rmtree(new.data_dir, ignore_errors=True)
            new.data_dir.mkdir(parents=True)
            (new.data_dir / "myid").write_text(f"{i}\n")
        new._own_workdir, old._own_workdir = old._own_workdir, False
        self.members[i] = new
        self.kinds[i] = kind

    def kill9(self, i: int) -> None:
        self.members[i].kill9()

    def stop(self, i: int) -> None:
        self.members[i].stop()

    def cleanup(self) -> None:
        for m in self.members.values():
            m.stop()
        for m in self.members.values():
            m.cleanup()

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- looking at it

    def running(self) -> list[int]:
        return [i for i, m in self.members.items() if m.proc is not None and m.proc.poll() is None]

    def mode(self, i: int) -> str | None:
        m = self.members[i]
        try:
            text = four_letter(m.host, m.port, "srvr", timeout_s=1.0)
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("Mode: "):
                return line[6:].strip()
        return None

    def leader(self) -> int | None:
        for i in self.running():
            if self.mode(i) == "leader":
                return i
        return None

    def wait_leader(self, timeout_s: float = 30.0, exclude: int | None = None) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader != exclude:
                return leader
            time.sleep(0.02)
        raise TimeoutError(f"no leader within {timeout_s}s: " + ", ".join(
            f"{i}={self.mode(i)}" for i in self.running()))

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
        out = []
        for i in ids or self.ids:
            proc = self.members[i].proc
            if proc is not None and proc.poll() is None:
                out.append(proc.pid)
        return out

    def peer_ports(self, i: int) -> list[int]:
        """Member i's quorum and election ports."""
        return list(self.ports[i])

    def log_of(self, i: int) -> str:
        return self.members[i].log_path.read_text(errors="replace")

    def data_dir(self, i: int) -> Path:
        return self.members[i].data_dir

    def failover_bound_s(self) -> float:
        """Leader loss noticed within syncLimit ticks, an election (a few finalize waits of 200 ms
        each, with the notification back-off), then the new leader syncs a quorum within initLimit
        ticks: the README's bound."""
        tick_s = self.tick_ms / 1000
        return self.sync_limit * tick_s + 2.0 + self.init_limit * tick_s
