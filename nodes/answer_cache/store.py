"""The answer cache's rows (migration 0015_answer_cache_vectors) and its event log.

An entry is keyed by agent, language and *stamp*: the content versions it was built
from (`content_versions`, bumped by triggers on every write to the knowledge base or
the catalog) plus a hash of the agent's configuration (prompt, model, temperature,
tools). The stamp a lookup uses is read in the same statement as the candidates, so an
entry built before an edit can never be served after it, whichever process made the
edit; stale rows are simply never matched again, and expire with their TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nodes.memory.embedding_cache import vector_literal
from tools.common import Pool

TABLE = "answer_cache"


@dataclass(frozen=True)
class Candidate:
    id: int
    question: str
    answer: str
    tokens: int
    similarity: float


@dataclass(frozen=True)
class Lookup:
    stamp: str  # the content part of the stamp at lookup time
    candidates: list[Candidate]


def agent_stamp(parts: tuple[object, ...]) -> str:
    """A short hash of what shapes an agent's answers."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# `v` always yields one row, so the current content stamp comes back with no candidate.
_LOOKUP = f"""
WITH v AS (
    SELECT string_agg(scope || version, '.' ORDER BY scope) AS content FROM content_versions
)
SELECT v.content, c.id, c.question, c.answer, c.tokens,
       1 - (c.embedding <=> %(vector)s::vector) AS similarity
FROM v LEFT JOIN LATERAL (
    SELECT * FROM {TABLE} a
    WHERE a.agent = %(agent)s AND a.language = %(language)s
      AND a.stamp = v.content || ':' || %(agent_stamp)s AND a.expires_at > now()
    ORDER BY a.embedding <=> %(vector)s::vector
    LIMIT %(k)s
) c ON true
"""


# The event, and for a hit its entry's counter and a 0-token call in `agent_metrics`.
_RECORD = f"""
WITH event AS (
    INSERT INTO answer_cache_events (conversation_id, run_id, agent, language, hit,
                                     similarity, tokens_saved, latency_ms)
    VALUES (%(conversation_id)s, %(run_id)s, %(agent)s, %(language)s, %(hit)s,
            %(similarity)s, %(saved)s, %(latency)s)
    RETURNING id
), entry AS (
    UPDATE {TABLE} SET hits = hits + 1, last_hit_at = now()
    WHERE id = %(entry)s RETURNING id
), call AS (
    INSERT INTO agent_metrics (conversation_id, run_id, agent, node, model, latency_ms,
                               success)
    SELECT %(conversation_id)s, %(run_id)s, %(agent)s, 'answer_cache', 'answer_cache',
           %(latency)s, true
    WHERE %(hit)s
    RETURNING id
)
SELECT (SELECT count(*) FROM event) + (SELECT count(*) FROM call) AS written
"""


class AnswerCacheStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def available(self) -> bool:
        """False where pgvector (and so the table) is missing: the cache stays off."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (TABLE,))
            row = await cur.fetchone()
        return bool(row and row["ok"])

    async def nearest(
        self, *, agent: str, language: str, stamp: str, vector: list[float], k: int = 5
    ) -> Lookup:
        params = {
            "vector": vector_literal(vector),
            "agent": agent,
            "language": language,
            "agent_stamp": stamp,
            "k": k,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_LOOKUP, params)
            rows = await cur.fetchall()
        content = str(rows[0]["content"]) if rows else ""
        found = [
            Candidate(r["id"], r["question"], r["answer"], r["tokens"], float(r["similarity"]))
            for r in rows
            if r["id"] is not None
        ]
        return Lookup(f"{content}:{stamp}", found)

    async def put(
        self,
        *,
        agent: str,
        language: str,
        stamp: str,
        question: str,
        vector: list[float],
        answer: str,
        tokens: int,
        ttl: timedelta,
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                f"""
                INSERT INTO {TABLE} (agent, language, stamp, question, embedding, answer,
                                     tokens, expires_at)
                VALUES (%s, %s, %s, %s, %s::vector, %s, %s, now() + %s)
                ON CONFLICT (agent, language, stamp, question) DO UPDATE
                    SET answer = EXCLUDED.answer, tokens = EXCLUDED.tokens,
                        expires_at = EXCLUDED.expires_at
                """,
                (agent, language, stamp, question, vector_literal(vector), answer, tokens, ttl),
            )

    async def record(
        self,
        *,
        conversation_id: str | None,
        run_id: str | None,
        agent: str,
        language: str,
        hit: Candidate | None,
        similarity: float | None,
        latency_ms: float,
    ) -> None:
        """The lookup's event; a hit also counts on its entry and in `agent_metrics`
        as a call of 0 tokens and no cost, so cost figures see cached answers too."""
        params: dict[str, Any] = {
            "conversation_id": conversation_id or None,
            "run_id": run_id or None,
            "agent": agent,
            "language": language,
            "hit": hit is not None,
            "similarity": similarity,
            "saved": hit.tokens if hit else 0,
            "latency": latency_ms,
        }
        params["entry"] = hit.id if hit else None
        async with self.pool.connection() as conn:
            await conn.execute(_RECORD, params)  # one statement: one round trip, atomic

    async def purge_expired(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"DELETE FROM {TABLE} WHERE expires_at <= now()")
            return int(cur.rowcount)
