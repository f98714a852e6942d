"""One row per (case, server), and the table that puts Apache ZooKeeper's figures beside zkfast's."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
TABLE_PATH = Path(tempfile.gettempdir()) / "zkfast-abuse-table.txt"


@dataclass
class Row:
    case: str
    server: str
    rss_before: int
    rss_peak: int
    probe_worst_ms: float
    probe_p99_ms: float
    probe_requests: int
    expired: int
    unanswered: int
    lost: int | None  # None: the server did not answer the check
    acked: int
    detail: str
    bound: int | None = None          # zkfast: the bytes its RSS may grow by (budget.Bound.total)
    bound_terms: str = ""
    failures: list[str] = field(default_factory=list)  # zkfast: what broke a bound or expectation
    alive: bool = True

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before


HEADER = ("case", "server", "RSS before", "peak", "growth", "zkfast bound", "probe worst", "p99",
          "expired", "lost/acked", "verdict", "detail")


def _cells(r: Row) -> tuple[str, ...]:
    verdict = "-" if r.server != "zkfast" else ("ok" if not r.failures else "FAIL")
    return (r.case, r.server if r.alive else f"{r.server} (DIED)", f"{r.rss_before / MIB:.1f}",
            f"{r.rss_peak / MIB:.1f}", f"{r.growth / MIB:+.1f}",
            f"{r.bound / MIB:.1f}" if r.bound is not None else "", f"{r.probe_worst_ms:.0f} ms",
            f"{r.probe_p99_ms:.0f} ms", "yes" if r.expired else "no",
            f"{'?' if r.lost is None else r.lost}/{r.acked}", verdict, r.detail)


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table (MiB, ms), then each zkfast bound's terms and each failure."""
    cells = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(widths))) + "  " + c[-1] for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append("RSS in MiB (VmRSS: baseline right before the attack, peak sampled during it); probe: exists()")
    lines.append("every 20 ms on its own session; lost/acked: the probe's writer's acknowledged creates missing after.")
    for r in rows:
        if r.server == "zkfast" and r.bound_terms:
            lines.append(f"bound {r.case}: {r.bound_terms}")
    for r in rows:
        for f in r.failures:
            lines.append(f"FAIL {r.case} (zkfast): {f}")
    return "\n".join(lines) + "\n"


def write_table(rows: list[Row], path: Path = TABLE_PATH) -> str:
    text = table(rows)
    path.write_text(text)
    return text
