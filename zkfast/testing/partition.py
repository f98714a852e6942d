"""Network partitions between ensemble members on 127.0.0.x: iptables DROP rules in a chain of this
process's own, jumped to from INPUT, removed on heal, close or exit."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence

IPTABLES_TIMEOUT_S = 30.0
_chains = itertools.count(1)


class PartitionUnavailable(RuntimeError):
    """iptables cannot be used here (not installed, no CAP_NET_ADMIN, no netfilter)."""


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=check,
                          timeout=IPTABLES_TIMEOUT_S)


def iptables_unavailable() -> str | None:
    """Why partitions cannot be made here, or None."""
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install iptables)"
    try:
        probe = _iptables("-L", "INPUT", "-n", check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"iptables does not run: {e}"
    if probe.returncode != 0:
        return f"iptables does not work here (it needs root or CAP_NET_ADMIN): {probe.stderr.strip()}"
    return None


class Endpoint:
    """A member as the network sees it: its address and the ports its peers connect to."""

    def __init__(self, host: str, peer_ports: Sequence[int]) -> None:
        self.host = host
        self.ports = ",".join(str(p) for p in peer_ports)


class Partitions:
    """DROP rules for member-to-member traffic. A member's own outgoing peer connections must leave
    from its own address (zkfast binds them there), so that they can be told apart by address."""

    def __init__(self) -> None:
        self.chain = f"ZKT-{os.getpid()}-{next(_chains)}"  # iptables allows 28 characters
        self.active = False

    def isolate(self, member: Endpoint, others: Sequence[Endpoint]) -> None:
        """Drop every packet between `member` and `others` to or from their peer ports (both
        directions); client connections are not touched."""
        reason = iptables_unavailable()
        if reason is not None:
            raise PartitionUnavailable(reason)
        if not self.active:
            _iptables("-N", self.chain)
            _iptables("-I", "INPUT", "-j", self.chain)
            self.active = True
        for a, b in ((member, other) for other in others):
            for src, dst in ((a, b), (b, a)):
                # src connects to dst's listeners, and dst's listeners answer src
                _iptables("-A", self.chain, "-p", "tcp", "-s", src.host, "-d", dst.host,
                          "-m", "multiport", "--dports", dst.ports, "-j", "DROP")
                _iptables("-A", self.chain, "-p", "tcp", "-s", dst.host, "-d", src.host,
                          "-m", "multiport", "--sports", dst.ports, "-j", "DROP")

    def release(self) -> None:
        """Heal: remove the chain and the jump to it."""
        if not self.active:
            return
        self.active = False
        _iptables("-D", "INPUT", "-j", self.chain, check=False)
        _iptables("-F", self.chain, check=False)
        _iptables("-X", self.chain, check=False)
