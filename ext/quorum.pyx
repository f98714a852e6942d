# cython: language_level=3
"""Zab's hot path in C: the QuorumPacket record and its codec, and the commit rule.

QuorumPacket is Apache's record (zookeeper-jute/src/main/resources/zookeeper.jute):
`int type, long zxid, buffer data, vector<Id> authinfo`, packets back to back on the quorum port
with no outer length. A learner and its leader exchange several packets per write (PROPOSAL, ACK,
COMMIT, forwarded REQUESTs), so their records, their encoding into a connection's WriteBuffer and
the split of a read into packets are C here, not Python per field and per packet.

`QuorumVerifier` is the one quorum rule (a majority, or Apache's hierarchical groups and weights) and
`quorum_of` applies it: zab.py's cores count epoch, NEWLEADER and proposal acks with it, election.py
its votes, the driver a reconfig's synced quorum, in the peer and in the simulator alike.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t

from zkfast._jute cimport Cursor, WriteBuffer, cursor_init, rd_bytes, rd_i32, rd_i64, wb_bytes, wb_i32, wb_i64

# type, zxid and the data's length: what a reader needs before it knows a packet's size
PACKET_HEAD_BYTES = 16
cdef Py_ssize_t HEAD_BYTES = 16

# what split_packets says about the bytes it stopped at
SPLIT_MORE = 0      # a packet is not all there yet (or nothing is left)
SPLIT_STOP = 1      # the last packet is of the type to stop at (a SNAP: its tree stream follows)
SPLIT_TOO_BIG = 2   # the next packet claims more data than a packet may carry
SPLIT_MALFORMED = 3 # the next packet's authinfo cannot be read


cdef class QuorumPacket:
    """One Zab packet. Immutable, compared and hashed by value."""

    cdef readonly int32_t type
    cdef readonly int64_t zxid
    cdef readonly object data          # bytes or None
    cdef readonly tuple authinfo       # ((scheme, id), ...) as str

    def __init__(self, int32_t type, int64_t zxid, data=None, authinfo=()):
        self.type = type
        self.zxid = zxid
        self.data = None if data is None else bytes(data)
        self.authinfo = tuple(authinfo)

    def __repr__(self):
        return f"QuorumPacket(type={self.type}, zxid=0x{self.zxid & 0xFFFFFFFFFFFFFFFF:x}, data={self.data!r}, " \
               f"authinfo={self.authinfo!r})"

    def __eq__(self, other):
        if not isinstance(other, QuorumPacket):
            return NotImplemented
        o = <QuorumPacket>other
        return self.type == o.type and self.zxid == o.zxid and self.data == o.data and self.authinfo == o.authinfo

    def __hash__(self):
        return hash((self.type, self.zxid, self.data, self.authinfo))

    def __reduce__(self):
        return QuorumPacket, (self.type, self.zxid, self.data, self.authinfo)

    cpdef encode_into(self, WriteBuffer b):
        """Apache's jute encoding, appended to b."""
        cdef bytes data = self.data
        wb_i32(b, self.type)
        wb_i64(b, self.zxid)
        if data is None:
            wb_i32(b, -1)
        else:
            wb_bytes(b, PyBytes_AS_STRING(data), <int32_t>PyBytes_GET_SIZE(data))
        wb_i32(b, <int32_t>len(self.authinfo))
        for scheme, ident in self.authinfo:
            b.write_ustring(scheme)  # str encoded as Java does, in one place: WriteBuffer's
            b.write_ustring(ident)

    def encode(self):
        cdef WriteBuffer b = WriteBuffer(64 + (len(self.data) if self.data is not None else 0))
        self.encode_into(b)
        return b.getvalue()


cdef inline QuorumPacket make_packet(int32_t typ, int64_t zxid, object data, tuple auth):
    cdef QuorumPacket p = QuorumPacket.__new__(QuorumPacket)
    p.type = typ
    p.zxid = zxid
    p.data = data
    p.authinfo = auth
    return p


cdef object read_packet(Cursor* c):
    """One packet at c, or None if it is not all there (c.bad then)."""
    cdef const uint8_t* p
    cdef int32_t typ = rd_i32(c)
    cdef int64_t zxid = rd_i64(c)
    cdef int32_t n = rd_bytes(c, &p)
    data = PyBytes_FromStringAndSize(<const char*>p, n) if n >= 0 and not c.bad else None
    cdef int32_t count = rd_i32(c)
    if c.bad:
        return None
    auth = ()
    if count > 0:
        entries = []
        for _ in range(count):
            ns = rd_bytes(c, &p)
            scheme = p[:ns].decode("utf-8", "replace") if ns > 0 else ""
            ni = rd_bytes(c, &p)
            ident = p[:ni].decode("utf-8", "replace") if ni > 0 else ""
            if c.bad:
                return None
            entries.append((scheme, ident))
        auth = tuple(entries)
    return make_packet(typ, zxid, data, auth)


def split_packets(buf, Py_ssize_t max_packet_bytes, int32_t stop_after_type):
    """The whole packets at the start of buf: (packets, bytes they took, SPLIT_*), what stopped the
    split; it stops after a packet of type stop_after_type (-1: none). buf is not changed: the caller drops the bytes taken once, not a packet at a time.
    A packet whose data would be longer than max_packet_bytes is not waited for (SPLIT_TOO_BIG), nor
    one whose authinfo cannot be read although 64 KiB past its data are there (SPLIT_MALFORMED)."""
    cdef const uint8_t[::1] view = buf
    cdef Py_ssize_t total = view.shape[0]
    cdef Py_ssize_t pos = 0
    cdef Cursor c, head
    cdef int32_t n, typ
    cdef list out = []
    while total - pos >= HEAD_BYTES:
        cursor_init(&head, &view[pos], total - pos)
        typ = rd_i32(&head)
        rd_i64(&head)
        n = rd_i32(&head)
        if n > max_packet_bytes:
            return out, pos, SPLIT_TOO_BIG
        cursor_init(&c, &view[pos], total - pos)
        p = read_packet(&c)
        if p is None:
            if total - pos > HEAD_BYTES + (n if n > 0 else 0) + 4 + 64 * 1024:
                return out, pos, SPLIT_MALFORMED
            break
        out.append(p)
        pos = total - c.left
        if typ == stop_after_type:
            return out, pos, SPLIT_STOP
    return out, pos, SPLIT_MORE


cdef class QuorumVerifier:
    """Who makes a quorum, Apache's QuorumVerifier (zookeeper-server/src/main/java/org/apache/zookeeper/
    server/quorum/flexible/): without groups more than half of the voters (QuorumMaj); with groups
    (group.N, weight.N) more than half of the groups of positive weight, each by more than half of
    its weight (QuorumHierarchical.containsQuorum). Immutable, compared by value. zkfast.config.quorum
    checks groups and weights as Apache's parse does before they get here."""

    cdef readonly frozenset voters
    cdef readonly object groups      # None (a majority), or ((gid, (sid, ...)), ...) by gid
    cdef readonly object weights     # ((sid, weight), ...) by sid; () without groups
    cdef dict _weight                # sid -> weight
    cdef dict _slot                  # sid in a group -> (its group's slot, its weight)
    cdef list _group_weight          # per slot: the group's total weight
    cdef Py_ssize_t _groups_counted  # groups of positive weight (Apache's numGroups)

    def __init__(self, voters, groups=None, weights=None):
        self.voters = frozenset(voters)
        self._weight = {}
        self._slot = {}
        self._group_weight = []
        self._groups_counted = 0
        if groups is None:
            self.groups = None
            self.weights = ()
            return
        self.groups = tuple(sorted((int(g), tuple(sorted(int(s) for s in members))) for g, members in groups.items()))
        w = self._weight = {int(s): int(v) for s, v in (weights or {}).items()}
        self.weights = tuple(sorted(w.items()))
        for slot, (gid, members) in enumerate(self.groups):
            total = 0
            for sid in members:
                if sid not in w:
                    raise ValueError(f"server {sid} of group {gid} has no weight")
                self._slot[sid] = (slot, w[sid])
                total += w[sid]
            self._group_weight.append(total)
            if total != 0:
                self._groups_counted += 1

    @property
    def hierarchical(self):
        return self.groups is not None

    def weight(self, sid):
        """A voter's say in an election: a server of weight 0 is never elected (Apache's
        FastLeaderElection.totalOrderPredicate); QuorumMaj gives everyone 1."""
        if self.groups is None:
            return 1
        return self._weight.get(sid, 0)

    cpdef bint contains_quorum(self, ids):
        """Do the servers `ids` (a set) make a quorum?"""
        cdef Py_ssize_t got = 0
        if self.groups is None:
            for sid in ids:
                if sid in self.voters:
                    got += 1
            return 2 * got > len(self.voters)
        sums = [0] * len(self._group_weight)
        for sid in ids:
            entry = self._slot.get(sid)
            if entry is not None:
                sums[entry[0]] += entry[1]
        for slot, total in enumerate(self._group_weight):
            if sums[slot] > total // 2:
                got += 1
        return got > self._groups_counted // 2

    def __eq__(self, other):
        if not isinstance(other, QuorumVerifier):
            return NotImplemented
        o = <QuorumVerifier>other
        return self.voters == o.voters and self.groups == o.groups and self.weights == o.weights

    def __hash__(self):
        return hash((self.voters, self.groups, self.weights))

    def __repr__(self):
        if self.groups is None:
            return f"QuorumVerifier(majority of {sorted(self.voters)})"
        return f"QuorumVerifier(voters={sorted(self.voters)}, groups={dict(self.groups)}, weights={dict(self.weights)})"

    def __reduce__(self):
        return QuorumVerifier, (self.voters, None if self.groups is None else dict(self.groups), dict(self.weights))


def majority(voters):
    """QuorumMaj: more than half of `voters`."""
    return QuorumVerifier(voters)


def quorum_of(QuorumVerifier quorum, acks):
    """The commit rule, also of elections, epochs and NEWLEADER: do `acks` (a set of server ids)
    make a quorum? A C call (cpdef): a majority costs what the old voters-only rule did."""
    return quorum.contains_quorum(acks)


cdef class Actions:
    """What a core (zkfast.quorum.zab, .replica) wants done; the driver does them in this order:
    persist, write epochs, apply, send. C, as every packet of a replicated write makes one or two
    of them, and the learner merges those of one read into one."""

    cdef public list send                    # (sid or 0 for the leader, QuorumPacket)
    cdef public list persist                 # (zxid, txn bytes) to log
    cdef public bint sync                    # fsync the log after persisting
    cdef public object truncate_to           # int | None: drop logged txns past this zxid
    cdef public object snapshot              # (zxid, the leader's tree) | None: to install
    cdef public object write_accepted_epoch  # int | None
    cdef public object write_current_epoch   # int | None
    cdef public list apply                   # (zxid, txn bytes) committed, in zxid order
    cdef public object commit_upto           # int | None: leader: its own txns up to here
    cdef public bint serve                   # start serving clients
    cdef public object stop                  # str | None: leave this role (the reason)
    cdef public list drop                    # leader: close these learners (sids)
    cdef public object activate              # int | None: leader: the reconfig of this zxid is
                                             # committed, its membership now rules
    # replica-level (zkfast.quorum.replica)
    cdef public list notify                  # (sid, Notification): election messages
    cdef public object role                  # ServerState | None: the role just taken
    cdef public object connect_leader        # int | None: learner: connect to this sid
    cdef public bint reload                  # the role ended: stop serving, rebuild from disk, then
                                             # Replica.on_reloaded

    def __cinit__(self):
        self.send = []
        self.persist = []
        self.apply = []
        self.drop = []
        self.notify = []
        self.truncate_to = None
        self.snapshot = None
        self.write_accepted_epoch = None
        self.write_current_epoch = None
        self.commit_upto = None
        self.stop = None
        self.activate = None
        self.role = None
        self.connect_leader = None

    def __repr__(self):
        fields = ("send", "persist", "sync", "truncate_to", "snapshot", "write_accepted_epoch",
                  "write_current_epoch", "apply", "commit_upto", "serve", "stop", "drop", "activate", "notify",
                  "role", "connect_leader", "reload")
        return "Actions(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"

    cpdef Actions merge(self, Actions other):
        """other's actions after ours."""
        if other.send:
            self.send.extend(other.send)
        if other.persist:
            self.persist.extend(other.persist)
        self.sync = self.sync or other.sync
        if other.truncate_to is not None:
            self.truncate_to = other.truncate_to
        if other.snapshot is not None:
            self.snapshot = other.snapshot
        if other.write_accepted_epoch is not None:
            self.write_accepted_epoch = other.write_accepted_epoch
        if other.write_current_epoch is not None:
            self.write_current_epoch = other.write_current_epoch
        if other.apply:
            self.apply.extend(other.apply)
        if other.commit_upto is not None:
            self.commit_upto = max(self.commit_upto or 0, other.commit_upto)
        self.serve = self.serve or other.serve
        self.stop = self.stop or other.stop
        if other.drop:
            self.drop.extend(other.drop)
        if other.activate is not None:
            self.activate = other.activate
        if other.notify:
            self.notify.extend(other.notify)
        if other.role is not None:
            self.role = other.role
        if other.connect_leader is not None:
            self.connect_leader = other.connect_leader
        self.reload = self.reload or other.reload
        return self
