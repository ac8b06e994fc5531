"""Double texting with no fixed wait: a message is answered at once, and what the
customer adds while the model thinks is answered together with it — once, in order."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import eventually, query, running_service, service_settings


def _settings(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer):  # type: ignore[no-untyped-def]
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        router_llm=False,
    )


async def _runs_done(db_url: str, n: int) -> None:
    async def done() -> bool:
        rows = await query(
            db_url, "SELECT count(*) AS n FROM conversation_runs WHERE status = 'done'"
        )
        return int(rows[0]["n"]) == n

    await eventually(done, what=f"{n} run(s) done")


@pytest.mark.parametrize("earlier_turns", [0, 1], ids=["first-turn", "later-turn"])
async def test_texts_sent_while_the_model_thinks_are_answered_together(
    earlier_turns: int, db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(_settings(db_url, graph_api, openai_server)) as service:
        for n in range(earlier_turns):
            await service.post_webhook(envelope(text_message(customer, f"earlier {n}")))
            await _runs_done(db_url, n + 1)
        openai_server.hold()  # the model is thinking about "hi"
        await service.post_webhook(envelope(text_message(customer, "hi")))
        await asyncio.to_thread(openai_server.wait_for_requests, earlier_turns + 1, 30.0)
        for text in ("I want to book a bike", "for Saturday"):
            await service.post_webhook(envelope(text_message(customer, text)))
        openai_server.release()
        await _runs_done(db_url, earlier_turns + 1)
        await asyncio.sleep(0.5)  # room for a second, separate answer, were there one
        history = await service.fetch(
            "SELECT content FROM agent_messages WHERE conversation_id ="
            " (SELECT id FROM agent_conversations WHERE wa_id = %s) ORDER BY id",
            customer,
        )
    answers = graph_api.texts_to(customer)
    assert answers[earlier_turns:] == ["echo: hi | I want to book a bike | for Saturday"]
    # The thread the next turn reads holds each message once, then the one answer.
    seen = [m["content"] for m in openai_server.requests[-1]["messages"]][-3:]
    assert seen == ["hi", "I want to book a bike", "for Saturday"]
    assert [h["content"] for h in history][-4:] == [
        "hi",
        "I want to book a bike",
        "for Saturday",
        "echo: hi | I want to book a bike | for Saturday",
    ]


async def test_a_turn_that_used_a_tool_is_not_run_again_for_a_later_text(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """A tool step may have acted on the world: the run keeps its answer, and the text
    that came meanwhile gets its own answer right after, in order."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script(ToolCall("search_catalog", {"query": "bike"}), "We rent bikes.")
        openai_server.hold()
        await service.post_webhook(envelope(text_message(customer, "do you rent bikes?")))
        await asyncio.to_thread(openai_server.wait_for_requests, 1, 30.0)
        await service.post_webhook(envelope(text_message(customer, "and helmets?")))
        openai_server.release()
        await _runs_done(db_url, 2)
    assert graph_api.texts_to(customer) == ["We rent bikes.", "echo: and helmets?"]
