"""Values as Apache ZooKeeper's Java code parses them (Integer.parseInt, Integer.decode,
Boolean.parseBoolean, Double.parseDouble, ...), minus the leniency that would let a typo mean
something else: what Java would silently replace by a default is a ValueError here."""

from __future__ import annotations

import re

from zkfast.config.properties import java_trim

_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _hint(value: str) -> str:
    return " ('#' starts a comment only at the beginning of a line)" if "#" in value else ""


def parse_java_int(value: str, bits: int = 32) -> int:
    """Integer.parseInt / Long.parseLong: optional sign, ASCII decimal digits, in range."""
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"must be an integer, got {value!r}{_hint(value)}")
    return _fits(int(value), value, bits)


def _fits(number: int, text: str, bits: int) -> int:
    limit = 2 ** (bits - 1)
    if not -limit <= number < limit:
        raise ValueError(f"{text} does not fit in a {bits}-bit integer")
    return number


def parse_java_decode(value: str, bits: int = 32) -> int:
    """Integer.getInteger / Long.getLong use Integer.decode: 0x/0X/# hex, a leading 0 means octal."""
    match = re.fullmatch(r"([+-]?)(0[xX]|#)?([0-9a-fA-F]+)", value)
    if not match:
        raise ValueError(f"must be an integer, got {value!r}{_hint(value)}")
    sign, hex_prefix, digits = match.groups()
    if hex_prefix:
        number = int(digits, 16)
    elif not digits.isdigit():
        raise ValueError(f"must be an integer, got {value!r}{_hint(value)}")
    elif len(digits) > 1 and digits.startswith("0"):
        if not re.fullmatch(r"[0-7]+", digits):
            raise ValueError(f"{value!r} starts with 0, so Java reads it as octal, but it has digits 8 or 9")
        number = int(digits, 8)
    else:
        number = int(digits)
    return _fits(-number if sign == "-" else number, value, bits)


def parse_probability(value: str) -> float:
    """Double.parseDouble's decimal forms (no hex, NaN or Infinity), between 0 and 1."""
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[fFdD]?", java_trim(value)):
        raise ValueError(f"must be a number between 0 and 1, got {value!r}{_hint(value)}")
    number = float(java_trim(value).rstrip("fFdD"))
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value}")
    return number


def parse_true_false(value: str) -> bool:
    """QuorumPeerConfig.parseBoolean and Boolean.parseBoolean agree on 'true'/'false', any case."""
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise ValueError(f"must be 'true' or 'false', got {value!r}{_hint(value)}")


def parse_yes_no(value: str) -> bool:
    """forceSync, skipACL, leaderServes compare case-sensitively with "yes"/"no" in Apache ZooKeeper."""
    if value in ("yes", "no"):
        return value == "yes"
    raise ValueError(f"must be 'yes' or 'no', got {value!r}{_hint(value)}")


def parse_port(value: str, allow_zero: bool = False) -> int:
    port = parse_java_int(value)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"must be a port number {low}-65535, got {value}")
    return port


def split_host_port(text: str) -> list[str]:
    """ConfigUtils.getHostAndPort: `[v6addr]:a:b` keeps the colons of the address; otherwise split on ':'."""
    if not text.startswith("["):
        return text.split(":")
    close = text.find("]")
    if close < 0:
        raise ValueError(f"{text!r} starts with '[' but has no matching ']'")
    if close + 1 == len(text):
        return [text[1:close]]
    if text[close + 1] != ":" or close + 2 == len(text):
        raise ValueError(f"{text!r} has no port after ']:'")
    return [text[1:close], *text[close + 2:].split(":")]
