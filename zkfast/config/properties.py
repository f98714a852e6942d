"""java.util.Properties, as Apache ZooKeeper reads zoo.cfg with it: the syntax, its escapes both ways,
and the ISO-8859-1 decoding of the file."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

# one logger for the whole package: the name operators' logging settings already use
log = logging.getLogger(__package__)


class PropertyLine(NamedTuple):
    key: str
    value: str
    line: int  # 1-based line where the logical line starts


class PropertiesSyntaxError(ValueError):
    def __init__(self, line: int, key: str, problem: str) -> None:
        self.line = line
        self.key = key
        self.problem = problem
        super().__init__(f"line {line}: {problem}")


_PROPS_WS = " \t\f"  # the only whitespace java.util.Properties knows
_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "f": "\f"}


def _line_numbers(text: str) -> list[int]:
    """The 1-based natural line of every character (\r\n, \r and \n each end one line)."""
    numbers = []
    line = 1
    for i, c in enumerate(text):
        numbers.append(line)
        if c == "\n" or (c == "\r" and text[i + 1:i + 2] != "\n"):
            line += 1
    return numbers


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """A port of java.util.Properties.LineReader.readLine, state for state, because its corner cases
    (a line that is only a backslash, a comment after an empty continuation, a backslash at end of file)
    are hard to reproduce any other way. Yields (line where the logical line starts, its text)."""
    line_of = _line_numbers(text)
    n = len(text)
    off = 0
    while off < n:
        buf: list[str] = []
        start = 0
        skip_ws, appended, backslash = True, False, False
        while True:
            if off >= n:
                if buf:
                    yield start, "".join(buf[:-1] if backslash else buf)
                return
            c = text[off]
            off += 1
            if skip_ws:
                if c in _PROPS_WS or (not appended and c in "\r\n"):
                    continue
                skip_ws, appended = False, False
            if not buf and c in "#!":  # a comment: skip to the end of the natural line
                while off < n and text[off - 1] not in "\r\n":
                    off += 1
                skip_ws = True
                continue
            if c not in "\r\n":
                if not buf:
                    start = line_of[off - 1]
                buf.append(c)
                backslash = c == "\\" and not backslash
                continue
            if not buf:
                skip_ws = True
                continue
            if off >= n or not backslash:
                yield start, "".join(buf[:-1] if backslash else buf)
                break
            buf.pop()  # the continuation backslash; the next line's leading whitespace goes too
            skip_ws, appended, backslash = True, True, False
            if c == "\r" and text[off] == "\n":
                off += 1


def _split_key_value(logical: str) -> tuple[str, str]:
    """The key ends at the first unescaped '=', ':' or whitespace; then whitespace and one '=' or ':' go."""
    n = len(logical)
    key_end = n
    value_start = n
    has_separator = False
    escaped = False
    for pos, c in enumerate(logical):
        if not escaped and c in "=:":
            key_end, value_start, has_separator = pos, pos + 1, True
            break
        if not escaped and c in _PROPS_WS:
            key_end, value_start = pos, pos + 1
            break
        escaped = (c == "\\") and not escaped
    while value_start < n:
        c = logical[value_start]
        if c not in _PROPS_WS:
            if has_separator or c not in "=:":
                break
            has_separator = True
        value_start += 1
    return logical[:key_end], logical[value_start:]


def _unescape(raw: str, line: int, key: str) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c != "\\" or i >= n:
            out.append(c)
            continue
        c = raw[i]
        i += 1
        if c == "u":
            digits = raw[i:i + 4]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesSyntaxError(line, key, f"malformed \\uxxxx escape '\\u{digits}'")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_SIMPLE_ESCAPES.get(c, c))
    text = "".join(out)
    # Java strings are UTF-16: a \\uD83D\\uDE00 pair is one character.
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def parse_properties(text: str) -> list[PropertyLine]:
    """Every key/value of a properties text, in file order (duplicates kept; the last one wins)."""
    entries = []
    for line, logical in _logical_lines(text):
        raw_key, raw_value = _split_key_value(logical)
        key = _unescape(raw_key, line, raw_key)
        entries.append(PropertyLine(key, _unescape(raw_value, line, key), line))
    return entries


def java_trim(s: str) -> str:
    """String.trim(): strips every char <= U+0020 (control characters too), nothing else."""
    start, end = 0, len(s)
    while start < end and s[start] <= " ":
        start += 1
    while end > start and s[end - 1] <= " ":
        end -= 1
    return s[start:end]


def escape_property(text: str, is_key: bool) -> str:
    """The inverse of the loader's unescaping, so that describe() output loads back unchanged."""
    out = []
    for pos, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif c in "=:#!" and is_key:
            out.append("\\" + c)
        elif c == " " and (is_key or pos == 0):
            out.append("\\ ")
        elif ord(c) < 0x20 or ord(c) > 0x7E:
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16_units(c)))
        else:
            out.append(c)
    return "".join(out)


def _utf16_units(c: str) -> list[int]:
    data = c.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def decode_properties_bytes(data: bytes, source: str) -> str:
    """Properties.load(InputStream) reads ISO-8859-1; so do we, so non-ASCII paths name what Apache named."""
    if any(b > 0x7F for b in data):
        try:
            data.decode("utf-8")
            log.warning("%s: has non-ASCII UTF-8 text; it is read as ISO-8859-1, as Apache ZooKeeper reads "
                        "it (write \\uXXXX escapes to mean non-ASCII characters)", source)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")
