"""The limiter on its own, Redis and in-process side by side: the same ladder, the same
answers, step by step on a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from server.abuse.blacklist import Limiter
from server.abuse.ingress import IngressGuard
from server.abuse.memory_limiter import MemoryLimiter
from server.abuse.rate_policy import LimiterUnavailable, Outcome, Policy
from server.abuse.redis_store import RedisLimiter, connect_redis
from tests.support_abuse import FakeClock, RedisProcess, shared_redis_url, unique_prefix

POLICY = Policy(
    windows=((3, 60), (10, 3600)),
    block_seconds=(300, 1800),
    reset_seconds=86400,
    blacklist_seconds=7 * 86400,
    token_budget=1000,
)


@pytest.fixture(params=["redis", "memory"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Limiter, FakeClock]]:
    clock = FakeClock()
    built: Limiter
    if request.param == "redis":
        client = connect_redis(shared_redis_url(), 0.5)
        built = RedisLimiter(client, POLICY, prefix=unique_prefix(), clock=clock)
    else:
        built = MemoryLimiter(POLICY, clock)
    yield built, clock
    await built.aclose()


async def outcomes(limiter: Limiter, user: str, count: int) -> list[str]:
    return [(await limiter.hit(user, 1)).outcome.value for _ in range(count)]


async def test_the_ladder_step_by_step(limiter: tuple[Limiter, FakeClock]) -> None:
    lim, clock = limiter
    assert await outcomes(lim, "250788000001", 3) == ["allowed"] * 3

    warned = await lim.hit("250788000001", 1)  # the 4th message of the minute
    assert (warned.outcome, warned.notify) == (Outcome.WARNED, True)
    clock.advance(10)
    first_block = await lim.hit("250788000001", 1)  # still over the minute's limit
    assert (first_block.outcome, first_block.notify) == (Outcome.BLOCKED_NOW, True)
    assert first_block.until_ms == int(clock.now * 1000) + 300_000
    clock.advance(299)
    during = await lim.hit("250788000001", 1)
    assert (during.outcome, during.notify) == (Outcome.BLOCKED, False)  # no second notice

    clock.advance(2)  # the block is over and the minute window is empty again
    assert await outcomes(lim, "250788000001", 3) == ["allowed"] * 3
    second_block = await lim.hit("250788000001", 1)
    assert second_block.outcome is Outcome.BLOCKED_NOW and second_block.blocks == 2
    assert second_block.until_ms - int(clock.now * 1000) == 1_800_000

    clock.advance(1801)
    blacklisted = await lim.hit("250788000001", 4)  # four at once: over again
    assert (blacklisted.outcome, blacklisted.notify) == (Outcome.BLACKLISTED_NOW, True)
    assert blacklisted.until_ms == int(clock.now * 1000) + 7 * 86_400_000
    clock.advance(1)
    unconfirmed = await lim.hit("250788000001", 1)  # Postgres has no row yet: again
    assert (unconfirmed.outcome, unconfirmed.until_ms) == (
        Outcome.BLACKLISTED_NOW,
        blacklisted.until_ms,
    )
    await lim.replace_blacklist({})  # a cache sync from a Postgres without the row
    assert (await lim.hit("250788000001", 1)).outcome is Outcome.BLACKLISTED_NOW
    await lim.set_blacklisted("250788000001", blacklisted.until_ms)  # the row is written
    after = await lim.hit("250788000001", 1)
    assert (after.outcome, after.notify) == (Outcome.BLACKLISTED, False)
    assert await outcomes(lim, "250788000002", 3) == ["allowed"] * 3  # others unaffected

    clock.advance(7 * 86400 + 1)  # the automatic blacklist expires
    assert (await lim.hit("250788000001", 1)).outcome is Outcome.ALLOWED


async def test_a_quiet_day_forgets_the_ladder(limiter: tuple[Limiter, FakeClock]) -> None:
    lim, clock = limiter
    await outcomes(lim, "250788000003", 4)  # warned
    assert await lim.penalty("250788000003") is not None
    clock.advance(86400 + 1)
    assert await lim.penalty("250788000003") is None
    assert await outcomes(lim, "250788000003", 4) == ["allowed"] * 3 + ["warned"]


async def test_every_window_counts(limiter: tuple[Limiter, FakeClock]) -> None:
    lim, clock = limiter
    for _ in range(3):
        assert await outcomes(lim, "250788000004", 3) == ["allowed"] * 3
        clock.advance(61)
    assert await outcomes(lim, "250788000004", 2) == ["allowed", "warned"]  # 10 an hour


async def test_daily_token_budget(limiter: tuple[Limiter, FakeClock]) -> None:
    lim, clock = limiter
    clock.now = 1_800_028_800.0  # 08:00 UTC
    await lim.add_tokens("250788000005", 600)
    assert (await lim.hit("250788000005", 1)).outcome is Outcome.ALLOWED
    await lim.add_tokens("250788000005", 600)
    over = [await lim.hit("250788000005", 1) for _ in range(2)]
    assert [v.outcome for v in over] == [Outcome.OVER_BUDGET] * 2
    assert [v.notify for v in over] == [True, False]  # one notice a day
    clock.advance(16 * 3600 + 1)  # past midnight UTC
    assert (await lim.hit("250788000005", 1)).outcome is Outcome.ALLOWED


async def test_unblock_forgets_everything(limiter: tuple[Limiter, FakeClock]) -> None:
    lim, _ = limiter
    await lim.set_blacklisted("250788000006", 0)
    assert (await lim.hit("250788000006", 1)).outcome is Outcome.BLACKLISTED
    await lim.forget("250788000006")
    assert (await lim.hit("250788000006", 1)).outcome is Outcome.ALLOWED
    await lim.replace_blacklist({"250788000007": 0})
    assert (await lim.hit("250788000007", 1)).outcome is Outcome.BLACKLISTED
    await lim.replace_blacklist({})
    assert (await lim.hit("250788000007", 1)).outcome is Outcome.ALLOWED


async def test_many_workers_never_admit_more_than_the_limit() -> None:
    """Sixty concurrent checks over six connections: the script is atomic, so exactly
    the limit gets through."""
    prefix = unique_prefix()
    policy = Policy(((20, 60),), (300,), 86400, 0, 0)
    limiters = [
        RedisLimiter(connect_redis(shared_redis_url(), 1.0), policy, prefix=prefix)
        for _ in range(6)
    ]
    try:
        verdicts = await asyncio.gather(
            *(limiters[i % 6].hit("250788000008", 1) for i in range(60))
        )
    finally:
        await asyncio.gather(*(lim.aclose() for lim in limiters))
    assert sum(v.admitted for v in verdicts) == 20
    assert sum(v.notify for v in verdicts) == 2  # one warning, then one block notice


async def test_a_dead_redis_fails_fast_and_comes_back() -> None:
    with RedisProcess() as server:
        lim = RedisLimiter(
            connect_redis(server.url, 0.2), POLICY, prefix=unique_prefix(), retry_seconds=0.5
        )
        assert (await lim.hit("250788000009", 1)).admitted
        server.stop()
        started = time.perf_counter()
        with pytest.raises(LimiterUnavailable):
            await lim.hit("250788000009", 1)
        first_failure = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(100):  # the circuit is open: no call waits for a timeout
            with pytest.raises(LimiterUnavailable):
                await lim.hit("250788000009", 1)
        open_circuit = (time.perf_counter() - started) / 100
        server.start()  # an empty Redis on the same port
        await asyncio.sleep(0.6)
        recovered = await lim.hit("250788000009", 1)
        await lim.aclose()
    assert first_failure < 1.0
    assert open_circuit < 0.005
    assert recovered.admitted


def test_ingress_guard_lets_people_through_and_stops_scripts() -> None:
    clock = FakeClock(0.0)
    guard = IngressGuard(rate=5.0, burst=10, clock=clock)
    burst = [guard.allow("250788000010") for _ in range(15)]
    assert burst == [True] * 10 + [False] * 5
    assert guard.allow("250788000011")  # another sender has a bucket of its own
    clock.advance(1.0)
    assert [guard.allow("250788000010") for _ in range(6)] == [True] * 5 + [False]
    assert all(IngressGuard(rate=0, burst=1).allow("x") for _ in range(100))  # 0 = off
