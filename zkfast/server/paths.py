"""Znode path rules (Apache's PathUtils.validatePath), applied to paths as clients sent them (bytes)."""

from __future__ import annotations


def _bad_char(c: int) -> bool:
    # a Java char; code points past the BMP are surrogate pairs in Java, so always refused
    return (0 < c <= 0x1F or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xF8FF or 0xFFF0 <= c <= 0xFFFF
            or c > 0xFFFF)


def validate_path(path: bytes) -> bool:
    """True if Apache ZooKeeper would accept this path for a znode."""
    text = path.decode("ascii") if path.isascii() else path.decode("utf-8", "replace")
    n = len(text)
    if n == 0 or text[0] != "/":
        return False
    if n == 1:
        return True
    if text[-1] == "/":
        return False
    last = "/"
    for i in range(1, n):
        ch = text[i]
        if ch == "\0":
            return False
        if ch == "/" and last == "/":
            return False
        if ch == "." and last == ".":
            if text[i - 2] == "/" and (i + 1 == n or text[i + 1] == "/"):
                return False
        elif ch == ".":
            if text[i - 1] == "/" and (i + 1 == n or text[i + 1] == "/"):
                return False
        elif _bad_char(ord(ch)):
            return False
        last = ch
    return True


def parent_of(path: bytes) -> bytes:
    """The parent as Apache computes it: everything before the last '/' ("" for children of /)."""
    return path[: path.rfind(b"/")]
