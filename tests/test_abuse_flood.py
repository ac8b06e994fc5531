"""The whole service against a flood: one customer sends a burst while twenty others
write, on real Redis, Postgres and HTTP. The flood is slowed, then blocked; nobody else
notices, and the graph never runs for a refused turn (no model call, no token)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg

from graph.settings import Settings
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_abuse import (
    FakeClock,
    abuse_settings,
    all_processed,
    graph_runs_for,
    kinds,
    model_saw,
    new_customer,
    post,
    send_and_settle,
    shared_redis_url,
    unique_prefix,
)


async def redeliver(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    """What Meta does with a delivery refused with 429: it comes again, until taken."""
    for _ in range(150):  # bounded only so that a broken guard fails instead of hanging
        response = await post(client, payload)
        if response.status_code != 429:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError("a delivery was refused with 429 for half a minute")


def flood_settings(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> Settings:
    """Five messages a minute per customer, a 10-minute block, on the shared Redis."""
    return abuse_settings(
        db_url,
        graph_api,
        openai_server,
        redis_url=shared_redis_url(),
        redis_prefix=unique_prefix(),
        rate_limits="5/1m",
        block_durations="10m",
    )


async def test_a_flood_is_slowed_then_blocked_while_twenty_others_are_served(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Two waves at five messages a minute: the first (far past the ingress burst) earns
    the warning, the second (delivered in full, as Meta redelivers) the block — each
    exactly once, whatever turns the worker cut the waves into. Ten other customers
    write during each wave; each is answered once and none is refused."""
    flooder = new_customer()
    others = [new_customer() for _ in range(20)]
    settings = flood_settings(db_url, graph_api, openai_server)
    # Zero-padded so that no flood text is a prefix of another ("flood 1" in "flood 10").
    flood = [envelope(text_message(flooder, f"flood {i:03d}")) for i in range(130)]
    first_wave, second_wave = flood[:120], flood[120:]
    hello = [envelope(text_message(customer, f"hello from {customer}")) for customer in others]

    async def everyone_else_handled() -> bool:
        return all([await all_processed(service, customer) for customer in others])

    async with running_service(settings) as service:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
            first = await asyncio.gather(*(post(client, p) for p in first_wave + hello[:10]))
            await eventually(lambda: all_processed(service, flooder), what="the first wave")
            second = await asyncio.gather(
                *(redeliver(client, p) for p in second_wave),
                *(post(client, p) for p in hello[10:]),
            )
        await eventually(lambda: all_processed(service, flooder), what="the second wave")
        await eventually(everyone_else_handled, within=30, what="the others answered")
        stored = await service.fetch(
            "SELECT i.text, i.gate, r.id AS run_id, r.gate AS run_gate FROM inbound_messages i"
            " JOIN conversation_runs r ON r.id = i.run_id WHERE i.wa_id = %s",
            flooder,
        )
        refused_runs = [row["run_id"] for row in stored if row["run_gate"] != "admitted"]
        graph_ran_for_refused = await graph_runs_for(service, refused_runs)
        others_stored = await service.fetch(
            "SELECT i.gate, r.gate AS run_gate FROM inbound_messages i"
            " JOIN conversation_runs r ON r.id = i.run_id WHERE i.wa_id = ANY(%s)",
            others,
        )
        audit = await service.fetch(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", flooder
        )
    flood_codes = [response.status_code for response in first[: len(first_wave)]]
    flood_codes += [response.status_code for response in second[: len(second_wave)]]
    assert all(response.status_code == 200 for response in first[len(first_wave) :])
    assert all(response.status_code == 200 for response in second[len(second_wave) :])
    assert set(flood_codes) <= {200, 429}
    # Every 200 has its row (nothing acknowledged is lost); the rest was refused with
    # 429 for Meta to deliver again. The ingress bucket lets a burst of 40 through.
    assert flood_codes.count(200) == len(stored) >= 40 + len(second_wave)
    answered = [row for row in stored if row["gate"] is None]
    assert len(answered) <= 5  # the rate limit: at most 5 a minute reach the graph
    assert graph_ran_for_refused == 0
    assert not any(model_saw(openai_server, row["text"]) for row in stored if row["gate"])
    received = kinds(graph_api, flooder)
    assert received.count("warning") == 1 and received.count("block") == 1
    assert received.index("warning") < received.index("block") == len(received) - 1
    assert received.count("reply") == len({row["run_id"] for row in answered})
    actions = [row["action"] for row in audit]
    assert [a for a in actions if a != "abuse.ingress_dropped"] == ["abuse.warned", "abuse.blocked"]
    assert actions.count("abuse.ingress_dropped") == 1  # folded: one row per interval
    assert all(kinds(graph_api, customer) == ["reply"] for customer in others)
    assert len(others_stored) == len(others)
    assert {(row["gate"], row["run_gate"]) for row in others_stored} == {(None, "admitted")}


async def test_the_ladder_through_the_service(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Warning, a 10-minute block, a 1-hour block, then the blacklist: each step once,
    each written to the audit log, on a clock the test moves."""
    customer = new_customer()
    clock = FakeClock()
    settings = abuse_settings(
        db_url,
        graph_api,
        openai_server,
        rate_limits="2/1m",
        block_durations="10m,1h",
        auto_blacklist_seconds=86400,
    )

    async with running_service(settings) as service:
        service.services.abuse.limiter.clock = clock
        for gap in (0, 1, 1, 5, 60, 600, 1, 1, 3600, 1, 1, 1):
            clock.advance(gap)
            await send_and_settle(service, customer)
        audit = await service.fetch(
            "SELECT actor, action, details FROM audit_log WHERE target = %s ORDER BY id",
            customer,
        )
        listed = await service.fetch("SELECT source, expires_at FROM blacklist")
        penalties = await service.fetch("SELECT * FROM abuse_penalties")
        gates = await service.fetch(
            "SELECT gate FROM inbound_messages WHERE wa_id = %s ORDER BY id", customer
        )
    assert kinds(graph_api, customer) == [
        "reply", "reply", "warning", "block", "reply", "reply", "block", "reply", "reply",
        "blacklist",
    ]  # fmt: skip
    texts = graph_api.texts_to(customer)
    assert "10 minutes" in texts[3] and "1 hour" in texts[6]
    assert [row["action"] for row in audit] == [
        "abuse.warned", "abuse.blocked", "abuse.blocked", "abuse.blacklisted",
    ]  # fmt: skip
    assert {row["actor"] for row in audit} == {"system"}
    assert [row["source"] for row in listed] == ["automatic"]
    assert listed[0]["expires_at"].timestamp() == clock.now - 1 + 86400  # from the 11th
    assert penalties == []  # the blacklist replaced the ladder
    assert [row["gate"] for row in gates][-3:] == [None, "blacklisted", "blacklisted"]


async def test_a_burst_waiting_on_one_conversation_leaves_the_pool_to_everyone_else(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Each stored delivery locks its sender's conversation until it commits. While one
    sender's burst waits on that lock, it must not hold the pool's connections: another
    customer's delivery is stored and answered 200 all the same, and the burst is
    stored in full once the lock goes."""
    flooder, other = new_customer(), new_customer()
    settings = abuse_settings(db_url, graph_api, openai_server, db_pool_max_size=3)
    async with running_service(settings, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            assert (await post(client, envelope(text_message(flooder, "first")))).status_code == 200
            async with await psycopg.AsyncConnection.connect(db_url) as holder:
                async with holder.transaction():
                    await holder.execute(
                        "SELECT 1 FROM agent_conversations WHERE wa_id = %s FOR UPDATE", (flooder,)
                    )
                    burst = [
                        asyncio.create_task(
                            post(client, envelope(text_message(flooder, f"burst {i}")))
                        )
                        for i in range(6)
                    ]
                    await eventually(
                        lambda: _waiting_on_locks(holder, 1), what="the burst reaches the lock"
                    )
                    answer = await asyncio.wait_for(
                        post(client, envelope(text_message(other, "hello"))), 10
                    )
                    assert not any(task.done() for task in burst)  # still behind the lock
            assert answer.status_code == 200
            assert [r.status_code for r in await asyncio.gather(*burst)] == [200] * 6
        stored = await service.fetch(
            "SELECT wa_id, count(*) AS n FROM inbound_messages GROUP BY wa_id ORDER BY n"
        )
    assert [(row["wa_id"], row["n"]) for row in stored] == [(other, 1), (flooder, 7)]


async def _waiting_on_locks(conn: psycopg.AsyncConnection[Any], at_least: int) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    row = await cur.fetchone()
    return row is not None and int(row[0]) >= at_least


async def test_messages_sent_while_the_bot_thinks_count_against_the_limit(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Double texting takes messages that came while the graph thought into the same
    run. A burst that came then is screened like a run of its own: over the limit, it
    never reaches the model, the run answers the first message and warns once."""
    flooder = new_customer()
    settings = flood_settings(db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
            openai_server.hold()
            openai_server.script("Hello! How can I help?")
            await post(client, envelope(text_message(flooder, "burst 000")))

            async def thinking() -> bool:
                return openai_server.waiting > 0

            await eventually(thinking, what="the first message at the model")
            burst = [envelope(text_message(flooder, f"burst {i:03d}")) for i in range(1, 11)]
            for payload in burst:
                assert (await post(client, payload)).status_code == 200
            openai_server.release()
        await eventually(lambda: all_processed(service, flooder), what="the burst handled")
        stored = await service.fetch(
            "SELECT i.text, i.gate FROM inbound_messages i WHERE i.wa_id = %s ORDER BY i.id",
            flooder,
        )
    assert [row["text"] for row in stored if row["gate"] is None] == ["burst 000"]
    assert {row["gate"] for row in stored[1:]} == {"rate_limited"}
    assert not any(model_saw(openai_server, row["text"]) for row in stored[1:])
    assert kinds(graph_api, flooder) == ["reply", "warning"]
