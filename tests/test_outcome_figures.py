"""`GET /admin/api/outcomes` on a seeded month, against values computed by hand.

January 2026: five closed episodes (a sixth closes in February, a seventh is still
open: neither counts), four CSAT answers (one skip), ten cache lookups (seven hits of
1,000 tokens saved each; an eleventh lookup is in February), and per-call costs in
`agent_metrics` inside each episode's span (plus one call after its close: not counted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service
from tests.support_outcomes import outcome_settings

ADMIN = {"Authorization": "Bearer admin-secret-0123456789a"}
T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)

# outcome, escalated, first response s, handling s, cost, closed at, csat (agent, rating)
EPISODES: list[tuple[str, bool, int | None, int | None, float, datetime, Any]] = [
    ("resolved_bot", False, 10, 60, 0.002, T0, ("customer_service", 5)),
    ("resolved_bot", False, 20, 120, 0.004, T0, ("sales", 4)),
    ("resolved_human", True, 30, 600, 0.006, T0, ("customer_service", 2)),
    ("abandoned", True, 40, 300, 0.001, T0, ("booking", None)),
    ("error", False, None, None, 0.003, T0, None),
    ("resolved_bot", False, 5, 5, 0.500, datetime(2026, 2, 5, tzinfo=UTC), None),
    (None, False, 5, 5, 0.500, None, None),  # still open
]


async def seed(service: RunningService) -> None:
    for index, (outcome, escalated, first, handling, cost, closed, csat) in enumerate(EPISODES):
        wa_id = f"25078800000{index}"
        started = (closed or T0) - timedelta(hours=1)
        await service.execute("INSERT INTO contacts (wa_id) VALUES (%s)", wa_id)
        [conversation] = await service.fetch(
            "INSERT INTO agent_conversations (phone_number_id, wa_id) VALUES ('PNID', %s)"
            " RETURNING id",
            wa_id,
        )
        [episode] = await service.fetch(
            "INSERT INTO conversation_episodes (conversation_id, wa_id, started_at,"
            " first_response_at, last_response_at, last_customer_at, escalated, closed_at,"
            " outcome, tokens, csat_requested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " 100, %s) RETURNING id",
            conversation["id"],
            wa_id,
            started,
            started + timedelta(seconds=first) if first is not None else None,
            started + timedelta(seconds=handling) if handling is not None else None,
            started,
            escalated,
            closed,
            outcome,
            closed if csat else None,
        )
        for at, share in ((started + timedelta(minutes=1), 0.5), (closed or T0, 0.5)):
            await service.execute(
                "INSERT INTO agent_metrics (conversation_id, agent, cost_usd, success, created_at)"
                " VALUES (%s, 'customer_service', %s, true, %s)",
                conversation["id"],
                cost * share,
                at,
            )
        await service.execute(  # after the close: belongs to no episode of the period
            "INSERT INTO agent_metrics (conversation_id, cost_usd, success, created_at)"
            " VALUES (%s, 9, true, %s)",
            conversation["id"],
            (closed or T0) + timedelta(hours=2),
        )
        if csat:
            await service.execute(
                "INSERT INTO csat_responses (episode_id, conversation_id, agent, rating,"
                " answered_at) VALUES (%s, %s, %s, %s, %s)",
                episode["id"],
                conversation["id"],
                csat[0],
                csat[1],
                closed,
            )
    for index in range(11):
        await service.execute(
            "INSERT INTO answer_cache_events (agent, language, hit, tokens_saved, latency_ms,"
            " created_at) VALUES ('customer_service', 'en', %s, %s, %s, %s)",
            index < 7 or index == 10,
            1000 if index < 7 or index == 10 else 0,
            10.0 + index,
            T0 if index < 10 else datetime(2026, 2, 2, tzinfo=UTC),
        )


async def test_january_figures_match_the_hand_computed_values(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = outcome_settings(db_url, graph_api, openai_server)
    async with running_service(settings, with_worker=False) as service:
        await seed(service)
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN) as admin:
            response = await admin.get(
                "/admin/api/outcomes",
                params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
            )
            refused = await admin.get(
                "/admin/api/outcomes", params={"since": "2026-02-01", "until": "2026-01-01"}
            )
            anonymous = await httpx.AsyncClient(base_url=service.base_url).get(
                "/admin/api/outcomes"
            )
            resolved = (await admin.get("/admin/api/episodes?outcome=resolved_bot")).json()
            still_open = (await admin.get("/admin/api/episodes?outcome=open")).json()
            unknown = await admin.get("/admin/api/episodes?outcome=happy")
    assert [e["closed_at"][:10] for e in resolved] == ["2026-02-05", "2026-01-10", "2026-01-10"]
    assert sorted(e["csat_rating"] for e in resolved if e["csat_rating"]) == [4, 5]
    assert [e["closed_at"] for e in still_open] == [None] and unknown.status_code == 422
    assert (refused.status_code, anonymous.status_code) == (422, 401)
    figures = response.json()
    episodes = figures["episodes"]
    assert episodes["closed"] == 5
    assert episodes["outcomes"] == {
        "resolved_bot": 2,
        "resolved_human": 1,
        "abandoned": 1,
        "error": 1,
    }
    assert episodes["resolution_rate"] == pytest.approx(3 / 5)
    assert episodes["bot_resolution_rate"] == pytest.approx(2 / 5)
    assert episodes["escalation_rate"] == pytest.approx(2 / 5)
    # percentile_cont over [10, 20, 30, 40]: p50 = 25; p95 = 30 + 0.85 * 10
    assert episodes["first_response_seconds_p50"] == pytest.approx(25)
    assert episodes["first_response_seconds_p95"] == pytest.approx(38.5)
    # over [60, 120, 300, 600]: p50 = (120 + 300) / 2; p95 = 300 + 0.85 * 300
    assert episodes["handling_seconds_p50"] == pytest.approx(210)
    assert episodes["handling_seconds_p95"] == pytest.approx(555)
    assert episodes["tokens"] == 500
    assert episodes["cost_usd"] == pytest.approx(0.016)
    assert episodes["cost_per_resolved_episode_usd"] == pytest.approx(0.016 / 3)

    csat = figures["csat"]
    assert (csat["asked"], csat["answers"], csat["skipped"]) == (4, 3, 1)
    assert csat["mean"] == pytest.approx(11 / 3)
    assert csat["distribution"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    assert csat["by_agent"] == {
        "customer_service": {"mean": 3.5, "answers": 2},
        "sales": {"mean": 4.0, "answers": 1},
    }

    cache = figures["answer_cache"]
    assert (cache["lookups"], cache["hits"], cache["tokens_saved"]) == (10, 7, 7000)
    assert cache["hit_rate"] == pytest.approx(0.7)
    assert cache["hit_latency_ms_p50"] == pytest.approx(13.0)  # hits at 10..16 ms

    targets = figures["targets"]
    assert targets["resolution_rate"]["met"] is False  # 60 % < 80 %
    assert targets["cache_hit_rate"]["met"] is True  # 70 % ≥ 60 %
