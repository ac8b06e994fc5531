"""`POST /v1/conversations/{id}/stream` read by a real SSE client (httpx-sse): tokens
as the model writes them, the steps around them, a final event, an error event instead
of a broken stream — never a second run beside the worker's on the same thread, and
never a way around the abuse gate (blacklist, rate limits, token budget)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service, service_settings
from tests.support_abuse import BLACKLIST, BLOCK_PREFIX, NOTICES, WARNING
from tests.test_agent_flows import say, thread_state

WEB_TOKEN = "web-chat-token-0123456789abcdef"


def stream_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Any:
    values: dict[str, Any] = {
        "whatsapp_api_base_url": graph_api.base_url,
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url + "/v1",
        "admin_token": "admin-secret",
        "stream_api_token": WEB_TOKEN,
        "stream_wait_seconds": 0.5,
    }
    return service_settings(db_url, **{**values, **overrides})


async def stream(
    service: RunningService, conversation: str, text: str, token: str = WEB_TOKEN
) -> list[tuple[str, Any]]:
    """Every event of one streamed turn, as (event, data)."""
    async with (
        httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
        aconnect_sse(
            client,
            "POST",
            f"/v1/conversations/{conversation}/stream",
            json={"text": text},
            headers={"Authorization": f"Bearer {token}"},
        ) as source,
    ):
        assert source.response.status_code == 200
        return [(event.event, json.loads(event.data)) async for event in source.aiter_sse()]


async def conversation_of(service: RunningService, customer: str) -> str:
    rows = await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", customer)
    return str(rows[0]["id"])


async def test_tokens_and_steps_arrive_in_order_and_nothing_goes_to_whatsapp(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Sure, for which day?")
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
        conversation = await conversation_of(service, customer)
        received = graph_api.texts_to(customer)

        answer = "A city bike costs 10000 RWF a day. A mountain bike costs 15000 RWF."
        openai_server.script(ToolCall("transfer_to_sales", {"reason": "asks the price"}), answer)
        events = await stream(service, conversation, "how much is it?")

        kinds = [kind for kind, _ in events]
        assert kinds[0] == "started" and kinds[-1] == "final"
        steps = [kind for kind in kinds if kind not in ("token", "tool_call_started")]
        assert steps == ["started", "agent", "tool_call", "tool_result", "handoff", "final"]
        data = dict((kind, value) for kind, value in events if kind != "token")
        assert data["agent"]["agent"] == "booking"
        assert data["tool_call"]["name"] == "transfer_to_sales"
        assert (data["handoff"]["source"], data["handoff"]["target"]) == ("booking", "sales")
        tokens = [value for kind, value in events if kind == "token"]
        assert len(tokens) > 5 and {t["agent"] for t in tokens} == {"sales"}
        assert kinds.index("handoff") < kinds.index("token")
        assert "".join(t["text"] for t in tokens) == answer
        assert data["final"]["texts"] == [answer]

        assert graph_api.texts_to(customer) == received  # the stream is the channel
        state = await thread_state(service, customer)
        assert state["active_agent"] == "sales" and state["messages"][-1].content == answer
        transcript = await service.fetch(
            "SELECT role, content FROM agent_messages WHERE conversation_id = %s ORDER BY id",
            conversation,
        )
        assert [(r["role"], r["content"]) for r in transcript][-2:] == [
            ("customer", "how much is it?"),
            ("agent", answer),
        ]


async def test_a_stream_and_a_worker_turn_never_run_together(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Sure, for which day?")
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
        conversation = await conversation_of(service, customer)

        # A worker turn is thinking: the stream waits, then says so in an error event.
        openai_server.hold()
        await service.post_webhook(envelope(text_message(customer, "Saturday")))
        await asyncio.to_thread(openai_server.wait_for_requests, 2, 15)
        busy = await stream(service, conversation, "and Sunday?")
        assert [kind for kind, _ in busy] == ["error"] and busy[0][1]["code"] == "busy"
        openai_server.script("Saturday it is.")
        openai_server.release()
        await eventually(
            lambda: _has_reply(graph_api, customer, "Saturday it is."), what="the worker"
        )

        # A stream is thinking: the customer's next message waits for it, then runs.
        openai_server.hold()
        streamed = asyncio.create_task(stream(service, conversation, "and Sunday?"))
        await asyncio.to_thread(openai_server.wait_for_requests, 3, 15)
        await service.post_webhook(envelope(text_message(customer, "at 10am")))
        await asyncio.sleep(1.0)  # time enough for a worker that ignored the lock
        assert len(openai_server.requests) == 3
        openai_server.script("Sunday too.", "10am, noted.")
        openai_server.release()
        assert (await streamed)[-1] == (
            "final",
            {"replies": [_text("Sunday too.")], "texts": ["Sunday too."], "waiting": None},
        )
        await eventually(lambda: _has_reply(graph_api, customer, "10am, noted."), what="worker")

        history = [m.content for m in (await thread_state(service, customer))["messages"]]
        assert history[-6:] == [
            "Saturday",
            "Saturday it is.",
            "and Sunday?",
            "Sunday too.",
            "at 10am",
            "10am, noted.",
        ]


async def test_bad_requests_are_refused_before_any_stream(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with (
        running_service(stream_settings(db_url, graph_api, openai_server)) as service,
        httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
    ):
        url = f"/v1/conversations/{uuid.uuid4()}/stream"
        web = {"Authorization": f"Bearer {WEB_TOKEN}"}
        answers = [
            await client.post(url, json={"text": "hi"}),
            await client.post(url, json={"text": "hi"}, headers={"Authorization": "Bearer x"}),
            await client.post(url, json={"text": "hi"}, headers=web),
            await client.post(url, json={"text": ""}, headers=web),
            await client.post(url, json={"text": "hi", "more": 1}, headers=web),
        ]
        assert [a.status_code for a in answers] == [401, 401, 404, 422, 422]
        assert openai_server.requests == []


def _text(text: str) -> dict[str, str]:
    return {"kind": "text", "text": text}


async def _has_reply(graph_api: FakeGraphAPI, customer: str, text: str) -> bool:
    return text in graph_api.texts_to(customer)


async def test_a_client_that_leaves_mid_stream_does_not_cut_the_turn(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Sure, for which day?")
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
        conversation = await conversation_of(service, customer)

        answer = " ".join(f"word{i}" for i in range(60))
        openai_server.stream_interval = 0.02
        openai_server.script(answer)
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
            aconnect_sse(
                client,
                "POST",
                f"/v1/conversations/{conversation}/stream",
                json={"text": "Saturday"},
                headers={"Authorization": f"Bearer {WEB_TOKEN}"},
            ) as source,
        ):
            async for event in source.aiter_sse():
                if event.event == "token":
                    break  # the browser tab closes after the first word

        async def answered() -> bool:
            rows = await service.fetch(
                "SELECT content FROM agent_messages WHERE conversation_id = %s AND role = 'agent'",
                conversation,
            )
            return answer in [row["content"] for row in rows]

        await eventually(answered, what="the abandoned turn to finish")
        state = await thread_state(service, customer)
        assert state["messages"][-1].content == answer


async def _customer_with_a_conversation(
    service: RunningService, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> tuple[str, str]:
    """A customer who wrote once on WhatsApp (one answered turn): the stream's subject."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    openai_server.script("Sure, for which day?")
    await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
    return customer, await conversation_of(service, customer)


async def _transcript_of(service: RunningService, conversation: str) -> list[str]:
    rows = await service.fetch(
        "SELECT content FROM agent_messages WHERE conversation_id = %s ORDER BY id", conversation
    )
    return [row["content"] for row in rows]


async def test_a_blacklisted_customers_stream_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        customer, conversation = await _customer_with_a_conversation(
            service, graph_api, openai_server
        )
        blacklist = service.services.abuse.blacklist
        await blacklist.add(customer, reason="abuse", source="manual", actor="test")
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
        transcript = await _transcript_of(service, conversation)
    assert events == [("error", {"code": "blacklisted", "message": BLACKLIST})]
    assert len(openai_server.requests) == asked_before  # the model was never called
    assert "how much is it?" not in transcript


async def test_a_stream_over_the_rate_limit_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The stream climbs the same ladder as WhatsApp messages: one a minute here, so the
    second turn is warned and the third blocked, each written to the audit log."""
    settings = stream_settings(
        db_url, graph_api, openai_server, rate_limits="1/1m", block_durations="10m"
    )
    async with running_service(settings) as service:
        customer, conversation = await _customer_with_a_conversation(
            service, graph_api, openai_server
        )
        asked_before = len(openai_server.requests)
        warned = await stream(service, conversation, "how much is it?")
        blocked = await stream(service, conversation, "hello?")
        audit = await service.fetch(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", customer
        )
        transcript = await _transcript_of(service, conversation)
    assert warned == [("error", {"code": "rate_limited", "message": WARNING})]
    assert [kind for kind, _ in blocked] == ["error"] and blocked[0][1]["code"] == "blocked"
    assert blocked[0][1]["message"] == BLOCK_PREFIX + "10 minutes. Please write again after that."
    assert len(openai_server.requests) == asked_before
    assert [row["action"] for row in audit] == ["abuse.warned", "abuse.blocked"]
    assert not {"how much is it?", "hello?"} & set(transcript)
    assert len(graph_api.texts_to(customer)) == 1  # the stream is the channel, not WhatsApp


async def test_a_stream_past_the_daily_token_budget_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = stream_settings(db_url, graph_api, openai_server, daily_token_budget=1)
    async with running_service(settings) as service:  # one WhatsApp turn spends it all
        _, conversation = await _customer_with_a_conversation(service, graph_api, openai_server)
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
    assert events == [("error", {"code": "over_budget", "message": NOTICES.budget})]
    assert len(openai_server.requests) == asked_before


async def test_a_streamed_turns_tokens_count_against_the_daily_budget(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        customer, conversation = await _customer_with_a_conversation(
            service, graph_api, openai_server
        )
        limiter = service.services.abuse.limiter
        before = await limiter.tokens_today(customer)
        openai_server.script("A city bike costs 10000 RWF a day.")
        events = await stream(service, conversation, "how much is it?")
        after = await limiter.tokens_today(customer)
    assert events[-1][0] == "final"
    assert after > before > 0  # the WhatsApp turn, then the streamed one, both counted
