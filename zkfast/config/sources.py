"""Where a config comes from: a zoo.cfg file, text already read, or the embedded default (Apache's
zoo_sample.cfg on loopback, data in the user's data directory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from zkfast.config.loader import Loader
from zkfast.config.model import EMBEDDED_SOURCE, ServerConfig
from zkfast.config.properties import (
    PropertiesSyntaxError,
    decode_properties_bytes,
    escape_property,
    parse_properties,
)
from zkfast.config.setting import ConfigError


def load_config(path: Path | str | None, extra_properties: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read zoo.cfg (and myid, and a dynamic config file) into a ServerConfig; None = the embedded default.

    `extra_properties` are -D options of the command line (full property names); `environ` defaults to
    os.environ and supplies SERVER_JVMFLAGS / JVMFLAGS / ZOO_* as zkServer.sh would pass them.
    """
    if path is None:
        return default_config(extra_properties, environ)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(str(path), 0, "config file", f"cannot be read: {e.strerror}") from None
    return load_config_text(decode_properties_bytes(data, str(path)), str(path), extra_properties, environ)


def load_config_text(text: str, source: str, extra_properties: Mapping[str, str] | None = None,
                     environ: Mapping[str, str] | None = None) -> ServerConfig:
    """load_config() of text already read; `source` names it in error messages."""
    try:
        entries = parse_properties(text)
    except PropertiesSyntaxError as e:
        raise ConfigError(source, e.line, e.key, e.problem) from None
    env = os.environ if environ is None else environ
    return Loader(source, entries, dict(extra_properties or {}), env).load()


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_DATA_HOME/zkfast, or ~/.local/share/zkfast (XDG ignores a relative XDG_DATA_HOME)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "zkfast"


def default_config_text(environ: Mapping[str, str] | None = None) -> str:
    """Apache's conf/zoo_sample.cfg values, listening on loopback only, with data in the user's data dir."""
    data_dir = escape_property(str(default_data_dir(environ)), is_key=False)
    return ("tickTime=2000\ninitLimit=10\nsyncLimit=5\n"
            f"dataDir={data_dir}\nclientPort=2181\nclientPortAddress=127.0.0.1\n"
            # Loopback only, like the client port: a default must not open an HTTP port to the network.
            "admin.serverAddress=127.0.0.1\n")


def default_config(extra_properties: Mapping[str, str] | None = None,
                   environ: Mapping[str, str] | None = None) -> ServerConfig:
    return load_config_text(default_config_text(environ), EMBEDDED_SOURCE, extra_properties, environ)
