"""Long-term memories per customer in `agent_embeddings` (written through
langchain-postgres' PGVectorStore): search within one customer, adding, merging
near-duplicates, refreshing on recall, and the cleanup policy.

Every query names the customer (`user_id` = their wa_id) and the embeddings model:
memories are shared by all of one customer's conversations and agents, never across
customers, and vectors of another model are never compared with this one's.

Search is exact over the customer's own rows (capped by `memory_max_per_user`, found by
the user_id index): a filtered approximate search on the HNSW index can return fewer
than k rows, and one plain statement is far cheaper on the turn's hot path.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from langchain_postgres import PGEngine, PGVectorStore

from nodes.memory.embedding_cache import EmbeddingCache, Vector, vector_literal
from nodes.memory.policy import MemoryPolicy
from tools.common import Pool

log = structlog.get_logger(__name__)

MEMORY_TABLE = "agent_embeddings"
HNSW_INDEX = "agent_embeddings_hnsw"
METADATA_COLUMNS = [
    "user_id",
    "kind",
    "importance",
    "conversation_id",
    "created_at",
    "updated_at",
    "last_recalled_at",
    "recall_count",
    "embedding_model",
]
MemoryKind = Literal["fact", "preference", "event"]
_LOCK_CLASS = 71_519  # advisory locks (class, hashtext(customer)) of the memory writers


@dataclass(frozen=True)
class NewMemory:
    content: str
    kind: MemoryKind
    importance: float


@dataclass(frozen=True)
class StoredMemory:
    id: str
    content: str
    kind: str
    importance: float
    similarity: float
    created_at: datetime
    updated_at: datetime
    last_recalled_at: datetime | None

    @property
    def last_touched(self) -> datetime:
        return max(self.updated_at, self.last_recalled_at or self.updated_at)


@dataclass(frozen=True)
class RankedMemory:
    memory: StoredMemory
    recency: float
    score: float


@dataclass(frozen=True)
class CleanupReport:
    expired: int
    orphaned: int
    over_cap: int
    cache_rows: int


# `+ 0` keeps the planner off the HNSW index: the order is exact over the customer's rows.
_NEAREST = """
SELECT langchain_id, content, kind, importance, created_at, updated_at, last_recalled_at,
       1 - (embedding <=> %(v)s::vector) AS similarity
FROM agent_embeddings
WHERE user_id = %(user)s AND embedding_model = %(model)s
ORDER BY (embedding <=> %(v)s::vector) + 0
LIMIT %(k)s
"""


class LongTermMemory:
    """Build inside the running loop; `engine` is the app's PGEngine (see
    tools.knowledge.create_pg_engine), `cache` embeds with the configured model."""

    def __init__(
        self,
        pool: Pool,
        engine: PGEngine,
        cache: EmbeddingCache,
        policy: MemoryPolicy,
    ) -> None:
        self.pool = pool
        self.engine = engine
        self.cache = cache
        self.policy = policy
        self._store: PGVectorStore | None = None

    @property
    def embedding_model(self) -> str:
        return self.cache.model

    async def store(self) -> PGVectorStore:
        if self._store is None:
            self._store = await PGVectorStore.create(
                self.engine,
                self.cache.embeddings,
                MEMORY_TABLE,
                metadata_columns=METADATA_COLUMNS,
            )
        return self._store

    def _filter(self, user_id: str) -> dict[str, Any]:
        return {
            "$and": [
                {"user_id": {"$eq": user_id}},
                {"embedding_model": {"$eq": self.embedding_model}},
            ]
        }

    async def nearest(self, user_id: str, vector: Vector, k: int) -> list[StoredMemory]:
        """This customer's k memories closest to `vector`, closest first.

        An exact search over the customer's own rows (at most `memory_max_per_user`,
        found by the user_id index), not the HNSW index: it cannot miss a memory the
        way a filtered approximate search can, and one statement costs a fraction of
        the vector store's transaction of settings and query.
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _NEAREST,
                {
                    "v": vector_literal(vector),
                    "user": user_id,
                    "model": self.embedding_model,
                    "k": k,
                },
            )
            rows = await cur.fetchall()
        return [
            StoredMemory(
                id=str(row["langchain_id"]),
                content=row["content"],
                kind=str(row["kind"]),
                importance=float(row["importance"]),
                similarity=float(row["similarity"]),
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                last_recalled_at=row["last_recalled_at"],
            )
            for row in rows
        ]

    async def has_memories(self, user_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM agent_embeddings WHERE user_id = %s"
                " AND embedding_model = %s) AS found",
                (user_id, self.embedding_model),
            )
            row = await cur.fetchone()
        return bool(row and row["found"])

    async def recall(self, user_id: str, text: str) -> list[RankedMemory]:
        """The best `recall_k` memories for this message, refreshed as recalled. A
        customer with none costs one query and no embedding; the message's vector comes
        from the model (and its in-process cache), not the Postgres cache: a turn's words
        are rarely seen twice, and the lookup would cost a round trip every turn."""
        if not await self.has_memories(user_id):
            return []
        vector = await self.cache.embeddings.aembed_query(text)
        candidates = await self.nearest(user_id, vector, self.policy.candidates)
        ranked = self.rank(candidates, datetime.now(UTC))
        if ranked:
            await self._refresh([item.memory.id for item in ranked])
        return ranked

    def rank(self, candidates: list[StoredMemory], now: datetime) -> list[RankedMemory]:
        policy = self.policy
        ranked = []
        for memory in candidates:
            if memory.similarity < policy.min_similarity:
                continue
            recency = policy.recency(memory.last_touched, now)
            score = policy.score(memory.similarity, memory.importance, recency)
            ranked.append(RankedMemory(memory, recency, score))
        ranked.sort(key=lambda item: item.score, reverse=True)
        return ranked[: policy.recall_k]

    async def _refresh(self, ids: list[str]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_embeddings SET last_recalled_at = now(),"
                " recall_count = recall_count + 1,"
                " importance = least(1.0, importance + %s * (1.0 - importance))"
                " WHERE langchain_id = ANY(%s::uuid[])",
                (self.policy.recall_boost, ids),
            )

    @contextlib.asynccontextmanager
    async def user_lock(self, user_id: str) -> AsyncIterator[None]:
        """Serialise the writers of one customer's memories (two conversations of the
        same customer remembering at once would both add the same fact)."""
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS, user_id))
            try:
                yield
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_CLASS, user_id)
                )

    async def add_or_merge(
        self, user_id: str, conversation_id: str | None, memory: NewMemory, vector: Vector
    ) -> Literal["added", "merged"]:
        """Insert, or update the near-duplicate the customer already has. Call under
        `user_lock`."""
        closest = await self.nearest(user_id, vector, 1)
        if closest and closest[0].similarity >= self.policy.duplicate_similarity:
            await self._merge(closest[0].id, conversation_id, memory, vector)
            return "merged"
        now = datetime.now(UTC)
        store = await self.store()
        metadata = {
            "user_id": user_id,
            "kind": memory.kind,
            "importance": memory.importance,
            "conversation_id": conversation_id,
            "created_at": now,
            "updated_at": now,
            "last_recalled_at": None,
            "recall_count": 0,
            "embedding_model": self.embedding_model,
        }
        await store.aadd_embeddings(
            [memory.content], [vector], metadatas=[metadata], ids=[str(uuid.uuid4())]
        )
        return "added"

    async def _merge(
        self, memory_id: str, conversation_id: str | None, memory: NewMemory, vector: Vector
    ) -> None:
        """The newer wording wins (it is the customer's latest word); importance never
        drops through a merge."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_embeddings SET content = %s, embedding = %s::vector, kind = %s,"
                " importance = greatest(importance, %s),"
                " conversation_id = coalesce(%s::uuid, conversation_id), updated_at = now()"
                " WHERE langchain_id = %s",
                (
                    memory.content,
                    vector_literal(vector),
                    memory.kind,
                    memory.importance,
                    conversation_id,
                    memory_id,
                ),
            )

    async def enforce_cap(self, user_id: str | None = None) -> int:
        """Keep each customer's `max_per_user` most valuable memories (importance,
        then freshness); `user_id=None` checks everyone."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                DELETE FROM agent_embeddings e USING (
                    SELECT langchain_id, row_number() OVER (
                        PARTITION BY user_id ORDER BY importance DESC,
                        greatest(updated_at, coalesce(last_recalled_at, updated_at)) DESC
                    ) AS position
                    FROM agent_embeddings
                    WHERE user_id IN (
                        SELECT user_id FROM agent_embeddings
                        WHERE %(user)s::text IS NULL OR user_id = %(user)s
                        GROUP BY user_id HAVING count(*) > %(cap)s
                    )
                ) ranked
                WHERE e.langchain_id = ranked.langchain_id AND ranked.position > %(cap)s
                """,
                {"user": user_id, "cap": self.policy.max_per_user},
            )
            return cur.rowcount

    async def cleanup(self, *, cache_days: float) -> CleanupReport:
        """The periodic policy: expire unimportant memories nobody used, drop those of
        customers who no longer exist, cap each customer, and age out the cache."""
        policy = self.policy
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM agent_embeddings WHERE importance < %s"
                " AND greatest(updated_at, coalesce(last_recalled_at, updated_at)) < %s",
                (policy.importance_floor, datetime.now(UTC) - timedelta(days=policy.ttl_days)),
            )
            expired = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM agent_embeddings e WHERE NOT EXISTS"
                " (SELECT 1 FROM contacts c WHERE c.wa_id = e.user_id)"
            )
            orphaned = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM embedding_cache WHERE last_used_at < %s",
                (datetime.now(UTC) - timedelta(days=cache_days),),
            )
            cache_rows = cur.rowcount
        over_cap = await self.enforce_cap()
        return CleanupReport(expired, orphaned, over_cap, cache_rows)
