"""The outbox against real Postgres and the fake Graph API: parts in order, each sent
at most once, whatever happens between attempts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from graph.infra.database import Pool, open_pool
from graph.state import Reply
from server.runner.outbox import DeliveryDeferred, deliver_parts, reply_parts, stage_parts
from server.whatsapp.client import WhatsAppClient
from tests.fakes.graph_api import FakeGraphAPI
from tests.support import ACCESS_TOKEN, PHONE_NUMBER_ID, service_settings

CUSTOMER = "250788555000"


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as pool:
        yield pool


@pytest.fixture
async def client(graph_api: FakeGraphAPI) -> AsyncIterator[WhatsAppClient]:
    async with WhatsAppClient(
        base_url=graph_api.base_url,
        access_token=ACCESS_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        max_attempts=2,
        backoff_base=0.001,
    ) as client:
        yield client


async def new_run(pool: Pool, replies: list[Reply]) -> str:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO contacts (wa_id) VALUES (%s) ON CONFLICT DO NOTHING", (CUSTOMER,)
        )
        cur = await conn.execute(
            "INSERT INTO agent_conversations (phone_number_id, wa_id) VALUES ('PNID', %s)"
            " ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET updated_at = now() RETURNING id",
            (CUSTOMER,),
        )
        row = await cur.fetchone()
    assert row is not None
    run_id = str(uuid.uuid4())
    await stage_parts(
        pool,
        conversation_id=str(row["id"]),
        run_id=run_id,
        wa_id=CUSTOMER,
        parts=reply_parts(replies),
    )
    return run_id


async def statuses(pool: Pool, run_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT part, status, kind FROM outbound_messages WHERE run_id = %s ORDER BY part",
            (run_id,),
        )
        return list(await cur.fetchall())


async def test_long_text_and_buttons_go_out_in_order_once(
    pool: Pool, client: WhatsAppClient, graph_api: FakeGraphAPI
) -> None:
    long_text = "\n\n".join(f"Paragraph {i}. " + "word " * 200 for i in range(5))
    replies: list[Reply] = [
        {"kind": "text", "text": long_text},
        {
            "kind": "buttons",
            "body": "Shall I book it?",
            "buttons": [
                {"id": "confirm:yes", "title": "Confirm"},
                {"id": "confirm:no", "title": "Cancel"},
            ],
        },
    ]
    run_id = await new_run(pool, replies)
    assert await deliver_parts(pool, client, run_id) == 3
    assert await deliver_parts(pool, client, run_id) == 0  # a retried run sends nothing again
    sent = graph_api.sent_to(CUSTOMER)
    assert [m["type"] for m in sent] == ["text", "text", "interactive"]
    assert all(len(m["text"]["body"]) <= 4096 for m in sent[:2])
    assert sent[0]["text"]["body"].startswith("Paragraph 0.")
    assert sent[2]["interactive"]["action"]["buttons"][0]["reply"]["id"] == "confirm:yes"
    assert [r["status"] for r in await statuses(pool, run_id)] == ["sent", "sent", "sent"]


async def test_a_part_cut_off_mid_send_is_never_resent(
    pool: Pool, client: WhatsAppClient, graph_api: FakeGraphAPI
) -> None:
    run_id = await new_run(pool, [{"kind": "text", "text": "Your order ships today."}])
    async with pool.connection() as conn:  # what a worker killed during the POST leaves
        await conn.execute(
            "UPDATE outbound_messages SET status = 'sending' WHERE run_id = %s", (run_id,)
        )
    assert await deliver_parts(pool, client, run_id) == 0
    assert graph_api.sent_to(CUSTOMER) == []
    assert [r["status"] for r in await statuses(pool, run_id)] == ["unknown"]


async def test_meta_unavailable_puts_the_part_back_for_the_next_attempt(
    pool: Pool, client: WhatsAppClient, graph_api: FakeGraphAPI
) -> None:
    run_id = await new_run(pool, [{"kind": "text", "text": "Your order ships today."}])
    graph_api.fail_next(2, status=503)
    with pytest.raises(DeliveryDeferred):
        await deliver_parts(pool, client, run_id)
    assert [r["status"] for r in await statuses(pool, run_id)] == ["pending"]
    assert await deliver_parts(pool, client, run_id) == 1  # the run's next attempt
    assert graph_api.texts_to(CUSTOMER) == ["Your order ships today."]


async def test_staging_twice_keeps_one_row_per_part(pool: Pool) -> None:
    replies: list[Reply] = [{"kind": "text", "text": "One."}]
    run_id = await new_run(pool, replies)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT conversation_id FROM outbound_messages WHERE run_id = %s", (run_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    await stage_parts(
        pool,
        conversation_id=str(row["conversation_id"]),
        run_id=run_id,
        wa_id=CUSTOMER,
        parts=replies,
    )
    assert len(await statuses(pool, run_id)) == 1
