"""The version zkfast reports: the Apache ZooKeeper release it answers as, then its own."""

from __future__ import annotations

import datetime
import os

ZK_COMPAT_VERSION = "3.8.0"
ZKFAST_VERSION = "0.1.0"
FULL_VERSION = f"{ZK_COMPAT_VERSION}-zkfast-{ZKFAST_VERSION}"


def built_on() -> str:
    """The install time of the package, formatted as Apache ZooKeeper formats its build date."""
    mtime = os.path.getmtime(__file__)
    stamp = datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def version_line() -> str:
    """`3.8.0-zkfast-0.1.0, built on 2026-11-25 16:00 UTC`: clients parse the leading digits."""
    return f"{FULL_VERSION}, built on {built_on()}"
