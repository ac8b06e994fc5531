"""Embeddings: the local MiniLM model (real ONNX model from the installed packages, no
network) and the OpenAI route against the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from graph.infra.embeddings import (
    MINILM_DIMENSIONS,
    EmbeddingsConfigError,
    LocalMiniLMEmbeddings,
    MiniLMFiles,
    build_embeddings,
    embedding_dimensions,
    locate_minilm_files,
    shared_local_minilm,
)
from graph.infra.minilm_int8 import quantized_model
from graph.settings import Settings
from server.services import open_services
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import service_settings

PARAPHRASES = [
    ("I want to rent a bike for Saturday", "Can I book a bicycle this Saturday?"),
    ("My payment did not go through", "The card transaction failed"),
    ("The app crashes when I open it", "The application keeps closing on startup"),
]
UNRELATED = [
    ("I want to rent a bike for Saturday", "The card transaction failed"),
    ("My payment did not go through", "The application keeps closing on startup"),
    ("The app crashes when I open it", "Can I book a bicycle this Saturday?"),
]


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLMEmbeddings:
    model = shared_local_minilm()
    model.warm_up()
    return model


def cosine(model: LocalMiniLMEmbeddings, a: str, b: str) -> float:
    vectors = model.embed_matrix([a, b])
    return float(vectors[0] @ vectors[1])


def test_model_files_come_from_installed_packages() -> None:
    files = locate_minilm_files()
    assert files.model.name == "model.onnx" and files.model.stat().st_size > 10_000_000
    assert files.tokenizer.name == "tokenizer.json"
    assert "site-packages" in str(files.model) or "dist-packages" in str(files.model)


def test_the_int8_build_is_made_once_and_agrees_with_the_shipped_model(tmp_path: Path) -> None:
    shipped = locate_minilm_files()
    built = quantized_model(shipped.model, tmp_path)
    assert built.parent == tmp_path and built != shipped.model
    made = built.stat().st_mtime_ns
    assert quantized_model(shipped.model, tmp_path) == built  # found, not built again
    assert built.stat().st_mtime_ns == made and list(tmp_path.iterdir()) == [built]

    original = LocalMiniLMEmbeddings(files=shipped, recent=0)
    int8 = LocalMiniLMEmbeddings(files=MiniLMFiles(built, shipped.tokenizer), recent=0)
    texts = [text for pair in PARAPHRASES for text in pair] + ["ok thanks", "nataka baiskeli"]
    agreement = (original.embed_matrix(texts) * int8.embed_matrix(texts)).sum(axis=1)
    assert agreement.min() > 0.95, agreement
    close = [cosine(int8, a, b) for a, b in PARAPHRASES]
    far = [cosine(int8, a, b) for a, b in UNRELATED]
    assert min(close) > max(far) + 0.2, (close, far)


def test_without_a_writable_cache_the_shipped_model_is_used(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    shipped = locate_minilm_files().model
    assert quantized_model(shipped, blocked / "cache") == shipped


def test_vectors_are_unit_length_with_384_dimensions(minilm: LocalMiniLMEmbeddings) -> None:
    vectors = minilm.embed_matrix(["hello", "", "a much longer message " * 100])
    assert vectors.shape == (3, MINILM_DIMENSIONS) == (3, minilm.dimensions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(minilm.embed_query("hello")) == MINILM_DIMENSIONS


def test_paraphrases_are_closer_than_unrelated_pairs(minilm: LocalMiniLMEmbeddings) -> None:
    close = [cosine(minilm, a, b) for a, b in PARAPHRASES]
    far = [cosine(minilm, a, b) for a, b in UNRELATED]
    assert min(close) > max(far) + 0.2, (close, far)


def test_same_text_gives_the_same_vector(minilm: LocalMiniLMEmbeddings) -> None:
    first = minilm.embed_query("Nataka kulipa kwa M-Pesa")
    assert minilm.embed_query("Nataka kulipa kwa M-Pesa") == first
    fresh = LocalMiniLMEmbeddings()  # another instance, another session
    assert np.allclose(fresh.embed_query("Nataka kulipa kwa M-Pesa"), first, atol=1e-6)


def test_a_batch_gives_what_single_texts_give(minilm: LocalMiniLMEmbeddings) -> None:
    texts = [
        "ok",
        "Je voudrais réserver un vélo pour demain matin, s'il vous plaît",
        "my payment failed twice and the app keeps crashing when I open the booking page",
        "¿cuánto cuesta?",
        "hi",
    ] * 3
    uncached = LocalMiniLMEmbeddings(recent=0)  # every text through the model
    batched = np.asarray(uncached.embed_documents(texts))
    single = np.asarray([uncached.embed_query(text) for text in texts])
    assert np.allclose(batched, single, atol=1e-5)
    assert uncached.recent_hits == 0


def test_a_text_embedded_again_is_served_from_the_recent_vectors() -> None:
    model = LocalMiniLMEmbeddings(recent=2)
    first = model.embed_query("where is my order?")
    # The router sees the turn with whitespace collapsed, memory recall joined by lines.
    again = model.embed_query("where  is my\norder?")
    assert again == first and model.recent_hits == 1
    model.embed_documents(["one more text", "and another"])  # pushes the first one out
    model.embed_query("where is my order?")
    assert model.recent_hits == 1


def test_threads_share_one_model_safely(minilm: LocalMiniLMEmbeddings) -> None:
    texts = [f"message number {i} about bikes" for i in range(24)]
    expected = minilm.embed_matrix(texts)
    uncached = LocalMiniLMEmbeddings(recent=0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = list(pool.map(uncached.embed_query, texts))
    assert np.allclose(np.asarray(rows), expected, atol=1e-5)


async def test_async_embedding_leaves_the_event_loop_free(
    minilm: LocalMiniLMEmbeddings,
) -> None:
    """While 60 texts are embedded, a 1 ms ticker keeps ticking: the work is off-loop."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    vectors = await minilm.aembed_documents([f"text {i} for the loop test" for i in range(60)])
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert len(vectors) == 60
    assert ticks >= max(3, int(elapsed * 1000 / 20)), (ticks, elapsed)
    assert await minilm.aembed_query("text 0 for the loop test") == vectors[0]


def test_dimensions_are_known_without_loading_a_model() -> None:
    assert embedding_dimensions(Settings(WA_AGENT_EMBEDDINGS="local:minilm")) == 384
    small = Settings(WA_AGENT_EMBEDDINGS="openai:text-embedding-3-small")
    assert embedding_dimensions(small) == 1536
    shortened = small.model_copy(update={"embeddings_dimensions": 256})
    assert embedding_dimensions(shortened) == 256
    with pytest.raises(EmbeddingsConfigError, match="WA_AGENT_EMBEDDINGS_DIMENSIONS"):
        embedding_dimensions(Settings(WA_AGENT_EMBEDDINGS="openai:nomic-embed-text"))
    with pytest.raises(EmbeddingsConfigError, match="local:minilm or openai"):
        embedding_dimensions(Settings(WA_AGENT_EMBEDDINGS="hub:some/model"))


def test_local_embeddings_are_one_shared_instance() -> None:
    assert build_embeddings(Settings()) is shared_local_minilm()


def test_openai_embeddings_need_a_key_or_a_base_url() -> None:
    settings = Settings(
        WA_AGENT_EMBEDDINGS="openai:text-embedding-3-small",
        OPENAI_API_KEY=None,
        OPENAI_BASE_URL=None,
    )
    with pytest.raises(EmbeddingsConfigError, match="OPENAI_API_KEY"):
        build_embeddings(settings)


async def test_openai_embeddings_go_to_the_configured_server(
    openai_server: FakeOpenAIServer,
) -> None:
    settings = Settings(
        WA_AGENT_EMBEDDINGS="openai:text-embedding-3-small",
        WA_AGENT_EMBEDDINGS_DIMENSIONS=64,
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=openai_server.base_url + "/v1",
    )
    embeddings = build_embeddings(settings)
    vectors = await embeddings.aembed_documents(["hola", "adiós"])
    assert [len(v) for v in vectors] == [64, 64] == [embedding_dimensions(settings)] * 2
    request = openai_server.embedding_requests[-1]
    assert request["model"] == "text-embedding-3-small" and request["dimensions"] == 64
    # Raw texts, not tiktoken token ids: other servers tokenise their own way.
    assert request["input"] == ["hola", "adiós"]


async def test_a_worker_loads_the_model_before_its_first_customer(db_url: str) -> None:
    """The router's example vectors come from a cache, so building the graph need not load
    the model; a process that runs turns loads it at start rather than making its first
    customer wait, and the webhook-only process does not hold it at all."""
    settings = service_settings(db_url)
    async with open_services(settings, run_worker_here=False, migrate=False):
        pass  # the example vectors are cached from here on
    shared_local_minilm.cache_clear()
    try:
        async with open_services(settings, run_worker_here=False, migrate=False):
            assert not shared_local_minilm().loaded
        async with open_services(settings, run_worker_here=True, migrate=False):
            assert shared_local_minilm().loaded
    finally:
        shared_local_minilm.cache_clear()
