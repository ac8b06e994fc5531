"""Accounting: every model call of a scripted conversation is metered into Postgres,
its totals are exactly what the (fake) OpenAI server reported, and the spending caps
switch to a cheaper model or answer with the polite limit message."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from graph.infra.usage_meter import PriceTable
from graph.settings.console import DEFAULT_MODEL_PRICES, ModelPrice
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service, service_settings

ADMIN = {"Authorization": "Bearer admin-secret-0123456789a"}
GPT_4O_MINI = DEFAULT_MODEL_PRICES["gpt-4o-mini"]


def console_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        admin_token="admin-secret-0123456789a",
        accounting_flush_seconds=30,  # the tests flush explicitly
        **overrides,
    )


async def say(service: RunningService, customer: str, text: str) -> None:
    """One customer message, waited for until its run is done and its records written."""
    before = await _runs_done(service)
    assert (await service.post_webhook(envelope(text_message(customer, text)))).status_code == 200

    async def finished() -> bool:
        return await _runs_done(service) > before

    await eventually(finished, within=20, what="the turn to finish")
    assert service.services.accounting is not None
    await service.services.accounting.writer.flush()


async def _runs_done(service: RunningService) -> int:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    return int(rows[0]["n"])


async def test_totals_equal_the_usage_the_model_reported(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "250788" + str(uuid.uuid4().int)[:6]  # a valid Rwandan mobile number
    async with running_service(console_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script(
            ToolCall("transfer_to_sales", {"reason": "asks what a bike costs"}),
            "A city bike costs 10,000 RWF a day.",
        )
        await say(service, customer, "I want to book a bike for Saturday")
        openai_server.script("Saturday at 9 works. Anything else?")
        await say(service, customer, "and how about the helmet, is it included?")
        await say(service, customer, "this is wrong, I want a person")

        reported = openai_server.usages
        assert len(reported) == 3
        rows = await service.fetch(
            "SELECT agent, node, model, prompt_tokens, completion_tokens, cost_usd::float8 AS cost,"
            " success FROM agent_metrics ORDER BY id"
        )
        assert len(rows) == len(reported)
        assert [r["prompt_tokens"] for r in rows] == [u["prompt_tokens"] for u in reported]
        assert [r["completion_tokens"] for r in rows] == [u["completion_tokens"] for u in reported]
        assert all(r["success"] and r["model"] == "gpt-4o-mini" for r in rows)
        # The booking agent was in charge first, then it handed over to sales.
        assert [r["agent"] for r in rows][:2] == ["booking", "sales"]
        assert rows[0]["node"] == "agent_booking"

        prompt = sum(u["prompt_tokens"] for u in reported)
        completion = sum(u["completion_tokens"] for u in reported)
        expected_cost = (prompt * GPT_4O_MINI.input + completion * GPT_4O_MINI.output) / 1e6
        conversation = await service.fetch(
            "SELECT id FROM agent_conversations WHERE wa_id = %s", customer
        )
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN) as client:
            cid = conversation[0]["id"]
            by_conversation = await client.get(f"/admin/api/console/conversations/{cid}/totals")
            by_customer = await client.get(f"/admin/api/console/customers/+{customer}/totals")
        for answer in (by_conversation, by_customer):
            assert answer.status_code == 200, answer.text
            totals = answer.json()
            assert totals["calls"] == 3
            assert totals["prompt_tokens"] == prompt
            assert totals["completion_tokens"] == completion
            assert abs(totals["cost_usd"] - expected_cost) < 1e-7

        events = await service.fetch(
            "SELECT kind, agent, source, method FROM agent_turn_events ORDER BY id"
        )
        kinds = [(e["kind"], e["agent"]) for e in events]
        assert ("route", "booking") == kinds[0]
        assert ("handoff", "sales") in kinds
        assert kinds[-1] == ("escalation", None)
        handoff = next(e for e in events if e["kind"] == "handoff")
        assert handoff["source"] == "booking"


async def test_model_calls_of_queued_jobs_are_metered_too(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The memory extraction runs as a queue job after the turn, outside any run."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = console_settings(db_url, graph_api, openai_server, memory_remember_delay_seconds=0)
    memory = {"content": "The customer rides a blue tandem.", "kind": "fact", "importance": 0.9}
    async with running_service(settings) as service:
        openai_server.script("Hi Bob, which day?", json.dumps({"memories": [memory]}))
        await say(service, customer, "Bob here, I want to book a bike for my blue tandem")

        async def remembered() -> bool:
            rows = await service.fetch("SELECT count(*) AS n FROM agent_embeddings")
            return int(rows[0]["n"]) > 0 and len(openai_server.usages) == 2

        await eventually(remembered, within=20, what="the remember job")
        assert service.services.accounting is not None
        await service.services.accounting.writer.flush()
        rows = await service.fetch(
            "SELECT node, prompt_tokens, completion_tokens FROM agent_metrics ORDER BY id"
        )
    assert [r["node"] for r in rows] == ["agent_booking", None]
    assert [(r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        (u["prompt_tokens"], u["completion_tokens"]) for u in openai_server.usages
    ]


async def test_over_the_conversation_cap_a_cheaper_model_answers(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = console_settings(
        db_url,
        graph_api,
        openai_server,
        conversation_token_cap=50,
        cheaper_model="openai:gpt-4.1-nano",
    )
    async with running_service(settings) as service:
        openai_server.script("Which day would you like?")
        await say(service, customer, "I want to book a bike for Saturday")
        assert openai_server.requests[-1]["model"] == "gpt-4o-mini"
        openai_server.script("Saturday it is.")
        await say(service, customer, "Saturday morning please, for two people")
        assert openai_server.requests[-1]["model"] == "gpt-4.1-nano"
        assert graph_api.texts_to(customer)[-1] == "Saturday it is."


async def test_over_the_daily_cost_cap_the_customer_gets_the_limit_message(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = console_settings(
        db_url,
        graph_api,
        openai_server,
        user_daily_cost_cap_usd=0.000001,
        cap_action="message",
        cap_message="We have answered a lot today; a person will follow up tomorrow.",
    )
    async with running_service(settings) as service:
        openai_server.script("Which day would you like?")
        await say(service, customer, "I want to book a bike for Saturday")
        calls = len(openai_server.requests)
        await say(service, customer, "Saturday morning please")
        assert len(openai_server.requests) == calls  # no model call for a capped turn
        assert graph_api.texts_to(customer)[-1].startswith("We have answered a lot today")
        # Someone else is not capped by this customer's spending.
        other = "2507" + str(uuid.uuid4().int)[:8]
        openai_server.script("Hello! Which day?")
        await say(service, other, "I want to book a bike for Saturday")
        assert graph_api.texts_to(other)[-1] == "Hello! Which day?"


async def test_recording_failures_never_fail_a_reply(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(console_settings(db_url, graph_api, openai_server)) as service:
        await service.execute("ALTER TABLE agent_metrics RENAME TO agent_metrics_gone")
        openai_server.script("Which day would you like?")
        await say(service, customer, "I want to book a bike for Saturday")
        assert graph_api.texts_to(customer)[-1] == "Which day would you like?"
        await service.execute("ALTER TABLE agent_metrics_gone RENAME TO agent_metrics")


def test_prices_match_the_longest_model_prefix_and_count_cached_input() -> None:
    table = PriceTable(
        {
            "gpt-4o": ModelPrice(input=2.5, cached_input=1.25, output=10),
            **DEFAULT_MODEL_PRICES,
        }
    )
    # 1M prompt tokens of which 400k cached, 100k completion tokens, dated model name.
    cost = table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 100_000, 400_000)
    assert abs(cost - (0.6 * 0.15 + 0.4 * 0.075 + 0.1 * 0.60)) < 1e-9
    assert abs(table.cost("openai:gpt-4o", 1_000_000, 0, 0) - 2.5) < 1e-9
    assert table.cost("some-local-llama", 1000, 1000, 0) == 0.0
