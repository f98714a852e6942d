"""The suite's server processes, started through zkfast.testing, under the names the tests use.

zkfast.testing's ZkServer does the work (free ports, zoo.cfg, start-up until `srvr` shows a `Mode:`,
stop, kill, reaping); these classes keep the suite's conventions on top: tickTime 2000 and TTL nodes
unless a test says otherwise, JVM flags as `-Dkey=value` strings, an environment given as additions to
this process's, and the short names (`cfg`, `proc`, `kill9`, `cleanup`, `address`) the tests use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zkfast.testing import ZkServer, four_letter, free_port
from zkfast.testing.kinds import DEBIAN_JARS, DEBIAN_JAVA_DIR, ApacheLauncher, apache_available
from zkfast.testing.server import START_TIMEOUT_S, STOP_TIMEOUT_S

__all__ = ["APACHE_JARS", "JAVA_DIR", "START_TIMEOUT_S", "STOP_TIMEOUT_S", "ApacheZkProcess", "ServerProcess",
           "ZkfastProcess", "apache_available", "apache_classpath", "four_letter", "free_port"]

APACHE_JARS = DEBIAN_JARS
JAVA_DIR = DEBIAN_JAVA_DIR
SUITE_TICK_TIME_MS = 2000


def apache_classpath() -> str:
    return ":".join(str(p) for p in ApacheLauncher().classpath())


def system_properties(jvm_flags: Sequence[str]) -> dict[str, str]:
    """{key: value} of `-Dkey=value` flags (the only JVM flags the suite passes)."""
    props = {}
    for flag in jvm_flags:
        if not flag.startswith("-D"):
            raise ValueError(f"{flag}: only -Dkey=value JVM flags are supported")
        key, _, value = flag[2:].partition("=")
        props[key] = value
    return props


class ServerProcess(ZkServer):
    """One standalone server process (a member, with `server_id`), its own temporary workdir unless
    given one."""

    kind = "abstract"

    def __init__(self, cfg: Mapping[str, str] | None = None, host: str = "127.0.0.1", port: int | None = None,
                 workdir: Path | None = None, env: Mapping[str, str] | None = None,
                 jvm_flags: tuple[str, ...] = (), **options: Any) -> None:
        """env: variables added to this process's environment. options: ZkServer's (server_id, ...)."""
        options.setdefault("tick_time_ms", SUITE_TICK_TIME_MS)
        super().__init__(port, kind=type(self).kind, host=host, workdir=workdir,
                         config={"extendedTypesEnabled": "true", **(cfg or {})},
                         jvm_flags=system_properties(jvm_flags), env={**os.environ, **(env or {})}, **options)
        self.jvm_flags = tuple(jvm_flags)

    @property
    def cfg(self) -> dict[str, str]:
        return self.config

    @property
    def proc(self) -> Any:
        return self.process

    @proc.setter
    def proc(self, proc: Any) -> None:
        self.process = proc

    @property
    def address(self) -> str:
        return self.connect_string

    def write_cfg(self) -> None:
        self.write_config()

    def launch(self) -> None:
        """Start the process without waiting for it to serve (an ensemble member needs its peers)."""
        self.start(wait=False)

    def kill9(self) -> None:
        self.kill()

    def cleanup(self) -> None:
        """Kill it and remove its temporary workdir."""
        self.kill()
        self.close()


class ZkfastProcess(ServerProcess):
    """`python -m zkfast start-foreground zoo.cfg`, the way an operator runs it."""

    kind = "zkfast"


class ApacheZkProcess(ServerProcess):
    """Debian's Apache ZooKeeper 3.8.0, started as zkServer.sh starts it."""

    kind = "apache"
