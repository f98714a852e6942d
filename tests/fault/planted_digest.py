"""A zkfast server with a planted divergence, for tests/test_digest.py to show that txn digests catch
it. Test code only: the installed server has no such switch.

    python tests/fault/planted_digest.py --bug diverge-apply start-foreground zoo.cfg
    python tests/fault/planted_digest.py --bug wrong-digest start-foreground zoo.cfg

Both touch only txns on paths under PLANTED_PREFIX, so the rest of a run stays clean:
- diverge-apply: the server applies a setData with other data than the txn's (a replica whose tree
  drifts from the leader's), so the digest its leader put in the txn no longer matches its tree;
- wrong-digest: a leader proposes and logs such txns with a digest off by one, so every follower's
  tree differs from what the txn says.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zkfast._jute import OP_SET_DATA, Txn

import zkfast.quorum.driver
from zkfast.cli import main as zkfast_main
from zkfast.server.zkserver import ZooKeeperServer

LAUNCHER = Path(__file__).resolve()
PLANTED_PREFIX = b"/planted-digest"


def _planted(txn: Txn) -> bool:
    return txn.type == OP_SET_DATA and txn.path is not None and txn.path.startswith(PLANTED_PREFIX)


def plant_diverge_apply() -> None:
    apply = ZooKeeperServer.apply

    def diverging_apply(self: ZooKeeperServer, txn: Txn) -> None:
        if _planted(txn):
            txn.data = b"diverged:" + (txn.data or b"")
        apply(self, txn)

    ZooKeeperServer.apply = diverging_apply  # type: ignore[method-assign]


def plant_wrong_digest() -> None:
    append = zkfast.quorum.driver.QuorumCommit.append

    def wrong_append(self: zkfast.quorum.driver.QuorumCommit, txn: Txn) -> None:
        if _planted(txn) and txn.has_digest:
            txn.digest += 1
        append(self, txn)

    zkfast.quorum.driver.QuorumCommit.append = wrong_append  # type: ignore[method-assign]


PLANTS = {"diverge-apply": plant_diverge_apply, "wrong-digest": plant_wrong_digest}


def command(bug: str, *zkfast_args: str) -> list[str]:
    """The command line that runs `zkfast *zkfast_args` with `bug` planted."""
    return [sys.executable, str(LAUNCHER), "--bug", bug, *zkfast_args]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="planted_digest.py", usage="%(prog)s --bug NAME ZKFAST_ARGS...",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--bug", required=True, choices=sorted(PLANTS))
    args = ap.parse_args(argv[:2])  # --bug NAME first; the rest is zkfast's command line, untouched
    PLANTS[args.bug]()
    return zkfast_main(argv[2:])


if __name__ == "__main__":
    sys.exit(main())
