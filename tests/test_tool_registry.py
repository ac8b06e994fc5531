"""The tool registry through real agent turns: the business tools and an entry-point
plugin go through one wrapper that cuts a hanging call at its timeout, refuses calls
over a rate limit with a message to the model, and records every call (masked) in
`agent_tool_executions` — while the customer still gets an answer each time.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from graph.settings import Settings
from server.abuse.tool_limits import open_tool_limiter
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service, service_settings
from tests.support_abuse import shared_redis_url
from tests.support_tools import installed_plugin
from tests.test_agent_flows import say
from tools.demo import seed_demo
from tools.limits import LocalRateLimiter, RateLimit

__all__ = ["installed_plugin"]  # the fixture, used by name below


def tool_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Settings:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        **overrides,
    )


async def executions(service: RunningService, count: int) -> list[dict[str, Any]]:
    """The rows, once the background writer has written `count` of them."""

    async def written() -> bool:
        rows = await service.fetch("SELECT count(*) AS n FROM agent_tool_executions")
        return int(rows[0]["n"]) >= count

    await eventually(written, within=10, what=f"{count} tool execution rows")
    return await service.fetch("SELECT * FROM agent_tool_executions ORDER BY id")


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_hanging_plugin_tool_is_cut_and_the_turn_still_answers(
    db_url: str,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
    installed_plugin: None,
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        assert "slow_lookup" in service.services.tool_names  # loaded from the entry point
        openai_server.script(
            ToolCall("slow_lookup", {"note": "call me back on +250 788 123 456"}),
            "Sorry, our supplier is not answering right now.",
        )
        await say(service, graph_api, customer, text_message(customer, "how much is a helmet"))
        assert graph_api.texts_to(customer)[-1] == "Sorry, our supplier is not answering right now."
        offered = {
            t["function"]["name"]: t["function"]["description"]
            for t in openai_server.requests[0]["tools"]
        }
        assert "slow_lookup" in offered  # granted to sales by its declaration
        # A plugin that fails to import, or brings a name already taken, is skipped.
        assert "Not the real catalog" not in offered["search_catalog"]
        assert "did not answer within 0.5 s" in tool_messages(openai_server.requests[1])[-1]

        [row] = await executions(service, 1)
        conversation = await service.fetch(
            "SELECT id FROM agent_conversations WHERE wa_id = %s", customer
        )
    assert row["tool"] == "slow_lookup" and row["agent"] == "sales"
    assert row["success"] is False and row["error"].startswith("timeout")
    assert row["conversation_id"] == conversation[0]["id"] and row["run_id"] is not None
    assert row["duration_ms"] >= 500
    stored = json.dumps(row["arguments"])
    assert "788 123 456" not in stored and "788123456" not in stored
    assert "3456" in stored  # masked, not dropped: the last digits stay for debugging


async def test_rate_limited_tool_refuses_politely_and_calls_are_recorded(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(
        db_url,
        graph_api,
        openai_server,
        tool_overrides={"search_catalog": {"per_user_limit": "1/1h"}},
    )
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        openai_server.script(
            ToolCall("search_catalog", {"query": "helmet"}),
            ToolCall("search_catalog", {"query": "kids helmet"}),
            "A helmet costs 5,000 RWF.",
        )
        await say(service, graph_api, customer, text_message(customer, "how much is a helmet"))
        assert graph_api.texts_to(customer)[-1] == "A helmet costs 5,000 RWF."
        first, second = tool_messages(openai_server.requests[2])
        assert "helmet" in first.lower() and "was not run" not in first
        assert second.startswith("search_catalog was not run")
        assert "try again later" in second
        rows = await executions(service, 2)
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            metrics = (await client.get("/metrics")).text
    refused = 'wa_agent_tool_calls_total{outcome="rate_limited",tool="search_catalog"}'
    assert refused in metrics
    assert [(r["tool"], r["success"]) for r in rows] == [
        ("search_catalog", True),
        ("search_catalog", False),
    ]
    assert rows[1]["error"].startswith("rate_limited")
    assert rows[0]["arguments"] == {"query": "helmet"} and rows[0]["result_size"] > 0


async def test_a_business_tool_that_breaks_is_recorded_as_a_failure_and_the_turn_answers(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(tool_settings(db_url, graph_api, openai_server)) as service:
        await service.execute("ALTER TABLE catalog_items RENAME TO catalog_items_away")
        openai_server.script(
            ToolCall("search_catalog", {"query": "helmet"}),
            "Sorry, I cannot look that up right now.",
        )
        await say(service, graph_api, customer, text_message(customer, "how much is a helmet"))
        assert graph_api.texts_to(customer)[-1] == "Sorry, I cannot look that up right now."
        (told,) = tool_messages(openai_server.requests[1])
        assert told.startswith("Error: search_catalog is temporarily unavailable")
        rows = await executions(service, 1)
    assert (rows[0]["tool"], rows[0]["success"]) == ("search_catalog", False)
    assert "temporarily unavailable" in rows[0]["error"]


async def test_a_failed_record_write_never_fails_the_turn(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(tool_settings(db_url, graph_api, openai_server)) as service:
        await seed_demo(service.services.pool)
        await service.execute("ALTER TABLE agent_tool_executions RENAME TO gone")
        openai_server.script(ToolCall("search_catalog", {"query": "helmet"}), "Helmets: yes.")
        await say(service, graph_api, customer, text_message(customer, "how much is a helmet"))
        assert graph_api.texts_to(customer)[-1] == "Helmets: yes."


async def test_sliding_window_forgets_old_calls_and_does_not_count_refusals() -> None:
    now = [0.0]
    limiter = LocalRateLimiter(clock=lambda: now[0])
    limit = [("k", RateLimit.parse("2/1m"))]
    assert [await limiter.acquire(limit) for _ in range(3)] == [None, None, 0]
    now[0] = 59.0
    assert await limiter.acquire(limit) == 0
    assert await limiter.acquire([("other", RateLimit(2, 60))]) is None  # keys are independent
    now[0] = 60.5  # the first two calls left the window; the refusals never entered it
    assert [await limiter.acquire(limit) for _ in range(3)] == [None, None, 0]
    # All or nothing: a full second limit records nothing under the first.
    both = [("fresh", RateLimit(5, 60)), ("k", RateLimit(2, 60))]
    assert await limiter.acquire(both) == 1
    assert [await limiter.acquire([("fresh", RateLimit(1, 60))]) for _ in range(2)] == [None, 0]


@pytest.mark.parametrize("bad", ["five/1m", "5", "0/1m", "5/0s", "5/1w"])
def test_bad_rate_limits_are_refused_with_the_setting_named(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WA_AGENT_TOOLS", json.dumps({"web_search": {"per_user_limit": bad}}))
    with pytest.raises(ValidationError, match=r"WA_AGENT_TOOLS\.web_search\.per_user_limit"):
        Settings(_env_file=None)


async def test_redis_limits_are_shared_by_processes_and_fail_open() -> None:
    url = shared_redis_url()
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    settings = service_settings("postgresql://unused", redis_url=url, redis_prefix=prefix)
    limits = [("user", RateLimit(3, 60)), ("all", RateLimit(2, 60))]
    async with open_tool_limiter(settings) as one, open_tool_limiter(settings) as two:
        assert one is not None and two is not None and one is not two  # like two workers
        answers = [await one.acquire(limits), await two.acquire(limits)]
        answers.append(await one.acquire(limits))
        answers.append(await two.acquire(limits[:1]))  # the refusal recorded nothing
    assert answers == [None, None, 1, None]

    down = service_settings("postgresql://unused", redis_url="redis://127.0.0.1:1/0")
    async with open_tool_limiter(down) as unreachable:
        assert unreachable is not None
        one_call = [("k", RateLimit(1, 60))]
        assert [await unreachable.acquire(one_call) for _ in range(3)] == [None] * 3


async def test_code_interpreter_is_offered_only_with_its_flag(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    off = tool_settings(db_url, graph_api, openai_server)
    async with running_service(off) as service:
        assert "code_interpreter" in service.services.tool_names  # built, but flag off
        openai_server.script("A helmet costs 5,000 RWF.")
        await say(service, graph_api, customer, text_message(customer, "how much is a helmet"))
    assert "code_interpreter" not in {
        t["function"]["name"] for t in openai_server.requests[0]["tools"]
    }

    openai_server.reset()
    on = tool_settings(db_url, graph_api, openai_server, flags=frozenset({"code_interpreter"}))
    async with running_service(on) as service:
        openai_server.script(
            ToolCall("code_interpreter", {"code": "print(3 * 5000 * 0.9)"}),
            "Three helmets cost 13,500 RWF with the discount.",
        )
        await say(service, graph_api, customer, text_message(customer, "how much is a helmet"))
        assert (
            graph_api.texts_to(customer)[-1] == "Three helmets cost 13,500 RWF with the discount."
        )
        [row] = await executions(service, 1)
    assert "13500.0" in tool_messages(openai_server.requests[1])[0]
    assert row["tool"] == "code_interpreter" and row["success"] is True
