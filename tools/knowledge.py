"""The FAQ / knowledge base: Markdown documents, chunked by heading, embedded into
pgvector through langchain-postgres' PGVectorStore, searched by meaning.

A document is re-embedded only when its content hash or the embeddings model changes,
so starting the service or re-running `wa-agent seed-demo` costs nothing when the
documents did not move. Chunk rows live in `knowledge_chunks` (migration 0006, which
needs pgvector); the documents themselves in `knowledge_documents` (0005).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from langchain_core.embeddings import Embeddings
from langchain_core.tools import BaseTool
from langchain_postgres import PGEngine, PGVectorStore
from pydantic import Field
from sqlalchemy.ext.asyncio import create_async_engine

from tools.common import Pool, ToolArgs, business_tool

log = structlog.get_logger(__name__)

KNOWLEDGE_TABLE = "knowledge_chunks"
_SYNC_LOCK_KEY = 7_151_947_005  # serialises concurrent syncs (seed-demo and a start)
_CHUNK_CHARS = 1200
_HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*$")


@dataclass(frozen=True)
class KnowledgeDocument:
    source: str  # the file name: stable identity of the document
    title: str
    content: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True)
class Chunk:
    heading: str
    text: str
    index: int


@dataclass(frozen=True)
class SyncReport:
    indexed: list[str]
    unchanged: list[str]
    removed: list[str]


def load_documents(directory: Path) -> list[KnowledgeDocument]:
    """Every `*.md` of `directory`; the first `# ` heading is the title."""
    documents = []
    for path in sorted(directory.glob("*.md")):
        content = path.read_text(encoding="utf-8").strip()
        first = next((line for line in content.splitlines() if line.startswith("# ")), "")
        title = first[2:].strip() or path.stem.replace("_", " ").capitalize()
        documents.append(KnowledgeDocument(path.name, title, content))
    return documents


def split_markdown(document: KnowledgeDocument, max_chars: int = _CHUNK_CHARS) -> list[Chunk]:
    """Sections under their heading path; long sections cut at paragraph boundaries.

    Each chunk starts with "Title › Section" so a question matches it even when the
    section's own words do not repeat the topic.
    """
    sections: list[tuple[str, list[str]]] = [("", [])]
    path: list[str] = []
    for line in document.content.splitlines():
        if match := _HEADING.match(line):
            level = len(match.group(1))
            path = [*path[: level - 1], match.group(2)]
            sections.append((" › ".join(path), []))
        else:
            sections[-1][1].append(line)
    chunks: list[Chunk] = []
    for heading, lines in sections:
        body = "\n".join(lines).strip()
        if not body:
            continue
        label = heading or document.title
        for piece in _pieces(body, max_chars):
            chunks.append(Chunk(heading, f"{label}\n{piece}", len(chunks)))
    return chunks


def _pieces(body: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", body):
        candidate = f"{current}\n\n{paragraph}".strip() if current else paragraph.strip()
        if len(candidate) > max_chars and current:
            pieces.append(current)
            current = paragraph.strip()
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def create_pg_engine(database_url: str, *, pool_size: int = 2) -> PGEngine:
    """A PGEngine on the caller's event loop, from any libpq URL or conninfo string.

    Building it from our own async SQLAlchemy engine (not `from_connection_string`)
    keeps langchain-postgres off its private background loop; psycopg opens the
    connections, so unix-socket URIs of the embedded server work as they are.
    """

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(database_url)

    # No overflow: a process's connections stay countable (graph/infra/connection_share.py).
    engine = create_async_engine(
        "postgresql+psycopg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
    )
    return PGEngine.from_engine(engine)


class KnowledgeBase:
    """Sync and search the knowledge documents. Build inside the running loop."""

    def __init__(
        self,
        pool: Pool,
        engine: PGEngine,
        embeddings: Embeddings,
        *,
        embedding_model: str,
        table: str = KNOWLEDGE_TABLE,
    ) -> None:
        self._pool = pool
        self._engine = engine
        self._embeddings = embeddings
        self.embedding_model = embedding_model  # recorded per document: a change re-embeds
        self._table = table
        self._store: PGVectorStore | None = None
        self._available = False

    async def store(self) -> PGVectorStore:
        if self._store is None:
            self._store = await PGVectorStore.create(
                self._engine,
                self._embeddings,
                self._table,
                metadata_columns=["document_id", "source", "heading", "chunk_index"],
            )
        return self._store

    async def available(self) -> bool:
        """False where pgvector (migration 0006) is missing: the tool then says so.
        A yes is remembered; a no is asked again, as `wa-agent migrate` may add it."""
        if self._available:
            return True
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (self._table,))
            row = await cur.fetchone()
        self._available = bool(row and row["ok"])
        return self._available

    async def sync(
        self, documents: Sequence[KnowledgeDocument], *, remove_missing: bool = True
    ) -> SyncReport:
        """Re-embed what changed, drop what disappeared; one sync at a time."""
        async with self._pool.connection() as lock:
            await lock.execute("SELECT pg_advisory_lock(%s)", (_SYNC_LOCK_KEY,))
            try:
                return await self._sync_locked(documents, remove_missing)
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (_SYNC_LOCK_KEY,))

    async def _sync_locked(
        self, documents: Sequence[KnowledgeDocument], remove_missing: bool
    ) -> SyncReport:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT source, content_hash, embedding_model FROM knowledge_documents"
            )
            known = {row["source"]: row for row in await cur.fetchall()}
        indexed, unchanged = [], []
        for document in documents:
            row = known.get(document.source)
            current = row is not None and (row["content_hash"], row["embedding_model"]) == (
                document.content_hash,
                self.embedding_model,
            )
            if current:
                unchanged.append(document.source)
                continue
            await self._index(document)
            indexed.append(document.source)
        removed = sorted(set(known) - {d.source for d in documents}) if remove_missing else []
        if removed:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "DELETE FROM knowledge_documents WHERE source = ANY(%s)", (removed,)
                )
        log.info("knowledge.synced", indexed=len(indexed), unchanged=len(unchanged))
        return SyncReport(indexed, unchanged, removed)

    async def _index(self, document: KnowledgeDocument) -> None:
        """Replace the document's chunks. `embedding_model` stays NULL until the new
        chunks are all in, so a sync cut off halfway is redone next time."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO knowledge_documents (source, title, content, content_hash)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET"
                " title = excluded.title, content = excluded.content,"
                " content_hash = excluded.content_hash, embedding_model = NULL,"
                " chunk_count = 0, updated_at = now() RETURNING id",
                (document.source, document.title, document.content, document.content_hash),
            )
            row = await cur.fetchone()
            assert row is not None
            document_id = int(row["id"])
            await conn.execute(
                f"DELETE FROM {self._table} WHERE document_id = %s".encode(), (document_id,)
            )
        chunks = split_markdown(document)
        if chunks:
            store = await self.store()
            await store.aadd_texts(
                [chunk.text for chunk in chunks],
                metadatas=[
                    {
                        "document_id": document_id,
                        "source": document.source,
                        "heading": chunk.heading,
                        "chunk_index": chunk.index,
                    }
                    for chunk in chunks
                ],
                ids=[_chunk_id(document, chunk) for chunk in chunks],
            )
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE knowledge_documents SET embedding_model = %s, chunk_count = %s,"
                " indexed_at = now() WHERE id = %s",
                (self.embedding_model, len(chunks), document_id),
            )

    async def search(
        self, query: str, *, k: int = 3, min_relevance: float = 0.25
    ) -> list[tuple[str, str, float]]:
        """(source › heading, text, relevance 0..1) of the closest chunks, best first."""
        store = await self.store()
        found = await store.asimilarity_search_with_score(query, k=k)
        results = []
        for doc, distance in found:
            relevance = 1.0 - float(distance)  # cosine distance → similarity
            if relevance < min_relevance:
                continue
            where = f"{doc.metadata.get('source', '?')} › {doc.metadata.get('heading', '')}"
            results.append((where.rstrip(" ›"), doc.page_content, relevance))
        return results


def _chunk_id(document: KnowledgeDocument, chunk: Chunk) -> str:
    name = f"{document.source}|{document.content_hash}|{chunk.index}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


class SearchKnowledgeArgs(ToolArgs):
    query: str = Field(
        min_length=2,
        max_length=300,
        description="The question, standing alone.",
    )
    max_results: int = Field(default=3, ge=1, le=5)


def make_knowledge_tools(kb: KnowledgeBase, *, min_relevance: float = 0.25) -> list[BaseTool]:
    """`search_knowledge_base`: policies, opening hours, prices explained, how-tos."""

    async def search_knowledge_base(query: str, max_results: int = 3) -> str:
        if not await kb.available():
            return (
                "The knowledge base is not available on this server (no pgvector). "
                "Answer only what you are sure of, or hand over to a person."
            )
        results = await kb.search(query, k=max_results, min_relevance=min_relevance)
        if not results:
            return (
                "Nothing in the knowledge base answers this. Do not guess: say so, and "
                "offer a person or a support ticket."
            )
        return "\n\n".join(
            f"[{where}] (relevance {score:.2f})\n{text[:900]}" for where, text, score in results
        )

    return [
        business_tool(
            search_knowledge_base,
            name="search_knowledge_base",
            description="The shop's FAQ and policies: hours, location, rental rules, "
            "deposits, repairs, warranty, payment methods.",
            args_schema=SearchKnowledgeArgs,
        )
    ]
