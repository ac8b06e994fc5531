"""Meta's Cloud API failing for a while: the conversation waits, then goes on by itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta, answered_count, check_invariants, message_text
from tests.faults.settings import fault_settings
from tests.support import eventually, query, running_service

pytestmark = pytest.mark.timeout(180)

CUSTOMER = "250788300001"


async def test_a_meta_outage_while_the_customer_writes_again_wedges_nothing(
    fault_db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Meta answers 500 for 10 s; the first reply cannot go out while the customer
    writes again. Both are answered once Meta is back, in order, and the conversation
    goes on as usual: nobody has to write again for it to move."""
    settings = fault_settings(fault_db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        meta = Meta(service.base_url)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            graph_api.outage(10, status=500)
            await meta.deliver(client, CUSTOMER, message_text(1, 0))
            await asyncio.sleep(1.5)  # the first run is failing to send by now
            await meta.deliver(client, CUSTOMER, message_text(1, 1))
            assert graph_api.sent_to(CUSTOMER) == []

            async def both_answered() -> bool:
                return await answered_count(fault_db_url) == 2

            await eventually(both_answered, within=40, what="both messages answered")
            await meta.deliver(client, CUSTOMER, message_text(1, 2))

            async def all_answered() -> bool:
                return await answered_count(fault_db_url) == 3

            await eventually(all_answered, within=15, what="the next message answered")
        await asyncio.sleep(0.5)  # room for a duplicate to show, were there one
        await check_invariants(meta, fault_db_url, graph_api)
    texts = graph_api.texts_to(CUSTOMER)
    assert "c1m0" in texts[0] and "c1m2" in texts[-1], texts


async def test_retry_after_is_honoured_and_the_reply_goes_out_once(
    fault_db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Meta throttles (429, Retry-After: 2) for 5 s: the service waits as told instead of
    hammering, then answers once."""
    settings = fault_settings(fault_db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        meta = Meta(service.base_url)
        graph_api.outage(5, status=429, retry_after=2)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            await meta.deliver(client, CUSTOMER, message_text(2, 0))

        async def answered() -> bool:
            return await answered_count(fault_db_url) == 1

        await eventually(answered, within=40, what="the throttled reply")
        await asyncio.sleep(0.5)
        await check_invariants(meta, fault_db_url, graph_api)
    refused = [r for r in graph_api.requests if r["status"] == 429]
    assert 1 <= len(refused) <= 5, f"{len(refused)} tries in a 5 s throttle"
    assert len(graph_api.texts_to(CUSTOMER)) == 1


async def test_a_send_cut_off_mid_flight_is_not_repeated_and_the_next_turn_is_answered(
    fault_db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The connection drops after the request left: Meta may have delivered it. The part
    is marked `unknown` (a duplicate is worse than a gap an operator can see), and the
    conversation is not held up by it."""
    settings = fault_settings(fault_db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        meta = Meta(service.base_url)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            graph_api.outage(3, drop=True, receipts=False)
            await meta.deliver(client, CUSTOMER, message_text(3, 0))

            async def settled() -> bool:
                return await answered_count(fault_db_url) == 1

            await eventually(settled, within=20, what="the cut-off run settled")
            await asyncio.sleep(3)
            await meta.deliver(client, CUSTOMER, message_text(3, 1))

            async def next_answered() -> bool:
                return await answered_count(fault_db_url) == 2

            await eventually(next_answered, within=20, what="the next turn answered")
        await check_invariants(meta, fault_db_url, graph_api)
    parts = await query(fault_db_url, "SELECT status FROM outbound_messages ORDER BY id")
    assert [p["status"] for p in parts] == ["unknown", "sent"]
    assert ["c3m1" in text for text in graph_api.texts_to(CUSTOMER)] == [True]
