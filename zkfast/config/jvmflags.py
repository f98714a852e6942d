"""System properties from the environment, as zkServer.sh hands them to the JVM: `$ZOO_*` variables
and the `-D` tokens of `$SERVER_JVMFLAGS` and `$JVMFLAGS`."""

from __future__ import annotations

from collections.abc import Mapping


def jvm_flag_properties(flags: str) -> list[tuple[str, str]]:
    """`-Dkey=value` and `-Dkey` tokens of a JVMFLAGS-style string, split on whitespace as an unquoted
    shell expansion is (no quote removal)."""
    found = []
    for token in flags.split():
        if token.startswith("-D") and len(token) > 2:
            key, _, value = token[2:].partition("=")
            found.append((key, value))
    return found


def environment_properties(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(property, value, source) that zkServer.sh would pass to the JVM, in command-line order."""
    found: list[tuple[str, str, str]] = []
    if environ.get("ZOO_DATADIR_AUTOCREATE_DISABLE"):
        found.append(("zookeeper.datadir.autocreate", "false", "$ZOO_DATADIR_AUTOCREATE_DISABLE"))
    if environ.get("ZOO_LOG_DIR"):
        found.append(("zookeeper.log.dir", environ["ZOO_LOG_DIR"], "$ZOO_LOG_DIR"))
    if environ.get("ZOO_LOG_FILE"):
        found.append(("zookeeper.log.file", environ["ZOO_LOG_FILE"], "$ZOO_LOG_FILE"))
    # zkServer.sh: JVMFLAGS="$SERVER_JVMFLAGS $JVMFLAGS", so JVMFLAGS comes last and wins.
    for var in ("SERVER_JVMFLAGS", "JVMFLAGS"):
        found.extend((k, v, f"${var}") for k, v in jvm_flag_properties(environ.get(var, "")))
    return found
