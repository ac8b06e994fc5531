"""Rate limits of tool calls: a small interface, and the in-process implementation.

tools/ must not import server/, where the shared (Redis) limiter lives; the registry
only needs "may this key make one more call within this window?", so that is the whole
interface. The server injects its Redis implementation; without one, every process
counts for itself with `LocalRateLimiter` (good enough for one process, and for tests).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RateLimit:
    """At most `calls` within any `window_seconds`."""

    calls: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.calls < 1 or self.window_seconds <= 0:
            raise ValueError(f"a rate limit needs calls >= 1 and a window > 0: {self}")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`"5/60"` or `"5/1m"` → 5 calls per 60 s (units s, m, h, d)."""
        count, _, window = text.strip().partition("/")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        window = window.strip().lower()
        unit = units.get(window[-1:], 0)
        number = window[:-1] if unit else window
        if not count.strip().isdigit() or not number.replace(".", "", 1).isdigit():
            raise ValueError(f"not a rate limit: {text!r} (use e.g. 5/1m or 100/3600)")
        return cls(int(count), float(number) * (unit or 1))


class RateLimiter(Protocol):
    """Counts calls per key in sliding windows; shared by all processes or not."""

    async def acquire(self, limits: Sequence[tuple[str, RateLimit]]) -> int | None:
        """Record one call under every key if each fits its limit, and return None;
        otherwise record nothing and return the index of the first limit that is full
        (a refused model retrying does not lock itself out for longer)."""
        ...


class LocalRateLimiter:
    """Sliding windows in this process's memory: exact, O(calls in window) per key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    async def acquire(self, limits: Sequence[tuple[str, RateLimit]]) -> int | None:
        now = self._clock()
        windows = []
        for index, (key, limit) in enumerate(limits):
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - limit.window_seconds:
                calls.popleft()
            if len(calls) >= limit.calls:
                return index
            windows.append(calls)
        for calls in windows:
            calls.append(now)
        return None
