"""The console's figures on a small seeded data set, against values computed by hand
(the arithmetic is in the comments), and the same figures through the admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from graph.infra.database import Pool, open_pool
from server.http.dashboard import aggregates
from server.http.dashboard.aggregates import Window
from tests.fakes.graph_api import FakeGraphAPI
from tests.support import running_service, service_settings

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = Window(DAY1, datetime(2026, 3, 3, tzinfo=UTC))

CONVERSATIONS = {
    "A": ("11111111-0000-0000-0000-00000000000a", "250788000001", "Alice"),
    "B": ("11111111-0000-0000-0000-00000000000b", "250788000002", "Bosco"),
    "C": ("11111111-0000-0000-0000-00000000000c", "250788000003", "Claudine"),
}
RUNS = {  # run: (conversation, started at)
    "a1": ("A", DAY1.replace(hour=10)),
    "b1": ("B", DAY1.replace(hour=11)),
    "a2": ("A", DAY2.replace(hour=9)),
    "c1": ("C", DAY2.replace(hour=12)),
}
# run, agent, node, prompt, completion, cost, latency ms, success, minute, cached prompt
CALLS = [
    ("a1", "booking", "agent_booking", 100, 20, 0.001, 100, True, 1, 0),
    ("a1", "sales", "agent_sales", 200, 40, 0.002, 300, True, 2, 128),
    ("b1", "router", "router", 50, 10, 0.0005, 50, True, 1, 0),
    ("b1", "sales", "agent_sales", 0, 0, 0.0, 900, False, 2, 0),
    ("a2", "sales", "agent_sales", 300, 60, 0.003, 500, True, 1, 256),
    ("c1", "booking", "agent_booking", 400, 80, 0.004, 700, True, 1, 0),
]
# run, kind, agent, source, method, confidence
EVENTS = [
    ("a1", "route", "booking", None, "embedding", 0.9),
    ("a1", "handoff", "sales", "booking", None, None),
    ("b1", "route", "sales", None, "llm", 0.6),
    ("a2", "route", "sales", None, "sticky", 1.0),
    ("c1", "route", "booking", None, "rule", 1.0),
    ("c1", "escalation", None, None, None, None),
]
# run, tool, success, duration ms
TOOL_CALLS = [
    ("a1", "check_availability", False, 40),
    ("c1", "check_availability", True, 20),
    ("c1", "create_booking", True, 60),
]


def run_id(name: str) -> str:
    return f"22222222-0000-0000-0000-0000000000{name}"


async def seed(pool: Pool) -> None:
    async with pool.connection() as conn, conn.transaction():
        for cid, wa_id, name in CONVERSATIONS.values():
            await conn.execute(
                "INSERT INTO contacts (wa_id, profile_name) VALUES (%s, %s)", (wa_id, name)
            )
            await conn.execute(
                "INSERT INTO agent_conversations (id, phone_number_id, wa_id) VALUES (%s, 'P', %s)",
                (cid, wa_id),
            )
        for name, (conversation, started) in RUNS.items():
            await conn.execute(
                "INSERT INTO conversation_runs (id, conversation_id, status, started_at)"
                " VALUES (%s, %s, 'done', %s)",
                (run_id(name), CONVERSATIONS[conversation][0], started),
            )
        for run, agent, node, prompt, completion, cost, latency, ok, minute, cached in CALLS:
            conversation, started = RUNS[run]
            await conn.execute(
                "INSERT INTO agent_metrics (conversation_id, run_id, agent, node, model,"
                " prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms,"
                " success, created_at)"
                " VALUES (%s, %s, %s, %s, 'gpt-4o-mini', %s, %s, %s, %s, %s, %s, %s)",
                (CONVERSATIONS[conversation][0], run_id(run), agent, node, prompt, completion,
                 cached, cost, latency, ok, started.replace(minute=minute)),
            )  # fmt: skip
        for run, kind, agent, source, method, confidence in EVENTS:
            conversation, started = RUNS[run]
            await conn.execute(
                "INSERT INTO agent_turn_events (conversation_id, run_id, kind, agent, source,"
                " method, confidence, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (CONVERSATIONS[conversation][0], run_id(run), kind, agent, source, method,
                 confidence, started.replace(minute=3)),
            )  # fmt: skip
        for run, tool, ok, duration in TOOL_CALLS:
            conversation, started = RUNS[run]
            await conn.execute(
                "INSERT INTO agent_tool_executions (conversation_id, run_id, tool, success,"
                " duration_ms, created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (CONVERSATIONS[conversation][0], run_id(run), tool, ok, duration,
                 started.replace(minute=4)),
            )  # fmt: skip


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as opened:
        await seed(opened)
        yield opened


def approx(value: Any) -> Any:
    return pytest.approx(value, rel=1e-6, abs=1e-9)


def within_5_percent(reported: float, exact: float) -> bool:
    return exact <= reported <= exact * 1.05


async def test_daily_figures(pool: Pool) -> None:
    day1, day2 = await aggregates.daily(pool, WINDOW)
    assert (day1["day"].isoformat(), day2["day"].isoformat()) == ("2026-03-01", "2026-03-02")
    # Day 1: A and B, four calls, one failed. Tokens: A 120 + 240 = 360, B 60 + 0 = 60.
    assert (day1["conversations"], day1["turns"], day1["model_calls"]) == (2, 2, 4)
    assert day1["error_rate"] == approx(0.25)
    assert day1["tokens"] == 420
    assert day1["tokens_per_conversation_mean"] == approx(210)
    assert day1["tokens_per_conversation_p95"] == approx(60 + 0.95 * 300)
    assert day1["cost_usd"] == approx(0.0035)
    assert day1["cost_per_conversation_p95"] == approx(0.0005 + 0.95 * 0.0025)
    assert (day1["escalations"], day1["escalation_rate"]) == (0, 0)
    # Day 2: A 360 tokens, C 480; C was escalated: one of two conversations.
    assert day2["tokens_per_conversation_mean"] == approx(420)
    assert day2["tokens_per_conversation_p95"] == approx(360 + 0.95 * 120)
    assert day2["cost_per_conversation_mean"] == approx(0.0035)
    assert (day2["escalations"], day2["escalation_rate"]) == (1, 0.5)
    assert day2["error_rate"] == 0


async def test_tokens_per_conversation_are_split_into_new_and_cached(pool: Pool) -> None:
    day1, day2 = await aggregates.daily(pool, WINDOW)
    # Day 1: A 300 prompt, 128 of them cached (172 new), 60 completion; B 50 new, 10.
    assert (day1["new_tokens"], day1["cached_tokens"], day1["completion_tokens"]) == (222, 128, 70)
    assert day1["new_tokens_per_conversation_mean"] == approx((172 + 50) / 2)
    assert day1["cached_tokens_per_conversation_mean"] == approx(128 / 2)
    assert day1["completion_tokens_per_conversation_mean"] == approx((60 + 10) / 2)
    # Day 2: A 300 prompt, 256 cached (44 new), 60 completion; C 400 new, 80.
    assert day2["new_tokens_per_conversation_mean"] == approx((44 + 400) / 2)
    assert day2["cached_tokens_per_conversation_mean"] == approx(256 / 2)
    assert day2["prompt_cache_rate"] == approx(256 / 700)
    figures = await aggregates.overview(pool, WINDOW)
    totals = figures["totals"]  # four conversation-days used the model
    assert (totals["new_tokens"], totals["cached_tokens"]) == (666, 384)
    assert totals["new_tokens_per_conversation"] == approx(666 / 4)
    assert totals["cached_tokens_per_conversation"] == approx(384 / 4)
    # Per conversation over the window, the costliest first (numbers masked).
    costs = [
        (c["profile_name"], c["wa_id"], c["model_calls"], c["new_tokens"], c["cached_tokens"])
        for c in figures["conversations"]
    ]
    assert costs == [
        ("Alice", "********0001", 3, 172 + 44, 128 + 256),
        ("Claudine", "********0003", 1, 400, 0),
        ("Bosco", "********0002", 2, 50, 0),
    ]
    assert figures["conversations"][0]["cost_usd"] == approx(0.006)
    assert figures["conversations"][0]["completion_tokens"] == 120


async def test_agent_figures(pool: Pool) -> None:
    by_agent = {row["agent"]: row for row in await aggregates.agents(pool, WINDOW)}
    assert list(by_agent) == ["booking", "router", "sales"]
    booking, sales = by_agent["booking"], by_agent["sales"]
    # Latencies: booking [100, 700], sales [300, 500, 900]; nearest rank, at most 5 %
    # above (the upper bound of a 5 %-wide bucket).
    assert within_5_percent(booking["latency_p50_ms"], 100)
    assert within_5_percent(booking["latency_p95_ms"], 700)
    assert within_5_percent(sales["latency_p50_ms"], 500)
    assert within_5_percent(sales["latency_p95_ms"], 900)
    assert sales["error_rate"] == approx(1 / 3)
    assert (booking["tokens"], sales["tokens"]) == (600, 600)
    # Last agent per conversation: A sales (fine), B sales (a failed call), C booking
    # (escalated) → sales 1 of 2, booking 0 of 1; the router answers no conversation.
    assert (sales["conversations"], sales["succeeded"], sales["success_rate"]) == (2, 1, 0.5)
    assert (booking["conversations"], booking["success_rate"]) == (1, 0.0)
    assert by_agent["router"]["success_rate"] is None


async def test_routing_tools_and_customers(pool: Pool) -> None:
    routing = await aggregates.routing(pool, WINDOW)
    assert [(r["intent"], r["method"], r["share"]) for r in routing] == [
        ("booking", "embedding", 0.25),
        ("booking", "rule", 0.25),
        ("sales", "llm", 0.25),
        ("sales", "sticky", 0.25),
    ]
    tools = {row["tool"]: row for row in await aggregates.tools(pool, WINDOW)}
    availability = tools["check_availability"]
    assert (availability["calls"], availability["success_rate"]) == (2, 0.5)
    assert availability["duration_p95_ms"] == approx(20 + 0.95 * 20)
    assert tools["create_booking"]["success_rate"] == 1.0
    customers = await aggregates.customers(pool, WINDOW)
    assert [(c["wa_id"], c["tokens"]) for c in customers] == [
        ("********0001", 720),
        ("********0003", 480),
        ("********0002", 60),
    ]


async def test_the_admin_api_serves_the_figures_behind_the_token(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    settings = service_settings(
        db_url, whatsapp_api_base_url=graph_api.base_url, admin_token="admin-secret-0123456789a"
    )
    async with running_service(settings, with_worker=False) as service:
        await seed(service.services.pool)
        await service.execute(  # one call today, on top of the March history
            "INSERT INTO agent_metrics (conversation_id, agent, node, model, prompt_tokens,"
            " completion_tokens, cached_tokens, latency_ms, success, created_at) VALUES (%s,"
            " 'booking', 'agent_booking', 'gpt-4o-mini', 400, 80, 128, 700, true,"
            " now() - interval '1 second')",
            CONVERSATIONS["C"][0],
        )
        headers = {"Authorization": "Bearer admin-secret-0123456789a"}
        async with httpx.AsyncClient(base_url=service.base_url, headers=headers) as client:
            overview = (await client.get("/admin/api/console/overview?days=1")).json()
            found = (await client.get("/admin/api/console/conversations?q=Claud")).json()
            costs = (await client.get("/admin/api/console/conversation-costs?days=1")).json()
            totals = await client.get(f"/admin/api/console/conversations/{found[0]['id']}/totals")
            refused = await client.get("/admin/api/console/overview", headers={"Authorization": ""})
            bad = await client.get("/admin/api/console/overview?days=0")
        assert len(overview["days"]) == 1
        assert overview["totals"]["tokens"] == 480  # only C's call is from today
        assert [a["agent"] for a in overview["agents"]] == ["booking"]
        assert [(c["profile_name"], c["wa_id"]) for c in found] == [("Claudine", "********0003")]
        # C over all its days: March 400 new; today 400 prompt, 128 of them cached.
        assert (found[0]["new_tokens"], found[0]["cached_tokens"]) == (400 + 272, 128)
        assert [(c["profile_name"], c["new_tokens"], c["cached_tokens"]) for c in costs] == [
            ("Claudine", 272, 128)
        ]
        assert totals.json()["new_tokens"] == 672 and totals.json()["cached_tokens"] == 128
        assert refused.status_code == 401
        assert bad.status_code == 422
