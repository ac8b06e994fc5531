"""Who may stream a turn: only web conversations, each with its own token, created with
the web chat backend's token. A WhatsApp customer's thread is never driven from the web,
whatever token is shown; a bad request is refused before any stream; guessing tokens
is throttled per address; and a visitor's new token ends the old one."""

from __future__ import annotations

import uuid

import httpx

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service
from tests.support_streaming import (
    ADMIN_TOKEN,
    BACKEND,
    BACKEND_TOKEN,
    stream,
    stream_settings,
    transcript_of,
    web_conversation,
)
from tests.test_agent_flows import say


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
        transcript = await transcript_of(service, {"conversation_id": thread})
        audit = await service.fetch(
            "SELECT actor, remote_addr, details FROM audit_log WHERE action = 'stream.auth_failed'"
        )
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert len(openai_server.requests) == asked_before
    assert "send my order to another address" not in transcript
    assert len(graph_api.texts_to(customer)) == 1
    assert [(a["actor"], a["remote_addr"]) for a in audit] == [("anonymous", "127.0.0.1")]
    assert audit[0]["details"]["reason"] == "not a web conversation"


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
