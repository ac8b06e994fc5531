"""Concurrent conversations through the compiled graph: one shared checkpointer vs one
per concurrent slot.

    .venv/bin/python -m tests.bench.bench_checkpointer_concurrency
        [--concurrency 1 10 50] [--conversations 100] [--turns 3]

No HTTP in front: `--conversations` conversations (each its own thread_id, `--turns`
turns each) are run by C concurrent tasks calling the compiled graph (`ainvoke`) in
this process, on the service's pool (`graph.infra.database.open_pool`, default settings).
The graph is the service's, from its own factory (`graph.composition.
conversation_graphs.open_conversation_graphs`: router, agents, tools), compiled once per saver:

- shared: ONE compiled graph with ONE `AsyncPostgresSaver`, called by all C tasks;
- per slot: `graph.composition.graph_pool.GraphPool(size=C)`, each turn borrows a graph with its own
  saver (what the worker does).

The graph's model is the real ChatOpenAI pointed at FakeOpenAIServer (no delay), which
runs in a child process so its threads take no GIL from the graph. Each measurement
gets a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from graph.composition.builder import ConversationGraph
from graph.composition.conversation_graphs import open_conversation_graphs
from graph.composition.graph_pool import GraphPool
from graph.context import ConversationContext
from graph.infra.database import Pool, open_pool
from graph.settings import Settings
from graph.state import customer_message
from tests.bench.common import (
    BenchPostgres,
    measuring,
    ms,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.fake_model import BASE_URL_PREFIX
from tests.bench.processes import (
    CpuMeter,
    ProcessGroup,
    process_group,
    wait_for_quiet,
)

MODES = ("shared", "per slot")


@dataclass(frozen=True)
class Result:
    mode: str
    concurrency: int
    conversations: int
    wall: float
    turns: list[float]  # seconds per turn
    other_cores: float  # CPU used by the rest of the machine meanwhile

    @property
    def per_second(self) -> float:
        return self.conversations / self.wall


Borrow = Any  # () -> async context manager yielding a ConversationGraph


async def start_fake_model(group: ProcessGroup) -> str:
    """The fake model in a child process; its base URL once it listens (30 s at most)."""
    process = group.start("fake-model", ["-m", "tests.bench.fake_model"], os.environ)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        group.check_alive()
        for line in process.log_path.read_text(errors="replace").splitlines():
            if line.startswith(BASE_URL_PREFIX):
                return line.removeprefix(BASE_URL_PREFIX)
        await asyncio.sleep(0.05)
    raise TimeoutError("the fake model did not start within 30 s")


@asynccontextmanager
async def open_borrower(
    mode: str, settings: Settings, db_url: str, pool: Pool, concurrency: int
) -> AsyncIterator[Borrow]:
    """How a task gets its graph for one turn: the GraphPool's `borrow` (per slot), or
    always the same graph (shared)."""
    slots = concurrency if mode == "per slot" else 1
    sized = settings.model_copy(update={"worker_concurrency": slots, "database_url": db_url})
    async with open_conversation_graphs(sized, db_url, pool, tool_limiter=None) as opened:
        graphs: GraphPool = opened.pooled(pool, slots)
        if mode == "per slot":
            yield graphs.borrow
            return
        async with graphs.borrow() as shared:

            @asynccontextmanager
            async def borrow_shared() -> AsyncIterator[ConversationGraph]:
                yield shared

            yield borrow_shared


SCRIPT = ("where is my order?", "it still has not arrived", "ok thank you")


async def converse(borrow: Borrow, turns: int, latencies: list[float]) -> None:
    """One conversation: its own thread_id, `turns` turns in order."""
    conversation_id = str(uuid.uuid4())
    wa_id = f"2559{uuid.uuid4().int % 10**8:08d}"
    config: RunnableConfig = {"configurable": {"thread_id": conversation_id, "wa_id": wa_id}}
    context = ConversationContext(conversation_id=conversation_id, wa_id=wa_id)
    for turn in range(turns):
        text = SCRIPT[turn % len(SCRIPT)]
        message = customer_message(text, wamid=f"wamid.ckpt-{uuid.uuid4().hex}", kind="text")
        state = {"messages": [message], "run_id": str(uuid.uuid4()), "replies": []}
        started = time.perf_counter()
        graph_cm: AbstractAsyncContextManager[ConversationGraph] = borrow()
        async with graph_cm as graph:
            result = await graph.ainvoke(state, config, context=context)
        latencies.append(time.perf_counter() - started)
        if not result.get("replies"):
            raise RuntimeError(f"turn {turn} of {conversation_id} produced no reply")


async def run_conversations(borrow: Borrow, count: int, concurrency: int, turns: int) -> Any:
    latencies: list[float] = []
    todo = iter(range(count))

    async def task() -> None:
        for _ in todo:
            await converse(borrow, turns, latencies)

    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def measure(
    postgres: BenchPostgres,
    cpu: CpuMeter,
    settings: Settings,
    mode: str,
    concurrency: int,
    args: Any,
) -> Result:
    db_url = await postgres.fresh_database("ckpt")
    async with (
        open_pool(db_url, settings) as pool,
        open_borrower(mode, settings, db_url, pool, concurrency) as borrow,
    ):
        await run_conversations(borrow, min(concurrency, 5), min(concurrency, 5), 1)  # warm-up
        await wait_for_quiet()
        with measuring():
            cpu.start()
            wall, latencies = await run_conversations(
                borrow, args.conversations, concurrency, args.turns
            )
            cpu.stop()
    return Result(mode, concurrency, args.conversations, wall, latencies, cpu.other_cores)


def report(results: Sequence[Result], args: Any, pool_max: int) -> None:
    print(
        f"{args.conversations} conversations × {args.turns} turns; "
        f"pool max {pool_max} connections; turn latency in ms"
    )
    rows = []
    by_key = {(r.mode, r.concurrency): r for r in results}
    for r in results:
        gain = r.per_second / by_key[("shared", r.concurrency)].per_second
        rows.append(
            [
                r.concurrency,
                r.mode,
                f"{r.per_second:.1f}",
                f"{r.per_second * args.turns:.1f}",
                ms(percentile(r.turns, 50)),
                ms(percentile(r.turns, 95)),
                f"{gain:.2f}×" if r.mode != "shared" else "",
                f"{r.other_cores:.2f}",
            ]
        )
    headers = ["concurrent", "checkpointer", "conv/s", "turns/s", "turn p50", "turn p95"]
    print_table([*headers, "gain vs shared", "other load"], rows)
    print("'other load' = cores used by the rest of the machine while measuring.\n")


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_checkpointer_concurrency: one shared AsyncPostgresSaver vs one per slot",
        [
            "this process: the service's compiled graph (graph.composition.conversation_graphs."
            "open_conversation_graphs), called concurrently with ainvoke; pool from "
            "graph.infra.database.open_pool",
            "child process: FakeOpenAIServer (no delay, echo), reached by ChatOpenAI",
        ],
    )
    results = []
    with process_group() as group:
        base_url = await start_fake_model(group)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, openai_api_key="sk-test", openai_base_url=base_url + "/v1"
        )
        async with open_postgres() as postgres:
            print(f"postgres: embedded {await postgres.server_version()}\n", flush=True)
            cpu = CpuMeter(group.pids, postgres.data_dir)
            for concurrency, mode in itertools.product(args.concurrency, MODES):
                results.append(await measure(postgres, cpu, settings, mode, concurrency, args))
                print(f"  {concurrency} concurrent, {mode}: done", flush=True)
    print()
    report(results, args, settings.db_pool_max_size)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args(argv)
    if not all(1 <= c <= 200 for c in args.concurrency):
        parser.error("concurrency must be in 1..200")
    if not (1 <= args.conversations <= 2000 and 1 <= args.turns <= 20):
        parser.error("conversations must be in 1..2000 and turns in 1..20")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
