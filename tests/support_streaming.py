"""A running service set up for web chat streaming, and the calls the web chat makes to
it: create a web conversation (as its backend does, with the backend's token), stream
one turn through a real SSE client (httpx-sse), read back what the turn stored."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource, aconnect_sse

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, service_settings

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


@contextlib.asynccontextmanager
async def open_stream(
    service: RunningService, conversation: dict[str, str], text: str, token: str | None = None
) -> AsyncIterator[EventSource]:
    """One turn's SSE stream, open: for a client that reads only part of it."""
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
        yield source


async def stream(
    service: RunningService, conversation: dict[str, str], text: str, token: str | None = None
) -> list[tuple[str, Any]]:
    """Every event of one streamed turn, as (event, data)."""
    async with open_stream(service, conversation, text, token) as source:
        assert source.response.status_code == 200
        return [(event.event, json.loads(event.data)) async for event in source.aiter_sse()]


async def answered_once(service: RunningService, openai_server: FakeOpenAIServer) -> dict[str, str]:
    """A web conversation with one answered turn: the stream's subject."""
    conversation = await web_conversation(service)
    openai_server.script("Sure, for which day?")
    assert (await stream(service, conversation, "I want to book a bike"))[-1][0] == "final"
    return conversation


async def transcript_of(service: RunningService, conversation: dict[str, str]) -> list[str]:
    rows = await service.fetch(
        "SELECT content FROM agent_messages WHERE conversation_id = %s ORDER BY id",
        conversation["conversation_id"],
    )
    return [row["content"] for row in rows]
