"""Requests kazoo 2.11 has no call for, submitted over kazoo's own session with `client._call(request, async)`.

kazoo's connection writes `xid, request.type, request.serialize()` and hands the reply body to
`request.deserialize(buffer, offset)`; a non-zero error code in the reply header becomes the matching kazoo
exception instead.  The records are the jute definitions of Apache ZooKeeper 3.8 (zookeeper.jute).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from kazoo.protocol.serialization import int_struct, stat_struct, write_buffer
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL

from zkfast._jute import (
    FLAG_CONTAINER,
    OP_ADD_WATCH,
    OP_AUTH,
    OP_CREATE,
    OP_CREATE_CONTAINER,
    OP_CREATE_TTL,
    OP_GET_ALL_CHILDREN_NUMBER,
    OP_GET_EPHEMERALS,
    OP_REMOVE_WATCHES,
    OP_SET_ACL,
    OP_SET_WATCHES2,
    OP_WHO_AM_I,
)

_long = struct.Struct("!q")


def write_string(text: str | None) -> bytes:
    """A jute ustring as the Java client writes it: null is -1, "" is an empty string (kazoo's own
    write_string sends "" as null, which servers may treat differently, e.g. the id of `auth::cdrwa`)."""
    if text is None:
        return int_struct.pack(-1)
    data = text.encode("utf-8")
    return int_struct.pack(len(data)) + data


def read_ustring(buf: bytes, offset: int) -> tuple[str | None, int]:
    """A jute ustring, decoded as Java decodes it (malformed UTF-8 becomes U+FFFD)."""
    length = int_struct.unpack_from(buf, offset)[0]
    offset += 4
    if length < 0:
        return None, offset
    return bytes(buf[offset:offset + length]).decode("utf-8", "replace"), offset + length


def read_string_vector(buf: bytes, offset: int) -> tuple[list[str], int]:
    count = int_struct.unpack_from(buf, offset)[0]
    offset += 4
    items: list[str] = []
    for _ in range(max(count, 0)):
        item, offset = read_ustring(buf, offset)
        items.append(item or "")
    return items, offset


def _acl_bytes(acl: list[ACL]) -> bytes:
    out = bytearray(int_struct.pack(len(acl)))
    for entry in acl:
        out += int_struct.pack(entry.perms) + write_string(entry.id.scheme) + write_string(entry.id.id)
    return bytes(out)


def _string_vector(items: list[str]) -> bytes:
    out = bytearray(int_struct.pack(len(items)))
    for item in items:
        out += write_string(item)
    return bytes(out)


@dataclass(frozen=True)
class Create:
    """create: CreateRequest {path, data, acl, flags} -> CreateResponse {path}."""

    path: str
    data: bytes | None
    acl: list[ACL]
    flags: int
    type: ClassVar[int] = OP_CREATE

    def serialize(self) -> bytes:
        return (write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl)
                + int_struct.pack(self.flags))

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> str | None:
        return read_ustring(buf, offset)[0]


@dataclass(frozen=True)
class SetACL:
    """setACL: SetACLRequest {path, acl, version} -> SetACLResponse {stat}."""

    path: str
    acl: list[ACL]
    version: int
    type: ClassVar[int] = OP_SET_ACL

    def serialize(self) -> bytes:
        return write_string(self.path) + _acl_bytes(self.acl) + int_struct.pack(self.version)

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> ZnodeStat:
        return ZnodeStat._make(stat_struct.unpack_from(buf, offset))


@dataclass(frozen=True)
class Auth:
    """AuthPacket {type, scheme, auth}; kazoo sends it with the auth xid and completes it on the reply."""

    scheme: str
    auth: bytes | None
    type: ClassVar[int] = OP_AUTH

    def serialize(self) -> bytes:
        return int_struct.pack(0) + write_string(self.scheme) + write_buffer(self.auth)


@dataclass(frozen=True)
class CreateContainer:
    """createContainer: a CreateRequest; the reply's leading path is all the Java client reads."""

    path: str
    data: bytes | None
    acl: list[ACL]
    flags: int = FLAG_CONTAINER
    type: ClassVar[int] = OP_CREATE_CONTAINER

    def serialize(self) -> bytes:
        return (write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl)
                + int_struct.pack(self.flags))

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> str | None:
        return read_ustring(buf, offset)[0]


@dataclass(frozen=True)
class CreateTTL:
    """createTTL: CreateTTLRequest {path, data, acl, flags, ttl} -> Create2Response {path, stat}."""

    path: str
    data: bytes | None
    acl: list[ACL]
    flags: int
    ttl: int
    type: ClassVar[int] = OP_CREATE_TTL

    def serialize(self) -> bytes:
        return (write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl)
                + int_struct.pack(self.flags) + _long.pack(self.ttl))

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> tuple[str | None, ZnodeStat]:
        path, offset = read_ustring(buf, offset)
        return path, ZnodeStat._make(stat_struct.unpack_from(buf, offset))


@dataclass(frozen=True)
class RemoveWatches:
    """removeWatches: RemoveWatchesRequest {path, type}; an empty reply."""

    path: str
    watcher_type: int
    type: ClassVar[int] = OP_REMOVE_WATCHES

    def serialize(self) -> bytes:
        return write_string(self.path) + int_struct.pack(self.watcher_type)

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> bool:
        return True


@dataclass(frozen=True)
class GetEphemerals:
    """getEphemerals: GetEphemeralsRequest {prefixPath} -> {vector<ustring> ephemerals}."""

    prefix: str
    type: ClassVar[int] = OP_GET_EPHEMERALS

    def serialize(self) -> bytes:
        return write_string(self.prefix)

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> list[str]:
        return read_string_vector(buf, offset)[0]


@dataclass(frozen=True)
class GetAllChildrenNumber:
    """getAllChildrenNumber: {path} -> {int totalNumber}."""

    path: str
    type: ClassVar[int] = OP_GET_ALL_CHILDREN_NUMBER

    def serialize(self) -> bytes:
        return write_string(self.path)

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> int:
        return int(int_struct.unpack_from(buf, offset)[0])


@dataclass(frozen=True)
class AddWatch:
    """addWatch: AddWatchRequest {path, mode}; the reply body (an ErrorResponse) is not needed."""

    path: str
    mode: int
    type: ClassVar[int] = OP_ADD_WATCH

    def serialize(self) -> bytes:
        return write_string(self.path) + int_struct.pack(self.mode)

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> bool:
        return True


@dataclass(frozen=True)
class SetWatches2:
    """setWatches2: re-arms the watches of a session on a new connection, as the Java client does."""

    relative_zxid: int
    data: list[str]
    exist: list[str]
    child: list[str]
    persistent: list[str]
    persistent_recursive: list[str]
    type: ClassVar[int] = OP_SET_WATCHES2

    def serialize(self) -> bytes:
        return (_long.pack(self.relative_zxid) + _string_vector(self.data) + _string_vector(self.exist)
                + _string_vector(self.child) + _string_vector(self.persistent)
                + _string_vector(self.persistent_recursive))

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> bool:
        return True


@dataclass(frozen=True)
class WhoAmI:
    """whoAmI: no request body -> {vector<ClientInfo{authScheme, user}>}."""

    type: ClassVar[int] = OP_WHO_AM_I

    def serialize(self) -> bytes:
        return b""

    @classmethod
    def deserialize(cls, buf: bytes, offset: int) -> list[tuple[str | None, str | None]]:
        count = int_struct.unpack_from(buf, offset)[0]
        offset += 4
        infos: list[tuple[str | None, str | None]] = []
        for _ in range(max(count, 0)):
            scheme, offset = read_ustring(buf, offset)
            user, offset = read_ustring(buf, offset)
            infos.append((scheme, user))
        return infos
