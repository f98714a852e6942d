"""The commit stage: where a prepared txn becomes final before it is applied and answered.

Standalone with a txn log: final = fsynced. In an ensemble: final = acked by a quorum. Without
either: final at once. The pipeline only sees this interface: `append` txns in zxid order, `flush`
at the end of each batch, and a `on_commit(zxid)` callback once everything up to zxid is final.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from zkfast._jute import Txn

CommitCallback = Callable[[int], None]


class CommitStage(Protocol):
    def start(self, on_commit: CommitCallback) -> None: ...

    def append(self, txn: Txn) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def rewind(self, zxid: int) -> None:
        """After a failure: txns after zxid were never made final; their zxids are free again."""

    def metrics(self) -> list[tuple[str, object]]:
        """What this stage adds to mntr."""


class ImmediateCommit:
    """Every txn is final when its batch ends (no log): for tests and `forceSync`-free setups."""

    def __init__(self) -> None:
        self._on_commit: CommitCallback | None = None
        self._last_zxid = 0
        self._dirty = False

    def start(self, on_commit: CommitCallback) -> None:
        self._on_commit = on_commit

    def append(self, txn: Txn) -> None:
        assert txn.zxid > self._last_zxid, "txns reach the commit stage in zxid order"
        self._last_zxid = txn.zxid
        self._dirty = True

    def flush(self) -> None:
        # applying may prepare more txns (a closeSession after an expiry): commit those too
        while self._dirty and self._on_commit is not None:
            self._dirty = False
            self._on_commit(self._last_zxid)

    def close(self) -> None:
        self._on_commit = None

    def rewind(self, zxid: int) -> None:
        self._last_zxid = zxid

    def metrics(self) -> list[tuple[str, object]]:
        return []
