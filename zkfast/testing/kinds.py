"""The command line that starts each kind of server: zkfast, or Apache ZooKeeper 3.8 on a JVM.

Both read the same zoo.cfg; Java system properties become `-Dkey=value` on either command line (zkfast's
`-D` option takes them as the JVM does).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

KINDS = ("zkfast", "apache")
DEBIAN_JAVA_DIR = Path("/usr/share/java")
# Debian's zookeeper package: the server, its wire format, netty, and slf4j's simple logger (to stdout)
DEBIAN_JARS = ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar",
               "netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-codec.jar",
               "netty-resolver.jar", "netty-transport.jar", "netty-transport-native-epoll.jar",
               "netty-transport-native-unix-common.jar")
APACHE_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# where kazoo's own harness (and CI set-ups made for it) say an Apache ZooKeeper release is
ZOOKEEPER_PATH_VARIABLE = "ZOOKEEPER_PATH"


class Launcher(Protocol):
    """What differs between kinds of server: the command that runs one on a zoo.cfg."""

    kind: str

    def command(self, cfg_path: Path, system_properties: Mapping[str, str]) -> list[str]: ...

    def unavailable(self) -> str | None:
        """Why this kind cannot run here, or None."""
        ...


def property_flags(system_properties: Mapping[str, str]) -> list[str]:
    return [f"-D{key}={value}" for key, value in system_properties.items()]


@dataclass(frozen=True)
class ZkfastLauncher:
    """`python -m zkfast -Dk=v start-foreground zoo.cfg`, as an operator runs it."""

    python: str | None = None  # an interpreter that imports zkfast; default: this one
    kind: str = "zkfast"

    def command(self, cfg_path: Path, system_properties: Mapping[str, str]) -> list[str]:
        return [self.python or sys.executable, "-m", "zkfast", *property_flags(system_properties),
                "start-foreground", str(cfg_path)]

    def unavailable(self) -> str | None:
        return None


@dataclass(frozen=True)
class ApacheLauncher:
    """Apache ZooKeeper's QuorumPeerMain on `java`, as zkServer.sh runs it (no extra JVM options).

    `zookeeper_path`: a release directory (its lib/*.jar and conf/ on the class path) or a directory
    of jars laid out as Debian's; default: `$ZOOKEEPER_PATH` (as kazoo's harness reads it) when set,
    else Debian's zookeeper package in /usr/share/java."""

    zookeeper_path: Path | None = None
    kind: str = "apache"

    def classpath(self) -> list[Path]:
        root = self.zookeeper_path or DEBIAN_JAVA_DIR
        if (root / "lib").is_dir():
            jars = sorted((root / "lib").glob("*.jar")) + sorted(root.glob("zookeeper-*.jar"))
            return [*jars, root / "conf"]
        return [root / jar for jar in DEBIAN_JARS if (root / jar).exists()]

    def unavailable(self) -> str | None:
        if shutil.which("java") is None:
            return "no `java` on PATH"
        root = self.zookeeper_path or DEBIAN_JAVA_DIR
        if not any(p.name.startswith("zookeeper") and p.suffix == ".jar" for p in self.classpath()):
            hint = "" if self.zookeeper_path else " (apt-get install zookeeper, or give zookeeper_path)"
            return f"no Apache ZooKeeper jar under {root}{hint}"
        return None

    def command(self, cfg_path: Path, system_properties: Mapping[str, str]) -> list[str]:
        classpath = ":".join(str(p) for p in self.classpath())
        return ["java", "-cp", classpath, *property_flags(system_properties), APACHE_MAIN_CLASS, str(cfg_path)]


def launcher_for(kind: str, *, python: str | None = None, zookeeper_path: Path | str | None = None) -> Launcher:
    if kind == "zkfast":
        return ZkfastLauncher(python=python)
    if kind == "apache":
        if zookeeper_path is None:
            zookeeper_path = os.environ.get(ZOOKEEPER_PATH_VARIABLE) or None
        return ApacheLauncher(zookeeper_path=Path(zookeeper_path) if zookeeper_path is not None else None)
    raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")


def apache_available(zookeeper_path: Path | str | None = None) -> bool:
    """Whether kind="apache" can start a server here (java and the jars are present)."""
    return launcher_for("apache", zookeeper_path=zookeeper_path).unavailable() is None
