"""Apache Commons CLI 1.5.0's `DefaultParser`, for the short options zkCli.sh's commands declare.

zkCli.sh prints the parser's exceptions verbatim (`org.apache.commons.cli.UnrecognizedOptionException:
Unrecognized option: -x`), accepts options anywhere on the line, bundles (`ls -sw /`), glued values
(`set -v5 /a b`), `-v=5`, `--` and negative numbers as option values; all of that is kept here.  Long options
are not needed (no zkCli.sh command declares one), so tokens starting with `--` are unrecognised, as they are
for those commands in Java.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zkfast.shell.javacompat import is_java_double


class ParseError(Exception):
    """org.apache.commons.cli.ParseException; `str()` is the Throwable.toString zkCli.sh prints."""

    java_class = "org.apache.commons.cli.ParseException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.java_class}: {self.message}"


class UnrecognizedOptionError(ParseError):
    java_class = "org.apache.commons.cli.UnrecognizedOptionException"


class MissingArgumentError(ParseError):
    java_class = "org.apache.commons.cli.MissingArgumentException"


class MissingOptionError(ParseError):
    java_class = "org.apache.commons.cli.MissingOptionException"


class AlreadySelectedError(ParseError):
    java_class = "org.apache.commons.cli.AlreadySelectedException"


@dataclass(frozen=True)
class Option:
    """A short option: `-k` or, with `has_arg`, `-k value`."""

    key: str
    has_arg: bool = False
    description: str | None = None
    required: bool = False


@dataclass
class OptionGroup:
    """Mutually exclusive options; `required` makes one of them mandatory."""

    options: list[Option]
    required: bool = False

    def __str__(self) -> str:
        parts = []
        for opt in self.options:
            text = "-" + opt.key
            if opt.description is not None:
                text += " " + opt.description
            parts.append(text)
        return "[" + ", ".join(parts) + "]"


class Options:
    """A set of options and option groups (org.apache.commons.cli.Options)."""

    def __init__(self, *options: Option, groups: tuple[OptionGroup, ...] = ()) -> None:
        self.short: dict[str, Option] = {}
        self.groups = list(groups)
        self.group_of: dict[str, OptionGroup] = {}
        for opt in options:
            self.short[opt.key] = opt
        for group in groups:
            for opt in group.options:
                self.short[opt.key] = opt
                self.group_of[opt.key] = group

    @staticmethod
    def _strip(name: str) -> str:
        if name.startswith("--"):
            return name[2:]
        if name.startswith("-"):
            return name[1:]
        return name

    def has_short(self, name: str) -> bool:
        return self._strip(name) in self.short

    def get(self, name: str) -> Option | None:
        return self.short.get(self._strip(name))


@dataclass
class _Occurrence:
    option: Option
    values: list[str] = field(default_factory=list)

    def accepts_arg(self) -> bool:
        return self.option.has_arg and len(self.values) < 1

    def requires_arg(self) -> bool:
        return self.accepts_arg()


@dataclass
class CommandLine:
    """What was parsed: the non-option arguments (the command name first) and the options seen."""

    args: list[str] = field(default_factory=list)
    occurrences: list[_Occurrence] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return any(o.option.key == key for o in self.occurrences)

    def value(self, key: str) -> str | None:
        values = [v for o in self.occurrences if o.option.key == key for v in o.values]
        return values[0] if values else None


def _strip_quotes(token: str) -> str:
    """Util.stripLeadingAndTrailingQuotes."""
    if len(token) > 1 and token.startswith('"') and token.endswith('"') and '"' not in token[1:-1]:
        return token[1:-1]
    return token


class DefaultParser:
    """org.apache.commons.cli.DefaultParser (stopAtNonOption=false, no properties)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.cmd = CommandLine()
        self.current: _Occurrence | None = None
        self.skip = False
        self.expected: list[Option | OptionGroup] = []
        self.selected: dict[int, str] = {}

    def parse(self, arguments: list[str]) -> CommandLine:
        self.cmd = CommandLine()
        self.current = None
        self.skip = False
        self.selected = {}
        self.expected = [o for o in self.options.short.values()
                         if o.required and o.key not in self.options.group_of]
        self.expected += [g for g in self.options.groups if g.required]
        for token in arguments:
            self._token(token)
        self._check_required_args()
        if self.expected:
            names = ", ".join(str(e) if isinstance(e, OptionGroup) else e.key for e in self.expected)
            plural = "" if len(self.expected) == 1 else "s"
            raise MissingOptionError(f"Missing required option{plural}: {names}")
        return self.cmd

    # -- DefaultParser internals
    def _check_required_args(self) -> None:
        if self.current is not None and self.current.requires_arg():
            raise MissingArgumentError(f"Missing argument for option: {self.current.option.key}")

    def _is_short_option(self, token: str) -> bool:
        if not token.startswith("-") or len(token) == 1:
            return False
        pos = token.find("=")
        name = token[1:] if pos == -1 else token[1:pos]
        if self.options.has_short(name):
            return True
        return bool(name) and self.options.has_short(name[0])

    def _is_argument(self, token: str) -> bool:
        # no long options are declared, so isLongOption is always false
        return not self._is_short_option(token) or is_java_double(token)

    def _token(self, token: str) -> None:
        if self.skip:
            self.cmd.args.append(token)
        elif token == "--":
            self.skip = True
        elif self.current is not None and self.current.accepts_arg() and self._is_argument(token):
            self.current.values.append(_strip_quotes(token))
        elif token.startswith("--"):
            self._unknown(token)
        elif token.startswith("-") and token != "-":
            self._short_and_long(token)
        else:
            self._unknown(token)
        if self.current is not None and not self.current.accepts_arg():
            self.current = None

    def _unknown(self, token: str) -> None:
        if token.startswith("-") and len(token) > 1:
            raise UnrecognizedOptionError(f"Unrecognized option: {token}")
        self.cmd.args.append(token)

    def _handle(self, option: Option) -> None:
        self._check_required_args()
        occurrence = _Occurrence(option)
        if option in self.expected:
            self.expected.remove(option)
        group = self.options.group_of.get(option.key)
        if group is not None:
            if group in self.expected:
                self.expected.remove(group)
            prev = self.selected.get(id(group))
            if prev is not None and prev != option.key:
                raise AlreadySelectedError(
                    f"The option '{option.key}' was specified but an option from this group has already "
                    f"been selected: '{prev}'")
            self.selected[id(group)] = option.key
        self.cmd.occurrences.append(occurrence)
        self.current = occurrence if option.has_arg else None

    def _short_and_long(self, token: str) -> None:
        t = token[1:]
        pos = t.find("=")
        if len(t) == 1:
            option = self.options.get(t)
            if option is not None:
                self._handle(option)
            else:
                self._unknown(token)
        elif pos == -1:
            option = self.options.get(t) if self.options.has_short(t) else None
            if option is not None:
                self._handle(option)
            else:
                self._concatenated(token)
        else:
            name, value = t[:pos], t[pos + 1:]
            option = self.options.get(name) if len(name) == 1 else None
            if option is not None and option.has_arg:
                self._handle(option)
                assert self.current is not None
                self.current.values.append(value)
                self.current = None
            else:
                self._unknown(token)

    def _concatenated(self, token: str) -> None:
        for i in range(1, len(token)):
            option = self.options.get(token[i])
            if option is None:
                self._unknown(token)
                break
            self._handle(option)
            if self.current is not None and len(token) != i + 1:
                self.current.values.append(token[i + 1:])
                break


def parse(options: Options, arguments: list[str]) -> CommandLine:
    """Parse `arguments` (the command name included, as zkCli.sh passes it) against `options`."""
    return DefaultParser(options).parse(list(arguments))
