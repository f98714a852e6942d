"""The AdminServer: Apache ZooKeeper 3.8's HTTP command interface (JettyAdminServer, Commands.java).

`GET <admin.commandURL>` lists the commands as links; `GET <admin.commandURL>/<name>[?arg=value]` runs
one and answers 200 with a JSON object holding the command's data, then `"command"` (its primary name)
and `"error"` (null on success), pretty-printed as Jackson does. Unknown names answer 200 with
`"error": "Unknown command: <name>"`, as Apache does. Other paths answer 404, other methods 405.

The HTTP side is a small HTTP/1.1 server on the server's own event loop (commands read the live tree
and sessions without locks): requests are bounded (8 KiB of request line and headers, 64 KiB of
body), a connection idle for `admin.idleTimeout` ms is closed, and keep-alive is honoured. A long
answer (wchp, wchc, dump, cons, stat, monitor) is produced in slices of bounded work while it is
sent, the event loop serving clients between slices, and written with flow control: never built
whole: what waits for the client is at most a slice, Jetty's 32 KiB buffer and the transport's 64 KiB.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from zkfast._datatree import DIGEST_VERSION
from zkfast.net import serverdata
from zkfast.net.fourletter import NOT_SERVING, environment, java_double, mntr_values, monitor_values
from zkfast.net.serverdata import Vanished
from zkfast.version import version_line

if TYPE_CHECKING:
    from zkfast.config import ServerConfig
    from zkfast.server.zkserver import ZooKeeperServer

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192  # request line + headers (Jetty's requestHeaderSize)
MAX_BODY_BYTES = 65536  # a GET needs none; a bounded one is read and ignored
MAX_CONNECTIONS = 64  # concurrent HTTP connections; more are closed at once
JETTY_BUFFER_BYTES = 32768  # Jetty's output buffer: what a body must fit in to get a Content-Length
JSON_TYPE = "application/json"

_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Server Error", 505: "HTTP Version Not Supported"}


# ------------------------------------------------------------------------------------------ JSON

_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _json_string(s: str) -> str:
    """Jackson's string escaping: the short escapes, \\u00XX (upper-case hex) for other controls."""
    if _NEEDS_ESCAPE.search(s) is None:
        return f'"{s}"'
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            short = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}.get(ch)
            out.append(short or f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class LazyObject:
    """A JSON object whose entries are produced while it is written: (key, value) pairs, and
    serverdata.VANISHED for an entry that went away meanwhile (written as nothing). A lazy array
    needs no wrapper: any iterator is written as an array."""

    __slots__ = ("entries",)

    def __init__(self, entries: Iterable[tuple[Any, Any] | Vanished]) -> None:
        self.entries = entries


_PLAIN = frozenset({int, str, float, bool, type(None)})  # scalars, told apart from containers fast


def _scalar(v: Any) -> str:
    t = type(v)
    if t is int:
        return str(v)
    if t is str:
        return _json_string(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return '"NaN"' if v != v else ('"Infinity"' if v > 0 else '"-Infinity"')  # WRITE_NAN_AS_STRINGS
        return java_double(v)
    return _json_string(v if isinstance(v, str) else str(v))


def _is_container(v: Any) -> bool:
    if type(v) in _PLAIN:
        return False
    return isinstance(v, Mapping | LazyObject) or (isinstance(v, Iterable) and not isinstance(v, str))


def _fragments(v: Any, level: int) -> Iterator[str]:
    """The JSON text of v in fragments, one per scalar or entry, so that a long answer can be cut
    into slices (serverdata.slices) while its lazy parts are produced."""
    if isinstance(v, Mapping | LazyObject):
        pad = "  " * (level + 1)
        opening = "{\n"  # written with the first entry: an object with none is `{ }`
        for entry in v.items() if isinstance(v, Mapping) else v.entries:
            if isinstance(entry, Vanished):
                yield ""
                continue
            key, x = entry
            if _is_container(x):
                yield f"{opening}{pad}{_json_string(str(key))} : "
                yield from _fragments(x, level + 1)
            else:
                yield f"{opening}{pad}{_json_string(str(key))} : {_scalar(x)}"
            opening = ",\n"
        yield "{ }" if opening == "{\n" else "\n" + "  " * level + "}"
    elif _is_container(v):
        sep = "[ "  # Jackson's arrays stay on the line, at the same level; an empty one is `[ ]`
        for x in v:
            if type(x) in _PLAIN:
                yield sep + _scalar(x)
            elif isinstance(x, Vanished):
                yield ""
                continue
            elif _is_container(x):
                yield sep
                yield from _fragments(x, level)
            else:
                yield sep + _scalar(x)
            sep = ", "
        yield "[ ]" if sep == "[ " else " ]"
    else:
        yield _scalar(v)


def jackson_json(value: Any) -> str:
    """JSON as Apache's JsonOutputter writes it (Jackson, INDENT_OUTPUT): `"key" : value`, two-space
    indents, arrays inline as `[ a, b ]`, empty ones as `[ ]` and `{ }`, doubles as Java prints them."""
    return "".join(_fragments(value, 0))


def jackson_pieces(value: Any) -> Iterator[bytes]:
    """jackson_json's text in pieces of bounded work, produced as they are sent."""
    return serverdata.slices(_fragments(value, 0))


# ------------------------------------------------------------------------------------------ HTTP

@dataclass
class HttpRequest:
    method: str
    target: str
    path: str  # percent-decoded
    query: dict[str, list[str]]
    version: str
    headers: dict[str, str]  # lower-case names

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    # a body produced while it is sent, in pieces of bounded work (then `body` is unused)
    pieces: Iterator[bytes] | None = None


Handler = Callable[[HttpRequest], HttpResponse]


def error_page(status: int, uri: str, message: str | None = None) -> HttpResponse:
    """An HTML error page, as Jetty answers a path or method it does not serve."""
    reason = message or _REASONS.get(status, "Error")
    esc = uri.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = (f"<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n"
            f"<title>Error {status} {reason}</title>\n</head>\n<body><h2>HTTP ERROR {status} {reason}</h2>\n"
            f"<table>\n<tr><th>URI:</th><td>{esc}</td></tr>\n<tr><th>STATUS:</th><td>{status}</td></tr>\n"
            f"<tr><th>MESSAGE:</th><td>{reason}</td></tr>\n</table>\n\n</body>\n</html>\n")
    return HttpResponse(status, body.encode("iso-8859-1", "replace"), "text/html;charset=iso-8859-1",
                        [("Cache-Control", "must-revalidate,no-cache,no-store")])


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _canonical(path: str) -> str:
    """`/a/./b/../c` → `/a/c`; a path climbing above the root is a bad request."""
    if "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if not out:
                raise _BadRequest(400)
            out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _parse_head(head: bytes) -> HttpRequest:
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha():
        raise _BadRequest(400)
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise _BadRequest(505 if version.startswith("HTTP/") else 400)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400)
        headers[name.lower()] = value.strip()
    split = urllib.parse.urlsplit(target)
    if not split.path.startswith("/"):
        raise _BadRequest(400)
    raw = _canonical(split.path)  # Jetty resolves dot segments before decoding; encoded ones are refused
    path = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
    if any(seg in (".", "..") for seg in path.split("/")):
        raise _BadRequest(400)
    query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
    return HttpRequest(method, target, path, query, version, headers)


def _encode_head(resp: HttpResponse, keep_alive: bool, length: int | None, chunked: bool = False) -> bytes:
    """Status line and headers; no Content-Length when `length` is None (chunked, or a body that
    ends with the connection)."""
    lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}",
             f"Date: {email.utils.formatdate(usegmt=True)}"]
    if resp.content_type:
        lines.append(f"Content-Type: {resp.content_type}")
    lines.extend(f"{k}: {v}" for k, v in resp.headers)
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


def _encode_response(resp: HttpResponse, head_only: bool, keep_alive: bool) -> bytes:
    head = _encode_head(resp, keep_alive, len(resp.body))
    return head if head_only else head + resp.body


class HttpServer:
    """A bounded HTTP/1.1 server on the running event loop; `handler` runs on the loop."""

    def __init__(self, handler: Handler, host: str, port: int, *, idle_timeout_s: float, name: str) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s if idle_timeout_s > 0 else None
        self.name = name
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host or None, self.port,
                                                  limit=MAX_HEAD_BYTES, reuse_address=True)
        sock = self._server.sockets[0] if self._server.sockets else None
        if sock is not None:
            self.port = int(sock.getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            if len(self._clients) > MAX_CONNECTIONS:
                return
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - one bad request must not take the server down
            log.exception("%s: request failed", self.name)
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def _read(self, awaitable: Awaitable[bytes]) -> bytes:
        if self.idle_timeout_s is None:
            return await awaitable
        return await asyncio.wait_for(awaitable, self.idle_timeout_s)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write and wait for the client to take it, as long as the idle timeout allows."""
        writer.write(data)
        if self.idle_timeout_s is None:
            await writer.drain()
        else:
            await asyncio.wait_for(writer.drain(), self.idle_timeout_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await self._read(reader.readuntil(b"\r\n\r\n"))
            except TimeoutError:
                return
            except asyncio.LimitOverrunError:
                await self._send(writer, _encode_response(HttpResponse(431), False, False))
                return
            except asyncio.IncompleteReadError:
                return
            try:
                req = _parse_head(head[:-4])
            except (_BadRequest, UnicodeDecodeError) as e:
                status = e.status if isinstance(e, _BadRequest) else 400
                await self._send(writer, _encode_response(HttpResponse(status), False, False))
                return
            keep_alive = (req.version == "HTTP/1.1" and req.headers.get("connection", "").lower() != "close"
                          and "transfer-encoding" not in req.headers)
            length_text = req.headers.get("content-length", "0")
            if not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
                status = 413 if length_text.isdigit() else 400
                await self._send(writer, _encode_response(HttpResponse(status), False, False))
                return
            if int(length_text):
                await self._read(reader.readexactly(int(length_text)))
            resp = self.handler(req)
            if resp.pieces is None:
                await self._send(writer, _encode_response(resp, req.method == "HEAD", keep_alive))
            else:
                keep_alive = await self._stream(writer, resp, req.method == "HEAD", keep_alive)
            if not keep_alive:
                return

    async def _stream(self, writer: asyncio.StreamWriter, resp: HttpResponse, head_only: bool,
                      keep_alive: bool) -> bool:
        """Send a body produced piece by piece, letting the event loop serve clients after each
        piece; whether the connection stays open. As Jetty: a body that fits its output buffer
        goes with a Content-Length (so does the answer to HEAD, produced only to be counted), a
        longer one in chunks of that buffer's size on a kept-alive connection, otherwise until
        the connection closes."""
        assert resp.pieces is not None
        pieces = resp.pieces
        buffered = bytearray()
        size = 0
        for piece in pieces:
            size += len(piece)
            if not head_only:
                buffered += piece
                if len(buffered) > JETTY_BUFFER_BYTES:
                    break
            await asyncio.sleep(0)
        else:
            resp.body = bytes(buffered)
            await self._send(writer, _encode_head(resp, keep_alive, size) + resp.body)
            return keep_alive
        chunked = keep_alive
        await self._send(writer, _encode_head(resp, keep_alive, None, chunked))
        done = False
        while True:
            while len(buffered) >= JETTY_BUFFER_BYTES or (done and buffered):
                chunk = bytes(buffered[:JETTY_BUFFER_BYTES])
                del buffered[:JETTY_BUFFER_BYTES]
                await self._send(writer, b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if done:
                break
            await asyncio.sleep(0)
            piece = next(pieces, None)
            if piece is None:
                done = True
            else:
                buffered += piece
        if chunked:
            await self._send(writer, b"0\r\n\r\n")
        return keep_alive


# ------------------------------------------------------------------------------------------ commands

def parse_java_long(text: str) -> int:
    """Long.parseLong: optional sign, ASCII digits, within 64 bits; ValueError otherwise."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(text)
    return value


class CommandContext:
    """What the commands read: the server, and what the admin server captured at start-up."""

    def __init__(self, server: ZooKeeperServer, initial_config: str) -> None:
        self.server = server
        self.initial_config = initial_config

    def mntr(self) -> dict[str, Any]:
        return dict(mntr_values(self.server, self.server.listener))


# a command's data: a dict, or a LazyObject whose entries are produced while the answer is sent
Run = Callable[[CommandContext, Mapping[str, str]], dict[str, Any] | LazyObject]


@dataclass(frozen=True)
class Command:
    names: tuple[str, ...]  # primary name first
    run: Run
    server_required: bool = True

    @property
    def primary(self) -> str:
        return self.names[0]


def _ruok(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {}


def _srvr(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    server = ctx.server
    mntr = ctx.mntr()
    stats = serverdata.server_stats(server, mntr)
    return {"version": version_line(), "read_only": bool(server.read_only), "server_stats": stats,
            "client_response": serverdata.client_response_stats(mntr), "node_count": server.node_count()}


def _stat(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    out = _srvr(ctx, kw)
    out["connections"] = serverdata.connections_info(ctx.server, brief=True)
    out["secure_connections"] = serverdata.connections_info(ctx.server, brief=True, secure=True)
    return out


def _cons(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"connections": serverdata.connections_info(ctx.server, brief=False),
            "secure_connections": serverdata.connections_info(ctx.server, brief=False, secure=True)}


def _conf(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return serverdata.server_conf(ctx.server)


def _crst(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    serverdata.reset_connection_stats(ctx.server)
    return {}


def _srst(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    ctx.server.reset_stats()
    return {}


def _dirs(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    cfg = ctx.server.config
    return {"datadir_size": serverdata.dir_size(cfg.data_dir),
            "logdir_size": serverdata.dir_size(cfg.data_log_dir)}


def _dump(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    # (Jackson writes the Long keys of these maps as strings)
    _, buckets = serverdata.session_expiry(ctx.server)
    _, owners = serverdata.ephemerals(ctx.server)
    return {"expiry_time_to_session_ids": LazyObject(buckets), "session_id_to_ephemeral_paths": LazyObject(owners)}


def _envi(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return dict(environment())


def _hash(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    # DataTree.getDigestLog, each ZxidDigest as Jackson writes it
    return {"digests": [{"zxid": zxid, "digest": digest, "digest_version": DIGEST_VERSION}
                        for zxid, digest in list(ctx.server.tree.digest_log)]}


def _gtmk(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"tracemask": ctx.server.trace_mask}


def _stmk(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    text = kw.get("traceMask")
    if text is None:
        return {"error": "setTraceMask requires long traceMask argument"}
    try:
        mask = parse_java_long(text)
    except ValueError:
        return {"error": f"setTraceMask requires long traceMask argument, got {text}"}
    ctx.server.set_trace_mask(mask)
    return {"tracemask": mask}


def _icfg(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"initial_configuration": ctx.initial_config}


def _isro(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"read_only": bool(ctx.server.read_only)}


def _lsnp(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    zxid, timestamp = serverdata.last_snapshot(ctx.server)
    return {"zxid": f"{zxid & serverdata.U64:x}", "timestamp": timestamp}


def _lead(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"error": "server is not initialized"}  # a standalone server is no QuorumZooKeeperServer


def _mntr(ctx: CommandContext, kw: Mapping[str, str]) -> LazyObject:
    return LazyObject(monitor_values(ctx.server, ctx.server.listener))


def _orst(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {}  # no learners to reset in standalone mode


def _obsr(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"synced_observers": 0, "observers": []}


def system_properties(config: ServerConfig | None) -> dict[str, str]:
    """What `sysp` shows: the runtime's own properties (Python's, under Java's names, as `envi`) and
    every system property zkfast was given (-D, SERVER_JVMFLAGS, and zoo.cfg keys Apache turns into
    `zookeeper.*` properties), sorted by name."""
    props = {k: v for k, v in environment()
             if k not in ("zookeeper.version", "host.name") and not k.startswith("os.memory.") and v != "<NA>"}
    props.update({"file.encoding": sys.getfilesystemencoding().upper().replace("UTF8", "UTF-8"),
                  "file.separator": os.sep, "line.separator": os.linesep, "path.separator": os.pathsep,
                  "sun.java.command": " ".join(sys.argv)})
    if config is not None:
        props.update(config.system_properties)
    return dict(sorted(props.items()))


def _sysp(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return dict(system_properties(ctx.server.config))


def _voting_view(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"current_config": {}}


def _wchs(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return dict(serverdata.watch_summary(ctx.server))


def _wchc(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"session_id_to_watched_paths": LazyObject(serverdata.watches_by_session(ctx.server))}


def _wchp(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"path_to_session_ids": LazyObject(serverdata.watches_by_path(ctx.server))}


def _zabstate(ctx: CommandContext, kw: Mapping[str, str]) -> dict[str, Any]:
    return {"voting": False, "zabstate": ""}


# Commands.java's static registrations: names (primary first) and isServerRequired
COMMANDS: tuple[Command, ...] = (
    Command(("connection_stat_reset", "crst"), _crst),
    Command(("configuration", "conf", "config"), _conf),
    Command(("connections", "cons"), _cons),
    Command(("hash",), _hash),
    Command(("dirs",), _dirs),
    Command(("dump",), _dump),
    Command(("environment", "env", "envi"), _envi, server_required=False),
    Command(("get_trace_mask", "gtmk"), _gtmk, server_required=False),
    Command(("initial_configuration", "icfg"), _icfg),
    Command(("is_read_only", "isro"), _isro),
    Command(("last_snapshot", "lsnp"), _lsnp),
    Command(("leader", "lead"), _lead),
    Command(("monitor", "mntr"), _mntr, server_required=False),
    Command(("observer_connection_stat_reset", "orst"), _orst),
    Command(("ruok",), _ruok),
    Command(("set_trace_mask", "stmk"), _stmk, server_required=False),
    Command(("server_stats", "srvr"), _srvr),
    Command(("stats", "stat"), _stat),
    Command(("stat_reset", "srst"), _srst),
    Command(("observers", "obsr"), _obsr),
    Command(("system_properties", "sysp"), _sysp, server_required=False),
    Command(("voting_view",), _voting_view),
    Command(("watches", "wchc"), _wchc),
    Command(("watches_by_path", "wchp"), _wchp),
    Command(("watch_summary", "wchs"), _wchs),
    Command(("zabstate",), _zabstate, server_required=False),
)
BY_NAME: dict[str, Command] = {name: cmd for cmd in COMMANDS for name in cmd.names}


def response_map(command: str, error: str | None, data: Mapping[str, Any] | LazyObject) -> dict[str, Any] | LazyObject:
    """CommandResponse.toMap: the data's keys first, then command and error (a data "error" wins,
    keeping its place; lazy data has neither key)."""
    if isinstance(data, LazyObject):
        return LazyObject(chain(data.entries, (("command", command), ("error", error))))
    out = dict(data)
    out.setdefault("command", command)
    out.setdefault("error", error)
    return out


def run_command(name: str, ctx: CommandContext, kwargs: Mapping[str, str]) -> dict[str, Any] | LazyObject:
    """Commands.runCommand."""
    cmd = BY_NAME.get(name)
    if cmd is None:
        return response_map(name, f"Unknown command: {name}", {})
    server = ctx.server
    if cmd.server_required and (not server.serving or server.listener is None):
        return response_map(name, NOT_SERVING, {})
    if cmd.run is _mntr and server.listener is None:
        return response_map(cmd.primary, NOT_SERVING, {})
    return response_map(cmd.primary, None, cmd.run(ctx, kwargs))


def command_links(command_url: str) -> str:
    """The page at the command URL: one link per primary name, sorted, as JettyAdminServer."""
    return "".join(f'<a href="{command_url}/{name}">{name}</a>\n<br/>\n'
                   for name in sorted(c.primary for c in COMMANDS))


# ------------------------------------------------------------------------------------------ the server

class AdminServer:
    """The running admin HTTP server of one ZooKeeperServer."""

    def __init__(self, server: ZooKeeperServer, host: str, port: int, command_url: str,
                 idle_timeout_ms: int, initial_config: str) -> None:
        self.context = CommandContext(server, initial_config)
        url = command_url.rstrip("/")
        self.command_url = url if url.startswith("/") else "/" + url
        self.http = HttpServer(self.handle, host, port, idle_timeout_s=idle_timeout_ms / 1000, name="AdminServer")

    @property
    def port(self) -> int:
        return self.http.port

    def use_server(self, server: ZooKeeperServer) -> None:
        """An ensemble member's next era: commands answer about its server from now on."""
        self.context.server = server

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    def handle(self, req: HttpRequest) -> HttpResponse:
        url = self.command_url
        if req.path != url and not req.path.startswith(url + "/"):
            return error_page(404, req.path)
        if req.method == "TRACE":
            return HttpResponse(403)  # JettyAdminServer.constrainTraceMethod
        if req.method == "OPTIONS":
            return HttpResponse(200, headers=[("Allow", "GET, HEAD, TRACE, OPTIONS")])
        if req.method not in ("GET", "HEAD"):
            return error_page(405, req.path, f"HTTP method {req.method} is not supported by this URL")
        info = req.path[len(url):]
        if info in ("", "/"):
            return HttpResponse(200, command_links(url).encode("utf-8"))
        kwargs = {k: v[0] for k, v in req.query.items()}
        body = run_command(info[1:], self.context, kwargs)
        return HttpResponse(200, content_type=JSON_TYPE, pieces=jackson_pieces(body))


def read_initial_config(config: ServerConfig) -> str:
    """zoo.cfg's text as the server started on it (QuorumPeerConfig's initialConfig)."""
    from zkfast.config import EMBEDDED_SOURCE, default_config_text

    if config.source == EMBEDDED_SOURCE:
        return default_config_text()
    try:
        with open(config.source, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


async def start_admin_server(server: ZooKeeperServer, config: ServerConfig) -> AdminServer | None:
    """Start the AdminServer unless `admin.enableServer=false`; None when disabled or when it cannot
    listen (logged as an error: the ZooKeeper server keeps serving clients without it)."""
    if not config.admin_enable_server:
        return None
    admin = AdminServer(server, config.admin_server_address, config.admin_server_port, config.admin_command_url,
                        config.admin_idle_timeout_ms, read_initial_config(config))
    try:
        await admin.start()
    except OSError as e:
        log.error("Unable to start AdminServer on address %s, port %d and command URL %s: %s; serving "
                  "clients without it (set admin.serverPort, or admin.enableServer=false)",
                  config.admin_server_address, config.admin_server_port, config.admin_command_url, e)
        return None
    log.info("Started AdminServer on address %s, port %d and command URL %s", config.admin_server_address,
             admin.port, admin.command_url)
    return admin
