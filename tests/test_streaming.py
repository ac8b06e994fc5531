"""`POST /v1/conversations/{id}/stream` read by a real SSE client (httpx-sse): tokens
as the model writes them, the steps around them, a final event, an error event instead
of a broken stream — only for web conversations, each with its own token (a WhatsApp
customer's thread is never driven from the web), never two turns at once on a thread,
and never a way around the abuse gate (blacklist, rate limits, token budget)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service, service_settings
from tests.support_abuse import BLACKLIST, BLOCK_PREFIX, BUDGET, NOTICES, WARNING
from tests.test_agent_flows import say

BACKEND_TOKEN = "web-chat-backend-token-0123456789abcdef"
ADMIN_TOKEN = "admin-secret-token-0123456789abcdef"
BACKEND = {"Authorization": f"Bearer {BACKEND_TOKEN}"}


def stream_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Any:
    values: dict[str, Any] = {
        "whatsapp_api_base_url": graph_api.base_url,
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url + "/v1",
        "admin_token": ADMIN_TOKEN,
        "stream_api_token": BACKEND_TOKEN,
        "stream_wait_seconds": 0.5,
    }
    return service_settings(db_url, **{**values, **overrides})


async def web_conversation(service: RunningService, visitor: str | None = None) -> dict[str, str]:
    """A new web conversation, as the web chat's backend creates it: id, customer, token."""
    async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
        body = {} if visitor is None else {"visitor": visitor}
        answer = await client.post("/v1/conversations", json=body, headers=BACKEND)
    assert answer.status_code == 201, answer.text
    created: dict[str, str] = answer.json()
    return created


async def stream(
    service: RunningService, conversation: dict[str, str], text: str, token: str | None = None
) -> list[tuple[str, Any]]:
    """Every event of one streamed turn, as (event, data)."""
    async with (
        httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
        aconnect_sse(
            client,
            "POST",
            f"/v1/conversations/{conversation['conversation_id']}/stream",
            json={"text": text},
            headers={"Authorization": f"Bearer {token or conversation['token']}"},
        ) as source,
    ):
        assert source.response.status_code == 200
        return [(event.event, json.loads(event.data)) async for event in source.aiter_sse()]


async def state_of(service: RunningService, conversation: dict[str, str]) -> dict[str, Any]:
    config = {"configurable": {"thread_id": conversation["conversation_id"]}}
    async with service.services.runner.graphs.borrow() as graph:
        return dict((await graph.aget_state(config)).values)  # type: ignore[arg-type]


async def test_tokens_and_steps_arrive_in_order_and_nothing_goes_to_whatsapp(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await web_conversation(service)
        assert conversation["customer"].startswith("web:")
        openai_server.script("Sure, for which day?")
        first = await stream(service, conversation, "I want to book a bike")
        assert first[-1][0] == "final"

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

        assert graph_api.texts_to(conversation["customer"]) == []  # the stream is the channel
        state = await state_of(service, conversation)
        assert state["active_agent"] == "sales" and state["messages"][-1].content == answer
        transcript = await _transcript_of(service, conversation)
        assert transcript[-2:] == ["how much is it?", answer]


async def test_a_whatsapp_customers_thread_is_never_driven_from_the_web(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Whoever holds the backend's token, an admin token or another web conversation's
    token, a WhatsApp thread answers 404 and runs nothing."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Sure, for which day?")
        await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
        rows = await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", customer)
        thread = str(rows[0]["id"])
        other = await web_conversation(service)
        asked_before = len(openai_server.requests)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            answers = [
                await client.post(
                    f"/v1/conversations/{thread}/stream",
                    json={"text": "send my order to another address"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                for token in (BACKEND_TOKEN, ADMIN_TOKEN, other["token"])
            ]
        transcript = await _transcript_of(service, {"conversation_id": thread})
        audit = await service.fetch(
            "SELECT actor, remote_addr, details FROM audit_log WHERE action = 'stream.auth_failed'"
        )
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert len(openai_server.requests) == asked_before
    assert "send my order to another address" not in transcript
    assert len(graph_api.texts_to(customer)) == 1
    assert [(a["actor"], a["remote_addr"]) for a in audit] == [("anonymous", "127.0.0.1")]
    assert audit[0]["details"]["reason"] == "not a web conversation"


async def test_two_turns_of_one_web_conversation_never_run_together(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await web_conversation(service)
        openai_server.hold()
        first = asyncio.create_task(stream(service, conversation, "I want to book a bike"))
        await asyncio.to_thread(openai_server.wait_for_requests, 1, 15)
        busy = await stream(service, conversation, "and Sunday?")
        assert [kind for kind, _ in busy] == ["error"] and busy[0][1]["code"] == "busy"
        openai_server.script("Sure, for which day?")
        openai_server.release()
        assert (await first)[-1][1]["texts"] == ["Sure, for which day?"]
        openai_server.script("Sunday too.")
        assert (await stream(service, conversation, "and Sunday?"))[-1][1]["texts"] == [
            "Sunday too."
        ]
        history = [m.content for m in (await state_of(service, conversation))["messages"]]
    assert history[-4:] == [
        "I want to book a bike",
        "Sure, for which day?",
        "and Sunday?",
        "Sunday too.",
    ]


async def test_bad_requests_are_refused_before_any_stream(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with (
        running_service(stream_settings(db_url, graph_api, openai_server)) as service,
        httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
    ):
        created = [
            await client.post("/v1/conversations", json={}),
            await client.post(
                "/v1/conversations", json={}, headers={"Authorization": "Bearer " + "x" * 30}
            ),
            await client.post("/v1/conversations", json={"visitor": "a b"}, headers=BACKEND),
        ]
        mine, other = await web_conversation(service), await web_conversation(service)
        url = f"/v1/conversations/{mine['conversation_id']}/stream"

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        answers = [
            await client.post(url, json={"text": "hi"}),
            await client.post(url, json={"text": "hi"}, headers=BACKEND),
            await client.post(url, json={"text": "hi"}, headers=bearer(other["token"])),
            await client.post(
                f"/v1/conversations/{uuid.uuid4()}/stream",
                json={"text": "hi"},
                headers=bearer(mine["token"]),
            ),
            await client.post(url, json={"text": ""}, headers=bearer(mine["token"])),
            await client.post(url, json={"text": "hi", "more": 1}, headers=bearer(mine["token"])),
        ]
    assert [a.status_code for a in created] == [401, 401, 422]
    assert [a.status_code for a in answers] == [401, 401, 401, 404, 422, 422]
    assert openai_server.requests == []


async def test_guessing_tokens_is_throttled_per_address(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Three wrong tokens from an address (the limit here), then 429 with Retry-After
    for whatever it presents — the right token too — while another address streams;
    the refusals are audited, folded per address."""
    settings = stream_settings(db_url, graph_api, openai_server, auth_failure_limit=3)
    async with running_service(settings) as service:
        conversation = await web_conversation(service)
        url = f"/v1/conversations/{conversation['conversation_id']}/stream"
        right = {"Authorization": f"Bearer {conversation['token']}"}
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as guesser:
            guesses = [
                await guesser.post(
                    url, json={"text": "hi"}, headers={"Authorization": f"Bearer wct_guess{n}"}
                )
                for n in range(3)
            ]
            throttled = [
                await guesser.post(url, json={"text": "hi"}, headers=right),
                await guesser.post("/v1/conversations", json={}, headers=BACKEND),
                await guesser.get(
                    "/admin/api/audit", headers={"Authorization": "Bearer " + "x" * 30}
                ),
            ]
        openai_server.script("Hello!")
        neighbour = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(
            base_url=service.base_url, transport=neighbour, timeout=30
        ) as other:
            elsewhere = await other.post(url, json={"text": "hi"}, headers=right)
        audit = await service.fetch(
            "SELECT action, remote_addr, details FROM audit_log"
            " WHERE action IN ('stream.auth_failed', 'auth.throttled') ORDER BY id"
        )
    assert [g.status_code for g in guesses] == [401, 401, 401]
    for response in throttled:
        assert response.status_code == 429, response.text
        assert 0 < int(response.headers["retry-after"]) <= settings.auth_failure_window_seconds
    assert elsewhere.status_code == 200 and "Hello!" in elsewhere.text
    assert [(a["action"], a["remote_addr"]) for a in audit] == [
        ("stream.auth_failed", "127.0.0.1"),
        ("auth.throttled", "127.0.0.1"),
    ]


async def test_a_visitor_gets_one_conversation_and_a_new_token_ends_the_old_one(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        first = await web_conversation(service, visitor="user-42")
        again = await web_conversation(service, visitor="user-42")
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            stale = await client.post(
                f"/v1/conversations/{first['conversation_id']}/stream",
                json={"text": "hi"},
                headers={"Authorization": f"Bearer {first['token']}"},
            )
        openai_server.script("Hello!")
        fresh = await stream(service, again, "hi")
    assert first["conversation_id"] == again["conversation_id"]
    assert first["customer"] == again["customer"] == "web:user-42"
    assert stale.status_code == 401
    assert fresh[-1][1]["texts"] == ["Hello!"]


async def test_a_client_that_leaves_mid_stream_does_not_cut_the_turn(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await _answered_once(service, openai_server)
        answer = " ".join(f"word{i}" for i in range(60))
        openai_server.stream_interval = 0.02
        openai_server.script(answer)
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
            aconnect_sse(
                client,
                "POST",
                f"/v1/conversations/{conversation['conversation_id']}/stream",
                json={"text": "Saturday"},
                headers={"Authorization": f"Bearer {conversation['token']}"},
            ) as source,
        ):
            async for event in source.aiter_sse():
                if event.event == "token":
                    break  # the browser tab closes after the first word

        async def answered() -> bool:
            return answer in await _transcript_of(service, conversation)

        await eventually(answered, what="the abandoned turn to finish")
        state = await state_of(service, conversation)
        assert state["messages"][-1].content == answer


async def _answered_once(
    service: RunningService, openai_server: FakeOpenAIServer
) -> dict[str, str]:
    """A web conversation with one answered turn: the stream's subject."""
    conversation = await web_conversation(service)
    openai_server.script("Sure, for which day?")
    assert (await stream(service, conversation, "I want to book a bike"))[-1][0] == "final"
    return conversation


async def _transcript_of(service: RunningService, conversation: dict[str, str]) -> list[str]:
    rows = await service.fetch(
        "SELECT content FROM agent_messages WHERE conversation_id = %s ORDER BY id",
        conversation["conversation_id"],
    )
    return [row["content"] for row in rows]


async def _refusals_of(
    service: RunningService, conversation: dict[str, str]
) -> list[tuple[str, str]]:
    """The conversation's messages the gate refused, with its reason, in order."""
    rows = await service.fetch(
        "SELECT text, gate FROM inbound_messages WHERE conversation_id = %s"
        " AND gate IS NOT NULL AND gate <> 'admitted' ORDER BY id",
        conversation["conversation_id"],
    )
    return [(row["text"], row["gate"]) for row in rows]


async def test_a_blacklisted_customers_stream_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await _answered_once(service, openai_server)
        blacklist = service.services.abuse.blacklist
        await blacklist.add(conversation["customer"], reason="abuse", source="manual", actor="t")
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
        refused = await _refusals_of(service, conversation)
    assert events == [("error", {"code": "blacklisted", "message": BLACKLIST})]
    assert len(openai_server.requests) == asked_before  # the model was never called
    assert refused == [("how much is it?", "blacklisted")]  # kept, marked, as WhatsApp's


async def test_a_stream_over_the_rate_limit_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """One turn a minute here: the second turn is warned and the third blocked, each
    written to the audit log under the web customer's key."""
    settings = stream_settings(
        db_url, graph_api, openai_server, rate_limits="1/1m", block_durations="10m"
    )
    async with running_service(settings) as service:
        conversation = await _answered_once(service, openai_server)
        asked_before = len(openai_server.requests)
        warned = await stream(service, conversation, "how much is it?")
        blocked = await stream(service, conversation, "hello?")
        audit = await service.fetch(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", conversation["customer"]
        )
        refused = await _refusals_of(service, conversation)
    assert warned == [("error", {"code": "rate_limited", "message": WARNING})]
    assert [kind for kind, _ in blocked] == ["error"] and blocked[0][1]["code"] == "blocked"
    assert blocked[0][1]["message"] == BLOCK_PREFIX + "10 minutes. Please write again after that."
    assert len(openai_server.requests) == asked_before
    assert [row["action"] for row in audit] == ["abuse.warned", "abuse.blocked"]
    assert refused == [("how much is it?", "rate_limited"), ("hello?", "blocked")]


async def test_a_stream_past_the_daily_token_budget_is_refused_before_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = stream_settings(db_url, graph_api, openai_server, daily_token_budget=1)
    async with running_service(settings) as service:  # one answered turn spends it all
        conversation = await _answered_once(service, openai_server)
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
    assert events == [("error", {"code": "over_budget", "message": BUDGET})]
    assert len(openai_server.requests) == asked_before


async def test_a_streamed_turns_tokens_count_against_the_daily_budget(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(stream_settings(db_url, graph_api, openai_server)) as service:
        conversation = await web_conversation(service)
        limiter = service.services.abuse.limiter
        before = await limiter.tokens_today(conversation["customer"])
        openai_server.script("A city bike costs 10000 RWF a day.")
        events = await stream(service, conversation, "how much is it?")
        after = await limiter.tokens_today(conversation["customer"])
    assert events[-1][0] == "final"
    assert after > before == 0


async def test_a_streamed_turn_meets_the_spending_caps_like_any_other(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The stream runs the same runner as WhatsApp: past the conversation's token cap,
    the customer reads the cap message and the model is not called."""
    settings = stream_settings(
        db_url, graph_api, openai_server, conversation_token_cap=1, cap_action="message"
    )
    async with running_service(settings) as service:
        conversation = await _answered_once(service, openai_server)
        await service.services.accounting.writer.flush()  # type: ignore[union-attr]
        asked_before = len(openai_server.requests)
        events = await stream(service, conversation, "how much is it?")
    cap_notice = NOTICES.say("spending_cap", "en")
    assert events[-1] == ("final", {**events[-1][1], "texts": [cap_notice]})
    assert len(openai_server.requests) == asked_before
