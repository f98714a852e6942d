"""Run one case against one server: prepare, then the attack with the probe running and the RSS
sampled, then the lost-write check; and the verdict on zkfast's figures."""

from __future__ import annotations

import uuid

from testbase.process import ServerProcess

from abuse.budget import Budget
from abuse.cases import Case, Sizes, Target, create
from abuse.measure import Probe, RssSampler
from abuse.report import Row


def run_case(case: Case, kind: str, server: ServerProcess, sizes: Sizes, secure_port: int | None = None) -> Row:
    root = f"/abuse-{case.name}-{kind}-{uuid.uuid4().hex[:6]}"
    max_frame = int(server.cfg["jute.maxbuffer"]) if "jute.maxbuffer" in server.cfg else None
    t = Target(kind, server, root, sizes, Budget(max_frame), secure_port)
    create(t, root)
    state = case.prepare(t) if case.prepare is not None else None
    try:
        with Probe(server.host, server.port, f"{root}/acked") as probe, RssSampler(t.pid) as rss:
            outcome = case.attack(t, state)
    finally:
        if case.cleanup is not None:
            case.cleanup(state)
    alive = server.proc is not None and server.proc.poll() is None
    report = probe.report
    lost: int | None = None  # None: the server could not be asked
    if alive:
        try:
            lost = len(probe.lost_writes())
        except OSError:  # TimeoutError included: the server did not answer the check
            pass
    row = Row(case.name, kind, rss.baseline, rss.peak, report.worst_ms, report.percentile_ms(99),
              len(report.latencies_ms), report.expired, report.unanswered, lost, len(report.acked),
              outcome.detail, alive=alive)
    if kind == "zkfast":
        row.bound, row.bound_terms = outcome.bound.total, outcome.bound.describe()
        row.failures = verdict(row, outcome.checks, tick_ms=int(server.cfg["tickTime"]))
    return row


def verdict(row: Row, checks: dict[str, bool], tick_ms: int) -> list[str]:
    """What zkfast must hold in every case: RSS growth within the bound, every probe request answered
    within tickTime, the probe's session never expired, nothing acknowledged lost, the server alive;
    plus the case's own expectations."""
    out = []
    if not row.alive:
        out.append("the server died")
    if row.bound is not None and row.growth > row.bound:
        out.append(f"RSS grew {row.growth / 2**20:.1f} MiB > bound {row.bound / 2**20:.1f} MiB ({row.bound_terms})")
    if row.probe_worst_ms > tick_ms:
        out.append(f"a probe request waited {row.probe_worst_ms:.0f} ms > tickTime {tick_ms} ms")
    if row.unanswered:
        out.append(f"{row.unanswered} probe requests unanswered within the session timeout")
    if row.expired:
        out.append("the probe's session expired")
    if row.lost is None and row.alive:
        out.append(f"the lost-write check got no answer ({row.acked} acknowledged writes unchecked)")
    elif row.lost:
        out.append(f"{row.lost} acknowledged writes lost")
    out += [f"expected: {what}" for what, ok in checks.items() if not ok]
    return out
