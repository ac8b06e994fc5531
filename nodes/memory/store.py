"""Long-term memories per customer in `agent_embeddings`, through langchain-postgres'
PGVectorStore: search filtered to one customer, adding, merging near-duplicates,
refreshing on recall, and the cleanup policy.

Every query names the customer (`user_id` = their wa_id) and the embeddings model:
memories are shared by all of one customer's conversations and agents, never across
customers, and vectors of another model are never compared with this one's.

A filtered nearest-neighbour search on an HNSW index looks at `ef_search` candidates
and then drops those of other customers, which can leave fewer than k rows. pgvector
0.8's iterative scan keeps scanning until k rows pass the filter
(`hnsw.iterative_scan = relaxed_order`, bounded by `hnsw.max_scan_tuples`); the order
it returns is re-ranked here anyway.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from langchain_core.documents import Document
from langchain_postgres import PGEngine, PGVectorStore
from langchain_postgres.v2.indexes import QueryOptions

from nodes.memory.cache import EmbeddingCache, Vector, vector_literal
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


@dataclass
class IterativeHNSWOptions(QueryOptions):
    """`SET LOCAL`s for each search (PGVectorStore runs them in the query's transaction).
    `iterative_scan=None` for pgvector before 0.8, which has no iterative scan."""

    ef_search: int = 40
    iterative_scan: str | None = "relaxed_order"
    max_scan_tuples: int = 20_000

    def to_parameter(self) -> list[str]:
        options = [f"hnsw.ef_search = {int(self.ef_search)}"]
        if self.iterative_scan is not None:
            options.append(f"hnsw.iterative_scan = {self.iterative_scan}")
            options.append(f"hnsw.max_scan_tuples = {int(self.max_scan_tuples)}")
        return options

    def to_string(self) -> str:
        return ", ".join(self.to_parameter())


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


def _stored(document: Document, distance: float) -> StoredMemory:
    meta = document.metadata
    return StoredMemory(
        id=str(document.id),
        content=document.page_content,
        kind=str(meta["kind"]),
        importance=float(meta["importance"]),
        similarity=1.0 - float(distance),
        created_at=meta["created_at"],
        updated_at=meta["updated_at"],
        last_recalled_at=meta.get("last_recalled_at"),
    )


class LongTermMemory:
    """Build inside the running loop; `engine` is the app's PGEngine (see
    tools.knowledge.create_pg_engine), `cache` embeds with the configured model."""

    def __init__(
        self,
        pool: Pool,
        engine: PGEngine,
        cache: EmbeddingCache,
        policy: MemoryPolicy,
        *,
        query_options: IterativeHNSWOptions | None = None,
    ) -> None:
        self.pool = pool
        self.engine = engine
        self.cache = cache
        self.policy = policy
        self.query_options = query_options or IterativeHNSWOptions()
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
                index_query_options=self.query_options,
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
        """This customer's k memories closest to `vector`, closest first."""
        store = await self.store()
        found = await store.asimilarity_search_with_score_by_vector(
            vector, k=k, filter=self._filter(user_id)
        )
        memories = [_stored(document, distance) for document, distance in found]
        return sorted(memories, key=lambda m: m.similarity, reverse=True)

    async def recall(self, user_id: str, text: str) -> list[RankedMemory]:
        """The best `recall_k` memories for this message, refreshed as recalled."""
        vector = await self.cache.embed_one(text, scope=user_id)
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
