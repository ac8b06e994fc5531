"""The business's figures over a period: satisfaction, resolution, speed, savings, cost.

Episodes count by when they closed, CSAT answers by when they were given, cache lookups
by when they happened. Cost is read from `agent_metrics` (the accounting's per-call
rows) inside each episode's time span, so a record written after the episode closed is
still counted. Times are in seconds; rates are 0..1, None when nothing was counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from graph.infra.database import Pool

OUTCOMES = ("resolved_bot", "resolved_human", "abandoned", "error")

# What a business judges a support bot by (the success measures).
TARGETS: dict[str, tuple[str, float]] = {
    "csat_mean": (">=", 4.5),
    "resolution_rate": (">=", 0.80),
    "escalation_rate": ("<=", 0.15),
    "handling_seconds_p50": ("<=", 180.0),
    "cache_hit_rate": (">=", 0.60),
}

_EPISODES = """
WITH e AS (
    SELECT e.*,
        EXTRACT(EPOCH FROM e.first_response_at - e.started_at) AS first_response_s,
        EXTRACT(EPOCH FROM e.last_response_at - e.started_at) AS handling_s,
        (SELECT COALESCE(sum(m.cost_usd), 0) FROM agent_metrics m
          WHERE m.conversation_id = e.conversation_id
            AND m.created_at >= e.started_at AND m.created_at <= e.closed_at) AS cost
    FROM conversation_episodes e
    WHERE e.closed_at >= %(since)s AND e.closed_at < %(until)s
)
SELECT count(*) AS closed,
    count(*) FILTER (WHERE outcome = 'resolved_bot') AS resolved_bot,
    count(*) FILTER (WHERE outcome = 'resolved_human') AS resolved_human,
    count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
    count(*) FILTER (WHERE outcome = 'error') AS error,
    count(*) FILTER (WHERE escalated) AS escalated,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_s) AS first_response_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY first_response_s) AS first_response_p95,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY handling_s) AS handling_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY handling_s) AS handling_p95,
    COALESCE(sum(tokens), 0) AS tokens,
    COALESCE(sum(cost), 0)::float8 AS cost_usd
FROM e
"""

_CSAT = """
SELECT agent, rating, count(*) AS n FROM csat_responses
WHERE answered_at >= %(since)s AND answered_at < %(until)s
GROUP BY agent, rating
"""

_CSAT_ASKED = """
SELECT count(*) AS asked FROM conversation_episodes
WHERE csat_requested_at >= %(since)s AND csat_requested_at < %(until)s
"""

_CACHE = """
SELECT count(*) AS lookups, count(*) FILTER (WHERE hit) AS hits,
    COALESCE(sum(tokens_saved), 0) AS tokens_saved,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE hit) AS hit_ms_p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE hit) AS hit_ms_p95
FROM answer_cache_events
WHERE created_at >= %(since)s AND created_at < %(until)s
"""


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def outcome_figures(pool: Pool, since: datetime, until: datetime) -> dict[str, Any]:
    window = {"since": since, "until": until}
    async with pool.connection() as conn:
        episodes = await (await conn.execute(_EPISODES, window)).fetchone()
        csat_rows = await (await conn.execute(_CSAT, window)).fetchall()
        asked = await (await conn.execute(_CSAT_ASKED, window)).fetchone()
        cache = await (await conn.execute(_CACHE, window)).fetchone()
    assert episodes is not None and asked is not None and cache is not None
    figures = {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "episodes": _episode_figures(episodes),
        "csat": _csat_figures(csat_rows, int(asked["asked"])),
        "answer_cache": {
            "lookups": int(cache["lookups"]),
            "hits": int(cache["hits"]),
            "hit_rate": _rate(cache["hits"], cache["lookups"]),
            "tokens_saved": int(cache["tokens_saved"]),
            "hit_latency_ms_p50": _float(cache["hit_ms_p50"]),
            "hit_latency_ms_p95": _float(cache["hit_ms_p95"]),
        },
    }
    figures["targets"] = _targets(figures)
    return figures


def _episode_figures(row: dict[str, Any]) -> dict[str, Any]:
    closed = int(row["closed"])
    resolved = int(row["resolved_bot"]) + int(row["resolved_human"])
    return {
        "closed": closed,
        "outcomes": {
            k: int(row[k]) for k in ("resolved_bot", "resolved_human", "abandoned", "error")
        },
        "resolution_rate": _rate(resolved, closed),
        "bot_resolution_rate": _rate(int(row["resolved_bot"]), closed),
        "escalation_rate": _rate(int(row["escalated"]), closed),
        "first_response_seconds_p50": _float(row["first_response_p50"]),
        "first_response_seconds_p95": _float(row["first_response_p95"]),
        "handling_seconds_p50": _float(row["handling_p50"]),
        "handling_seconds_p95": _float(row["handling_p95"]),
        "tokens": int(row["tokens"]),
        "cost_usd": float(row["cost_usd"]),
        # What resolving one customer's need costs: all spending over the resolved ones.
        "cost_per_resolved_episode_usd": _rate(float(row["cost_usd"]), resolved),
    }


def _csat_figures(rows: list[dict[str, Any]], asked: int) -> dict[str, Any]:
    distribution = {str(score): 0 for score in range(1, 6)}
    by_agent: dict[str, list[int]] = {}
    skipped = 0
    for row in rows:
        if row["rating"] is None:
            skipped += int(row["n"])
            continue
        distribution[str(row["rating"])] += int(row["n"])
        by_agent.setdefault(row["agent"] or "unknown", []).extend([row["rating"]] * row["n"])
    ratings = [score for scores in by_agent.values() for score in scores]
    return {
        "asked": asked,
        "answers": len(ratings),
        "skipped": skipped,
        "mean": _rate(sum(ratings), len(ratings)),
        "distribution": distribution,
        "by_agent": {
            agent: {"mean": sum(scores) / len(scores), "answers": len(scores)}
            for agent, scores in sorted(by_agent.items())
        },
    }


def _targets(figures: dict[str, Any]) -> dict[str, Any]:
    values = {
        "csat_mean": figures["csat"]["mean"],
        "resolution_rate": figures["episodes"]["resolution_rate"],
        "escalation_rate": figures["episodes"]["escalation_rate"],
        "handling_seconds_p50": figures["episodes"]["handling_seconds_p50"],
        "cache_hit_rate": figures["answer_cache"]["hit_rate"],
    }
    result: dict[str, Any] = {}
    for name, (direction, goal) in TARGETS.items():
        value = values[name]
        met = None if value is None else (value >= goal if direction == ">=" else value <= goal)
        result[name] = {"goal": f"{direction} {goal:g}", "value": value, "met": met}
    return result


_EPISODE_LIST = """
SELECT e.id, e.conversation_id, e.started_at, e.closed_at, e.close_reason,
    COALESCE(e.outcome, 'open') AS outcome, e.agents, e.handoffs, e.escalated, e.turns,
    e.cached_answers, e.tokens, e.cost_usd::float8 AS cost_usd,
    EXTRACT(EPOCH FROM e.first_response_at - e.started_at)::float8 AS first_response_seconds,
    EXTRACT(EPOCH FROM e.last_response_at - e.started_at)::float8 AS handling_seconds,
    r.rating AS csat_rating, r.comment AS csat_comment
FROM conversation_episodes e LEFT JOIN csat_responses r ON r.episode_id = e.id
WHERE (%(outcome)s::text IS NULL OR COALESCE(e.outcome, 'open') = %(outcome)s)
  AND (%(conversation)s::uuid IS NULL OR e.conversation_id = %(conversation)s::uuid)
ORDER BY e.started_at DESC
LIMIT %(limit)s
"""


async def list_episodes(
    pool: Pool, *, outcome: str | None, conversation_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; `outcome="open"` lists the episodes still running. No wa_id: the
    conversation id is how the console links to a customer."""
    params = {"outcome": outcome, "conversation": conversation_id, "limit": limit}
    async with pool.connection() as conn:
        cur = await conn.execute(_EPISODE_LIST, params)
        return [dict(row) for row in await cur.fetchall()]
