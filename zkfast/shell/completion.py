"""Line editing for the interactive shell: readline history kept in a file, and tab completion of command
names (first word) and of znode paths (any word starting with `/`: the server is asked for the children of
the path typed so far, as zkCli.sh's JLine completer does)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zkfast.shell.session import ZkSession

HISTORY_LENGTH = 1000
COMPLETION_TIMEOUT_MS = 3000


def history_path() -> Path:
    """`$XDG_STATE_HOME/zkfast/shell_history` when XDG_STATE_HOME is set, else `~/.zkfast_history`."""
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "zkfast" / "shell_history"
    return Path.home() / ".zkfast_history"


class Completer:
    def __init__(self, readline: Any, commands: list[str], session: Callable[[], ZkSession | None]) -> None:
        self.readline = readline
        self.commands = commands
        self.session = session
        self.matches: list[str] = []

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            try:
                self.matches = self.candidates(self.readline.get_line_buffer()[:self.readline.get_begidx()], text)
            except Exception:
                self.matches = []
        return self.matches[state] if state < len(self.matches) else None

    def candidates(self, before: str, token: str) -> list[str]:
        """Completions of `token`, the word under the cursor; `before` is the line up to it."""
        if token.startswith("/"):
            return self.complete_path(token)
        if before.strip():
            return []
        names = [c for c in self.commands if c.startswith(token)]
        return [names[0] + " "] if len(names) == 1 else names

    def complete_path(self, token: str) -> list[str]:
        zk = self.session()
        if zk is None or not zk.alive:
            return []
        idx = token.rfind("/") + 1
        prefix = token[idx:]
        parent = "/" if idx == 1 else token[:idx - 1]
        try:
            children, _ = zk.get_children(parent, False, False, timeout_ms=COMPLETION_TIMEOUT_MS)
        except Exception:
            return []
        return sorted(token[:idx] + child for child in children if child.startswith(prefix))


def _show_matches(matches: Sequence[str], redraw: Callable[[str], None]) -> None:
    """List the candidates by their last name (as JLine lists children), then the prompt and line again."""
    names = [m.rstrip(" ").rsplit("/", 1)[-1] if m.startswith("/") else m.rstrip(" ") for m in matches]
    redraw("\n" + "  ".join(names) + "\n")


def setup_readline(commands: list[str], session: Callable[[], ZkSession | None],
                   redraw: Callable[[str], None] | None = None) -> Any | None:
    """Import readline, load the history file, bind tab; None when readline is unavailable.  `redraw(text)`
    prints `text`, then the prompt and the line being typed."""
    try:
        import readline
    except ImportError:
        return None
    completer = Completer(readline, commands, session)
    readline.set_completer(completer.complete)
    if redraw is not None:
        readline.set_completion_display_matches_hook(
            lambda substitution, matches, longest: _show_matches(matches, redraw))
    readline.set_completer_delims(" \t\n")
    if "libedit" in (getattr(readline, "__doc__", "") or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    path = history_path()
    try:
        if path.exists():
            readline.read_history_file(str(path))
    except OSError:
        pass
    return readline


def remember(readline: Any, line: str) -> None:
    """Append the line just read to the history file (readline already has it in memory)."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        readline.append_history_file(1, str(path))
        readline.set_history_length(HISTORY_LENGTH)
    except (OSError, AttributeError):
        pass
