"""One conversation as an operator reads it, and the search that finds it.

The transcript (agent_messages) holds each message; a bot reply whose row names no
agent is the last specialist that called the model in its run. The accounting tables
say what happened in between — the router's decision, handoffs, escalations, every
model call with its tokens and latency, every tool call with its duration — and
merging them by time gives the whole story of a turn on one page. Each conversation
also carries its model usage (from the per-day rollup): prompt tokens split into new
ones and those served from the provider's prompt cache, completion tokens and cost.
"""

from __future__ import annotations

import re
from typing import Any

from graph.infra.database import Pool
from graph.privacy import mask_phone

# Summed over the conversation's days (indexed by conversation): a few rows each.
_USAGE = """
LEFT JOIN LATERAL (
    SELECT coalesce(sum(d.calls), 0)::bigint AS model_calls,
           coalesce(sum(d.prompt_tokens - d.cached_tokens), 0)::bigint AS new_tokens,
           coalesce(sum(d.cached_tokens), 0)::bigint AS cached_tokens,
           coalesce(sum(d.completion_tokens), 0)::bigint AS completion_tokens,
           coalesce(sum(d.cost_usd), 0)::float8 AS cost_usd
    FROM console_conversation_days d WHERE d.conversation_id = c.id
) AS usage ON true
"""

_SEARCH = f"""
SELECT c.id, c.wa_id, k.profile_name, c.status, c.last_inbound_at, c.updated_at, usage.*
FROM agent_conversations c JOIN contacts k USING (wa_id)
{_USAGE}
WHERE (%(status)s::text IS NULL OR c.status = %(status)s)
  AND (%(q)s = '' OR k.profile_name ILIKE %(name)s
       OR (%(digits)s <> '' AND c.wa_id LIKE %(suffix)s))
ORDER BY c.updated_at DESC
LIMIT %(limit)s
"""

# The newest 2,000 entries of a conversation, oldest first.
_ENTRIES = r"""
SELECT * FROM (
SELECT created_at AS at, 'message' AS kind, role,
       CASE WHEN role = 'agent' THEN coalesce(agent, (
           SELECT c.agent FROM agent_metrics c WHERE c.run_id = m.run_id
           AND c.node LIKE 'agent\_%%' ORDER BY c.id DESC LIMIT 1)) ELSE agent END AS agent,
       content, NULL::text AS name,
       NULL::boolean AS success, NULL::real AS duration_ms, NULL::jsonb AS details
FROM agent_messages m WHERE conversation_id = %(id)s
UNION ALL
SELECT created_at, 'model_call', NULL, agent, NULL, model, success, latency_ms,
       jsonb_build_object('node', node, 'prompt_tokens', prompt_tokens,
                          'completion_tokens', completion_tokens,
                          'cached_tokens', cached_tokens, 'cost_usd', cost_usd,
                          'error', error)
FROM agent_metrics WHERE conversation_id = %(id)s
UNION ALL
SELECT created_at, 'tool_call', NULL, agent, NULL, tool, success, duration_ms,
       jsonb_build_object('error', error, 'result_size', result_size)
FROM agent_tool_executions WHERE conversation_id = %(id)s
UNION ALL
SELECT created_at, kind, NULL, agent, NULL, source, NULL, NULL,
       jsonb_build_object('method', method, 'confidence', confidence)
FROM agent_turn_events WHERE conversation_id = %(id)s
ORDER BY at DESC
LIMIT 2000
) AS newest ORDER BY at
"""


def _display(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": str(row["id"]), "wa_id": mask_phone(row["wa_id"])}


async def search(
    pool: Pool, text: str, *, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """By name (part of it) or by the last digits of the number."""
    text = text.strip()
    digits = re.sub(r"\D", "", text)
    params = {
        "q": text,
        "name": f"%{_escape_like(text)}%",
        "digits": digits,
        "suffix": f"%{digits}",
        "status": status,
        "limit": limit,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_SEARCH, params)
        return [_display(dict(row)) for row in await cur.fetchall()]


async def conversation(pool: Pool, conversation_id: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, c.wa_id, k.profile_name, c.status, c.assigned_to, c.created_at,"
            " c.updated_at,"
            f" usage.* FROM agent_conversations c JOIN contacts k USING (wa_id) {_USAGE}"
            " WHERE c.id = %s",
            (conversation_id,),
        )
        head = await cur.fetchone()
        if head is None:
            return None
        cur = await conn.execute(_ENTRIES, {"id": conversation_id})
        entries = [dict(row) for row in await cur.fetchall()]
    return {**_display(dict(head)), "entries": entries}


async def waiting_count(pool: Pool) -> int:
    """Conversations waiting for a person right now."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM agent_conversations WHERE status = 'escalated'"
        )
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
