"""Penalties survive a restart; a Redis that dies mid-way neither crashes the service
nor makes it slow, and it decides by configuration whether to fail open or closed."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_abuse import (
    FakeClock,
    RedisProcess,
    abuse_settings,
    all_processed,
    kinds,
    model_saw,
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


async def test_redis_stopped_mid_way_fails_open_to_the_in_process_limiter(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """While Redis is away (said loudly in the log, once) the limits are counted in this
    process: a flooder is still warned, then blocked, and never reaches the model;
    others are answered; the blacklist holds (read from Postgres). When Redis comes back
    empty, the blacklist and the ladder of the outage are refilled from Postgres."""
    flooder, listed = new_customer(), new_customer()
    others = [new_customer() for _ in range(3)]
    with RedisProcess() as server:
        settings = abuse_settings(
            db_url,
            graph_api,
            openai_server,
            redis_url=server.url,
            redis_timeout_ms=200,
            redis_retry_seconds=1.0,
            rate_limits="1/1m",
            block_durations="10m",
        )
        async with running_service(settings) as service:
            blacklist = service.services.abuse.blacklist
            await blacklist.add(listed, reason="test", source="manual", actor="test")
            await send_and_settle(service, flooder, "flood 0")  # counted in Redis
            server.stop()
            with capture_logs() as logs:
                for number in range(1, 5):  # the stand-in counts from zero
                    await send_and_settle(service, flooder, f"flood {number}")
                for customer in others:
                    await send_and_settle(service, customer)
                await send_and_settle(service, listed)
            server.start()  # empty: the blacklist cache and the counters are gone
            await asyncio.sleep(1.1)  # the circuit's retry period
            await send_and_settle(service, listed)  # refused: refilled from Postgres
            await send_and_settle(service, flooder, "flood 5")  # the outage's block holds
            stored = await service.fetch(
                "SELECT text, gate FROM inbound_messages WHERE wa_id = %s ORDER BY id", flooder
            )
    stand_in = [entry for entry in logs if entry["event"] == "abuse.limiter_stand_in"]
    assert len(stand_in) == 1 and stand_in[0]["log_level"] == "error"  # once per outage
    outage = [entry for entry in logs if entry["event"] == "abuse.limiter_unavailable"]
    assert outage and outage[0]["behaviour"].startswith("fail open")
    assert len(outage) <= 2  # once per retry period, not once per message
    assert kinds(graph_api, flooder) == ["reply", "reply", "warning", "block"]
    assert [row["gate"] for row in stored] == [None, None] + ["rate_limited"] + ["blocked"] * 3
    assert not any(model_saw(openai_server, row["text"]) for row in stored if row["gate"])
    assert all(kinds(graph_api, customer) == ["reply"] for customer in others)
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


# A sequence counts outside the failing transaction; the first write raises, the next holds.
_FIRST_BLACKLIST_WRITE_FAILS = [
    "CREATE SEQUENCE blacklist_writes",
    """CREATE FUNCTION fail_first_blacklist_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval('blacklist_writes') = 1 THEN
        RAISE EXCEPTION 'could not write block: No space left on device (test)';
      END IF;
      RETURN NEW;
    END $$""",
    "CREATE TRIGGER fail_first_blacklist_write BEFORE INSERT OR UPDATE ON blacklist"
    " FOR EACH ROW EXECUTE FUNCTION fail_first_blacklist_write()",
]


@pytest.mark.parametrize("store", ["in-process", "redis"])
async def test_an_automatic_blacklist_survives_a_failed_postgres_write(
    store: str, db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The blacklist step's Postgres write fails once: the retried job writes it, the
    customer reads the notice once, and the cache sync that follows keeps them listed."""
    customer = new_customer()
    clock = FakeClock()
    extra = {"redis_url": shared_redis_url(), "redis_prefix": unique_prefix()}
    settings = abuse_settings(
        db_url,
        graph_api,
        openai_server,
        rate_limits="1/1m",
        block_durations="10m",
        queue_poll_seconds=0.2,
        **(extra if store == "redis" else {}),
    )
    async with running_service(settings) as service:
        service.services.abuse.limiter.clock = clock
        for gap in (0, 1, 1, 600):  # answered, warned, blocked, answered after the block
            clock.advance(gap)
            await send_and_settle(service, customer)
        for statement in _FIRST_BLACKLIST_WRITE_FAILS:
            await service.execute(statement)
        clock.advance(1)
        await send_and_settle(service, customer)  # over again: the blacklist, on the retry
        await service.services.abuse.blacklist.sync_cache()  # what the 30 s sync does
        clock.advance(1)
        await send_and_settle(service, customer)
        writes = await service.fetch("SELECT last_value FROM blacklist_writes")
        listed = await service.fetch("SELECT source FROM blacklist WHERE wa_id = %s", customer)
        audit = await service.fetch(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", customer
        )
        gates = await service.fetch(
            "SELECT gate FROM inbound_messages WHERE wa_id = %s ORDER BY id", customer
        )
    assert writes[0]["last_value"] == 2  # the write that failed, then the one that held
    assert [row["source"] for row in listed] == ["automatic"]
    assert [row["action"] for row in audit] == [
        "abuse.warned",
        "abuse.blocked",
        "abuse.blacklisted",
    ]
    assert kinds(graph_api, customer) == ["reply", "warning", "block", "reply", "blacklist"]
    assert [row["gate"] for row in gates][-2:] == ["blacklisted", "blacklisted"]
