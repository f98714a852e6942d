"""Apache ZooKeeper 3.8's connection throttle (its `BlueThrottle`), applied to each ConnectRequest.

A token bucket: `tokens` to start with and at most, `fill_count` more every `fill_time_ms`; a
ConnectRequest takes one token (or, with `weight_enabled`, 3 for a new global session, 1 for a new
local session, 2 for a reconnect) and is refused when the bucket holds fewer. With `freeze_time_ms`
other than -1, requests are also dropped at random before the bucket is asked, with a probability
that rises by `drop_increase` each time the bucket is found empty and falls by `drop_decrease` when
its deficit is at most `decrease_ratio` of its size, at most once per `freeze_time_ms` (the BLUE
queue management algorithm). `tokens` = 0 (the default) turns the throttle off.

Apache closes a refused connection without answering (ClientCnxnLimitException) and counts it in
`connection_rejected`; zkfast's listener does both. The clock and the random source are injected so
that the arithmetic, which follows Apache's step by step, can be tested without waiting.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


def monotonic_ms() -> int:
    """Apache's Time.currentElapsedTime: a monotonic clock in whole milliseconds."""
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True)
class ThrottleSettings:
    """The `zookeeper.connection_throttle_*` properties, with Apache's defaults."""

    tokens: int = 0  # connection_throttle_tokens: the bucket's size; 0 = no throttle
    fill_time_ms: int = 1  # connection_throttle_fill_time
    fill_count: int = 1  # connection_throttle_fill_count: tokens added every fill_time_ms
    freeze_time_ms: int = -1  # connection_throttle_freeze_time: -1 = no random dropping
    drop_increase: float = 0.02  # connection_throttle_drop_increase
    drop_decrease: float = 0.002  # connection_throttle_drop_decrease
    decrease_ratio: float = 0.0  # connection_throttle_decrease_ratio
    weight_enabled: bool = False  # connection_throttle_weight_enabled
    global_session_weight: int = 3  # connection_throttle_global_session_weight
    local_session_weight: int = 1  # connection_throttle_local_session_weight
    renew_session_weight: int = 2  # connection_throttle_renew_session_weight

    @property
    def enabled(self) -> bool:
        return self.tokens != 0


class ConnectionThrottle:
    """One server's bucket; `allow` answers for each ConnectRequest."""

    def __init__(self, settings: ThrottleSettings, *, local_sessions: bool = False,
                 clock: Callable[[], int] = monotonic_ms, rng: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.local_sessions = local_sessions
        self.clock = clock
        self.rng = rng
        # the configured figures count global sessions: with weights, one of them costs its weight
        scale = settings.global_session_weight if settings.weight_enabled else 1
        self.max_tokens = settings.tokens * scale
        self.fill_count = settings.fill_count * scale
        self.tokens = self.max_tokens
        now = clock()
        self.last_fill_ms = now
        self.last_freeze_ms = now
        self.drop_chance = 0.0

    def tokens_needed(self, session_id: int) -> int:
        """What a ConnectRequest costs: 1, or by kind of session with weights (processConnectRequest)."""
        settings = self.settings
        if not settings.weight_enabled:
            return 1
        if session_id != 0:
            return settings.renew_session_weight
        return settings.local_session_weight if self.local_sessions else settings.global_session_weight

    def allow(self, session_id: int) -> bool:
        return self.check_limit(self.tokens_needed(session_id))

    def check_limit(self, need: int) -> bool:
        """BlueThrottle.checkLimit: refill, maybe drop at random, then take `need` tokens or refuse."""
        if self.max_tokens == 0:
            return True
        now = self.clock()
        self._refill(now)
        if self.settings.freeze_time_ms != -1 and not self._survives_drop(now):
            return False
        if self.tokens < need:
            return False
        self.tokens -= need
        return True

    @property
    def deficit(self) -> int:
        return self.max_tokens - self.tokens

    def _refill(self, now: int) -> None:
        elapsed = now - self.last_fill_ms
        fill_time = self.settings.fill_time_ms
        if elapsed > fill_time:
            # Apache keeps no remainder: the time since the last whole refill is forgotten
            self.tokens = min(self.tokens + elapsed * self.fill_count // fill_time, self.max_tokens)
            self.last_fill_ms = now

    def _survives_drop(self, now: int) -> bool:
        """BlueThrottle.checkBlue: adjust the drop chance at most once per freeze time, then roll."""
        settings = self.settings
        if now - self.last_freeze_ms > settings.freeze_time_ms:
            deficit = self.deficit
            if deficit == self.max_tokens and self.drop_chance < 1:
                self.drop_chance = min(self.drop_chance + settings.drop_increase, 1.0)
            elif deficit <= _java_round(self.max_tokens * settings.decrease_ratio) and self.drop_chance > 0:
                self.drop_chance = max(self.drop_chance - settings.drop_decrease, 0.0)
            self.last_freeze_ms = now
        return not self.rng() < self.drop_chance


def _java_round(value: float) -> int:
    """Math.round: a half goes up (Python's round() would send it to the even neighbour)."""
    return math.floor(value + 0.5)
