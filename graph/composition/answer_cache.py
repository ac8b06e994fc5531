"""The answer cache, built from settings (nodes/answer_cache never reads them).

None — logged once at start — where it cannot work: no pgvector (so no table), or
embeddings whose vectors do not fit the table's 384 dimensions. The `answer_cache`
flag then has nothing to switch on, and every turn runs as before.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from graph.infra.database import Pool
from graph.infra.embeddings import EmbeddingsConfigError, build_embeddings, embedding_dimensions
from graph.settings import Settings
from nodes.answer_cache import AnswerCache, AnswerCacheStore, CacheConfig

log = structlog.get_logger(__name__)

# answer_cache.embedding is vector(384) (migration 0015_answer_cache_vectors).
CACHE_DIMENSIONS = 384


def cache_config(settings: Settings) -> CacheConfig:
    return CacheConfig(
        threshold=settings.answer_cache_threshold,
        synonym_similarity=settings.answer_cache_synonym_similarity,
        ttl=timedelta(hours=settings.answer_cache_ttl_hours),
        cacheable_tools=settings.answer_cache_tools,
    )


async def open_answer_cache(pool: Pool, settings: Settings) -> AnswerCache | None:
    try:
        if embedding_dimensions(settings) != CACHE_DIMENSIONS:
            log.warning("answer_cache.disabled", reason="embeddings are not 384-dimensional")
            return None
        embeddings = build_embeddings(settings)
    except EmbeddingsConfigError as exc:
        log.warning("answer_cache.disabled", reason=str(exc))
        return None
    store = AnswerCacheStore(pool)
    if not await store.available():
        log.warning("answer_cache.disabled", reason="pgvector is not installed on this server")
        return None
    return AnswerCache(store, embeddings, cache_config(settings))


async def purge_expired_answers(pool: Pool) -> int:
    """Drop entries past their TTL (never served anyway); 0 where the table is missing."""
    store = AnswerCacheStore(pool)
    if not await store.available():
        return 0
    return await store.purge_expired()
