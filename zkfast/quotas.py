"""Quota metrics as Apache ZooKeeper 3.8 reports them (QuotaMetricsUtils and the quota-exceeded counter).

Per top-level namespace (`/app/...` → `app`): the limits (a hard limit where set, else the soft one) and the
usage of every quota below it, summed, and the writes refused with QUOTAEXCEEDED. Apache's default metrics
provider prints them in `mntr` as `<namespace>_<name>` in the order of its ConcurrentHashMaps (the gauge
sets by name, the namespaces by hash); its Prometheus provider as `<name>{key="<namespace>"}`. The quota
nodes themselves are kept by the tree (zkfast._datatree) and the prep (zkfast._pipeline).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from zkfast._datatree import LIMIT_NODE, QUOTA_ZOOKEEPER, STAT_NODE, parse_stats_track
from zkfast.javaorder import java_str_hash

COUNT_LIMIT = "quota_count_limit_per_namespace"
BYTES_LIMIT = "quota_bytes_limit_per_namespace"
COUNT_USAGE = "quota_count_usage_per_namespace"
BYTES_USAGE = "quota_bytes_usage_per_namespace"
EXCEEDED = "quota_exceeded_error_per_namespace"
# the gauge sets as DefaultMetricsProvider's ConcurrentHashMap iterates their names (chm_order of the four)
GAUGE_SETS = (BYTES_LIMIT, COUNT_USAGE, COUNT_LIMIT, BYTES_USAGE)
LABELLED = frozenset((*GAUGE_SETS, EXCEEDED))

_LIMIT_SUFFIX = b"/" + LIMIT_NODE
_STATS_SUFFIX = b"/" + STAT_NODE


def chm_order(keys: Iterable[str]) -> list[str]:
    """The iteration order of a `new ConcurrentHashMap<>()` that got `keys` put in this order (bins by
    spread hash; a new key at its bin's tail; at 3/4 full the table doubles and each bin splits as
    transfer() splits it: the last run of nodes going the same way stays in order, the nodes before it
    are prepended one by one). Bins of 8 or more (trees) are not modelled."""
    n = 16
    table: list[list[str]] = [[] for _ in range(n)]
    size_ctl = n - (n >> 2)
    seen: set[str] = set()
    count = 0
    for key in keys:
        if key in seen:
            continue
        seen.add(key)
        h = java_str_hash(key)
        table[(h ^ (h >> 16)) & 0x7FFFFFFF & (n - 1)].append(key)
        count += 1
        if count >= size_ctl:
            bigger: list[list[str]] = [[] for _ in range(2 * n)]
            for i, chain in enumerate(table):
                if not chain:
                    continue
                bits = [((h := java_str_hash(k)) ^ (h >> 16)) & n for k in chain]
                last = len(chain) - 1
                while last > 0 and bits[last - 1] == bits[last]:
                    last -= 1
                low = chain[last:] if bits[last] == 0 else []
                high = chain[last:] if bits[last] != 0 else []
                for k, bit in zip(chain[:last], bits[:last], strict=True):
                    if bit == 0:
                        low = [k, *low]
                    else:
                        high = [k, *high]
                bigger[i], bigger[i + n] = low, high
            table, n = bigger, 2 * n
            size_ctl = n - (n >> 2)
    return [k for chain in table for k in chain]


def _top_namespace(quota_path: bytes) -> str | None:
    # PathUtils.getTopNamespace(Quotas.trimQuotaPath(path)): "/app/x/zookeeper_limits" → "app"
    parts = quota_path[len(QUOTA_ZOOKEEPER):].decode("utf-8", "replace").split("/")
    while parts and parts[-1] == "":
        parts.pop()
    return parts[1] if len(parts) > 1 else None


def _leaves(tree: Any, path: bytes) -> Iterator[bytes]:
    # QuotaMetricsUtils' walk: depth first, children in Apache's order, the leaves only
    children = tree.get_children(path)
    if children is None:
        return
    if not children:
        yield path
        return
    for child in children:
        yield from _leaves(tree, path + b"/" + child)


def gauge_sets(tree: Any) -> dict[str, dict[str, int]]:
    """{gauge set: {namespace: value}}, each namespace map in its ConcurrentHashMap's order."""
    out: dict[str, dict[str, int]] = {}
    leaves = list(_leaves(tree, QUOTA_ZOOKEEPER)) if tree.get_children(QUOTA_ZOOKEEPER) else []
    for name in GAUGE_SETS:
        limit = name in (COUNT_LIMIT, BYTES_LIMIT)
        sums: dict[str, int] = {}
        for path in leaves:
            if not path.endswith(_LIMIT_SUFFIX if limit else _STATS_SUFFIX):
                continue
            namespace = _top_namespace(path)
            data = tree.get_data(path)
            if namespace is None or data is None:
                continue
            try:
                stats = parse_stats_track(data)
            except ValueError:
                continue  # Apache's gauge throws; zkfast leaves the node out
            if name == COUNT_LIMIT:
                hard, soft = stats.get("countHardLimit", -1), stats.get("count", -1)
                value = hard if hard > -1 else soft
            elif name == BYTES_LIMIT:
                hard, soft = stats.get("byteHardLimit", -1), stats.get("bytes", -1)
                value = hard if hard > -1 else soft
            else:
                value = stats.get("count" if name == COUNT_USAGE else "bytes", -1)
            sums[namespace] = sums.get(namespace, 0) + value
        out[name] = {ns: sums[ns] for ns in chm_order(sums)}
    return out


def gauge_values(tree: Any) -> Iterator[tuple[str, int]]:
    """The gauge sets as `mntr` prints them: `<namespace>_<name>`, after the plain gauges."""
    for name, values in gauge_sets(tree).items():
        for namespace, value in values.items():
            yield f"{namespace}_{name}", value


def exceeded_values(prep: Any) -> Iterator[tuple[str, int]]:
    """QUOTAEXCEEDED refusals per namespace (a counter set), as `mntr` prints them."""
    counts = prep.quota_exceeded
    for namespace in chm_order(counts):
        yield f"{namespace}_{EXCEEDED}", counts[namespace]


def split_labelled(key: str) -> tuple[str, str] | None:
    """(metric, namespace) of an `mntr` key of a quota set, else None (Prometheus labels them)."""
    for name in LABELLED:
        if key.endswith("_" + name) and len(key) > len(name) + 1:
            return name, key[:-len(name) - 1]
    return None
