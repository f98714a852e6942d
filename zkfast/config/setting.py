"""A setting, where it came from, and the error that points an operator back there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Origin(NamedTuple):
    """Where a setting came from: a file and line, or an environment variable / the command line."""

    where: str
    line: int | None
    key: str

    def location(self) -> str:
        return self.where if self.line is None else f"{self.where}:{self.line}"


class ConfigError(Exception):
    """A configuration an operator has to fix. str() is `WHERE[:LINE]: KEY: PROBLEM`."""

    def __init__(self, where: str, line: int | None, key: str, problem: str) -> None:
        self.where = where
        self.line = line
        self.key = key
        self.problem = problem
        super().__init__(f"{Origin(where, line, key).location()}: {key}: {problem}")

    @classmethod
    def at(cls, origin: Origin, problem: str) -> ConfigError:
        return cls(origin.where, origin.line, origin.key, problem)


@dataclass
class Setting:
    """One key's value as read, with its origin for any error about it."""

    value: str
    origin: Origin
