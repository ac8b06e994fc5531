"""Tool rate limits shared by every process, in Redis (the registry's `RateLimiter`).

One sorted set per key (tool and customer, or tool alone), pruned and counted in one
Lua script, so two workers can never both make the sixth call of a five-per-minute
tool. Without `REDIS_URL` the registry counts per process instead.

Redis down costs a call nothing but a log line: the limit is not enforced for
`WA_AGENT_REDIS_RETRY_S` (a tool limit protects a budget, not the service), then Redis
is tried again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from graph.settings import Settings
from server.abuse.redis_store import connect_redis
from tools.limits import RateLimit, RateLimiter

log = structlog.get_logger(__name__)

# KEYS: one sorted set per limit; ARGV: now_ms, member, then (window_ms, limit) per key.
# All or nothing: the call is recorded under every key only if each has room.
_ACQUIRE = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local window = tonumber(ARGV[1 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + 2 * i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[1 + 2 * i])
end
return 0
"""


class RedisToolLimiter:
    def __init__(self, client: Redis, *, prefix: str, retry_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self._script = client.register_script(_ACQUIRE)
        self._skip_until = 0.0

    async def acquire(self, limits: Sequence[tuple[str, RateLimit]]) -> int | None:
        """One round trip for all of a call's limits (per customer and global)."""
        if time.monotonic() < self._skip_until:
            return None
        now_ms = int(time.time() * 1000)
        args: list[int | str] = [now_ms, f"{now_ms}:{uuid.uuid4().hex[:12]}"]
        for _, limit in limits:
            args += [int(limit.window_seconds * 1000), limit.calls]
        try:
            full = await self._script(keys=[f"{self.prefix}{key}" for key, _ in limits], args=args)
        except (RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + self.retry_seconds
            log.error(
                "tools.limiter_unavailable",
                error=f"{type(exc).__name__}: {exc}"[:300],
                behaviour="tool rate limits are not enforced until Redis answers again",
            )
            return None
        return int(full) - 1 if int(full) else None

    async def aclose(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def open_tool_limiter(settings: Settings) -> AsyncIterator[RateLimiter | None]:
    """Redis when `REDIS_URL` is set; None lets the registry count in this process."""
    if not settings.redis_url:
        yield None
        return
    limiter = RedisToolLimiter(
        connect_redis(settings.redis_url, settings.redis_timeout_ms / 1000),
        prefix=f"{settings.redis_prefix}tools:",
        retry_seconds=settings.redis_retry_seconds,
    )
    try:
        yield limiter
    finally:
        await limiter.aclose()
