"""Answer cache: hit rate on repeated questions, wrong hits, tokens saved, latency.

1. A replayed workload (tests/bench/answer_cache_workload.py): 1,000 customer questions
   in four languages, a third of them repeating an earlier question in other words.
   Each question goes through the real cache (normalise, guard, local MiniLM, pgvector
   on embedded Postgres, event rows): a miss stores the "model's" answer for its key,
   a hit is checked against the key it was asked with. Goals: hit rate on the repeats
   ≥ 60 %, no wrong hit, a cached answer in under 30 ms at p95.
2. The near-miss set of tests/data/answer_cache_pairs.jsonl (goal: 0 wrong hits) and
   how many of its paraphrases are served.

Tokens saved: each hit avoids one model answer, counted with the model's tokenizer
(o200k_base) as the agent's system prompt + the question + a 60-token answer. That is
a lower bound — a real turn also sends tool schemas and history, and a knowledge-base
answer takes two model calls.

    .venv/bin/python -m tests.bench.bench_answer_cache [--questions 1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from graph.composition.agent_configs import load_default_agents
from graph.composition.answer_cache import cache_config
from graph.composition.prompts import load_prompts
from graph.infra.embeddings import shared_local_minilm
from graph.settings import Settings
from graph.state import customer_message
from nodes.answer_cache import AnswerCache, AnswerCacheStore
from nodes.answer_cache.cache import Question, cacheable_question
from nodes.memory.tokens import build_token_counter
from tests.bench.answer_cache_workload import WorkloadQuestion, build_workload
from tests.bench.common import (
    bench_postgres,
    measuring,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.support import REPO

PAIRS = REPO / "tests" / "data" / "answer_cache_pairs.jsonl"
ANSWER_TOKENS = 60
GOAL_HIT_RATE = 0.60
GOAL_P95_MS = 30.0


def as_question(text: str) -> Question | None:
    return cacheable_question([customer_message(text, wamid="bench", kind="text")])


def tokens_per_answer(settings: Settings) -> dict[str, int]:
    """The lower bound of what one model answer costs, per agent (see the docstring)."""
    counter = build_token_counter(settings.model)
    common = load_prompts(settings.business_name).assistant
    agents = load_default_agents(settings.business_name)
    return {
        name: counter.count_text(common) + counter.count_text(agent.system_prompt)
        for name, agent in agents.items()
    }


async def replay(
    cache: AnswerCache, workload: list[WorkloadQuestion], prompt_tokens: dict[str, int]
) -> dict[str, float]:
    hits = repeat_hits = wrong = refused = 0
    saved = 0
    hit_ms: list[float] = []
    miss_ms: list[float] = []
    counter = build_token_counter("openai:gpt-4o-mini")
    for item in workload:
        question = as_question(item.text)
        if question is None:
            refused += 1
            continue
        started = time.perf_counter()
        found = await cache.lookup(question, agent=item.agent, agent_stamp="bench")
        elapsed = (time.perf_counter() - started) * 1000
        if found.served is not None:
            hit_ms.append(elapsed)
            hits += 1
            saved += found.served.tokens_saved
            repeat_hits += int(item.repeat)
            wrong += int(found.served.answer != f"answer for {item.key}")
            continue
        miss_ms.append(elapsed)
        cost = prompt_tokens[item.agent] + counter.count_text(item.text) + ANSWER_TOKENS
        await cache.remember(
            question,
            agent=item.agent,
            stamp=found.stamp,
            answer=f"answer for {item.key}",
            tokens=cost,
            tools_used={"search_knowledge_base"},
            grounded_on=[f"knowledge base: answer for {item.key}"],
        )
    repeats = sum(item.repeat for item in workload)
    return {
        "questions": len(workload),
        "repeats": repeats,
        "refused": refused,
        "hits": hits,
        "repeat_hits": repeat_hits,
        "wrong": wrong,
        "saved": saved,
        "hit_p50": percentile(hit_ms, 50),
        "hit_p95": percentile(hit_ms, 95),
        "miss_p50": percentile(miss_ms, 50),
        "miss_p95": percentile(miss_ms, 95),
    }


def embedding_ms(workload: list[WorkloadQuestion], n: int = 200) -> tuple[float, float]:
    """The local model alone, one question a call (p50, p95): the floor of any lookup."""
    model = shared_local_minilm()
    samples = []
    for item in workload[:n]:
        started = time.perf_counter()
        model.embed_query(item.text)
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 50), percentile(samples, 95)


async def near_misses(cache: AnswerCache) -> tuple[int, int, int, int]:
    """(near misses, wrong hits, paraphrases, served) on the pairs file."""
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    wrong = served = 0
    for index, pair in enumerate(pairs):
        cached, asked = as_question(pair["cached"]), as_question(pair["asked"])
        assert cached is not None and asked is not None, pair
        agent = f"pair{index}"
        first = await cache.lookup(cached, agent=agent, agent_stamp="pairs")
        await cache.remember(
            cached,
            agent=agent,
            stamp=first.stamp,
            answer="cached",
            tokens=1,
            tools_used=set(),
            grounded_on=["cached"],
        )
        hit = (await cache.lookup(asked, agent=agent, agent_stamp="pairs")).served is not None
        wrong += int(hit and pair["kind"] == "near_miss")
        served += int(hit and pair["kind"] == "paraphrase")
    near = sum(p["kind"] == "near_miss" for p in pairs)
    return near, wrong, len(pairs) - near, served


async def main(questions: int, seed: int) -> None:
    tune_benchmark_process()
    settings = Settings(_env_file=None)
    workload = build_workload(total=questions, seed=seed)
    print_header(
        "Answer cache",
        [
            f"{questions} questions (seed {seed}), {sum(q.repeat for q in workload)} repeats",
            "embedded Postgres 18 + pgvector, local MiniLM (int8 ONNX), one process",
            f"threshold {settings.answer_cache_threshold}",
        ],
    )
    shared_local_minilm().warm_up()
    prompt_tokens = tokens_per_answer(settings)
    async with bench_postgres() as pg:
        db_url = await pg.fresh_database("cache")
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            db_url,
            connection_class=AsyncConnection[DictRow],
            kwargs={"row_factory": dict_row, "autocommit": True},
            open=False,
        )
        async with pool:
            cache = AnswerCache(
                AnswerCacheStore(pool), shared_local_minilm(), cache_config(settings)
            )
            with measuring():
                figures = await replay(cache, workload, prompt_tokens)
                near, near_wrong, paraphrases, served = await near_misses(cache)
                embed_p50, embed_p95 = embedding_ms(workload)
    repeat_rate = figures["repeat_hits"] / figures["repeats"]
    print_table(
        ["figure", "value", "goal"],
        [
            [
                "hit rate on repeats",
                f"{repeat_rate:.1%} ({figures['repeat_hits']:.0f}/{figures['repeats']:.0f})",
                f">= {GOAL_HIT_RATE:.0%}",
            ],
            [
                "hits on first-time questions",
                f"{figures['hits'] - figures['repeat_hits']:.0f}",
                "0",
            ],
            ["wrong hits (workload)", f"{figures['wrong']:.0f}", "0"],
            ["wrong hits (near-miss set)", f"{near_wrong}/{near}", "0"],
            ["paraphrases served (pairs set)", f"{served}/{paraphrases}", ""],
            ["not looked up (guard)", f"{figures['refused']:.0f}", ""],
            ["model tokens saved", f"{figures['saved']:.0f}", ""],
            ["cached answer p50 ms", f"{figures['hit_p50']:.1f}", ""],
            ["cached answer p95 ms", f"{figures['hit_p95']:.1f}", f"< {GOAL_P95_MS:.0f}"],
            ["miss (lookup) p50 ms", f"{figures['miss_p50']:.1f}", ""],
            ["miss (lookup) p95 ms", f"{figures['miss_p95']:.1f}", ""],
            ["of which embedding p50 / p95 ms", f"{embed_p50:.1f} / {embed_p95:.1f}", ""],
        ],
    )
    print(f"tokens per model answer (lower bound): {prompt_tokens}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.questions, arguments.seed))
