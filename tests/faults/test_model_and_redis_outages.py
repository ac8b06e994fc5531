"""The model provider and Redis failing for a while: customers get the documented
fallback (the menu) or simply wait, and conversations go on normally afterwards."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta, answered_count, check_invariants, message_text
from tests.faults.outages import StoppableRedis
from tests.faults.settings import fault_settings
from tests.support import eventually, running_service

pytestmark = pytest.mark.timeout(180)

CUSTOMER = "250788400001"


async def _answered(db_url: str, count: int, within: float, what: str) -> None:
    async def done() -> bool:
        return await answered_count(db_url) == count

    await eventually(done, within=within, what=what)


@pytest.mark.parametrize("status", [500, 0], ids=["model-500", "model-hangs-up"])
async def test_a_model_outage_gets_the_menu_then_the_model_again(
    status: int, fault_db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = fault_settings(fault_db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        meta = Meta(service.base_url)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            openai_server.outage(8, status=status)
            await meta.deliver(client, CUSTOMER, message_text(4, 0))
            await _answered(fault_db_url, 1, 30, "an answer during the model outage")
            during = graph_api.sent_to(CUSTOMER)
            await asyncio.sleep(8)
            await meta.deliver(client, CUSTOMER, message_text(4, 1))
            await _answered(fault_db_url, 2, 20, "an answer after the model outage")
        await check_invariants(meta, fault_db_url, graph_api)
    assert [m["type"] for m in during] == ["interactive"], during  # the topic menu
    assert "c4m1" in graph_api.texts_to(CUSTOMER)[-1]


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_redis_stopped_and_started_keeps_conversations_going(
    fail_open: bool,
    fault_db_url: str,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
    stoppable_redis: StoppableRedis,
) -> None:
    """Fail open: answered during the outage by the in-process stand-in limiter. Fail
    closed: turns wait for Redis and are answered when it is back — not refused."""
    settings = fault_settings(
        fault_db_url,
        graph_api,
        openai_server,
        redis_url=stoppable_redis.url,
        redis_fail_open=fail_open,
        redis_retry_seconds=1.0,
    )
    async with running_service(settings) as service:
        meta = Meta(service.base_url)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            await meta.deliver(client, CUSTOMER, message_text(5, 0))
            await _answered(fault_db_url, 1, 20, "the first answer")
            stoppable_redis.stop()
            await meta.deliver(client, CUSTOMER, message_text(5, 1))
            if fail_open:
                await _answered(fault_db_url, 2, 20, "an answer while Redis is down")
            else:
                await asyncio.sleep(3)
                assert await answered_count(fault_db_url) == 1
            stoppable_redis.start()
            await _answered(fault_db_url, 2, 30, "the answer once Redis is back")
            await meta.deliver(client, CUSTOMER, message_text(5, 2))
            await _answered(fault_db_url, 3, 20, "the next answer")
        await check_invariants(meta, fault_db_url, graph_api)
    texts = graph_api.texts_to(CUSTOMER)
    assert ["c5m0" in texts[0], "c5m1" in texts[1], "c5m2" in texts[2]] == [True] * 3, texts
