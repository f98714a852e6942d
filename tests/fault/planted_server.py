"""A zkfast server with a known durability bug planted in its txn log writer, for the fault tests to
show that their checkers catch it. Test code only: the installed server has no such switch.

    python tests/fault/planted_server.py --bug ack-before-write start-foreground zoo.cfg

Each bug is a subclass of zkfast's LogWriter overriding its seams (`_write`, `_sync`, `_acknowledge`);
the launcher puts it where the storage layer builds its writer, then runs zkfast's own command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zkfast.storage.durable
from zkfast.cli import main as zkfast_main
from zkfast.storage.txnlog import Batch, LogWriter

LAUNCHER = Path(__file__).resolve()
# how long ack-before-write lets acknowledged txns sit unwritten: widens the window a kill -9 must hit
ACK_BEFORE_WRITE_DELAY_S = 0.02


class AckBeforeWrite(LogWriter):
    """Acknowledges a batch before it is even written: kill -9 then loses acknowledged writes."""

    def _write(self, batches: list[Batch], roll: bool) -> None:
        LogWriter._acknowledge(self, batches)
        time.sleep(ACK_BEFORE_WRITE_DELAY_S)
        super()._write(batches, roll)

    def _acknowledge(self, batches: list[Batch]) -> None:
        pass  # done already, before the write


class AckBeforeFsync(LogWriter):
    """Acknowledges a batch once written, before fdatasync: a machine crash then loses acknowledged writes."""

    _writing: list[Batch]

    def _write(self, batches: list[Batch], roll: bool) -> None:
        self._writing = batches  # _sync only sees bytes: it acknowledges these
        super()._write(batches, roll)

    def _sync(self, fd: int, length: int) -> None:
        LogWriter._acknowledge(self, self._writing)
        super()._sync(fd, length)

    def _acknowledge(self, batches: list[Batch]) -> None:
        pass  # done already, before the sync


class NoFsync(LogWriter):
    """Never fdatasyncs the log, whatever forceSync says."""

    def _sync(self, fd: int, length: int) -> None:
        pass


PLANTED_WRITERS: dict[str, type[LogWriter]] = {
    "ack-before-write": AckBeforeWrite,
    "ack-before-fsync": AckBeforeFsync,
    "no-fsync": NoFsync,
}


def command(bug: str, *zkfast_args: str) -> list[str]:
    """The command line that runs `zkfast *zkfast_args` with `bug` planted."""
    return [sys.executable, str(LAUNCHER), "--bug", bug, *zkfast_args]


def plant(bug: str) -> None:
    """From now on this process's durable stores write their log with the bug."""
    zkfast.storage.durable.LogWriter = PLANTED_WRITERS[bug]  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="planted_server.py", usage="%(prog)s --bug NAME ZKFAST_ARGS...",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--bug", required=True, choices=sorted(PLANTED_WRITERS))
    # --bug NAME comes first; the rest is zkfast's command line, handed over untouched
    args = ap.parse_args(argv[:2])
    plant(args.bug)
    return zkfast_main(argv[2:])


if __name__ == "__main__":
    sys.exit(main())
