"""The abuse suite (issue 11, deliverable 5): hostile and broken clients against Apache ZooKeeper 3.8
and zkfast in the same test, with the same figures, printed as one table at the end of the module
(and written to /tmp/zkfast-abuse-table.txt).

Each case (tests/abuse/cases.py) runs against Apache first, then zkfast, with a probe client doing
exists() every 20 ms on its own session and a writer creating numbered znodes throughout. For zkfast
only, the test asserts: RSS growth within the sum of the zkfast.limits the case can fill plus a
measured noise allowance (tests/abuse/budget.py), every probe request answered within tickTime, the
probe's session never expired, no acknowledged write lost, and the case's own expectations
(connection limits, sessionless connections closed). Apache's figures are the reference, never
asserted. Larger runs: `python bench/abuse.py --help`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from abuse.cases import CASES, Case, Sizes
from abuse.report import TABLE_PATH, Row, write_table
from abuse.run import run_case
from abuse.servers import KINDS, Pairs
from testbase.process import apache_available

SIZES = Sizes()


@pytest.fixture(scope="module")
def pairs() -> Iterator[Pairs]:
    """The module's Apache + zkfast pairs (tests/abuse/servers.py), each started on first use and
    stopped after the last case that needs it."""
    if not apache_available():
        pytest.skip("Apache ZooKeeper (Debian package) is not installed")
    running = Pairs((c.pair for c in CASES), SIZES.max_cnxns)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rows(request: pytest.FixtureRequest) -> Iterator[list[Row]]:
    """The table's rows; printed through the terminal reporter (whatever -s says) and written to a
    file once the module's cases have run."""
    collected: list[Row] = []
    yield collected
    if not collected:
        return
    text = write_table(collected)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "abuse suite: Apache ZooKeeper 3.8.0 vs zkfast")
        reporter.write_line(text)
        reporter.write_line(f"(also in {TABLE_PATH})")
    print(text)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_abuse(case: Case, pairs: Pairs, rows: list[Row]) -> None:
    pair = pairs.get(case.pair)
    try:
        results = {kind: run_case(case, kind, pair.servers[kind], SIZES, pair.secure_ports.get(kind))
                   for kind in KINDS}
    finally:
        pairs.done(case.pair)
    rows.extend(results.values())
    zkfast = results["zkfast"]
    assert not zkfast.failures, f"{case.name} ({case.summary}):\n  " + "\n  ".join(zkfast.failures)
