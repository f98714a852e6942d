"""What servers, clusters and proxies share: `with x:` starts it and closes it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Started:
    """A context manager over start() and close()."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
