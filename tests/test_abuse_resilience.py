"""Penalties survive a restart; a Redis that dies mid-way neither crashes the service
nor makes it slow, and it decides by configuration whether to fail open or closed."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_abuse import (
    RedisProcess,
    abuse_settings,
    all_processed,
    kinds,
    new_customer,
    send_and_settle,
    shared_redis_url,
    unique_prefix,
)


async def _flush(url: str, prefix: str) -> int:
    """What a Redis restarted without persistence looks like: our keys are gone."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        return int(await client.delete(*keys)) if keys else 0
    finally:
        await client.aclose()


@pytest.mark.parametrize("store", ["in-process", "redis-emptied"])
async def test_a_restart_keeps_penalties(
    store: str, db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    prefix = unique_prefix()
    extra = (
        {"redis_url": shared_redis_url(), "redis_prefix": prefix} if store != "in-process" else {}
    )
    settings = abuse_settings(
        db_url, graph_api, openai_server, rate_limits="1/1m", block_durations="1h", **extra
    )
    async with running_service(settings) as service:
        for _ in range(3):  # answered, warned, blocked for an hour
            await send_and_settle(service, customer)
    if store == "redis-emptied":
        assert await _flush(shared_redis_url(), prefix) > 0
    async with running_service(settings) as service:
        await send_and_settle(service, customer)
        gates = await service.fetch(
            "SELECT gate FROM inbound_messages WHERE wa_id = %s ORDER BY id", customer
        )
    assert kinds(graph_api, customer) == ["reply", "warning", "block"]  # nothing after restart
    assert [row["gate"] for row in gates] == [None, "rate_limited", "blocked", "blocked"]


async def test_redis_stopped_mid_way_fails_open(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Rate limits lapse while Redis is away (said loudly in the log), the blacklist still
    holds (read from Postgres), nothing waits for Redis timeouts, and when Redis comes
    back empty the blacklist is refilled before anyone slips through."""
    fast, listed = new_customer(), new_customer()
    with RedisProcess() as server:
        settings = abuse_settings(
            db_url,
            graph_api,
            openai_server,
            redis_url=server.url,
            redis_timeout_ms=200,
            redis_retry_seconds=1.0,
            rate_limits="1/1m",
        )
        async with running_service(settings) as service:
            blacklist = service.services.abuse.blacklist
            await blacklist.add(listed, reason="test", source="manual", actor="test")
            await send_and_settle(service, fast)
            server.stop()
            with capture_logs() as logs:
                started = time.monotonic()
                await send_and_settle(service, fast)  # over the limit, but nobody counts
                await send_and_settle(service, fast)
                await send_and_settle(service, listed)
                during_outage = time.monotonic() - started
            server.start()  # empty: the blacklist cache and the counters are gone
            await asyncio.sleep(1.1)
            await send_and_settle(service, listed)  # refused: refilled from Postgres
            await send_and_settle(service, fast)  # counted again from zero
            await send_and_settle(service, fast)
    outage = [entry for entry in logs if entry["event"] == "abuse.limiter_unavailable"]
    assert outage and outage[0]["log_level"] == "error"
    assert outage[0]["behaviour"].startswith("fail open")
    assert len(outage) <= 2  # once per retry period, not once per message
    assert during_outage < 4.0
    assert kinds(graph_api, fast) == ["reply"] * 4 + ["warning"]
    assert kinds(graph_api, listed) == []


async def test_redis_stopped_mid_way_fails_closed(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Fail closed: no turn runs unchecked; it waits in the queue and is answered once
    Redis is back."""
    customer = new_customer()
    with RedisProcess() as server:
        settings = abuse_settings(
            db_url,
            graph_api,
            openai_server,
            redis_url=server.url,
            redis_fail_open=False,
            redis_timeout_ms=200,
            redis_retry_seconds=0.5,
            queue_poll_seconds=0.2,
        )
        async with running_service(settings) as service:
            await send_and_settle(service, customer)
            server.stop()
            response = await service.post_webhook(envelope(text_message(customer, "still there?")))
            await asyncio.sleep(1.5)
            while_down = kinds(graph_api, customer)
            runs_while_down = await service.fetch(
                "SELECT status, gate FROM conversation_runs ORDER BY started_at"
            )
            server.start()
            await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 2, 15)
            await eventually(lambda: all_processed(service, customer), what="the run closed")
            runs = await service.fetch("SELECT status, gate, attempts FROM conversation_runs")
    assert response.status_code == 200
    assert while_down == ["reply"]
    assert runs_while_down[-1] == {"status": "running", "gate": None}
    assert kinds(graph_api, customer) == ["reply", "reply"]
    assert sorted((r["status"], r["gate"]) for r in runs) == [("done", "admitted")] * 2
    assert max(r["attempts"] for r in runs) >= 2
