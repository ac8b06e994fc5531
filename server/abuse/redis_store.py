"""The Redis limiter: one atomic Lua script per turn, shared by every process.

A turn costs one round trip: the script reads the blacklist cache and the penalty
ladder, checks today's token budget, prunes and counts each sliding window (a sorted
set of answered messages), and either records the messages or climbs the ladder — all
atomically, so two workers can never both admit the 21st message of a minute.

All of one customer's keys share a hash tag (`{wa_id}`), so the script also runs on a
Redis Cluster. The script takes the time as an argument (the injected clock), which is
what lets tests walk the ladder; Redis TTLs only collect garbage.

Redis down: every call fails fast (short socket timeouts, no client retries), raises
`LimiterUnavailable`, and the circuit stays open for `WA_AGENT_REDIS_RETRY_S`, so a
dead Redis costs each turn nothing but the gate's fallback decision.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import Gauge
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.abuse.rate_policy import (
    BLACKLIST_DUE,
    DAY_MS,
    Clock,
    LimiterUnavailable,
    Outcome,
    PenaltyState,
    Policy,
    Verdict,
    now_ms,
    system_clock,
)

log = structlog.get_logger(__name__)

LIMITER_UP = Gauge("wa_agent_limiter_up", "1 while the rate limiter's store answers")

# KEYS: blacklist, penalty, tokens today, budget notice today, one sorted set per window
# ARGV: now, weight, member, budget, reset_ms, blacklist_ms, #windows,
#       (window_ms, limit) per window, #blocks, block_ms per block
# The script never writes the blacklist key: the last step leaves the penalty at
# BLACKLIST_DUE, and `set_blacklisted` lists the customer once Postgres has the row.
_HIT = """
local DUE = tonumber("BLACKLIST_DUE")
local now = tonumber(ARGV[1])
local weight = tonumber(ARGV[2])
local budget = tonumber(ARGV[4])
local reset_ms = tonumber(ARGV[5])
local blacklist_ms = tonumber(ARGV[6])
local nwin = tonumber(ARGV[7])
local ladder = 8 + 2 * nwin
local nblocks = tonumber(ARGV[ladder])
local function int(x) return string.format('%d', x) end

local listed = redis.call('GET', KEYS[1])
if listed then
  local listed_until = tonumber(listed)
  if listed_until == 0 or listed_until > now then
    return {'blacklisted', listed_until, 0, 0, 0}
  end
  redis.call('DEL', KEYS[1])
end

local pen = redis.call('HMGET', KEYS[2], 'level', 'blocks', 'until', 'last')
local level = tonumber(pen[1]) or 0
local blocks = tonumber(pen[2]) or 0
local until_ms = tonumber(pen[3]) or 0
local last = tonumber(pen[4]) or 0
if level == DUE then
  if until_ms == 0 or until_ms > now then
    return {'blacklisted_now', until_ms, 1, 0, 0}
  end
  level, blocks, until_ms = 0, 0, 0
end
if now - last > reset_ms and until_ms <= now then
  level, blocks, until_ms = 0, 0, 0
end
if until_ms > now then
  return {'blocked', until_ms, 0, level, blocks}
end

if budget > 0 and (tonumber(redis.call('GET', KEYS[3])) or 0) >= budget then
  local first = redis.call('SET', KEYS[4], '1', 'PX', 172800000, 'NX')
  return {'over_budget', 0, first and 1 or 0, level, blocks}
end

local fits = true
for i = 1, nwin do
  redis.call('ZREMRANGEBYSCORE', KEYS[4 + i], '-inf', now - tonumber(ARGV[6 + 2 * i]))
  if redis.call('ZCARD', KEYS[4 + i]) + weight > tonumber(ARGV[7 + 2 * i]) then
    fits = false
  end
end
if fits then
  for i = 1, nwin do
    for j = 1, weight do
      redis.call('ZADD', KEYS[4 + i], now, ARGV[3] .. ':' .. j)
    end
    redis.call('PEXPIRE', KEYS[4 + i], ARGV[6 + 2 * i])
  end
  return {'allowed', 0, 0, level, blocks}
end

if level == 0 then
  level, until_ms = 1, 0
elseif blocks < nblocks then
  blocks = blocks + 1
  until_ms = now + tonumber(ARGV[ladder + blocks])
else
  local listed_until = 0
  if blacklist_ms > 0 then listed_until = now + blacklist_ms end
  redis.call('HSET', KEYS[2], 'level', DUE, 'blocks', blocks, 'until', int(listed_until),
             'last', int(now))
  if blacklist_ms > 0 then
    redis.call('PEXPIRE', KEYS[2], blacklist_ms + 60000)
  else
    redis.call('PERSIST', KEYS[2])
  end
  return {'blacklisted_now', listed_until, 1, 0, 0}
end
redis.call('HSET', KEYS[2], 'level', level, 'blocks', blocks, 'until', int(until_ms),
           'last', int(now))
redis.call('PEXPIRE', KEYS[2], math.max(reset_ms, until_ms - now) + 60000)
if until_ms > 0 then
  return {'blocked_now', until_ms, 1, level, blocks}
end
return {'warned', 0, 1, level, blocks}
""".replace("BLACKLIST_DUE", str(BLACKLIST_DUE))

_ADD_TOKENS = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return total
"""

_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'level', ARGV[1], 'blocks', ARGV[2], 'until', ARGV[3],
           'last', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


def connect_redis(url: str, timeout_seconds: float, max_connections: int = 64) -> Redis:
    """A client that fails within `timeout_seconds` and never retries by itself: the
    caller's circuit decides when to try again. A burst of checks waits (briefly) for
    a free connection instead of failing with "Too many connections"."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    client: Redis = Redis.from_pool(pool)  # closing the client closes its pool
    return client


class _Circuit:
    """Open after a failure: calls fail at once until `retry_seconds` have passed."""

    def __init__(self, retry_seconds: float, behaviour: str) -> None:
        self.retry_seconds = retry_seconds
        self.behaviour = behaviour
        self.open_until = 0.0
        self.down_since: float | None = None

    def check(self) -> None:
        if time.monotonic() < self.open_until:
            raise LimiterUnavailable("Redis unavailable; waiting before the next attempt")

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.open_until = now + self.retry_seconds
        if self.down_since is None:
            self.down_since = now
        LIMITER_UP.set(0)
        log.error(
            "abuse.limiter_unavailable",
            error=f"{type(exc).__name__}: {exc}"[:300],
            behaviour=self.behaviour,
            down_for_s=round(now - self.down_since, 1),
            next_attempt_in_s=self.retry_seconds,
        )

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.warning("abuse.limiter_recovered", down_for_s=time.monotonic() - self.down_since)
            self.down_since = None
        LIMITER_UP.set(1)


class RedisLimiter:
    description = "redis"

    def __init__(
        self,
        client: Redis,
        policy: Policy,
        *,
        prefix: str = "wa-agent:",
        clock: Clock = system_clock,
        retry_seconds: float = 5.0,
        outage_behaviour: str = "",
    ) -> None:
        self.client = client
        self.policy = policy
        self.prefix = prefix
        self.clock = clock
        self.circuit = _Circuit(retry_seconds, outage_behaviour)
        # The socket timeouts bound every call; this bounds a call stuck elsewhere.
        self._deadline = 4 * float(client.connection_pool.connection_kwargs["socket_timeout"])
        self._hit_script = client.register_script(_HIT)
        # Set by the owner: refills the store from Postgres after an outage.
        self.on_recovered: Callable[[], Awaitable[None]] | None = None
        self._add_tokens = client.register_script(_ADD_TOKENS)
        self._restore = client.register_script(_RESTORE)

    def key(self, user: str, name: str) -> str:
        return f"{self.prefix}{{{user}}}:{name}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}blacklist"

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        self.circuit.check()
        try:
            async with asyncio.timeout(self._deadline):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self.circuit.failed(exc)
            raise LimiterUnavailable(str(exc)) from exc
        self.circuit.succeeded()
        return result

    async def hit(self, user: str, weight: int) -> Verdict:
        recovering = self.circuit.down_since is not None
        verdict = await self._hit(user, weight)
        if recovering and self.on_recovered is not None:
            # Redis may have come back empty (no persistence): refill the blacklist and
            # the ladders from Postgres, and do not let this turn slip through meanwhile.
            await self.on_recovered()
            listed = await self._call(lambda: self.client.get(self.key(user, "bl")))
            if verdict.admitted and listed is not None:
                return Verdict(Outcome.BLACKLISTED, int(listed))
        return verdict

    async def _hit(self, user: str, weight: int) -> Verdict:
        at = now_ms(self.clock)
        day = at // DAY_MS
        policy = self.policy
        keys = [
            self.key(user, "bl"),
            self.key(user, "pen"),
            self.key(user, f"tok:{day}"),
            self.key(user, f"budget:{day}"),
            *(self.key(user, f"rl:{seconds}") for _, seconds in policy.windows),
        ]
        args: list[int | str] = [at, weight, uuid.uuid4().hex, policy.token_budget]
        args += [policy.reset_seconds * 1000, policy.blacklist_seconds * 1000]
        args.append(len(policy.windows))
        for limit, seconds in policy.windows:
            args += [seconds * 1000, limit]
        args.append(len(policy.block_seconds))
        args += [seconds * 1000 for seconds in policy.block_seconds]
        result: Sequence[Any] = await self._call(lambda: self._hit_script(keys=keys, args=args))
        outcome, until, notify, level, blocks = result
        return Verdict(Outcome(outcome), int(until), bool(notify), int(level), int(blocks))

    async def tokens_today(self, user: str) -> int:
        key = self.key(user, f"tok:{now_ms(self.clock) // DAY_MS}")
        counted = await self._call(lambda: self.client.get(key))
        return int(counted or 0)

    async def add_tokens(self, user: str, tokens: int) -> None:
        day = now_ms(self.clock) // DAY_MS
        key = self.key(user, f"tok:{day}")
        await self._call(lambda: self._add_tokens(keys=[key], args=[tokens, 2 * DAY_MS]))

    async def set_blacklisted(self, user: str, until_ms: int) -> None:
        await self._call(lambda: self._write_blacklist({user: until_ms}, now_ms(self.clock)))

    async def _write_blacklist(self, entries: Mapping[str, int], at: int) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for user, until in entries.items():
                if until and until <= at:
                    continue
                ttl = until - at if until else None
                pipe.set(self.key(user, "bl"), str(until), px=ttl)
                pipe.delete(self.key(user, "pen"))
                pipe.sadd(self.index_key, user)
            await pipe.execute()

    async def forget(self, user: str) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.key(user, "bl"), self.key(user, "pen"))
            pipe.delete(*(self.key(user, f"rl:{seconds}") for _, seconds in self.policy.windows))
            pipe.srem(self.index_key, user)
            await self._call(pipe.execute)

    async def replace_blacklist(self, entries: Mapping[str, int]) -> None:
        """Make the cache equal to Postgres: add what is missing, drop what is gone."""
        cached: set[str] = await self._call(lambda: self.client.smembers(self.index_key))
        stale = cached - set(entries)
        if stale:
            async with self.client.pipeline(transaction=False) as pipe:
                for user in stale:
                    pipe.delete(self.key(user, "bl"))
                pipe.srem(self.index_key, *stale)
                await self._call(pipe.execute)
        fresh = {user: until for user, until in entries.items() if user not in cached}
        if fresh:
            await self._call(lambda: self._write_blacklist(fresh, now_ms(self.clock)))

    async def restore_penalty(self, user: str, state: PenaltyState) -> None:
        at = now_ms(self.clock)
        ttl = max(self.policy.reset_seconds * 1000, state.until_ms - at) + 60_000
        args = [state.level, state.blocks, state.until_ms, state.last_ms, ttl]
        await self._call(lambda: self._restore(keys=[self.key(user, "pen")], args=args))

    async def penalty(self, user: str) -> PenaltyState | None:
        key = self.key(user, "pen")
        values = await self._call(
            lambda: self.client.hmget(key, ["level", "blocks", "until", "last"])
        )
        if values[0] is None:
            return None
        stored = PenaltyState(*(int(v or 0) for v in values))
        state = self.policy.current(stored, now_ms(self.clock))
        return state if state.level or state.blocks else None

    async def aclose(self) -> None:
        await self.client.aclose()
