"""stdout/stderr as zkCli.sh writes them: every line flushed at once (Java's PrintStreams auto-flush), one
lock so the watch-event thread and the command thread never tear each other's lines, and a hook that
redraws the prompt when an event is printed while the user is typing."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TextIO


def _silence(stream: TextIO) -> None:
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class Console:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        self._err = err if err is not None else sys.stderr
        self.lock = threading.RLock()
        # set by the interactive loop while readline waits for a line: redraws prompt and typed text
        self.redraw: Callable[[], None] | None = None

    def _write(self, stream: TextIO, text: str) -> None:
        with self.lock:
            try:
                buffer = getattr(stream, "buffer", None)
                if buffer is not None:
                    stream.flush()
                    buffer.write(text.encode("utf-8", "replace"))
                    buffer.flush()
                else:
                    stream.write(text)
                    stream.flush()
            except OSError:
                # Java's PrintStream swallows write errors (a closed pipe) and the shell goes on; point the
                # descriptor at /dev/null so that the interpreter's own final flush stays quiet too
                _silence(stream)

    def out(self, line: str = "") -> None:
        """System.out.println."""
        self._write(self._out, line + "\n")

    def err(self, line: str = "") -> None:
        """System.err.println."""
        self._write(self._err, line + "\n")

    def write_out(self, text: str) -> None:
        """System.out.print (no newline)."""
        self._write(self._out, text)

    def event(self, text: str) -> None:
        """ZooKeeperMain.printMessage: a newline, the message, a newline; one write, as the JVM does it."""
        with self.lock:
            redraw = self.redraw
            self._write(self._out, "\n" + text + "\n")
            if redraw is not None and text.startswith("WatchedEvent"):
                redraw()
