"""What zkCli.sh's text depends on in the Java client: exception messages, path validation, `Date.toString`,
`Long.toHexString`, the jute `toString` of an ACL id, `ZKUtil.getPermString`, `AclParser`, `StatsTrack` and
the number parsers whose failures zkCli.sh prints.

Everything here is a port of Apache ZooKeeper 3.8.0 (and the JDK behaviour it relies on), kept to the letter
because scripts grep these lines.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kazoo.security import ACL, Id

from zkfast._jute import Code

# ---------------------------------------------------------------------------------------------------------
# KeeperException


_CODE_MESSAGES: dict[int, str] = {
    Code.OK: "ok",
    Code.SYSTEMERROR: "SystemError",
    Code.RUNTIMEINCONSISTENCY: "RuntimeInconsistency",
    Code.DATAINCONSISTENCY: "DataInconsistency",
    Code.CONNECTIONLOSS: "ConnectionLoss",
    Code.MARSHALLINGERROR: "MarshallingError",
    Code.NEWCONFIGNOQUORUM: "NewConfigNoQuorum",
    Code.RECONFIGINPROGRESS: "ReconfigInProgress",
    Code.UNIMPLEMENTED: "Unimplemented",
    Code.OPERATIONTIMEOUT: "OperationTimeout",
    Code.BADARGUMENTS: "BadArguments",
    Code.APIERROR: "APIError",
    Code.NONODE: "NoNode",
    Code.NOAUTH: "NoAuth",
    Code.BADVERSION: "BadVersion",
    Code.NOCHILDRENFOREPHEMERALS: "NoChildrenForEphemerals",
    Code.NODEEXISTS: "NodeExists",
    Code.INVALIDACL: "InvalidACL",
    Code.AUTHFAILED: "AuthFailed",
    Code.NOTEMPTY: "Directory not empty",
    Code.SESSIONEXPIRED: "Session expired",
    Code.INVALIDCALLBACK: "Invalid callback",
    Code.SESSIONMOVED: "Session moved",
    Code.NOTREADONLY: "Not a read-only call",
    Code.EPHEMERALONLOCALSESSION: "Ephemeral node on local session",
    Code.NOWATCHER: "No such watcher",
    Code.RECONFIGDISABLED: "Reconfig is disabled",
    Code.SESSIONCLOSEDREQUIRESASLAUTH: "Session closed because client failed to authenticate",
    Code.QUOTAEXCEEDED: "Quota has exceeded",
    Code.THROTTLEDOP: "Op throttled due to high load",
}


def code_message(code: int) -> str:
    """KeeperException.getCodeMessage."""
    return _CODE_MESSAGES.get(code, f"Unknown error {code}")


class KeeperError(Exception):
    """A KeeperException: an error code from the server (or the client library) and the client path."""

    def __init__(self, code: int, path: str | None = None) -> None:
        super().__init__(code, path)
        self.code = code
        self.path = path

    @property
    def message(self) -> str:
        """KeeperException.getMessage."""
        if not self.path:
            return f"KeeperErrorCode = {code_message(self.code)}"
        return f"KeeperErrorCode = {code_message(self.code)} for {self.path}"

    def __str__(self) -> str:
        return self.message


def cli_wrapper_message(err: BaseException) -> str:
    """The message of `CliWrapperException(cause)`: friendlier text for some KeeperException codes."""
    if not isinstance(err, KeeperError):
        return java_message(err)
    path = "null" if err.path is None else err.path
    code = err.code
    if code == Code.NONODE:
        return f"Node does not exist: {path}"
    if code == Code.NOCHILDRENFOREPHEMERALS:
        return f"Ephemerals cannot have children: {path}"
    if code == Code.NODEEXISTS:
        return f"Node already exists: {path}"
    if code == Code.NOTEMPTY:
        return f"Node not empty: {path}"
    if code == Code.NOTREADONLY:
        return f"Not a read-only call: {path}"
    if code == Code.INVALIDACL:
        return f"Acl is not valid : {path}"
    if code == Code.NOAUTH:
        return f"Insufficient permission : {path}"
    if code == Code.BADARGUMENTS:
        return f"Arguments are not valid : {path}"
    if code == Code.BADVERSION:
        return f"version No is not valid : {path}"
    if code == Code.RECONFIGINPROGRESS:
        return "Another reconfiguration is in progress -- concurrent reconfigs not supported (yet)"
    if code == Code.NEWCONFIGNOQUORUM:
        return ("No quorum of new config is connected and up-to-date with the leader of last commmitted "
                "config - try invoking reconfiguration after new servers are connected and synced")
    if code == Code.QUOTAEXCEEDED:
        return f"Quota has exceeded : {path}"
    return err.message


def java_message(err: BaseException) -> str:
    """`Throwable.getMessage()` for the exceptions this shell raises ("null" when there is none)."""
    if isinstance(err, KeeperError):
        return err.message
    text = str(err)
    return text if text else "null"


# ---------------------------------------------------------------------------------------------------------
# exceptions zkCli.sh prints (CliException and friends)


class CliError(Exception):
    """A CliException: zkCli.sh prints its message on stderr and the command's exit code becomes
    `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class IllegalArgument(ValueError):
    """java.lang.IllegalArgumentException (bad paths, bad TTLs): commands turn it into a
    MalformedPathException / MalformedCommandException carrying the same message."""


class NumberFormatError(IllegalArgument):
    """java.lang.NumberFormatException."""

    def __init__(self, text: str | None, message: str | None = None) -> None:
        if message is None:
            message = "Cannot parse null string: null" if text is None else f'For input string: "{text}"'
        super().__init__(message)


# ---------------------------------------------------------------------------------------------------------
# numbers, as Java parses them

_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _parse_integral(text: str | None, lo: int, hi: int) -> int:
    if text is None:
        raise NumberFormatError(None)
    if not _INT_RE.fullmatch(text) or not text.isascii():
        raise NumberFormatError(text)
    value = int(text)
    if not lo <= value <= hi:
        raise NumberFormatError(text)
    return value


def parse_int(text: str | None) -> int:
    """Integer.parseInt."""
    return _parse_integral(text, _INT_MIN, _INT_MAX)


def parse_long(text: str | None) -> int:
    """Long.parseLong."""
    return _parse_integral(text, _LONG_MIN, _LONG_MAX)


def parse_long_hex(text: str | None) -> int:
    """Long.parseLong(text, 16)."""
    if text is None:
        raise NumberFormatError(None)
    if not re.fullmatch(r"[+-]?[0-9a-fA-F]+", text):
        raise NumberFormatError(text)
    value = int(text, 16)
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise NumberFormatError(text)
    return value


def decode_int(text: str) -> int:
    """Integer.decode: an optional sign, then decimal, 0x/0X/# hexadecimal or 0-prefixed octal."""
    if text == "":
        raise NumberFormatError("", "Zero length string")
    body, sign = text, 1
    if body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body[:2] in ("0x", "0X"):
        radix, digits = 16, body[2:]
    elif body[:1] == "#":
        radix, digits = 16, body[1:]
    elif body[:1] == "0" and len(body) > 1:
        radix, digits = 8, body[1:]
    else:
        radix, digits = 10, body
    if not digits or digits[0] in "+-":
        raise NumberFormatError(text)
    try:
        value = sign * int(digits, radix)
    except ValueError:
        raise NumberFormatError(digits if radix != 10 else text) from None
    if not _INT_MIN <= value <= _INT_MAX:
        raise NumberFormatError(text)
    return value


_DOUBLE_RE = re.compile(
    r"[+-]?(?:NaN|Infinity|(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)[fFdD]?)")


def is_java_double(text: str) -> bool:
    """Whether Double.parseDouble accepts `text` (leading/trailing whitespace is trimmed)."""
    return _DOUBLE_RE.fullmatch(text.strip(" \t\n\r\x0b\x0c\x00")) is not None


# ---------------------------------------------------------------------------------------------------------
# text helpers


def to_hex(value: int) -> str:
    """Long.toHexString: two's complement, no leading zeros."""
    return format(value & 0xFFFFFFFFFFFFFFFF, "x")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def java_date(millis: int) -> str:
    """`new Date(millis).toString()`: `EEE MMM dd HH:mm:ss zzz yyyy` in the local time zone."""
    seconds = millis // 1000
    try:
        t = time.localtime(seconds)
        zone = t.tm_zone or "UTC"
        fields = (t.tm_wday, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, t.tm_year)
    except (OverflowError, OSError, ValueError):
        try:
            d = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=seconds)
        except OverflowError:
            return str(millis)
        zone = "UTC"
        fields = (d.weekday(), d.month, d.day, d.hour, d.minute, d.second, d.year)
    wday, mon, mday, hour, minute, sec, year = fields
    return f"{_DAYS[wday]} {_MONTHS[mon - 1]} {mday:02d} {hour:02d}:{minute:02d}:{sec:02d} {zone} {year}"


class StatLike(Protocol):
    """kazoo's ZnodeStat (the jute Stat record)."""

    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeralOwner: int
    dataLength: int
    numChildren: int
    pzxid: int


def stat_lines(s: StatLike) -> list[str]:
    """StatPrinter.print: the 11-line stat block."""
    return [
        f"cZxid = 0x{to_hex(s.czxid)}",
        f"ctime = {java_date(s.ctime)}",
        f"mZxid = 0x{to_hex(s.mzxid)}",
        f"mtime = {java_date(s.mtime)}",
        f"pZxid = 0x{to_hex(s.pzxid)}",
        f"cversion = {s.cversion}",
        f"dataVersion = {s.version}",
        f"aclVersion = {s.aversion}",
        f"ephemeralOwner = 0x{to_hex(s.ephemeralOwner)}",
        f"dataLength = {s.dataLength}",
        f"numChildren = {s.numChildren}",
    ]


def java_sort_key(text: str) -> bytes:
    """String.compareTo order (UTF-16 code units), for Collections.sort of znode names."""
    return text.encode("utf-16-be", "surrogatepass")


def java_split(text: str, sep: str) -> list[str]:
    """String.split with a literal one-character separator: trailing empty strings are dropped."""
    if text == "":
        return [""]
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def java_list(items: list[str]) -> str:
    """List.toString."""
    return "[" + ", ".join(items) + "]"


def decode_data(data: bytes | None) -> str:
    """`new String(data, UTF_8)`, with "null" for a null buffer (as GetCommand prints it)."""
    if data is None:
        return "null"
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------------
# paths


def validate_path(path: str | None, sequential: bool = False) -> None:
    """PathUtils.validatePath: raise IllegalArgument with the Java message when `path` is not a znode path."""
    if path is not None and sequential:
        path = path + "1"
    if path is None:
        raise IllegalArgument("Path cannot be null")
    if len(path) == 0:
        raise IllegalArgument("Path length must be > 0")
    if path[0] != "/":
        raise IllegalArgument("Path must start with / character")
    if len(path) == 1:
        return
    if path[-1] == "/":
        raise IllegalArgument("Path must not end with / character")
    # Java indexes UTF-16 code units
    raw = path.encode("utf-16-be", "surrogatepass")
    chars = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    reason = None
    lastc = 0x2F
    dot, slash = 0x2E, 0x2F
    for i in range(1, len(chars)):
        c = chars[i]
        if c == 0:
            reason = f"null character not allowed @{i}"
            break
        if c == slash and lastc == slash:
            reason = f"empty node name specified @{i}"
            break
        if c == dot and lastc == dot:
            if chars[i - 2] == slash and (i + 1 == len(chars) or chars[i + 1] == slash):
                reason = f"relative paths not allowed @{i}"
                break
        elif c == dot:
            if chars[i - 1] == slash and (i + 1 == len(chars) or chars[i + 1] == slash):
                reason = f"relative paths not allowed @{i}"
                break
        elif (0 < c <= 0x1F) or (0x7F <= c <= 0x9F) or (0xD800 <= c <= 0xF8FF) or (0xFFF0 <= c <= 0xFFFF):
            reason = f"invalid character @{i}"
            break
        lastc = c
    if reason is not None:
        raise IllegalArgument(f'Invalid path string "{path}" caused by {reason}')


# ---------------------------------------------------------------------------------------------------------
# ACLs

PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN = 1, 2, 4, 8, 16
OPEN_ACL_UNSAFE = [ACL(31, Id("world", "anyone"))]


def perm_string(perms: int) -> str:
    """ZKUtil.getPermString."""
    out = ""
    for bit, ch in ((PERM_CREATE, "c"), (PERM_DELETE, "d"), (PERM_READ, "r"), (PERM_WRITE, "w"),
                    (PERM_ADMIN, "a")):
        if perms & bit:
            out += ch
    return out


def _jute_string(s: str | None) -> str:
    if s is None:
        return ""
    out = ["'"]
    for ch in s:
        out.append({"\0": "%00", "\n": "%0A", "\r": "%0D", ",": "%2C", "}": "%7D", "%": "%25"}.get(ch, ch))
    return "".join(out)


def id_to_string(scheme: str | None, ident: str | None) -> str:
    """The jute-generated Id.toString (ToStringOutputArchive): `'scheme,'id` and a newline."""
    return f"{_jute_string(scheme)},{_jute_string(ident)}\n"


def parse_acl(text: str, err: Callable[[str], None]) -> list[ACL]:
    """AclParser.parse: `scheme:id:perm[,...]`; malformed entries are reported on `err` and skipped."""
    acl: list[ACL] = []
    for a in java_split(text, ","):
        first, last = a.find(":"), a.rfind(":")
        if first == -1 or last == -1 or first == last:
            err(f"{a} does not have the form scheme:id:perm")
            continue
        perms = 0
        for ch in a[last + 1:]:
            bit = {"r": PERM_READ, "w": PERM_WRITE, "c": PERM_CREATE, "d": PERM_DELETE, "a": PERM_ADMIN}.get(ch)
            if bit is None:
                err(f"Unknown perm type: {ch}")
            else:
                perms |= bit
        acl.append(ACL(perms, Id(a[:first], a[first + 1:last])))
    return acl


# ---------------------------------------------------------------------------------------------------------
# quotas

QUOTA_ZOOKEEPER = "/zookeeper/quota"
PROC_ZOOKEEPER = "/zookeeper"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"


def quota_path(path: str) -> str:
    return QUOTA_ZOOKEEPER + path


def limit_path(path: str) -> str:
    return QUOTA_ZOOKEEPER + path + "/" + LIMIT_NODE


def stat_path(path: str) -> str:
    return QUOTA_ZOOKEEPER + path + "/" + STAT_NODE


def trim_quota_path(path: str) -> str:
    return path[len(QUOTA_ZOOKEEPER):]


@dataclass
class StatsTrack:
    """org.apache.zookeeper.StatsTrack: `count=N,bytes=N` plus `=;key=value` extras, sorted."""

    stats: dict[str, int]

    @classmethod
    def parse(cls, data: bytes | str | None) -> StatsTrack:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
        stats: dict[str, int] = {}
        if text:
            pairs = re.split(r"[,;]+", text)
            while pairs and pairs[-1] == "":
                pairs.pop()
            for pair in pairs:
                if not pair:
                    continue
                kv = java_split(pair, "=")
                value = kv[1] if len(kv) > 1 else ""
                stats[kv[0]] = parse_long("-1" if value == "" else value)
        return cls(stats)

    @classmethod
    def empty(cls) -> StatsTrack:
        return cls({})

    def get(self, key: str) -> int:
        return self.stats.get(key, -1)

    def set(self, key: str, value: int) -> None:
        self.stats[key] = value

    @property
    def count(self) -> int:
        return self.get("count")

    @property
    def num_bytes(self) -> int:
        return self.get("bytes")

    @property
    def count_hard(self) -> int:
        return self.get("countHardLimit")

    @property
    def bytes_hard(self) -> int:
        return self.get("byteHardLimit")

    def __str__(self) -> str:
        keys = sorted(k for k in self.stats if k not in ("count", "bytes"))
        out = f"count={self.count},bytes={self.num_bytes}"
        if keys:
            out += "=" + "".join(f";{k}={self.stats[k]}" for k in keys)
        return out

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")


# ---------------------------------------------------------------------------------------------------------
# TTLs (EphemeralType.TTL)

MAX_TTL = 0x000000FFFFFFFFFF


def check_ttl(ttl: int) -> None:
    if ttl > MAX_TTL or ttl <= 0:
        raise IllegalArgument(f"ttl must be positive and cannot be larger than: {MAX_TTL}")
