"""`zkfast shell`: ZooKeeperMain (zkCli.sh) of Apache ZooKeeper 3.8.0.

    zkfast shell [-server host:port[,host:port][/chroot]] [-timeout ms] [-r] [-waitforconnection]
                 [-client-configuration file] [cmd args...]

With a command it runs just that command (one-shot) and exits with its exit code (0, 1 for an error, 127
for an unknown command).  Without one it reads commands from stdin: on a terminal with line editing, the
prompt `[zk: host:port(CONNECTED) n] `, history (saved to ~/.zkfast_history or
$XDG_STATE_HOME/zkfast/shell_history) and tab completion of commands and znode paths; from a pipe without
prompt, as zkCli.sh without JLine does.  What it prints is what zkCli.sh 3.8 prints, on the same stream.

Deliberate differences from zkCli.sh (the Java shell would crash or surprise):
* an uncaught Java exception (`set -v x /a b`, `redo x`, an unparsable `-timeout`) prints its first line;
  at a terminal the shell goes on, elsewhere it exits with 1 as the JVM does;
* `addWatch` without `-m` always means PERSISTENT_RECURSIVE (zkCli.sh reuses the last `-m`);
* a line without any word (a lone quote) does nothing (zkCli.sh runs the previous command again);
* Ctrl-C at the prompt discards the line instead of killing the shell;
* `ls2` and `rmr`, dropped in 3.5, still work (as `ls -s` and `deleteall`).
"""

from __future__ import annotations

import re
import sys

from zkfast.shell.commands import ALIASES, CLI_COMMANDS, COMMAND_MAP, JavaCrash, all_command_names
from zkfast.shell.completion import remember, setup_readline
from zkfast.shell.console import Console
from zkfast.shell.javacompat import CliError, IllegalArgument, NumberFormatError, decode_int, parse_int
from zkfast.shell.session import ZkSession

EXIT_OK = 0
EXIT_INVALID_INVOCATION = 2
DEFAULT_SERVER = "localhost:2181"
DEFAULT_TIMEOUT_MS = "30000"
FIRST_PROMPT_WAIT_S = 2.0

# MyCommandOptions.ARGS_PATTERN / QUOTED_PATTERN (Java's \s is ASCII whitespace)
_ARGS_PATTERN = re.compile(r"[ \t\n\x0b\f\r]*([^\"'][^ \t\n\x0b\f\r]*|\"[^\"]*\"|'[^']*')[ \t\n\x0b\f\r]*")
_QUOTED_PATTERN = re.compile("([\'\"])([^\n\r\u0085\u2028\u2029]*)(\\1)")


def parse_command(line: str) -> list[str] | None:
    """MyCommandOptions.parseCommand: the words of a command line, quotes stripped; None if there are none."""
    args = []
    for m in _ARGS_PATTERN.finditer(line):
        value = m.group(1)
        if _QUOTED_PATTERN.fullmatch(value):
            value = value[1:-1]
        args.append(value)
    return args or None


class _Quit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Shell:
    def __init__(self, argv: list[str], console: Console | None = None, interactive: bool | None = None) -> None:
        self.console = console or Console()
        self.options: dict[str, str] = {"server": DEFAULT_SERVER, "timeout": DEFAULT_TIMEOUT_MS}
        self.command_args: list[str] | None = None
        self.history: dict[int, str] = {}
        self.command_count = 0
        self.print_watches = True
        self.exit_code = EXIT_OK
        self.zk: ZkSession | None = None
        self.host = ""
        self.interactive = interactive
        self._parse_options(argv)

    # ------------------------------------------------------------------------------------------ options
    def _parse_options(self, argv: list[str]) -> None:
        """MyCommandOptions.parseOptions: flags, then an optional command; unknown flags are ignored."""
        it = iter(argv)
        for opt in it:
            try:
                if opt == "-server":
                    self.options["server"] = next(it)
                elif opt == "-timeout":
                    self.options["timeout"] = next(it)
                elif opt == "-r":
                    self.options["readonly"] = "true"
                elif opt == "-client-configuration":
                    self.options["client-configuration"] = next(it)
                elif opt == "-waitforconnection":
                    self.options["waitforconnection"] = "true"
            except StopIteration:
                self.console.err(f"Error: no argument found for option {opt}")
                return
            if not opt.startswith("-"):
                self.command_args = [opt, *it]
                return

    def _timeout_ms(self) -> int:
        try:
            return parse_int(self.options["timeout"])
        except NumberFormatError as e:
            raise JavaCrash(f"java.lang.NumberFormatException: {e}") from None

    # ------------------------------------------------------------------------------------------ connecting
    def _print_event(self, text: str) -> None:
        if not self.print_watches:
            return
        with self.console.lock:
            self.console.event("WATCHER::")
            self.console.event(text)

    def connect_to_zk(self, new_host: str) -> None:
        """ZooKeeperMain.connectToZK."""
        if self.zk is not None and self.zk.alive:
            self.zk.close()
        self.host = new_host
        timeout = self._timeout_ms()
        try:
            zk = ZkSession(new_host, timeout, "readonly" in self.options, self._print_event)
        except (IllegalArgument, ValueError) as e:
            raise JavaCrash(f"java.lang.IllegalArgumentException: {e}") from None
        self.zk = zk
        zk.start()
        if "waitforconnection" in self.options and not zk.wait_connected(timeout / 1000.0):
            zk.close()
            raise JavaCrash("java.io.IOException: org.apache.zookeeper.KeeperException$ConnectionLossException: "
                            "KeeperErrorCode = ConnectionLoss")

    # ------------------------------------------------------------------------------------------ running
    def usage(self) -> None:
        self.console.err("ZooKeeper -server host:port -client-configuration properties-file cmd args")
        for cmd in sorted(COMMAND_MAP):
            self.console.err(f"\t{cmd} {COMMAND_MAP[cmd]}")

    def prompt(self) -> str:
        state = self.zk.state_name() if self.zk is not None else "CLOSED"
        return f"[zk: {self.host}({state}) {self.command_count}] "

    def _is_interactive(self) -> bool:
        if self.interactive is not None:
            return self.interactive
        try:
            return sys.stdin.isatty() and sys.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def run(self) -> int:
        interactive = self._is_interactive()
        try:
            try:
                self._check_client_configuration()
                self.console.out(f"Connecting to {self.options['server']}")
                self.connect_to_zk(self.options["server"])
                if self.command_args is None:
                    self.console.out("Welcome to ZooKeeper!")
                    if interactive:
                        self._interactive_loop()
                    else:
                        self.console.out("JLine support is disabled")
                        self._pipe_loop()
                else:
                    self.process_cmd(self.command_args)
            except JavaCrash as e:
                self.console.err(f'Exception in thread "main" {e.text}')
                self.exit_code = 1
        except _Quit as q:
            return q.code
        if self.zk is not None:
            self.zk.abandon()  # as System.exit: the session is left to expire
        return self.exit_code

    def _check_client_configuration(self) -> None:
        name = self.options.get("client-configuration")
        if name is None:
            return
        try:
            with open(name, "rb"):
                pass
        except OSError:
            self.console.err("org.apache.zookeeper.server.quorum.QuorumPeerConfig$ConfigException: "
                             f"File {name} not found")
            raise _Quit(EXIT_INVALID_INVOCATION) from None

    def _pipe_loop(self) -> None:
        stdin = sys.stdin
        reconfigure = getattr(stdin, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
        while True:
            line = stdin.readline()
            if not line:
                return
            self.execute_line(line[:-1] if line.endswith("\n") else line)

    def _interactive_loop(self) -> None:
        current_prompt = ""

        def redraw(before: str = "") -> None:
            buffer = readline.get_line_buffer() if readline is not None else ""
            self.console.write_out(before + current_prompt + buffer)

        readline = setup_readline(all_command_names(), lambda: self.zk, redraw)
        self.console.out(f"JLine support is {'enabled' if readline is not None else 'disabled'}")
        if self.zk is not None:  # give the first prompt a chance to say CONNECTED
            self.zk.wait_connected(FIRST_PROMPT_WAIT_S)

        while True:
            current_prompt = self.prompt()
            self.console.redraw = redraw
            try:
                line = input(current_prompt)
            except EOFError:
                self.console.out()
                return
            except KeyboardInterrupt:
                self.console.out()
                continue
            finally:
                self.console.redraw = None
            if readline is not None and line.strip():
                remember(readline, line)
            try:
                self.execute_line(line)
            except JavaCrash as e:
                self.console.err(e.text)
                self.exit_code = 1
            except KeyboardInterrupt:
                self.console.out()

    def execute_line(self, line: str) -> None:
        """ZooKeeperMain.executeLine."""
        if line == "":
            return
        args = parse_command(line)
        self.history[self.command_count] = line
        try:
            if args is not None:  # no words at all (a lone quote): zkCli.sh would re-run the last command
                self.process_cmd(args)
        finally:
            self.command_count += 1

    def process_cmd(self, args: list[str]) -> bool:
        watch = False
        try:
            watch = self.process_zk_cmd(args)
            self.exit_code = EXIT_OK
        except CliError as e:
            self.exit_code = e.exit_code
            self.console.err(e.message)
        return watch

    def process_zk_cmd(self, args: list[str]) -> bool:
        """ZooKeeperMain.processZKCmd."""
        if not args:
            self.usage()
            raise CliError("No command entered")
        cmd = args[0]
        if cmd not in COMMAND_MAP and cmd not in ALIASES:
            self.usage()
            raise CliError(f"Command not found: Command not found {cmd}", 127)
        if cmd == "quit":
            if self.zk is not None:
                self.zk.close()
            raise _Quit(self.exit_code)
        if cmd == "redo" and len(args) >= 2:
            try:
                i = decode_int(args[1])
            except NumberFormatError as e:
                raise JavaCrash(f"java.lang.NumberFormatException: {e}") from None
            if self.command_count <= i or i < 0:
                raise CliError("Command index out of range")
            line = self.history.get(i, "")
            redo_args = parse_command(line) or args
            if redo_args[0] == "redo":
                raise CliError("No redoing redos")
            self.history[self.command_count] = line
            self.process_cmd(redo_args)
        elif cmd == "history":
            for i in range(max(self.command_count - 10, 0), self.command_count + 1):
                self.console.out(f"{i} - {self.history.get(i, 'null')}")
        elif cmd == "printwatches":
            if len(args) == 1:
                self.console.out(f"printwatches is {'on' if self.print_watches else 'off'}")
            else:
                self.print_watches = args[1] == "on"
        elif cmd == "connect":
            self.connect_to_zk(args[1] if len(args) >= 2 else self.host)

        if self.zk is None or not self.zk.alive:
            self.console.out("Not connected")
            return False
        cls = CLI_COMMANDS.get(cmd) or ALIASES.get(cmd)
        if cls is None:
            return False
        return cls(self.console, self.zk).parse(list(args)).exec()


def main(argv: list[str] | None = None) -> int:
    """`zkfast shell [-server host:port] [-timeout ms] [-r] [cmd args]`: the exit code."""
    shell = Shell(list(sys.argv[1:] if argv is None else argv))
    try:
        return shell.run()
    except KeyboardInterrupt:
        return 130
