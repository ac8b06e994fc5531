"""Helpers shared by the outcome tests (episodes, CSAT, answer cache, figures): the
service with the fake model and Graph API, one customer message at a time."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from graph.settings import Settings
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, eventually, service_settings


def outcome_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Settings:
    """No LLM router calls and no memory extraction: every model request the fake sees
    is an agent's answer, so a test can count them."""
    values: dict[str, Any] = {
        "whatsapp_api_base_url": graph_api.base_url,
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url + "/v1",
        "admin_token": "admin-secret-0123456789a",
        "router_llm": False,
        "memory_enabled": False,
    }
    values.update(overrides)
    return service_settings(db_url, **values)


def new_customer() -> str:
    return "2507" + str(uuid.uuid4().int)[:8]


async def runs_done(service: RunningService) -> int:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    return int(rows[0]["n"])


async def turns_recorded(service: RunningService) -> int:
    rows = await service.fetch("SELECT COALESCE(sum(turns), 0) AS n FROM conversation_episodes")
    return int(rows[0]["n"])


async def say(service: RunningService, value: dict[str, Any], *, turn: bool = True) -> None:
    """Post one webhook message and wait until the worker finished its run and, for a
    `turn` (not a feedback tap), until its episode bookkeeping (after delivery) is done."""
    runs, turns = await runs_done(service), await turns_recorded(service)
    assert (await service.post_webhook(envelope(value))).status_code == 200

    async def finished() -> bool:
        if await runs_done(service) <= runs:
            return False
        return not turn or await turns_recorded(service) > turns

    await eventually(finished, within=20, what="the turn to finish")


async def episodes_of(service: RunningService, customer: str) -> list[dict[str, Any]]:
    return await service.fetch(
        "SELECT * FROM conversation_episodes WHERE wa_id = %s ORDER BY started_at", customer
    )


ADMIN_HEADERS = {"Authorization": "Bearer admin-secret-0123456789a"}  # outcome_settings' token


async def admin_call(service: RunningService, method: str, url: str, **kw: Any) -> httpx.Response:
    """One admin API request with the outcome settings' token."""
    async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN_HEADERS) as admin:
        return await admin.request(method, url, **kw)


async def escalated_conversation(service: RunningService, customer: str) -> str:
    """The id of a conversation whose customer just asked for a person."""
    await say(service, text_message(customer, "I want to talk to a human please"))
    [row] = await service.fetch(
        "SELECT id::text AS id FROM agent_conversations WHERE wa_id = %s AND status = 'escalated'",
        customer,
    )
    return str(row["id"])
