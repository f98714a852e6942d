"""ZkCluster: an ensemble of real server processes on 127.0.0.x, and the faults a test puts it through."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Self

from zkfast.testing.lifecycle import Started
from zkfast.testing.partition import Endpoint, Partitions, PartitionUnavailable
from zkfast.testing.ports import free_port
from zkfast.testing.reaper import track
from zkfast.testing.server import (
    BIND_FAILURE,
    DEFAULT_TICK_TIME_MS,
    POLL_INTERVAL_S,
    PORT_ATTEMPTS,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ServerExited,
    ZkServer,
)

DEFAULT_INIT_LIMIT = 10
DEFAULT_SYNC_LIMIT = 5
SERVING_MODES = ("leader", "follower", "observer")

Member = int | ZkServer


class ZkCluster(Started):
    """An ensemble: voters 1..n and observers n+1..n+observers (server ids, as in zoo.cfg's
    `server.<id>` lines), member i on 127.0.0.<first_host + i - 1> with its own ports, dataDir and
    zoo.cfg, as an operator would set them up. Members are ZkServer objects: `cluster[i]`,
    `cluster.members`. Methods that take a member take its server id or the ZkServer itself
    (`cluster.kill(cluster.leader)`).

    `start()` returns once every member serves and one of them leads. Nothing is started before
    `start()` (or `with ZkCluster(3) as cluster:`), and `close()` stops every member, heals partitions
    and removes temporary directories; everything is also reaped at exit, as for ZkServer."""

    def __init__(self, n: int = 3, observers: int = 0, *, kind: str = "zkfast",
                 tick_time_ms: int = DEFAULT_TICK_TIME_MS, init_limit: int = DEFAULT_INIT_LIMIT,
                 sync_limit: int = DEFAULT_SYNC_LIMIT, config: Mapping[str, object] | None = None,
                 jvm_flags: Mapping[str, object] | None = None, first_host: int = 2,
                 workdir: Path | str | None = None, env: Mapping[str, str] | None = None,
                 python: str | None = None, zookeeper_path: Path | str | None = None,
                 super_password: str | None = None, keep_data: bool = False,
                 start_timeout_s: float = START_TIMEOUT_S, stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        if n < 1 or observers < 0:
            raise ValueError(f"a cluster needs at least one voter (n={n}, observers={observers})")
        if first_host < 2 or first_host + n + observers - 1 > 254:
            # 127.0.0.1 is where clients connect from: a partition rule there would cut them off too
            raise ValueError(f"members on 127.0.0.{first_host}.. must fit in 127.0.0.2-254")
        self.kind = kind
        self.tick_time_ms = tick_time_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.start_timeout_s = start_timeout_s
        self.ids = list(range(1, n + observers + 1))
        self.observer_ids = frozenset(range(n + 1, n + observers + 1))
        self.hosts = hosts = {i: f"127.0.0.{first_host + i - 1}" for i in self.ids}
        # quorum and election ports, each member's on its own address
        self.peer_ports = {i: (free_port(hosts[i]), free_port(hosts[i])) for i in self.ids}
        # until the ensemble first serves, ports that another process took first are picked again
        self._ports_fixed = False
        lines = self._server_lines()
        self.members: dict[int, ZkServer] = {}
        for i in self.ids:
            member_config: dict[str, object] = {"initLimit": init_limit, "syncLimit": sync_limit, **lines}
            if i in self.observer_ids:
                member_config["peerType"] = "observer"
            if n == 1:  # one voter: a quorum of one (with a leader), not a standalone server
                member_config["standaloneEnabled"] = "false"
            member_config.update(config or {})
            self.members[i] = self.make_member(
                i, host=hosts[i], kind=kind, tick_time_ms=tick_time_ms, config=member_config,
                jvm_flags=jvm_flags, workdir=Path(workdir) / f"server{i}" if workdir is not None else None,
                env=env, python=python, zookeeper_path=zookeeper_path, super_password=super_password,
                keep_data=keep_data, start_timeout_s=start_timeout_s, stop_timeout_s=stop_timeout_s)
        self._partitions = Partitions()
        self._finalizer = track(self, self._partitions)

    def _server_lines(self) -> dict[str, str]:
        """zoo.cfg's `server.<id>` lines, every member's."""
        return {f"server.{i}": f"{self.hosts[i]}:{q}:{e}" + (":observer" if i in self.observer_ids else "")
                for i, (q, e) in self.peer_ports.items()}

    def _pick_ports(self) -> None:
        """New peer ports for every member (and client ports not given), in every member's zoo.cfg."""
        # in place: whoever holds the mapping sees the new ports
        self.peer_ports.update({i: (free_port(self.hosts[i]), free_port(self.hosts[i])) for i in self.ids})
        lines = self._server_lines()
        for m in self:
            if not m._port_fixed:
                m._pick_port()
            m.config.update(lines)

    def make_member(self, server_id: int, **options: object) -> ZkServer:
        """Member `server_id` (a subclass may make it another ZkServer subclass)."""
        return ZkServer(server_id=server_id, **options)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ what it is

    def member(self, member: Member) -> ZkServer:
        if isinstance(member, ZkServer):
            if member not in self.members.values():
                raise ValueError(f"{member!r} is not a member of this cluster")
            return member
        return self.members[member]

    def __getitem__(self, server_id: int) -> ZkServer:
        return self.members[server_id]

    def __iter__(self) -> Iterator[ZkServer]:
        return iter(self.members.values())

    def __len__(self) -> int:
        return len(self.members)

    @property
    def servers(self) -> list[ZkServer]:
        return list(self.members.values())

    @property
    def connect_string(self) -> str:
        """Every member, `host:port,host:port,...`."""
        return ",".join(m.connect_string for m in self)

    def modes(self) -> dict[int, str | None]:
        """Each running member's `srvr` Mode (None: not serving)."""
        return {i: m.mode for i, m in self.members.items() if m.running and not m.paused}

    @property
    def leader(self) -> ZkServer | None:
        """The member that says it leads, if any."""
        for i, mode in self.modes().items():
            if mode == "leader":
                return self.members[i]
        return None

    @property
    def followers(self) -> list[ZkServer]:
        return [self.members[i] for i, mode in self.modes().items() if mode == "follower"]

    @property
    def observers(self) -> list[ZkServer]:
        return [self.members[i] for i, mode in self.modes().items() if mode == "observer"]

    def __repr__(self) -> str:
        return f"ZkCluster(kind={self.kind!r}, {self.connect_string})"

    # ------------------------------------------------------------------------------ life cycle

    def start(self, timeout_s: float | None = None) -> Self:
        """Start every member not running, all at once (an ensemble member needs its peers to serve),
        then wait_serving(). On a failure every member is killed. Before the ensemble first served, a
        member that could not bind a port (another process took it after it was picked) makes every
        member start again on ports picked anew."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                for m in self:
                    m.start(wait=False)
                self.wait_serving(timeout_s)
                self._ports_fixed = True
                return self
            except ServerExited:
                self._kill_all()
                if self._ports_fixed or attempt == PORT_ATTEMPTS or not any(
                        BIND_FAILURE in m.log_text(True).lower() for m in self):
                    raise
                self._pick_ports()
            except BaseException:
                self._kill_all()
                raise
        raise AssertionError("unreachable")

    def _kill_all(self) -> None:
        for m in self:
            m.kill()

    def wait_serving(self, timeout_s: float | None = None) -> ZkServer:
        """Wait until every running member (not paused) serves and one leads; the leader.
        ServerExited if one of them exits, TimeoutError after `timeout_s` (default: the start time-out)."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        # every member at once: one that exits (ServerExited) is noticed while its peers wait for it
        waiting = [m for m in self if m.running and not m.paused]
        modes: dict[int, str | None] = {}
        while True:
            waiting = [m for m in waiting if m.serving_mode() is None]
            if not waiting:
                modes = self.modes()
                leader = self.leader
                if leader is not None and all(mode in SERVING_MODES for mode in modes.values()):
                    return leader
            if time.monotonic() >= deadline:
                if waiting:
                    raise waiting[0].not_serving(timeout_s)
                raise TimeoutError(f"no serving ensemble within {timeout_s:g} s: {modes}")
            time.sleep(POLL_INTERVAL_S)

    def wait_leader(self, timeout_s: float | None = None, other_than: Member | None = None) -> ZkServer:
        """Wait until a member leads (one other than `other_than`: a new leader after a fault)."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        old = self.member(other_than) if other_than is not None else None
        deadline = time.monotonic() + timeout_s
        while True:
            leader = self.leader
            if leader is not None and leader is not old:
                return leader
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no leader{' but ' + repr(old) if old else ''} within {timeout_s:g} s: "
                                   f"{self.modes()}")
            time.sleep(POLL_INTERVAL_S)

    def stop(self, member: Member | None = None) -> None:
        """Stop one member (SIGTERM), or every member."""
        for m in [self.member(member)] if member is not None else self:
            m.stop()

    def kill(self, member: Member) -> None:
        """SIGKILL one member: a crash."""
        self.member(member).kill()

    def restart(self, member: Member, timeout_s: float | None = None, *, wait: bool = True) -> ZkServer:
        """Stop (if running) and start one member on its dataDir; with `wait`, until it serves (it
        cannot without a quorum of its peers)."""
        m = self.member(member)
        m.stop()
        return m.start(timeout_s, wait=wait)

    def pause(self, member: Member) -> None:
        """SIGSTOP one member: it holds its connections and answers nothing (a GC pause)."""
        self.member(member).pause()

    def resume(self, member: Member) -> None:
        self.member(member).resume()

    def partition(self, member: Member) -> None:
        """Cut `member` off from every other member (their quorum and election traffic is dropped both
        ways); clients still reach it. Needs iptables (root or CAP_NET_ADMIN): PartitionUnavailable
        otherwise. heal() (or close()) ends every partition."""
        m = self.member(member)
        apache = [i for i, x in self.members.items() if x.kind != "zkfast"]
        if apache:
            raise PartitionUnavailable(
                f"members {apache} are Apache ZooKeeper, whose peer connections leave from 127.0.0.1, not "
                "from their own address: iptables cannot tell them apart (zkfast members only)")
        i = next(i for i, x in self.members.items() if x is m)
        self._partitions.isolate(self._endpoint(i), [self._endpoint(j) for j in self.ids if j != i])

    def _endpoint(self, server_id: int) -> Endpoint:
        return Endpoint(self.members[server_id].host, self.peer_ports[server_id])

    def heal(self) -> None:
        """End every partition."""
        self._partitions.release()

    def close(self) -> None:
        """Heal partitions, stop every member and remove temporary directories."""
        self.heal()
        for m in self:
            if m.paused:
                m.resume()
            m.stop()
        for m in self:
            m.close()
        self._finalizer()
