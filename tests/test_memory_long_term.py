"""Long-term memories on real pgvector: filtered recall that still finds k rows, the
remember job's extraction and merging, the cleanup policy, the embedding cache, and a
change of embeddings model handled as a migration.

Embeddings are the local MiniLM model (what runs by default), except for the model
change, which goes to the fake OpenAI server's deterministic embeddings.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from graph.composition.memory import migrate_memory_embeddings, open_memory
from graph.infra.chat_models import build_chat_model
from graph.infra.database import Pool, open_pool
from nodes.memory.embedding_cache import vector_literal
from nodes.memory.store import LongTermMemory, NewMemory
from server.runner.memory_jobs import MaintenanceOptions, MemoryJobs
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import query
from tests.test_memory_graph import memory_settings

GRACE = "250788000201"


async def add_contact(pool: Pool, wa_id: str, *, conversation: bool = False) -> str | None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO contacts (wa_id, profile_name) VALUES (%s, 'Grace')"
            " ON CONFLICT DO NOTHING",
            (wa_id,),
        )
        if not conversation:
            return None
        cur = await conn.execute(
            "INSERT INTO agent_conversations (phone_number_id, wa_id) VALUES ('PNID', %s)"
            " RETURNING id",
            (wa_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


async def add_transcript(pool: Pool, conversation_id: str, *lines: tuple[str, str]) -> None:
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO agent_messages (conversation_id, role, content) VALUES (%s, %s, %s)",
            [(conversation_id, role, text) for role, text in lines],
        )


async def remember_as(memory: LongTermMemory, customer: str, text: str, importance: float) -> None:
    vector = await memory.cache.embed_one(text, scope=customer)
    await memory.add_or_merge(customer, None, NewMemory(text, "fact", importance), vector)


async def add_random_memories(db_url: str, users: int, each: int, model: str) -> None:
    """Other customers' memories: random unit vectors, loaded with COPY."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((users * each, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        async with conn.cursor().copy(
            "COPY agent_embeddings (content, embedding, user_id, importance, embedding_model)"
            " FROM STDIN"
        ) as copy:
            for index, vector in enumerate(vectors):
                row = (f"memory {index}", vector_literal(vector), f"user-{index % users}", 0.5)
                await copy.write_row((*row, model))
        await conn.commit()


async def test_recall_finds_k_rows_of_this_customer_only(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    """Among 1,500 memories of 150 other customers, with the planner kept off its
    shortcuts, the search finds this customer's k nearest and nobody else's."""
    settings = memory_settings(db_url, openai_server)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        name = conn.info.dbname
        await conn.execute(f'ALTER DATABASE "{name}" SET enable_seqscan = off'.encode())
    async with (
        open_pool(db_url, settings) as pool,
        open_memory(pool, db_url, settings, build_chat_model(settings)) as memory,
    ):
        long_term = memory.long_term
        assert long_term is not None
        await add_random_memories(db_url, users=150, each=10, model=long_term.embedding_model)
        for n, text in enumerate(
            [
                "The customer is vegetarian.",
                "The customer lives in Kigali.",
                "The customer owns a red mountain bike.",
                "The customer prefers French.",
                "The customer booked a city bike for Saturday.",
                "The customer has a daughter who rides a kids bike.",
            ]
        ):
            await remember_as(long_term, GRACE, text, 0.5 + n * 0.05)
        await remember_as(long_term, "250788000299", "The customer is vegan.", 0.9)

        vector = await long_term.cache.embed_one("any vegetarian food?", scope=GRACE)
        found = await long_term.nearest(GRACE, vector, 5)
        ranked = await long_term.recall(GRACE, "any vegetarian food?")
        nobody = await long_term.recall("250788000300", "any vegetarian food?")

    assert len(found) == 5 and found[0].content == "The customer is vegetarian."
    assert all("vegan" not in m.content and m.content.startswith("The customer") for m in found)
    assert [m.similarity for m in found] == sorted((m.similarity for m in found), reverse=True)
    assert ranked[0].memory.content == "The customer is vegetarian."
    assert nobody == []
    rows = await query(
        db_url,
        "SELECT recall_count, importance FROM agent_embeddings WHERE content = %s",
        "The customer is vegetarian.",
    )
    assert rows[0]["recall_count"] == 1 and rows[0]["importance"] > 0.5  # refreshed


def extraction(*memories: tuple[str, str, float]) -> str:
    return json.dumps(
        {"memories": [{"content": c, "kind": k, "importance": i} for c, k, i in memories]}
    )


async def test_remember_extracts_merges_near_duplicates_and_reads_each_line_once(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    settings = memory_settings(db_url, openai_server)
    async with (
        open_pool(db_url, settings) as pool,
        open_memory(pool, db_url, settings, build_chat_model(settings)) as memory,
    ):
        assert memory.rememberer is not None and memory.long_term is not None
        conversation = await add_contact(pool, GRACE, conversation=True)
        assert conversation is not None
        await add_transcript(
            pool,
            conversation,
            ("customer", "Hi, I'm Grace. I'm vegetarian and I live in Kigali."),
            ("agent", "Welcome Grace! How can I help?"),
        )
        openai_server.script(
            extraction(
                ("The customer is vegetarian.", "preference", 0.9),
                ("The customer lives in Kigali.", "fact", 0.6),
                ("The customer said hello.", "event", 0.05),
            )
        )
        first = await memory.rememberer.remember(conversation)
        await add_transcript(
            pool,
            conversation,
            ("customer", "As I said, no meat for me. My card is 4111 1111 1111 1111."),
        )
        openai_server.script(
            extraction(
                ("The customer is a vegetarian.", "preference", 0.7),
                ("The customer's card is 4111 1111 1111 1111.", "fact", 0.5),
            )
        )
        second = await memory.rememberer.remember(conversation)
        calls = len(openai_server.requests)
        third = await memory.rememberer.remember(conversation)  # nothing new
        hits = memory.long_term.cache.hits
        # Only thanks and greetings since: nothing durable can be in them, no model call.
        await add_transcript(
            pool,
            conversation,
            ("customer", "ok merci beaucoup!! 👍"),
            ("agent", "You're welcome, Grace! See you on Saturday."),
            ("customer", "Murakoze, bye"),
        )
        small_talk = await memory.rememberer.remember(conversation)
        after_small_talk = len(openai_server.requests)

    assert (first.added, first.merged, second.added, second.merged) == (2, 0, 1, 1)
    assert third.read == 0 and len(openai_server.requests) == calls  # no model call
    assert small_talk.read == 3 and after_small_talk == calls
    request = openai_server.requests[0]
    assert "Grace" in json.dumps(request["messages"]) and "json_schema" in json.dumps(request)
    assert '"title"' not in json.dumps(request["response_format"])  # tokens for nothing
    rows = await query(
        db_url,
        "SELECT content, importance, kind, conversation_id::text AS conversation"
        " FROM agent_embeddings WHERE user_id = %s ORDER BY content",
        GRACE,
    )
    contents = [row["content"] for row in rows]
    assert "The customer is a vegetarian." in contents  # the newer wording won
    assert not any("4111" in content for content in contents)  # cards never kept
    vegetarian = next(row for row in rows if "vegetarian" in row["content"])
    assert vegetarian["importance"] == 0.9 and vegetarian["conversation"] == conversation
    assert hits == 0  # every text was new; a repeated text is served from the cache below
    cached = await query(
        db_url, "SELECT count(*) AS n FROM embedding_cache WHERE scope = %s", GRACE
    )
    assert cached[0]["n"] == 4


async def test_the_cache_embeds_a_text_once(db_url: str, openai_server: FakeOpenAIServer) -> None:
    settings = memory_settings(db_url, openai_server)
    async with (
        open_pool(db_url, settings) as pool,
        open_memory(pool, db_url, settings, build_chat_model(settings)) as memory,
    ):
        assert memory.long_term is not None
        cache = memory.long_term.cache
        first = await cache.embed(["hello", "hello", "where are you?"], scope=GRACE)
        second = await cache.embed(["where are you?", "hello"], scope=GRACE)
        other_scope = await cache.embed(["hello"], scope="someone-else")
    assert (cache.misses, cache.hits) == (3, 2)  # 2 texts, 2 hits, 1 text of someone else
    assert np.allclose(first[2], second[0], atol=1e-6) and np.allclose(first[0], other_scope[0])


async def test_cleanup_expires_caps_and_drops_orphans(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    settings = memory_settings(db_url, openai_server, memory_max_per_user=3)
    async with (
        open_pool(db_url, settings) as pool,
        open_memory(pool, db_url, settings, build_chat_model(settings)) as memory,
    ):
        assert memory.long_term is not None
        await add_contact(pool, GRACE)
        facts = [
            ("The customer is vegetarian.", 0.9),
            ("The customer lives in Kigali.", 0.8),
            ("The customer owns a red mountain bike.", 0.7),
            ("The customer prefers to be contacted in French.", 0.6),
            ("The customer once asked about the weather.", 0.2),
        ]
        for text, importance in facts:
            await remember_as(memory.long_term, GRACE, text, importance)
        await remember_as(memory.long_term, "250788000298", "The customer is gone.", 0.9)
        old = datetime.now(UTC) - timedelta(days=400)
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_embeddings SET updated_at = %s WHERE importance < 0.3", (old,)
            )
            await conn.execute("UPDATE embedding_cache SET last_used_at = %s", (old,))
        jobs = MemoryJobs(pool, MaintenanceOptions.from_settings(settings), memory)
        report = await jobs.cleanup()
    assert report is not None
    assert (report.expired, report.orphaned, report.over_cap) == (1, 1, 1)
    assert report.cache_rows == 6  # every text embedded above
    rows = await query(db_url, "SELECT user_id, importance FROM agent_embeddings ORDER BY 2 DESC")
    assert [(r["user_id"], r["importance"]) for r in rows] == [
        (GRACE, 0.9),
        (GRACE, 0.8),
        (GRACE, 0.7),
    ]


async def test_a_new_embeddings_model_is_a_migration_not_a_crash(
    db_url: str, openai_server: FakeOpenAIServer
) -> None:
    local = memory_settings(db_url, openai_server)
    remote = memory_settings(db_url, openai_server, embeddings="openai:text-embedding-3-small")
    async with (
        open_pool(db_url, local) as pool,
        open_memory(pool, db_url, local, build_chat_model(local)) as memory,
    ):
        assert memory.long_term is not None
        await remember_as(memory.long_term, GRACE, "The customer is vegetarian.", 0.9)
        async with open_memory(pool, db_url, remote, build_chat_model(remote)) as before:
            assert before.long_term is None and before.nodes is not None  # short-term still on
    assert await migrate_memory_embeddings(db_url, remote) == 1
    assert await migrate_memory_embeddings(db_url, remote) == 0  # once
    async with (
        open_pool(db_url, remote) as pool,
        open_memory(pool, db_url, remote, build_chat_model(remote)) as after,
    ):
        assert after.long_term is not None
        ranked = await after.long_term.recall(GRACE, "The customer is vegetarian.")
    assert [r.memory.content for r in ranked] == ["The customer is vegetarian."]
    index: list[dict[str, Any]] = await query(
        db_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'agent_embeddings_hnsw'"
    )
    assert "hnsw" in index[0]["indexdef"] and "vector_cosine_ops" in index[0]["indexdef"]
    assert openai_server.embedding_requests  # the new model did the embedding
