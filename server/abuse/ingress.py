"""The webhook's own guard: a token bucket per sender, in this process, no I/O.

No person types five messages a second for long; a script does. Past the bucket
(`WA_AGENT_INGRESS_RATE` per second, `WA_AGENT_INGRESS_BURST` at once) a delivery is
refused with 429 and `Retry-After` and not stored: Meta delivers it again later, so
nothing acknowledged is ever lost, and a flood costs no database write, queue entry or
worker claim per message. The drop is counted
(`wa_agent_webhook_dropped_total`), logged and audited once per sender per interval.
Messages inside the bucket go through as usual, and the worker's rate limits and
penalty ladder deal with the sender.

The messages a sender may still store go to the database one at a time (`lane`): each
one locks the sender's conversation row until it commits, so a burst of them would
otherwise queue on that row lock inside Postgres, each holding one of the pool's
connections — forty of them took the whole pool and stalled every other customer's
webhook for half a second. Waiting in this process costs no connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import Counter

DROPPED = Counter(
    "wa_agent_webhook_dropped_total",
    "Inbound messages refused (429) at the webhook, not stored",
    ["reason"],
)


class IngressGuard:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_senders: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_senders = max_senders
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lanes: dict[str, tuple[asyncio.Lock, int]] = {}

    def exhausted(self, sender: str) -> bool:
        """True when the sender's next message would be dropped (nothing is taken)."""
        if self.rate <= 0:
            return False
        tokens, last = self._buckets.get(sender, (self.burst, self.clock()))
        return min(self.burst, tokens + (self.clock() - last) * self.rate) < 1.0

    def allow(self, sender: str) -> bool:
        """Take one token from the sender's bucket; False when it is empty."""
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.pop(sender, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[sender] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_senders:
            self._buckets.popitem(last=False)  # the sender quiet the longest
        if not allowed:
            DROPPED.labels(reason="ingress_rate").inc()
        return allowed

    @asynccontextmanager
    async def lane(self, sender: str) -> AsyncIterator[None]:
        """Hold the sender's lane: at most one of its deliveries at a time in this
        process reaches the database; the lane is forgotten when nobody waits on it."""
        lock, users = self._lanes.get(sender, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._lanes[sender] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._lanes[sender]
            if users == 1:
                del self._lanes[sender]
            else:
                self._lanes[sender] = (lock, users - 1)
