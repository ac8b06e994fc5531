"""The console's figures, read from the rollups migration 0012 keeps current.

Triggers on agent_metrics, conversation_runs and agent_turn_events maintain, in the
same transaction as each insert, one row per conversation and UTC day, a latency
histogram per agent and day, and routing counts per day: the overview of the last
two weeks reads tens of thousands of small rows whatever the history behind it
(BENCHMARKS.md). Tool calls are read raw (agent_tool_executions, by `created_at`).

Definitions, as the dashboard shows them:
- conversations of a day: conversations with at least one turn that day;
- tokens / cost per conversation: that day's model usage of each conversation that
  used the model, mean and p95 (interpolated) over those conversations; prompt tokens
  split into new ones and those the provider served from its prompt cache (billed at
  its discount: gpt-4o-mini's is half), as the provider reported each call;
- error rate: failed model calls / model calls;
- escalation rate: conversations escalated to a person / conversations of the day;
- latency p50 / p95 per agent: nearest rank in a histogram of 5 %-wide buckets, given
  as the bucket's upper bound (at most 5 % above the exact figure);
- an agent's success rate: of the conversations it answered last in the window, the
  share that had neither an escalation nor a failed model call in the window;
- routing: the router's decisions by intent and method (rule, embedding, llm, sticky,
  default); prompt cache: cached prompt tokens / prompt tokens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from graph.infra.database import Pool
from graph.privacy import mask_phone


@dataclass(frozen=True)
class Window:
    """[since, until); rollup figures count the whole UTC days the window touches."""

    since: datetime
    until: datetime

    @classmethod
    def last_days(cls, days: int, *, now: datetime | None = None) -> Window:
        """Today (UTC) and the `days - 1` days before it, up to now."""
        now = now or datetime.now(UTC)
        start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(start - timedelta(days=days - 1), now)

    def params(self) -> dict[str, Any]:
        last = (self.until - timedelta(microseconds=1)).astimezone(UTC).date()
        first = self.since.astimezone(UTC).date()
        return {"since": self.since, "until": self.until, "first_day": first, "last_day": last}


WORK_MEM = "32MB"

_DAYS = "day BETWEEN %(first_day)s AND %(last_day)s"

DAILY = f"""
WITH days AS (
    SELECT d::date AS day
    FROM generate_series(%(first_day)s::date, %(last_day)s::date, interval '1 day') AS d
), per_day AS (
    SELECT day, count(*) FILTER (WHERE turns > 0) AS conversations, sum(turns) AS turns,
           sum(calls) AS calls, sum(errors) AS errors,
           sum(prompt_tokens + completion_tokens) AS tokens, sum(cost_usd) AS cost,
           sum(prompt_tokens) AS prompt, sum(cached_tokens) AS cached,
           sum(completion_tokens) AS completion,
           count(*) FILTER (WHERE calls > 0) AS model_conversations,
           avg(prompt_tokens - cached_tokens) FILTER (WHERE calls > 0) AS new_mean,
           avg(cached_tokens) FILTER (WHERE calls > 0) AS cached_mean,
           avg(completion_tokens) FILTER (WHERE calls > 0) AS completion_mean,
           count(*) FILTER (WHERE escalated) AS escalations,
           avg(prompt_tokens + completion_tokens) FILTER (WHERE calls > 0) AS tokens_mean,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY prompt_tokens + completion_tokens)
               FILTER (WHERE calls > 0) AS tokens_p95,
           avg(cost_usd) FILTER (WHERE calls > 0) AS cost_mean,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY cost_usd)
               FILTER (WHERE calls > 0) AS cost_p95
    FROM console_conversation_days WHERE {_DAYS}
    GROUP BY day
)
SELECT days.day, coalesce(p.conversations, 0) AS conversations,
       coalesce(p.turns, 0)::bigint AS turns, coalesce(p.calls, 0)::bigint AS model_calls,
       coalesce(p.errors, 0)::bigint AS model_errors, coalesce(p.tokens, 0)::bigint AS tokens,
       coalesce(p.cost, 0)::float8 AS cost_usd,
       coalesce(p.prompt - p.cached, 0)::bigint AS new_tokens,
       coalesce(p.cached, 0)::bigint AS cached_tokens,
       coalesce(p.completion, 0)::bigint AS completion_tokens,
       coalesce(p.model_conversations, 0) AS model_conversations,
       coalesce(p.new_mean, 0)::float8 AS new_tokens_per_conversation_mean,
       coalesce(p.cached_mean, 0)::float8 AS cached_tokens_per_conversation_mean,
       coalesce(p.completion_mean, 0)::float8 AS completion_tokens_per_conversation_mean,
       coalesce(p.tokens_mean, 0)::float8 AS tokens_per_conversation_mean,
       coalesce(p.tokens_p95, 0)::float8 AS tokens_per_conversation_p95,
       coalesce(p.cost_mean, 0)::float8 AS cost_per_conversation_mean,
       coalesce(p.cost_p95, 0)::float8 AS cost_per_conversation_p95,
       CASE WHEN p.calls > 0 THEN p.errors::float8 / p.calls ELSE 0 END AS error_rate,
       coalesce(p.escalations, 0) AS escalations,
       CASE WHEN p.conversations > 0 THEN p.escalations::float8 / p.conversations
            ELSE 0 END AS escalation_rate,
       CASE WHEN p.prompt > 0 THEN p.cached::float8 / p.prompt ELSE 0 END AS prompt_cache_rate
FROM days LEFT JOIN per_day p USING (day)
ORDER BY days.day
"""

AGENTS = f"""
WITH buckets AS (
    SELECT agent, bucket, sum(calls) AS calls, sum(errors) AS errors, sum(tokens) AS tokens,
           sum(cost_usd) AS cost
    FROM console_agent_latency WHERE {_DAYS}
    GROUP BY agent, bucket HAVING sum(calls) > 0
), ranked AS (
    SELECT *, sum(calls) OVER (PARTITION BY agent ORDER BY bucket) AS running,
              sum(calls) OVER (PARTITION BY agent) AS total
    FROM buckets
), per_agent AS (
    SELECT agent, sum(calls) AS calls, sum(errors) AS errors, sum(tokens) AS tokens,
           sum(cost) AS cost,
           min(bucket) FILTER (WHERE running >= 0.5 * total) AS b50,
           min(bucket) FILTER (WHERE running >= 0.95 * total) AS b95
    FROM ranked GROUP BY agent
), per_conversation AS (
    SELECT (array_agg(last_agent ORDER BY day DESC)
               FILTER (WHERE last_agent IS NOT NULL))[1] AS agent,
           bool_or(errors > 0 OR escalated) AS troubled
    FROM console_conversation_days WHERE {_DAYS}
    GROUP BY conversation_id
), outcome AS (
    SELECT agent, count(*) AS conversations, count(*) FILTER (WHERE NOT troubled) AS succeeded
    FROM per_conversation WHERE agent IS NOT NULL GROUP BY agent
)
SELECT nullif(a.agent, '') AS agent, a.calls::bigint AS calls, a.errors::bigint AS errors,
       a.errors::float8 / a.calls AS error_rate,
       round(power(1.05, a.b50 + 1)::numeric, 1)::float8 AS latency_p50_ms,
       round(power(1.05, a.b95 + 1)::numeric, 1)::float8 AS latency_p95_ms,
       a.tokens::bigint AS tokens, a.cost::float8 AS cost_usd,
       coalesce(o.conversations, 0) AS conversations, coalesce(o.succeeded, 0) AS succeeded,
       CASE WHEN o.conversations > 0 THEN o.succeeded::float8 / o.conversations END
           AS success_rate
FROM per_agent a LEFT JOIN outcome o USING (agent)
ORDER BY a.agent = '', a.agent
"""

ROUTING = f"""
SELECT intent, method, sum(decisions)::bigint AS decisions,
       sum(decisions)::float8 / sum(sum(decisions)) OVER () AS share,
       sum(confidence_sum) / sum(decisions) AS mean_confidence
FROM console_route_days WHERE {_DAYS}
GROUP BY intent, method HAVING sum(decisions) > 0
ORDER BY decisions DESC, intent, method
"""

TOOLS = """
SELECT tool, count(*) AS calls, count(*) FILTER (WHERE success) AS succeeded,
       count(*) FILTER (WHERE success)::float8 / count(*) AS success_rate,
       avg(duration_ms)::float8 AS duration_mean_ms,
       (percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms))::float8 AS duration_p95_ms
FROM agent_tool_executions
WHERE created_at >= %(since)s AND created_at < %(until)s
GROUP BY tool
ORDER BY calls DESC, tool
"""

# The window's conversations that used the model, the costliest first, with their
# prompt tokens split into new and cached: what a prompt change did to a conversation.
CONVERSATION_COSTS = f"""
SELECT d.conversation_id::text AS conversation_id, k.profile_name, c.wa_id,
       sum(d.turns)::bigint AS turns, sum(d.calls)::bigint AS model_calls,
       sum(d.prompt_tokens - d.cached_tokens)::bigint AS new_tokens,
       sum(d.cached_tokens)::bigint AS cached_tokens,
       sum(d.completion_tokens)::bigint AS completion_tokens,
       sum(d.cost_usd)::float8 AS cost_usd
FROM console_conversation_days d
JOIN agent_conversations c ON c.id = d.conversation_id
JOIN contacts k ON k.wa_id = c.wa_id
WHERE d.{_DAYS} AND d.calls > 0
GROUP BY d.conversation_id, k.profile_name, c.wa_id
ORDER BY cost_usd DESC, d.conversation_id
LIMIT %(limit)s
"""

CUSTOMERS = f"""
SELECT c.wa_id, count(DISTINCT d.conversation_id) AS conversations,
       sum(d.prompt_tokens + d.completion_tokens)::bigint AS tokens,
       sum(d.cost_usd)::float8 AS cost_usd
FROM console_conversation_days d JOIN agent_conversations c ON c.id = d.conversation_id
WHERE d.{_DAYS} AND d.calls > 0
GROUP BY c.wa_id
ORDER BY cost_usd DESC, tokens DESC
LIMIT %(limit)s
"""


async def _rows(pool: Pool, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Sorts for percentiles and per-conversation groups of a two-week window take
    tens of MB; with Postgres' default 4 MB they spill to disk and run 2-3x slower."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cur = await conn.execute(sql, params)
        return [dict(row) for row in await cur.fetchall()]


async def daily(pool: Pool, window: Window) -> list[dict[str, Any]]:
    return await _rows(pool, DAILY, window.params())


async def agents(pool: Pool, window: Window) -> list[dict[str, Any]]:
    return await _rows(pool, AGENTS, window.params())


async def routing(pool: Pool, window: Window) -> list[dict[str, Any]]:
    return await _rows(pool, ROUTING, window.params())


async def tools(pool: Pool, window: Window) -> list[dict[str, Any]]:
    return await _rows(pool, TOOLS, window.params())


async def customers(pool: Pool, window: Window, *, limit: int = 20) -> list[dict[str, Any]]:
    """The customers who cost most in the window; numbers masked as on every page."""
    rows = await _rows(pool, CUSTOMERS, {**window.params(), "limit": limit})
    return [{**row, "wa_id": mask_phone(row["wa_id"])} for row in rows]


async def conversation_costs(
    pool: Pool, window: Window, *, limit: int = 20
) -> list[dict[str, Any]]:
    """The costliest conversations of the window, tokens split into new and cached."""
    rows = await _rows(pool, CONVERSATION_COSTS, {**window.params(), "limit": limit})
    return [{**row, "wa_id": mask_phone(row["wa_id"])} for row in rows]


async def overview(pool: Pool, window: Window) -> dict[str, Any]:
    """Everything the dashboard's overview draws, in one answer."""
    # Four connections: the queries run side by side rather than one after another.
    days, by_agent, routes, costly = await asyncio.gather(
        daily(pool, window),
        agents(pool, window),
        routing(pool, window),
        conversation_costs(pool, window, limit=10),
    )
    return {
        "since": window.since,
        "until": window.until,
        "days": days,
        "totals": _totals(days),
        "agents": by_agent,
        "routing": routes,
        "conversations": costly,
    }


def _totals(days: list[dict[str, Any]]) -> dict[str, Any]:
    calls = sum(d["model_calls"] for d in days)
    counted = sum(d["model_conversations"] for d in days)  # conversation-days, as daily

    def per_conversation(key: str) -> float:
        return sum(d[key] for d in days) / counted if counted else 0.0

    return {
        "new_tokens": sum(d["new_tokens"] for d in days),
        "cached_tokens": sum(d["cached_tokens"] for d in days),
        "completion_tokens": sum(d["completion_tokens"] for d in days),
        "new_tokens_per_conversation": per_conversation("new_tokens"),
        "cached_tokens_per_conversation": per_conversation("cached_tokens"),
        "completion_tokens_per_conversation": per_conversation("completion_tokens"),
        "turns": sum(d["turns"] for d in days),
        "model_calls": calls,
        "tokens": sum(d["tokens"] for d in days),
        "cost_usd": sum(d["cost_usd"] for d in days),
        "escalations": sum(d["escalations"] for d in days),
        "error_rate": sum(d["model_errors"] for d in days) / calls if calls else 0.0,
    }
