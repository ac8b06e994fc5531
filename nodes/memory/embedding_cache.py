"""Embeddings through a Postgres cache: the same text is embedded once per model.

Rows are keyed by (model, scope, sha256 of the text). The scope is the customer whose
words the text holds, so forgetting a customer removes the vectors of their words too
(a vector can be partly inverted back into its text). Texts of nobody in particular
use the empty scope. Rows unused for a while are dropped by the cleanup job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import structlog
from langchain_core.embeddings import Embeddings

from tools.common import Pool

log = structlog.get_logger(__name__)

Vector = list[float]

# Refreshing `last_used_at` on every hit would turn each read into a write.
_TOUCH_AFTER = "1 day"


def content_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form; sent as text and cast, so no type adapter is needed."""
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def parse_vector(text: str) -> Vector:
    return [float(x) for x in text.strip("[]").split(",")] if text.strip("[]") else []


class EmbeddingCache:
    def __init__(self, pool: Pool, embeddings: Embeddings, *, model: str) -> None:
        self.pool = pool
        self.embeddings = embeddings
        self.model = model  # e.g. "local:minilm/384": the key of this model's vectors
        self.hits = 0
        self.misses = 0

    async def embed(self, texts: Sequence[str], *, scope: str = "") -> list[Vector]:
        """Vectors of `texts`, in order; only the texts never seen are embedded."""
        if not texts:
            return []
        hashes = [content_hash(text) for text in texts]
        found = await self._lookup(scope, hashes)
        missing = list(dict.fromkeys(h for h in hashes if h not in found))
        self.hits += len(texts) - sum(1 for h in hashes if h not in found)
        if missing:
            by_hash = {h: t for h, t in zip(hashes, texts, strict=True)}
            fresh = await self.embeddings.aembed_documents([by_hash[h] for h in missing])
            self.misses += len(missing)
            found.update(zip(missing, fresh, strict=True))
            await self._store(scope, {h: found[h] for h in missing})
        return [found[h] for h in hashes]

    async def embed_one(self, text: str, *, scope: str = "") -> Vector:
        return (await self.embed([text], scope=scope))[0]

    async def _lookup(self, scope: str, hashes: list[bytes]) -> dict[bytes, Vector]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT content_hash, embedding::text AS embedding,"
                f" last_used_at < now() - interval '{_TOUCH_AFTER}' AS stale"
                " FROM embedding_cache WHERE model = %s AND scope = %s"
                " AND content_hash = ANY(%s)",
                (self.model, scope, hashes),
            )
            rows = await cur.fetchall()
            stale = [row["content_hash"] for row in rows if row["stale"]]
            if stale:
                await conn.execute(
                    "UPDATE embedding_cache SET last_used_at = now() WHERE model = %s"
                    " AND scope = %s AND content_hash = ANY(%s)",
                    (self.model, scope, stale),
                )
        return {bytes(row["content_hash"]): parse_vector(row["embedding"]) for row in rows}

    async def _store(self, scope: str, vectors: dict[bytes, Vector]) -> None:
        """Best effort: a failed write costs a re-embedding later, never the caller."""
        try:
            async with self.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO embedding_cache (model, scope, content_hash, embedding)"
                    " VALUES (%s, %s, %s, %s::vector) ON CONFLICT DO NOTHING",
                    [(self.model, scope, h, vector_literal(v)) for h, v in vectors.items()],
                )
        except Exception as exc:
            log.warning("embedding_cache.write_failed", error=str(exc)[:200])
