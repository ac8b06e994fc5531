"""Conversation memory: what recall costs, what the model reads per turn, what local
embedding costs, and what checkpoint retention saves.

1. Recall latency with 100k memories over 1,000 customers (goal: p95 under 20 ms):
   the search alone (exact, over the customer's own rows) and the whole recall (embed
   the message, search, rank, refresh). The memories are random unit vectors generated
   inside Postgres (seconds, not COPY of 150 MB of text); the HNSW index is built
   afterwards, as a bulk load would.
2. Prompt tokens per turn at turns 5, 50 and 200 of a scripted conversation (goal:
   flat, under 2,000), counted with tiktoken's o200k_base (gpt-4o's own, bundled by
   bpe-openai): system prompt (with recalled memories and the summary), history, and
   the tool schemas sent with it; with the memory budget and without it.
3. Local embedding latency per message (all-MiniLM-L6-v2 int8, one message a call),
   and the same text through the Postgres embedding cache.
4. Checkpoint tables after 1,000 turns (20 conversations × 50), without retention and
   after it (every thread idle: each keeps its latest checkpoint), after VACUUM FULL.

    .venv/bin/python -m tests.bench.bench_memory [--memories 100000] [--users 1000]
        [--queries 300] [--turns 200] [--conversations 20] [--turns-each 50]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg

from graph.composition.memory import open_memory
from graph.infra.database import open_pool
from graph.infra.embeddings import LocalMiniLMEmbeddings
from nodes.memory.store import LongTermMemory, NewMemory
from nodes.memory.tokens import TOKENS_PER_MESSAGE, build_token_counter
from server.runner.memory_jobs import prune_idle_checkpoints
from tests.bench.common import (
    BenchPostgres,
    bench_postgres,
    measuring,
    ms,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.bench.memory_conversation import (
    CUSTOMER,
    MESSAGES,
    REPLIES,
    bench_graph,
    chat_model,
    settings_for,
)
from tests.fakes.openai_server import FakeOpenAIServer

GOAL_RECALL_P95_MS = 20.0
GOAL_PROMPT_TOKENS = 2000
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


# --- 1. recall ------------------------------------------------------------------------


async def load_memories(db_url: str, memories: int, users: int) -> float:
    """Random unit vectors made by Postgres, then the HNSW index built over them."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("DROP INDEX agent_embeddings_hnsw")
        await conn.execute(
            """
            INSERT INTO agent_embeddings (content, embedding, user_id, kind, importance,
                embedding_model, created_at, updated_at)
            SELECT 'The customer said thing number ' || g,
                l2_normalize(array(SELECT random() - 0.5 FROM generate_series(1, 384)
                                   WHERE g > 0)::vector(384)),
                'user-' || (g %% %(users)s), 'fact', random(), 'local:minilm/384',
                now() - random() * interval '365 days', now() - random() * interval '365 days'
            FROM generate_series(1, %(memories)s) g
            """,
            {"users": users, "memories": memories},
        )
        started = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        await conn.execute(
            "CREATE INDEX agent_embeddings_hnsw ON agent_embeddings"
            " USING hnsw (embedding vector_cosine_ops)"
        )
        await conn.execute("ANALYZE agent_embeddings")
        return time.perf_counter() - started


async def time_search(
    memory: LongTermMemory, vectors: Sequence[list[float]], users: int, queries: int
) -> tuple[list[float], float]:
    """Seconds per vector search of one customer's candidates; mean rows returned."""
    rng = random.Random(11)
    samples, rows = [], 0
    for index in range(queries):
        user = f"user-{rng.randrange(users)}"
        started = time.perf_counter()
        found = await memory.nearest(user, vectors[index % len(vectors)], memory.policy.candidates)
        samples.append(time.perf_counter() - started)
        rows += len(found)
    return samples, rows / queries


async def time_recall(memory: LongTermMemory, users: int, queries: int) -> list[float]:
    """Seconds per whole recall (cache lookup, embedding on a miss, search, refresh)."""
    rng = random.Random(13)
    samples = []
    for index in range(queries):
        user = f"user-{rng.randrange(users)}"
        started = time.perf_counter()
        await memory.recall(user, MESSAGES[index % len(MESSAGES)])
        samples.append(time.perf_counter() - started)
    return samples


async def plan_of(
    db_url: str, memory: LongTermMemory, vector: list[float], options: Sequence[str] = ()
) -> str:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        for option in options:
            await conn.execute(f"SET {option}".encode())
        cur = await conn.execute(
            "EXPLAIN SELECT langchain_id FROM agent_embeddings WHERE user_id = 'user-1'"
            " AND embedding_model = %s ORDER BY (embedding <=> %s::vector) + 0 LIMIT 20",
            (memory.embedding_model, str(vector)),
        )
        lines = [str(row[0]) for row in await cur.fetchall()]
    scan = next((line for line in lines if "Scan" in line), lines[0])
    return scan.strip().removeprefix("->").split("  (")[0].strip()


def percentiles(samples: Sequence[float]) -> list[str]:
    return [ms(percentile(samples, 50)), ms(percentile(samples, 95))]


async def recall_figures(pg: BenchPostgres, args: argparse.Namespace) -> None:
    db_url = await pg.fresh_database("recall")
    started = time.perf_counter()
    index_s = await load_memories(db_url, args.memories, args.users)
    print(
        f"{args.memories:,} memories over {args.users:,} customers loaded in "
        f"{time.perf_counter() - started:.0f} s (HNSW build {index_s:.0f} s)\n"
    )
    with FakeOpenAIServer() as openai:
        settings = settings_for(db_url, openai)
        async with (
            open_pool(db_url, settings) as pool,
            open_memory(pool, db_url, settings, chat_model(openai)) as parts,
        ):
            memory = parts.long_term
            assert memory is not None
            vectors = [await memory.cache.embed_one(text) for text in MESSAGES]
            await time_search(memory, vectors, args.users, 30)  # warm up
            rows: list[list[object]] = []
            with measuring():
                search, found = await time_search(memory, vectors, args.users, args.queries)
                recall = await time_recall(memory, args.users, args.queries)
            plan = await plan_of(db_url, memory, vectors[0])
            rows.append(["search (production indexes)", *percentiles(search), f"{found:.1f}", plan])
            rows.append(["whole recall (embed + search + refresh)", *percentiles(recall), "", ""])
    print_table(
        ["recall", "p50 ms", "p95 ms", f"rows (k={memory.policy.candidates})", "plan"], rows
    )
    verdict = "met" if percentile(recall, 95) * 1000 < GOAL_RECALL_P95_MS else "NOT met"
    print(f"goal p95 < {GOAL_RECALL_P95_MS:.0f} ms for the whole recall: {verdict}\n")


# --- 2. prompt tokens -------------------------------------------------------------------


def request_tokens(request: dict[str, Any]) -> tuple[int, int, int]:
    """(system, history, tool schemas) tokens of one chat request, as gpt-4o counts."""
    counter = build_token_counter("openai:gpt-4o-mini")
    system, *history = request["messages"]
    system_tokens = TOKENS_PER_MESSAGE + counter.count_text(system["content"])
    history_tokens = 0
    for message in history:
        text = message.get("content") or ""
        calls = message.get("tool_calls")
        history_tokens += TOKENS_PER_MESSAGE + counter.count_text(
            text + (json.dumps(calls) if calls else "")
        )
    tools = counter.count_text(json.dumps(request.get("tools") or []))
    return system_tokens, history_tokens, tools


async def conversation_tokens(
    pg: BenchPostgres, turns: int, *, memory: bool
) -> list[tuple[int, int, int]]:
    db_url = await pg.fresh_database("tokens")
    with FakeOpenAIServer() as agents, FakeOpenAIServer() as writer:
        agents.script(*(REPLIES[n % len(REPLIES)] for n in range(turns)))
        async with bench_graph(db_url, agents, writer, memory=memory) as bench:
            if memory and bench.memory.long_term is not None:
                for text in (
                    "The customer is vegetarian.",
                    "The customer lives in Kimihurura.",
                    "The customer has a daughter aged 9.",
                    "The customer prefers MoMo.",
                ):
                    vector = await bench.memory.long_term.cache.embed_one(text, scope=CUSTOMER)
                    await bench.memory.long_term.add_or_merge(
                        CUSTOMER, None, NewMemory(text, "fact", 0.8), vector
                    )
            thread = str(uuid.uuid4())
            for n in range(turns):
                await bench.say(thread, f"{MESSAGES[n % len(MESSAGES)]} ({n + 1})")
        return [request_tokens(request) for request in agents.requests]


async def prompt_token_figures(pg: BenchPostgres, args: argparse.Namespace) -> None:
    with_memory = await conversation_tokens(pg, args.turns, memory=True)
    without = await conversation_tokens(pg, args.turns, memory=False)
    rows = []
    for turn in (5, 50, args.turns):
        if turn > args.turns:
            continue
        for label, figures in (
            ("memory (1,500-token budget)", with_memory),
            ("no memory", without),
        ):
            system, history, tools = figures[turn - 1]
            rows.append(
                [turn, label, system, history, tools, system + history, system + history + tools]
            )
    print_table(["turn", "", "system", "history", "tool schemas", "prompt", "prompt + tools"], rows)
    worst = max(s + h for s, h, _ in with_memory)
    verdict = "met" if worst < GOAL_PROMPT_TOKENS else "NOT met"
    print(
        f"largest prompt (system + history) over {args.turns} turns with memory: {worst} "
        f"tokens; goal < {GOAL_PROMPT_TOKENS:,}: {verdict}\n"
    )


# --- 3. embeddings ----------------------------------------------------------------------


async def embedding_figures(pg: BenchPostgres) -> None:
    model = LocalMiniLMEmbeddings()
    model.warm_up()
    texts = [f"{text} ({n})" for n, text in enumerate(MESSAGES * 14)]
    with measuring():
        local = []
        for text in texts:
            started = time.perf_counter()
            model.embed_query(text)
            local.append(time.perf_counter() - started)
    db_url = await pg.fresh_database("cache")
    with FakeOpenAIServer() as openai:
        settings = settings_for(db_url, openai)
        async with (
            open_pool(db_url, settings) as pool,
            open_memory(pool, db_url, settings, chat_model(openai)) as parts,
        ):
            assert parts.long_term is not None
            cache = parts.long_term.cache
            misses: list[float] = []
            hits: list[float] = []
            with measuring():
                for samples in (misses, hits):
                    for text in texts:
                        started = time.perf_counter()
                        await cache.embed_one(text, scope=CUSTOMER)
                        samples.append(time.perf_counter() - started)
    print_table(
        ["embedding one message", "p50 ms", "p95 ms"],
        [
            ["local MiniLM (int8 ONNX, 1 thread)", *percentiles(local)],
            ["through the cache, first time (embed + insert)", *percentiles(misses)],
            ["through the cache, seen before (one SELECT)", *percentiles(hits)],
        ],
    )


# --- 4. checkpoints ---------------------------------------------------------------------


async def checkpoint_size(db_url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        total = 0
        for table in CHECKPOINT_TABLES:
            cur = await conn.execute("SELECT pg_total_relation_size(%s)", (table,))
            row = await cur.fetchone()
            total += int(row[0]) if row else 0
        cur = await conn.execute("SELECT count(*) FROM checkpoints")
        row = await cur.fetchone()
    return total, int(row[0]) if row else 0


async def vacuum_full(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for table in CHECKPOINT_TABLES:
            await conn.execute(f"VACUUM FULL {table}".encode())


async def checkpoint_figures(pg: BenchPostgres, args: argparse.Namespace) -> None:
    db_url = await pg.fresh_database("checkpoints")
    turns = args.conversations * args.turns_each
    with FakeOpenAIServer() as agents, FakeOpenAIServer() as writer:
        async with bench_graph(db_url, agents, writer) as bench:
            threads = [str(uuid.uuid4()) for _ in range(args.conversations)]
            started = time.perf_counter()
            for n, thread in itertools.product(range(args.turns_each), threads):
                await bench.say(thread, MESSAGES[n % len(MESSAGES)], customer=f"c-{thread[:8]}")
            elapsed = time.perf_counter() - started
            await vacuum_full(db_url)
            before, rows_before = await checkpoint_size(db_url)
            started = time.perf_counter()
            report = await prune_idle_checkpoints(bench.pool, idle_for=timedelta(0))
            pruned_s = time.perf_counter() - started
            await vacuum_full(db_url)
            after, rows_after = await checkpoint_size(db_url)
    mib = 1024 * 1024
    print(
        f"{turns:,} turns ({args.conversations} conversations × {args.turns_each}) in "
        f"{elapsed:.0f} s; retention pruned {report.threads} threads in {pruned_s:.1f} s\n"
    )
    print_table(
        ["checkpoint tables (after VACUUM FULL)", "checkpoints", "size"],
        [
            ["without retention", f"{rows_before:,}", f"{before / mib:.1f} MiB"],
            ["with retention (all threads idle)", f"{rows_after:,}", f"{after / mib:.2f} MiB"],
        ],
    )


async def main(args: argparse.Namespace) -> None:
    print_header("Conversation memory", ["embedded Postgres 18 + pgvector, one process"])
    async with bench_postgres() as pg:
        await recall_figures(pg, args)
        await prompt_token_figures(pg, args)
        await embedding_figures(pg)
        await checkpoint_figures(pg, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--turns-each", type=int, default=50)
    return parser.parse_args()


if __name__ == "__main__":
    tune_benchmark_process()
    asyncio.run(main(parse_args()))
