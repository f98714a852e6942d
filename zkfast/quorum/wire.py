"""Quorum wire formats: election messages and Zab's QuorumPacket (Apache's QuorumCnxManager.java and
FastLeaderElection.java in zookeeper-server/src/main/java/org/apache/zookeeper/server/quorum/; QuorumPacket
in zookeeper-jute/src/main/resources/zookeeper.jute).

Election port: the connecting side sends an initial message (long protocol version -65536, long sid,
int length + "host:port"), then each message is int length + payload; a notification payload is
`int state, long leader, long zxid, long electionEpoch, long peerEpoch, int version, int configLen,
config` (version 2). Quorum port: QuorumPackets back to back, jute-encoded, no outer length; the record,
its codec and the split of a stream into packets are C (zkfast._quorum, ext/quorum.pyx), as a replicated
write is several packets on every member.
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
