"""Memory through the whole service: webhook → queue → graph → WhatsApp, then the
remember job, then a later conversation of the same customer that knows her.

The remember job is queued once the reply has gone out — never before: while Meta
refuses the send, no extraction call is made at all.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from server.runner.memory_jobs import CHECKPOINT_RETENTION_TASK, MEMORY_CLEANUP_TASK
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, eventually, running_service, service_settings


def settings_for(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        router_llm=False,
        memory_remember_delay_seconds=0,
        queue_poll_seconds=0.2,
    )


async def memories_of(service: RunningService, customer: str) -> list[str]:
    rows = await service.fetch(
        "SELECT content FROM agent_embeddings WHERE user_id = %s ORDER BY content", customer
    )
    return [row["content"] for row in rows]


async def test_she_is_remembered_in_her_next_conversation_after_the_reply_went_out(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    grace = "2507" + str(uuid.uuid4().int)[:8]
    extraction = {
        "memories": [
            {"content": "The customer is vegetarian.", "kind": "preference", "importance": 0.9},
            {"content": "The customer lives in Kigali.", "kind": "fact", "importance": 0.6},
        ]
    }
    openai_server.script("Welcome, Grace!", json.dumps(extraction))
    graph_api.fail_next(100, status=503, retry_after=0.01)  # Meta refuses for now
    async with running_service(settings_for(db_url, graph_api, openai_server)) as service:
        registered = {task for task, _ in service.services.queue.periodic_registry.periodic_tasks}
        assert {MEMORY_CLEANUP_TASK, CHECKPOINT_RETENTION_TASK} <= registered

        message = "Hi, I'm Grace, I'm vegetarian and I live in Kigali. Do you rent bikes?"
        assert (
            await service.post_webhook(envelope(text_message(grace, message)))
        ).status_code == 200
        await graph_api.wait_for_async(lambda: graph_api.message_attempts >= 2, 15)
        await asyncio.sleep(0.5)
        assert len(openai_server.requests) == 1  # the answer, and no extraction yet
        assert await memories_of(service, grace) == []

        graph_api.reset()  # Meta accepts again: the retried job delivers, then remembers

        async def remembered() -> bool:
            return len(await memories_of(service, grace)) == 2

        await eventually(remembered, within=20, what="the remember job")
        assert graph_api.texts_to(grace) == ["Welcome, Grace!"]
        assert "response_format" in openai_server.requests[-1]  # the extraction came last

        # Another of the shop's numbers: a new conversation, the same customer.
        await service.add_number("PNID2")
        later = text_message(grace, "What could I eat at your cafe?", phone_number_id="PNID2")
        assert (await service.post_webhook(envelope(later))).status_code == 200
        await graph_api.wait_for_async(lambda: len(graph_api.texts_to(grace)) == 2, 15)
        conversations = await service.fetch(
            "SELECT count(*) AS n FROM agent_conversations WHERE wa_id = %s", grace
        )
    assert conversations[0]["n"] == 2
    answer = next(r for r in reversed(openai_server.requests) if "tools" in r)
    notes = [m["content"] for m in answer["messages"] if m["role"] == "system"]
    assert "The customer is vegetarian." in notes[-1]  # a note after the agent's prompt
    assert graph_api.texts_to(grace)[-1] == "echo: What could I eat at your cafe?"
