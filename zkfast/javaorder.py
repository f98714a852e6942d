"""The iteration order of Java's HashSet<String>, where Apache ZooKeeper's observable order comes from one.

A closeSession deletes the session's ephemerals in the order of a HashSet copy, and that order
decides the order of NodeDeleted events a watcher receives; zkfast reproduces it.

A fact about Java, not about the server: it depends on nothing of zkfast, so the Cython modules
(zkfast._pipeline) may use it as well as the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# a HashMap's table size when nothing says otherwise
DEFAULT_CAPACITY = 16


def java_str_hash(s: str) -> int:
    """String.hashCode."""
    h = 0
    for unit in s.encode("utf-16-be", "surrogatepass").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h


def java_string_hash(s: bytes) -> int:
    """String.hashCode of the Java String these UTF-8 bytes decode to."""
    return java_str_hash(s.decode("utf-8", "replace"))


def _spread(h: int) -> int:
    return h ^ (h >> 16)


def table_size_for(n: int) -> int:
    cap = 1
    while cap < n:
        cap <<= 1
    return cap


def capacity_after_inserts(max_size: int, initial: int = DEFAULT_CAPACITY) -> int:
    """A HashMap's table size once it has held max_size entries (it doubles past 3/4 full)."""
    cap = initial
    while max_size > cap * 3 // 4:
        cap <<= 1
    return cap


def iteration_order(items_in_insertion_order: Sequence[bytes], capacity: int) -> list[bytes]:
    """Bucket by bucket, and within a bucket in insertion order (resizes keep relative order)."""
    indexed = [(_spread(java_string_hash(s)) & (capacity - 1), i, s)
               for i, s in enumerate(items_in_insertion_order)]
    indexed.sort()
    return [s for _, _, s in indexed]


def cloned_set_order(order: Iterable[bytes]) -> tuple[list[bytes], int]:
    """HashSet.clone(): entries re-inserted in iteration order into a table sized for them."""
    items = list(order)
    if not items:
        return [], DEFAULT_CAPACITY
    cap = table_size_for(int(len(items) / 0.75 + 1.0))
    return iteration_order(items, cap), cap


def add_to_set(order: list[bytes], capacity: int, size_hint: int, item: bytes) -> tuple[list[bytes], int]:
    """HashSet.add on a set whose current iteration order is `order`."""
    if item in order:
        return order, capacity
    items = order + [item]
    if len(items) > capacity * 3 // 4:
        capacity <<= 1
    return iteration_order(items, capacity), capacity


def id_hash(scheme: str, ident: str) -> int:
    """The jute-generated Id.hashCode."""
    h = 17
    h = (37 * h + java_str_hash(scheme)) & 0xFFFFFFFF
    h = (37 * h + java_str_hash(ident)) & 0xFFFFFFFF
    return h


def auth_set_order(ids_in_insertion_order: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A connection's auth ids as Apache keeps them: a ConcurrentHashMap-backed set (no duplicates,
    iterated bin by bin). That order shows in whoAmI and in the ACLs an `auth` id expands to."""
    uniq = list(dict.fromkeys(ids_in_insertion_order))
    cap = DEFAULT_CAPACITY
    while len(uniq) >= cap * 3 // 4:
        cap <<= 1
    keyed = [(((h := id_hash(s, i)) ^ (h >> 16)) & 0x7FFFFFFF & (cap - 1), n, (s, i))
             for n, (s, i) in enumerate(uniq)]
    keyed.sort()
    return [k for _, _, k in keyed]
