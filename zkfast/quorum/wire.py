"""Quorum wire formats: election messages and Zab's QuorumPacket (Apache's QuorumCnxManager.java and
FastLeaderElection.java in zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/; QuorumPacket
in zookeeper-jute/src/main/resources/zookeeper.jute).

Election port: the connecting side sends an initial message (long protocol version -65536, long sid,
int length + "host:port"), then each message is int length + payload; a notification payload is
`int state, long leader, long zxid, long electionEpoch, long peerEpoch, int version, int configLen,
config` (version 2). With quorum SASL, QuorumAuthPackets (QuorumAuth.java in .../quorum/auth/) follow
the initial message, and open a quorum port connection, before anything else. Quorum port:
QuorumPackets back to back, jute-encoded, no outer length; the record, its codec and the split of a
stream into packets are C (zkfast._quorum, ext/quorum.pyx), as a replicated write is several packets
on every member.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from zkfast._jute import JuteError
from zkfast._quorum import QuorumPacket as QuorumPacket
from zkfast._quorum import split_packets as split_packets

PROTOCOL_VERSION_V1 = -65536
PROTOCOL_VERSION_V2 = -65535
OBSERVER_ID = 0x7FFFFFFFFFFFFFFF  # Long.MAX_VALUE: an observer that connects without its sid
MAX_INITIAL_HOST_BYTES = 2048
MAX_ELECTION_MESSAGE_BYTES = 512 * 1024
NOTIFICATION_VERSION = 0x2
LEARNER_PROTOCOL_VERSION = 0x10000
ZXID_COUNTER_MASK = 0xFFFFFFFF


def zxid_epoch(zxid: int) -> int:
    return zxid >> 32


def make_zxid(epoch: int, counter: int) -> int:
    return (epoch << 32) | (counter & ZXID_COUNTER_MASK)


class ServerState(enum.IntEnum):
    LOOKING = 0
    FOLLOWING = 1
    LEADING = 2
    OBSERVING = 3


class PacketType(enum.IntEnum):
    REQUEST = 1
    PROPOSAL = 2
    ACK = 3
    COMMIT = 4
    PING = 5
    REVALIDATE = 6
    SYNC = 7
    INFORM = 8
    COMMITANDACTIVATE = 9
    NEWLEADER = 10
    FOLLOWERINFO = 11
    UPTODATE = 12
    DIFF = 13
    TRUNC = 14
    SNAP = 15
    OBSERVERINFO = 16
    LEADERINFO = 17
    ACKEPOCH = 18
    INFORMANDACTIVATE = 19


# ------------------------------------------------------------------------------------------------
# election


@dataclass(frozen=True)
class InitialMessage:
    """What the connecting side of an election connection says first."""

    sid: int
    addresses: tuple[str, ...] = ()
    protocol_version: int = PROTOCOL_VERSION_V1

    def encode(self) -> bytes:
        if self.protocol_version >= 0:
            return struct.pack(">q", self.sid)
        host = "|".join(self.addresses).encode()
        return struct.pack(">qqi", self.protocol_version, self.sid, len(host)) + host


@dataclass(frozen=True)
class Notification:
    """One election message, as FastLeaderElection sends it (state of the sender, its vote)."""

    state: ServerState
    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int
    version: int = NOTIFICATION_VERSION
    config: bytes = b""

    def encode(self) -> bytes:
        out = struct.pack(">iqqqq", int(self.state), self.leader, self.zxid, self.election_epoch, self.peer_epoch)
        if self.version >= 1:
            out += struct.pack(">i", self.version)
        if self.version > 1:
            out += struct.pack(">i", len(self.config)) + self.config
        return out

    @classmethod
    def decode(cls, payload: bytes) -> Notification | None:
        """None for a message too short or malformed (Apache logs and skips those)."""
        n = len(payload)
        if n < 28:
            return None
        state, leader, zxid, election_epoch = struct.unpack_from(">iqqq", payload)
        if not 0 <= state <= 3:
            return None
        if n == 28:
            # before peerEpoch existed: the epoch of the zxid
            return cls(ServerState(state), leader, zxid, election_epoch, zxid_epoch(zxid), 0)
        peer_epoch = struct.unpack_from(">q", payload, 28)[0]
        if n == 36:
            return cls(ServerState(state), leader, zxid, election_epoch, peer_epoch, 0)
        if n < 40:
            return None
        version = struct.unpack_from(">i", payload, 36)[0]
        config = b""
        if version > 1:
            if n < 44:
                return None
            length = struct.unpack_from(">i", payload, 40)[0]
            if length < 0 or 44 + length > n:
                return None
            config = bytes(payload[44:44 + length])
        return cls(ServerState(state), leader, zxid, election_epoch, peer_epoch, version, config)


# ------------------------------------------------------------------------------------------------
# Zab


@dataclass(frozen=True)
class LearnerInfo:
    sid: int
    protocol_version: int = LEARNER_PROTOCOL_VERSION
    config_version: int = 0

    def encode(self) -> bytes:
        return struct.pack(">qiq", self.sid, self.protocol_version, self.config_version)

    @classmethod
    def decode(cls, data: bytes | None) -> LearnerInfo:
        data = data or b""
        if len(data) >= 20:
            sid, pv, cv = struct.unpack_from(">qiq", data)
            return cls(sid, pv, cv)
        if len(data) >= 12:
            sid, pv = struct.unpack_from(">qi", data)
            return cls(sid, pv, 0)
        if len(data) >= 8:
            return cls(struct.unpack_from(">q", data)[0], 0, 0)
        raise JuteError("LearnerInfo too short")


# ------------------------------------------------------------------------------------------------
# quorum SASL: QuorumAuthPacket {long magic; int status; buffer token}

# Java's -0xa0dbcafecafe1234L: the negation of a negative hex literal, so a positive long
QUORUM_AUTH_MAGIC = 0x5F2435013501EDCC
_AUTH_HEADER = struct.Struct(">qii")


class AuthStatus(enum.IntEnum):
    IN_PROGRESS = 0
    SUCCESS = 1
    ERROR = -1


def encode_auth_packet(status: AuthStatus, token: bytes | None) -> bytes:
    if token is None:  # jute's null buffer
        return _AUTH_HEADER.pack(QUORUM_AUTH_MAGIC, int(status), -1)
    return _AUTH_HEADER.pack(QUORUM_AUTH_MAGIC, int(status), len(token)) + token


def starts_with_auth_packet(buf: bytes | bytearray) -> bool | None:
    """QuorumAuth.nextPacketIsAuth: the first long is the magic. None until 8 bytes are there."""
    if len(buf) < 8:
        return None
    return struct.unpack_from(">q", buf)[0] == QUORUM_AUTH_MAGIC


def decode_auth_packet(buf: bytes | bytearray, max_token_bytes: int) -> tuple[int, bytes | None, int] | None:
    """(status, token, bytes used) of the QuorumAuthPacket at the start of buf, None if it is not all
    there yet. ValueError for a token longer than max_token_bytes (so no more than that is ever
    buffered) or a negative length other than jute's null. The magic is not checked (Apache checks it
    only to tell whether a peer authenticates at all)."""
    if len(buf) < _AUTH_HEADER.size:
        return None
    _, status, n = _AUTH_HEADER.unpack_from(buf)
    if n < -1 or n > max_token_bytes:
        raise ValueError(f"a quorum auth token of {n} bytes (at most {max_token_bytes})")
    if n == -1:
        return status, None, _AUTH_HEADER.size
    end = _AUTH_HEADER.size + n
    if len(buf) < end:
        return None
    return status, bytes(buf[_AUTH_HEADER.size:end]), end
