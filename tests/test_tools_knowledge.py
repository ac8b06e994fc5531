"""The knowledge base on real Postgres + pgvector through PGVectorStore: documents are
embedded once, re-embedded only when they change, and found by meaning."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings
from langchain_openai import OpenAIEmbeddings
from langchain_postgres import PGEngine

from graph.infra.database import Pool, open_pool
from graph.infra.embeddings import shared_local_minilm
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import REPO, query, service_settings
from tools.demo import KNOWLEDGE_DIR
from tools.knowledge import (
    KnowledgeBase,
    KnowledgeDocument,
    create_pg_engine,
    load_documents,
    make_knowledge_tools,
    split_markdown,
)

DIMENSIONS = 384


class WordHashEmbeddings(Embeddings):
    """Bag of stemmed words hashed into 384 dimensions: texts sharing words are close,
    which is enough to tell the shop's documents apart, deterministically."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        vector = [0.0] * DIMENSIONS
        for word in re.findall(r"[a-z]{3,}", text.lower()):
            stem = word[:6]
            vector[int(hashlib.md5(stem.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as pool:
        yield pool


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[PGEngine]:
    engine = create_pg_engine(db_url)
    yield engine
    await engine.close()


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE_DIR, target)
    return target


def test_markdown_is_split_by_heading_with_its_path() -> None:
    [rentals] = [d for d in load_documents(KNOWLEDGE_DIR) if d.source == "rentals.md"]
    assert rentals.title == "Bike rentals"
    chunks = split_markdown(rentals)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    deposit = next(c for c in chunks if "deposit" in c.text)
    assert deposit.heading == "Bike rentals › What to bring"
    assert deposit.text.startswith("Bike rentals › What to bring\n")
    long_doc = KnowledgeDocument("long.md", "Long", "# Long\n\n" + "\n\n".join(["word " * 100] * 8))
    assert all(len(c.text) <= 1300 for c in split_markdown(long_doc))


async def test_documents_are_embedded_once_and_again_only_when_changed(
    db_url: str, pool: Pool, engine: PGEngine, documents_dir: Path
) -> None:
    embeddings = WordHashEmbeddings()
    kb = KnowledgeBase(pool, engine, embeddings, embedding_model="test:words")
    documents = load_documents(documents_dir)
    first = await kb.sync(documents)
    assert sorted(first.indexed) == sorted(d.source for d in documents) and len(documents) == 5
    per_doc = await query(
        db_url,
        "SELECT d.source, d.chunk_count, count(c.*) AS chunks FROM knowledge_documents d"
        " LEFT JOIN knowledge_chunks c ON c.document_id = d.id GROUP BY d.id ORDER BY d.source",
    )
    assert all(row["chunk_count"] == row["chunks"] > 0 for row in per_doc)

    second = await kb.sync(load_documents(documents_dir))
    assert second.indexed == [] and len(second.unchanged) == len(first.indexed)

    path = documents_dir / "repairs.md"
    path.write_text(path.read_text() + "\n## Pick-up service\nWe collect bikes in Kacyiru.\n")
    (documents_dir / "about.md").unlink()
    third = await kb.sync(load_documents(documents_dir))
    assert third.indexed == ["repairs.md"] and third.removed == ["about.md"]
    sources = await query(db_url, "SELECT DISTINCT source FROM knowledge_chunks ORDER BY 1")
    assert "about.md" not in [row["source"] for row in sources]

    other_model = KnowledgeBase(pool, engine, embeddings, embedding_model="test:other")
    assert len((await other_model.sync(load_documents(documents_dir))).indexed) == len(sources)


async def test_search_tool_finds_the_policy_by_meaning(
    pool: Pool, engine: PGEngine, documents_dir: Path
) -> None:
    # The production default: all-MiniLM-L6-v2 on the CPU, shipped as a package.
    kb = KnowledgeBase(pool, engine, shared_local_minilm(), embedding_model="local:minilm")
    await kb.sync(load_documents(documents_dir))
    [search] = make_knowledge_tools(kb)
    assert search.name == "search_knowledge_base"

    deposit = await search.ainvoke({"query": "how much is the deposit to rent a mountain bike"})
    assert "[rentals.md › Bike rentals › What to bring]" in deposit
    assert "30,000 RWF" in deposit
    momo = await search.ainvoke({"query": "can I pay with momo?", "max_results": 1})
    assert momo.startswith("[payments.md › Payments › How to pay]")
    batteries = await search.ainvoke({"query": "do you fix e-bike batteries", "max_results": 1})
    assert batteries.startswith("[repairs.md › Repairs and servicing › E-bikes]")
    hours = await search.ainvoke({"query": "opening hours on saturday", "max_results": 1})
    assert hours.startswith("[about.md › About Inzira Bikes › Opening hours]")
    refund = await search.ainvoke({"query": "cancel booking refund within 24 hours"})
    assert "[cancellations.md › Cancellations and changes › Cancelling a booking]" in refund
    nothing = await search.ainvoke({"query": "zzqx vvpt"})
    assert nothing.startswith("Nothing in the knowledge base answers this")
    assert (await search.ainvoke({"query": "x"})).startswith("Invalid arguments")


async def test_openai_embeddings_through_the_real_client(
    db_url: str, pool: Pool, engine: PGEngine, openai_server: FakeOpenAIServer
) -> None:
    embeddings = OpenAIEmbeddings(
        model="text-embedding-3-small",
        dimensions=DIMENSIONS,
        base_url=openai_server.base_url + "/v1",
        api_key="sk-test",  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
    )
    kb = KnowledgeBase(pool, engine, embeddings, embedding_model="openai:text-embedding-3-small")
    await kb.sync(load_documents(KNOWLEDGE_DIR))
    assert openai_server.embedding_requests[0]["dimensions"] == DIMENSIONS
    [chunk] = await query(db_url, "SELECT content FROM knowledge_chunks ORDER BY source LIMIT 1")
    # The fake's vectors are hashes of the text: the very same text is the closest.
    [(_where, text, relevance)] = await kb.search(chunk["content"], k=1)
    assert text == chunk["content"] and relevance > 0.99


async def test_search_says_so_without_pgvector_table(pool: Pool, engine: PGEngine) -> None:
    kb = KnowledgeBase(pool, engine, WordHashEmbeddings(), embedding_model="x", table="nowhere")
    [search] = make_knowledge_tools(kb)
    assert "not available" in await search.ainvoke({"query": "opening hours"})


def test_seed_demo_command_loads_once_then_changes_nothing(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_AGENT", "OPENAI"))}
    env.update(DATABASE_URL=db_url, WA_AGENT_EMBEDDINGS="local:minilm", LOG_LEVEL="WARNING")

    def seed() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "server.cli", "seed-demo"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    first = seed()
    assert "catalog: 22 item(s) added" in first and "5 document(s) indexed" in first
    second = seed()
    assert "catalog: 0 item(s) added; resources: 0 added; slots: 0 added" in second
    assert "0 document(s) indexed, 5 unchanged" in second
