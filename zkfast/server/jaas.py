"""JAAS login configuration files, read as Java's `sun.security.provider.ConfigFile` reads them.

Apache ZooKeeper takes its SASL users from the file named by the system property
`java.security.auth.login.config`, section `Server` (or `zookeeper.sasl.serverconfig`):

    Server {
        org.apache.zookeeper.server.auth.DigestLoginModule required
        user_super="adminsecret"
        user_bob="bobsecret";
    };

Syntax (Java's StreamTokenizer as ConfigFile sets it up): `//` and `/* */` comments; names and
unquoted values are words of letters, digits, `$ _ - * .` (not starting with a digit, `.` or `-`);
anything else must be in double quotes, where `\\` escapes the next character (`\\n`, `\\t`, octal
as in Java); a control flag is one of required/requisite/sufficient/optional (any case); option
values expand `${property}` from the system properties. Errors name the file and line.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

JAAS_CONF_KEY = "java.security.auth.login.config"
CONTROL_FLAGS = ("REQUIRED", "REQUISITE", "SUFFICIENT", "OPTIONAL")


class JaasError(Exception):
    """A login configuration file that cannot be used. str() is `FILE[:LINE]: PROBLEM`."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class LoginModuleEntry:
    """One `ModuleClass Flag key=value ...;` line of a section (Java's AppConfigurationEntry)."""

    module: str
    flag: str  # upper case: REQUIRED, REQUISITE, SUFFICIENT, OPTIONAL
    options: Mapping[str, str]
    line: int


@dataclass(frozen=True)
class JaasConfig:
    source: str
    sections: Mapping[str, tuple[LoginModuleEntry, ...]] = field(default_factory=dict)

    def entries(self, name: str) -> tuple[LoginModuleEntry, ...] | None:
        """Configuration.getAppConfigurationEntry: None for a missing or empty section."""
        found = self.sections.get(name)
        return found if found else None


# ------------------------------------------------------------------------------------------ tokenizer

_EOF = "EOF"
_WORD = "WORD"
_QUOTED = "QUOTED"
_NUMBER = "NUMBER"
_CHAR = "CHAR"


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int


def _is_alpha(c: str) -> bool:
    o = ord(c)
    return ("a" <= c <= "z" or "A" <= c <= "Z" or c in "$_-*" or o >= 160)


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9" or c in ".-"


def _is_space(c: str) -> bool:
    return ord(c) <= 32


_ESCAPES = {"a": "\x07", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\x0b"}


def _tokenize(text: str, source: str) -> list[_Token]:
    """StreamTokenizer as ConfigFile configures it (EOLs only advance the line count)."""
    out: list[_Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\r":
            line += 1
            i += 2 if text.startswith("\r\n", i) else 1
            continue
        if c == "\n":
            line += 1
            i += 1
            continue
        if _is_space(c):
            i += 1
            continue
        if _is_digit(c):
            if c == "-" and not (i + 1 < n and (text[i + 1] == "." or "0" <= text[i + 1] <= "9")):
                out.append(_Token(_CHAR, c, line))  # a lone '-' is an ordinary character
                i += 1
                continue
            j = i + 1
            seen_dot = c == "."
            while j < n and ("0" <= text[j] <= "9" or (text[j] == "." and not seen_dot)):
                seen_dot = seen_dot or text[j] == "."
                j += 1
            out.append(_Token(_NUMBER, text[i:j], line))
            i = j
            continue
        if _is_alpha(c):
            j = i + 1
            while j < n and (_is_alpha(text[j]) or _is_digit(text[j])):
                j += 1
            out.append(_Token(_WORD, text[i:j], line))
            i = j
            continue
        if c in "\"'":
            start_line = line
            buf: list[str] = []
            j = i + 1
            while j < n and text[j] != c and text[j] not in "\r\n":
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    j += 1
                    e = text[j]
                    if "0" <= e <= "7":
                        k = j
                        limit = 3 if e <= "3" else 2
                        while k < n and k - j < limit and "0" <= text[k] <= "7":
                            k += 1
                        buf.append(chr(int(text[j:k], 8)))
                        j = k
                        continue
                    buf.append(_ESCAPES.get(e, e))
                    j += 1
                    continue
                buf.append(ch)
                j += 1
            if j >= n or text[j] != c:
                raise JaasError(source, start_line, f"unterminated {c}quoted string{c}: a quoted "
                                                    "value must end on the line it starts")
            out.append(_Token(_QUOTED if c == '"' else _CHAR, "".join(buf), start_line))
            i = j + 1
            continue
        if c == "/":
            if text.startswith("/*", i):
                end = text.find("*/", i + 2)
                chunk = text[i:] if end < 0 else text[i:end + 2]
                line += chunk.count("\n") + chunk.count("\r") - chunk.count("\r\n")
                i = n if end < 0 else end + 2
                continue
            # `//` and (Java's default comment character) a lone `/` comment out the rest of the line
            while i < n and text[i] not in "\r\n":
                i += 1
            continue
        out.append(_Token(_CHAR, c, line))
        i += 1
    out.append(_Token(_EOF, "", out[-1].line if out else 1))  # "end of file" where the text ends
    return out


# ---------------------------------------------------------------------------------------------- parser

def _describe(tok: _Token) -> str:
    if tok.kind == _EOF:
        return "end of file"
    if tok.kind == _QUOTED:
        return f'"{tok.text}"'
    return tok.text


class _Parser:
    def __init__(self, text: str, source: str, properties: Mapping[str, str]) -> None:
        self.source = source
        self.properties = properties
        self.tokens = _tokenize(text, source)
        self.pos = 0

    @property
    def look(self) -> _Token:
        return self.tokens[self.pos]

    def fail(self, tok: _Token, problem: str) -> JaasError:
        return JaasError(self.source, tok.line, problem)

    def expect_char(self, ch: str, what: str) -> None:
        tok = self.look
        if tok.kind != _CHAR or tok.text != ch:
            raise self.fail(tok, f"expected [{ch}] {what}, found [{_describe(tok)}]")
        self.pos += 1

    def expect_name(self, what: str) -> _Token:
        tok = self.look
        if tok.kind not in (_WORD, _QUOTED):
            hint = ""
            if tok.kind == _NUMBER or (tok.kind == _CHAR and tok.text not in "{};="):
                hint = " (put values that are not plain words in double quotes)"
            raise self.fail(tok, f"expected [{what}], found [{_describe(tok)}]{hint}")
        self.pos += 1
        return tok

    def peek_char(self, ch: str) -> bool:
        return self.look.kind == _CHAR and self.look.text == ch

    def parse(self) -> JaasConfig:
        sections: dict[str, tuple[LoginModuleEntry, ...]] = {}
        while self.look.kind != _EOF:
            name_tok = self.expect_name("application name")
            self.expect_char("{", f"after {name_tok.text}")
            entries: list[LoginModuleEntry] = []
            while not self.peek_char("}"):
                module = self.expect_name("module class name")
                flag_tok = self.expect_name("controlFlag")
                flag = flag_tok.text.upper()
                if flag not in CONTROL_FLAGS:
                    raise self.fail(flag_tok, f"invalid control flag {flag_tok.text!r} (one of required, "
                                              "requisite, sufficient, optional)")
                options: dict[str, str] = {}
                while not self.peek_char(";"):
                    key = self.expect_name("option key")
                    self.expect_char("=", f"after option {key.text}")
                    value = self.expect_name("option value")
                    options[key.text] = self.expand(value)
                self.pos += 1  # the ';'
                entries.append(LoginModuleEntry(module.text, flag, options, module.line))
            self.expect_char("}", "")
            self.expect_char(";", f"after the closing }} of {name_tok.text}")
            if name_tok.text in sections:
                raise self.fail(name_tok, f"can not specify multiple entries for {name_tok.text}")
            sections[name_tok.text] = tuple(entries)
        return JaasConfig(self.source, sections)

    def expand(self, tok: _Token) -> str:
        if not tok.text:
            return tok.text
        try:
            value = expand_properties(tok.text, self.properties)
        except KeyError as e:
            raise self.fail(tok, f"unable to expand property {e.args[0]} (no such system property)") from None
        if not value:
            raise self.fail(tok, f"system property [{tok.text}] expanded to empty value")
        return value


def java_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """The given system properties plus the JVM's own ones a ${...} in a JAAS file may name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    base = {
        "user.home": os.path.expanduser("~"), "user.name": user, "user.dir": os.getcwd(),
        "file.separator": os.sep, "path.separator": os.pathsep, "line.separator": "\n",
        "java.io.tmpdir": "/tmp", "os.name": "Linux",
    }
    base.update(properties)
    return base


def expand_properties(value: str, properties: Mapping[str, str]) -> str:
    """sun.security.util.PropertyExpander.expand: `${name}` from the system properties, `${/}` is the
    file separator, `${{...}}` is left alone. Raises KeyError(name) for an unknown property."""
    p = value.find("${")
    if p < 0:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while p < n:
        if p > i:
            out.append(value[i:p])
            i = p
        pe = p + 2
        if pe < n and value[pe] == "{":
            pe = value.find("}}", pe)
            if pe == -1 or pe + 2 == n:
                out.append(value[p:])
                break
            pe += 1
            out.append(value[p:pe + 1])
        else:
            while pe < n and value[pe] != "}":
                pe += 1
            if pe == n:
                out.append(value[p:pe])
                break
            prop = value[p + 2:pe]
            if prop == "/":
                out.append(os.sep)
            else:
                got = properties.get(prop)
                if got is None:
                    raise KeyError(prop)
                out.append(got)
        i = pe + 1
        p = value.find("${", i)
        if p == -1:
            if i < n:
                out.append(value[i:])
            break
    return "".join(out)


def parse_jaas(text: str, source: str, properties: Mapping[str, str] | None = None) -> JaasConfig:
    """Parse a whole login configuration (all sections)."""
    return _Parser(text, source, java_properties(properties or {})).parse()


def jaas_path(spec: str, properties: Mapping[str, str] | None = None) -> Path:
    """The file a `java.security.auth.login.config` value names (`=` prefix, `${...}`, file: URLs)."""
    props = java_properties(properties or {})
    if spec.startswith("="):
        spec = spec[1:]
    try:
        spec = expand_properties(spec, props)
    except KeyError as e:
        raise JaasError(spec, None, f"{JAAS_CONF_KEY}: unable to expand property {e.args[0]}") from None
    parts = urlsplit(spec)
    if len(parts.scheme) > 1:  # a URL (one letter would be a Windows drive)
        if parts.scheme.lower() != "file":
            raise JaasError(spec, None, f"{JAAS_CONF_KEY}: only files and file: URLs are supported")
        return Path(unquote(parts.path))
    return Path(spec)


def load_jaas(spec: str, properties: Mapping[str, str] | None = None) -> JaasConfig:
    """Read the login configuration named by a `java.security.auth.login.config` value."""
    path = jaas_path(spec, properties)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JaasError(str(path), None, f"no such file (named by -D{JAAS_CONF_KEY})") from None
    except OSError as e:
        raise JaasError(str(path), None, f"cannot read it: {e.strerror or e}") from None
    return parse_jaas(raw.decode("utf-8", "replace"), str(path), properties)


def default_jaas_spec(properties: Mapping[str, str]) -> str | None:
    """The file Java reads when the property is not set: ~/.java.login.config, if it exists."""
    spec = properties.get(JAAS_CONF_KEY)
    if spec is not None:
        return spec
    home = Path(java_properties(properties)["user.home"]) / ".java.login.config"
    return str(home) if home.exists() else None
