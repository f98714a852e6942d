"""Apache ZooKeeper's own record of the ensemble's membership, kept beside zkfast's: after every
membership change this server activates, `zoo.cfg.dynamic.<hex version>` holds the servers and
zoo.cfg points at it (`dynamicConfigFile=`), as Apache's QuorumPeer.setQuorumVerifier does through
QuorumPeerConfig.writeDynamicConfig and editStaticConfig. Apache started on this config and dataDir
(the way back from a migration) then runs the membership zkfast ran, not the one zoo.cfg first
listed. zkfast itself starts from dataDir/membership (zkfast/storage/quorumdisk.py) and reads these
files as any zoo.cfg with a dynamic config file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from zkfast.config.properties import java_trim, parse_properties
from zkfast.quorum.membership import Membership
from zkfast.storage.quorumdisk import write_atomically

log = logging.getLogger(__name__)

# what editStaticConfig leaves out of zoo.cfg: the membership lives in the dynamic file
MEMBERSHIP_KEY_PREFIXES = ("server.", "group", "weight", "dynamicConfigFile", "peerType")
CLIENT_KEY_PREFIX = "clientPort"  # clientPort and clientPortAddress, when the server line has them


def dynamic_config_path(config_file: Path, version: int) -> Path:
    """QuorumPeer.makeDynamicConfigFilename."""
    return config_file.with_name(f"{config_file.name}.dynamic.{version:x}")


def dynamic_config_text(m: Membership) -> bytes:
    """writeDynamicConfig: toString's `key=value` lines (servers, then any groups and weights) sorted
    as strings (server.10 before server.2), no version line (the file name carries it), no newline
    after the last."""
    return "\n".join(sorted(m.lines())).encode()


def static_config_text(text: str, dynamic_file: Path, erase_client_address: bool) -> str:
    """editStaticConfig: zoo.cfg's settings without the membership (and without the client address
    when this server's line carries it), then the pointer to the dynamic file. Keys keep their file
    order, each once with its last value (Apache writes java.util.Properties' hash order)."""
    kept: dict[str, str] = {}
    for entry in parse_properties(text):
        key = java_trim(entry.key)
        if key.startswith(MEMBERSHIP_KEY_PREFIXES) or (erase_client_address and key.startswith(CLIENT_KEY_PREFIX)):
            continue
        kept.pop(key, None)
        kept[key] = java_trim(entry.value)
    lines = [f"{key}={value}\n" for key, value in kept.items()]
    lines.append(f"dynamicConfigFile={dynamic_file}\n")
    return "".join(lines)


def write_config_files(config_file: Path, m: Membership, my_id: int) -> Path:
    """Write m's dynamic config file, then point zoo.cfg at it; each replaced atomically, so a
    crash leaves zoo.cfg naming a complete file (the old one or the new)."""
    dynamic = dynamic_config_path(config_file, m.version)
    write_atomically(dynamic.parent, dynamic.name, dynamic_config_text(m))
    me = m.servers.get(my_id)
    # QuorumPeer.needEraseClientInfoFromStaticConfig: the address now comes from the server line
    erase = me is not None and me.client_port is not None
    text = static_config_text(config_file.read_bytes().decode("latin-1"), dynamic.resolve(), erase)
    write_atomically(config_file.parent, config_file.name, text.encode("latin-1"))
    return dynamic


def back_up_static_config(config_file: Path) -> None:
    """QuorumPeerConfig.backupOldConfig: a distributed server with reconfig on, whose zoo.cfg lists
    the servers itself, keeps the file as it was in zoo.cfg.bak before any reconfig rewrites it."""
    backup = config_file.with_name(config_file.name + ".bak")
    write_atomically(backup.parent, backup.name, config_file.read_bytes())
