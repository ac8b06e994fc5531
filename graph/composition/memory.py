"""Conversation memory, built from settings: the one place memory meets configuration.

nodes/memory never reads settings; this module decides the token budget, the model
that writes summaries and extracts memories, whether long-term memory can run here
(pgvector, the table's vector size, the embeddings), and hands the finished parts to
the graph (`ConversationMemory.nodes`) and to the queued jobs (server/runner/memory_jobs.py).

The vector size is part of the table. A change of `WA_AGENT_EMBEDDINGS` is therefore
a migration, not a crash: until `wa-agent migrate` (or `serve`, which migrates first)
has re-embedded the memories with the new model, long-term memory stays off and the
log says why; short-term memory works regardless.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
import structlog
from langchain_core.language_models import BaseChatModel
from langchain_postgres import PGEngine
from langchain_postgres.v2.indexes import HNSWIndex

from graph.infra.chat_models import build_chat_model
from graph.infra.database import Pool
from graph.infra.embeddings import EmbeddingsConfigError, build_embeddings, embedding_dimensions
from graph.settings import Settings
from nodes.memory import MemoryNodes
from nodes.memory.embedding_cache import EmbeddingCache, vector_literal
from nodes.memory.history import HistoryBudget
from nodes.memory.policy import MemoryPolicy
from nodes.memory.remember import Rememberer
from nodes.memory.store import HNSW_INDEX, LongTermMemory
from nodes.memory.summarize import Summarizer
from nodes.memory.tokens import build_token_counter
from tools.knowledge import create_pg_engine

log = structlog.get_logger(__name__)

_REEMBED_LOCK_KEY = 7_151_947_007  # one re-embedding at a time, across processes
_REEMBED_BATCH = 64


@dataclass(frozen=True)
class ConversationMemory:
    """What the graph needs (`nodes`, None = no memory) and what the jobs need."""

    nodes: MemoryNodes | None = None
    long_term: LongTermMemory | None = None
    rememberer: Rememberer | None = None


def embedding_model_id(settings: Settings) -> str:
    """Names the vector space: the model and its size (e.g. `local:minilm/384`)."""
    return f"{settings.embeddings}/{embedding_dimensions(settings)}"


def memory_policy(settings: Settings) -> MemoryPolicy:
    return MemoryPolicy(
        recall_k=settings.memory_recall_k,
        candidates=max(20, settings.memory_recall_k * 4),
        min_similarity=settings.memory_min_similarity,
        duplicate_similarity=settings.memory_duplicate_similarity,
        half_life_days=settings.memory_half_life_days,
        importance_floor=settings.memory_importance_floor,
        ttl_days=settings.memory_ttl_days,
        max_per_user=settings.memory_max_per_user,
    )


def history_budget(settings: Settings) -> HistoryBudget | None:
    if settings.memory_history_tokens <= 0:
        return None
    summary = min(settings.memory_summary_tokens, settings.memory_history_tokens // 3)
    counter = build_token_counter(settings.model)
    return HistoryBudget(counter, settings.memory_history_tokens, summary)


def memory_chat_model(settings: Settings, default: BaseChatModel) -> BaseChatModel:
    if not settings.memory_model or settings.memory_model == settings.model:
        return default
    model = build_chat_model(settings.model_copy(update={"model": settings.memory_model}))
    return model or default


@asynccontextmanager
async def open_memory(
    pool: Pool, database_url: str, settings: Settings, model: BaseChatModel | None
) -> AsyncIterator[ConversationMemory]:
    """The memory parts for this process; the vector store's engine closes on exit.
    Without a model there are no agents, so there is nothing to remember for."""
    if model is None:
        yield ConversationMemory()
        return
    writer = memory_chat_model(settings, model)
    budget = history_budget(settings)
    summarizer = (
        Summarizer(writer, budget, business_name=settings.business_name) if budget else None
    )
    engine = create_pg_engine(database_url) if settings.memory_enabled else None
    try:
        long_term = await _long_term(pool, engine, settings) if engine else None
        rememberer = None
        if long_term is not None:
            rememberer = Rememberer(pool, writer, long_term, business_name=settings.business_name)
        nodes = MemoryNodes(budget, summarizer, long_term) if budget or long_term else None
        log.info(
            "memory.ready",
            history_tokens=budget.max_tokens if budget else None,
            tokens=budget.counter.description if budget else None,
            long_term=long_term is not None,
        )
        yield ConversationMemory(nodes, long_term, rememberer)
    finally:
        if engine is not None:
            await engine.close()


async def _long_term(pool: Pool, engine: PGEngine, settings: Settings) -> LongTermMemory | None:
    """Long-term memory, or None with the reason in the log."""
    try:
        model_id = embedding_model_id(settings)
        embeddings = build_embeddings(settings)
    except EmbeddingsConfigError as exc:
        log.warning("memory.long_term_disabled", reason=str(exc))
        return None
    problem = await _table_problem(pool, settings)
    if problem is not None:
        log.warning("memory.long_term_disabled", reason=problem)
        return None
    cache = EmbeddingCache(pool, embeddings, model=model_id)
    return LongTermMemory(pool, engine, cache, memory_policy(settings))


async def _table_problem(pool: Pool, settings: Settings) -> str | None:
    """Why the memory table cannot serve the configured embeddings, if it cannot."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT to_regclass('embedding_cache') IS NOT NULL AS migrated,"
            " (SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            "  WHERE attrelid = to_regclass('agent_embeddings') AND attname = 'embedding')"
            " AS column_type"
        )
        row = await cur.fetchone()
    if row is None or not row["migrated"]:
        return "pgvector or migration 0007_memory is missing (see /readyz); run `wa-agent migrate`"
    expected = f"vector({embedding_dimensions(settings)})"
    if row["column_type"] != expected:
        return (
            f"agent_embeddings holds {row['column_type']} but WA_AGENT_EMBEDDINGS gives "
            f"{expected}: run `wa-agent migrate` to re-embed the memories"
        )
    return None


async def migrate_memory_embeddings(database_url: str, settings: Settings) -> int:
    """Re-embed memories made by another embeddings model (resizing the vector column
    when the size changed); returns how many. Run by `wa-agent migrate` and at start,
    where it costs two small queries when there is nothing to do."""
    if not settings.memory_enabled:
        return 0
    try:
        model_id = embedding_model_id(settings)
        dimensions = embedding_dimensions(settings)
    except EmbeddingsConfigError:
        return 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        if not await _needs_reembedding(conn, model_id, dimensions):
            return 0
        await conn.execute("SELECT pg_advisory_lock(%s)", (_REEMBED_LOCK_KEY,))
        try:
            resized = await _column_type(conn) != f"vector({dimensions})"
            if resized:
                await _resize_vectors(conn, dimensions)
            count = await _reembed(conn, settings, model_id)
            if resized:
                await conn.execute(
                    "ALTER TABLE agent_embeddings ALTER COLUMN embedding SET NOT NULL"
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_REEMBED_LOCK_KEY,))
    if resized:
        await _rebuild_index(database_url, settings)
    return count


async def _column_type(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> str | None:
    cur = await conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass('agent_embeddings') AND attname = 'embedding'"
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def _needs_reembedding(
    conn: psycopg.AsyncConnection[tuple[object, ...]], model_id: str, dimensions: int
) -> bool:
    cur = await conn.execute("SELECT to_regclass('embedding_cache') IS NOT NULL")
    migrated = await cur.fetchone()
    column = await _column_type(conn)
    if column is None or not migrated or not migrated[0]:
        return False  # no pgvector yet: the SQL migrations wait, and so does this
    if column != f"vector({dimensions})":
        return True
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM agent_embeddings WHERE embedding_model <> %s)",
        (model_id,),
    )
    other = await cur.fetchone()
    return bool(other and other[0])


async def _resize_vectors(conn: psycopg.AsyncConnection[tuple[object, ...]], size: int) -> None:
    log.warning("memory.vectors_resized", dimensions=size)
    async with conn.transaction():
        await conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}".encode())
        await conn.execute("ALTER TABLE agent_embeddings ALTER COLUMN embedding DROP NOT NULL")
        await conn.execute(
            f"ALTER TABLE agent_embeddings ALTER COLUMN embedding TYPE vector({int(size)})"
            " USING NULL".encode()
        )
        await conn.execute("UPDATE agent_embeddings SET embedding_model = ''")


async def _reembed(
    conn: psycopg.AsyncConnection[tuple[object, ...]], settings: Settings, model_id: str
) -> int:
    """Re-embed, in batches, every memory whose vector is of another model."""
    embeddings = build_embeddings(settings)
    done = 0
    started = time.monotonic()
    while True:
        cur = await conn.execute(
            "SELECT langchain_id, content FROM agent_embeddings"
            " WHERE embedding_model <> %s LIMIT %s",
            (model_id, _REEMBED_BATCH),
        )
        rows = await cur.fetchall()
        if not rows:
            break
        vectors = await embeddings.aembed_documents([str(row[1]) for row in rows])
        async with conn.cursor() as update:
            await update.executemany(
                "UPDATE agent_embeddings SET embedding = %s::vector, embedding_model = %s"
                " WHERE langchain_id = %s",
                [
                    (vector_literal(v), model_id, row[0])
                    for row, v in zip(rows, vectors, strict=True)
                ],
            )
        done += len(rows)
    seconds = round(time.monotonic() - started, 1)
    log.warning("memory.reembedded", memories=done, model=model_id, seconds=seconds)
    return done


async def _rebuild_index(database_url: str, settings: Settings) -> None:
    """The HNSW index (cosine), as langchain-postgres builds it, on the resized column."""
    from langchain_postgres import PGVectorStore

    engine = create_pg_engine(database_url)
    try:
        store = await PGVectorStore.create(engine, build_embeddings(settings), "agent_embeddings")
        await store.aapply_vector_index(HNSWIndex(name=HNSW_INDEX))
    finally:
        await engine.close()
