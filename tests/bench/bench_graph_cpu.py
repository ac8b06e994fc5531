"""CPU of one plain turn through the production graph, as a worker runs it, in this process.

    .venv/bin/python -m tests.bench.bench_graph_cpu [--turns 200] [--rounds 5] [--history 0]

The graph is the one `wa-agent serve` compiles (router, memory, answer cache, tools) on
the real checkpointer, and each turn goes through `run_turn` as a worker's does (the
thread read, one run saved at its end, the accounting meter attached), for a new
customer, with the zero-latency fake model (served from a child process, so that its CPU
is not counted). `--history N`: each measured turn is instead a returning customer's
(N+1)-th, its N earlier turns run before the round and not counted, to see what grows
with a conversation's length (its checkpoint, the history the model reads). No webhook,
queue or outbox: those are bench_load's. Printed per round, per turn: CPU of the event
loop's thread (the graph's own Python), CPU of the whole process (adds the router's
thread: the embedding), and wall time.

Why: the service-level figures (bench_load, bench_ab) move by more from one hour to the
next than a change to the graph does; CPU in one process moves less (about ±0.5 ms from
one run to the next here, so compare several runs, interleaved). To compare
two commits, run this file in each tree in turn (`git worktree add /tmp/before COMMIT`,
copy this file there, run it from each tree's root).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from statistics import median

from langchain_core.messages import AIMessage

from graph.composition.conversation_graphs import open_conversation_graphs
from graph.composition.turns import run_turn, thread_config
from graph.context import ConversationContext
from graph.infra.database import create_checkpointer, open_pool
from graph.infra.usage_meter import AccountingHandler, PriceTable, Record
from graph.settings import Settings
from graph.state import customer_message
from server.cli import single_threaded_numerics
from tests.bench.common import bench_postgres, print_header, print_table, tune_benchmark_process
from tests.fakes.openai_server import FakeOpenAIServer

WARM_UP_TURNS = 50


def serve_fake_model(base_url: multiprocessing.SimpleQueue[str], stop: Event) -> None:
    with FakeOpenAIServer() as server:
        base_url.put(server.base_url)
        stop.wait()


@contextmanager
def fake_model_elsewhere() -> Iterator[str]:
    """The fake OpenAI server in a child process; yields its base URL."""
    spawn = multiprocessing.get_context("spawn")
    base_url: multiprocessing.SimpleQueue[str] = spawn.SimpleQueue()
    stop = spawn.Event()
    child = spawn.Process(target=serve_fake_model, args=(base_url, stop), daemon=True)
    child.start()
    try:
        yield base_url.get()
    finally:
        stop.set()
        child.join(10)


def bench_settings(db_url: str, openai_url: str) -> Settings:
    """The defaults `make serve` runs with, on this database and the fake model."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=db_url,
        openai_api_key="sk-test",
        openai_base_url=openai_url + "/v1",
        log_level="WARNING",
    )


async def measure(turns: int, rounds: int, history: int) -> list[tuple[float, float, float]]:
    """(loop thread CPU ms, process CPU ms, wall ms) per turn, one row per round."""
    with fake_model_elsewhere() as openai_url:
        async with bench_postgres() as postgres:
            db_url = await postgres.fresh_database("graph")
            settings = bench_settings(db_url, openai_url)
            async with (
                open_pool(db_url, settings) as pool,
                open_conversation_graphs(settings, db_url, pool, tool_limiter=None) as graphs,
            ):
                graph = graphs.compile(create_checkpointer(pool))
                agents = dict(await graphs.agents.current())
                await graphs.warm_up()
                records: list[Record] = []  # the meter every worker run carries
                meter = AccountingHandler(PriceTable(settings.model_prices), records.append)

                async def turn(number: int, part: int = 0) -> None:
                    conversation = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{number}"))
                    run_id, wa_id = str(uuid.uuid4()), f"25079{number:07d}"
                    message = customer_message(
                        f"graph question {number} part {part}", wamid=f"wamid.{run_id}", kind="text"
                    )
                    context = ConversationContext(
                        conversation_id=conversation, wa_id=wa_id, agents=agents
                    )
                    config = thread_config(conversation, run_id=run_id, wa_id=wa_id)
                    config["callbacks"] = [meter]
                    outcome = await run_turn(graph, config, context, [message], run_id)
                    answer = outcome.state["messages"][-1]
                    if not (isinstance(answer, AIMessage) and answer.name and outcome.replies):
                        raise RuntimeError("a turn was not answered by an agent")

                for number in range(WARM_UP_TURNS):
                    await turn(number)
                rows = []
                for round_number in range(rounds):
                    numbers = [(round_number + 1) * 100_000 + n for n in range(turns)]
                    for number in numbers:
                        for part in range(history):
                            await turn(number, part)
                    thread, process = time.thread_time(), time.process_time()
                    wall = time.perf_counter()
                    for number in numbers:
                        await turn(number, history)
                    rows.append(
                        (
                            (time.thread_time() - thread) * 1000 / turns,
                            (time.process_time() - process) * 1000 / turns,
                            (time.perf_counter() - wall) * 1000 / turns,
                        )
                    )
                return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--history", type=int, default=0)
    args = parser.parse_args()
    if not (1 <= args.turns <= 5000 and 1 <= args.rounds <= 20 and 0 <= args.history <= 100):
        parser.error("turns must be in [1, 5000], rounds in [1, 20], history in [0, 100]")
    tune_benchmark_process()
    single_threaded_numerics()  # as in every service process
    print_header(
        "One plain turn through the production graph: CPU per turn, in this process",
        [
            f"{args.rounds} rounds of {args.turns} "
            + (f"turns after {args.history} earlier ones each" if args.history else "new customers")
            + f", after {WARM_UP_TURNS} warm-up"
        ],
    )
    rows = asyncio.run(measure(args.turns, args.rounds, args.history))
    table: list[list[object]] = [
        [f"round {i + 1}", f"{loop:.2f}", f"{process:.2f}", f"{wall:.2f}"]
        for i, (loop, process, wall) in enumerate(rows)
    ]
    table.append(["median", *(f"{median(column):.2f}" for column in zip(*rows, strict=True))])
    print_table(["", "loop thread CPU ms", "process CPU ms", "wall ms"], table)


if __name__ == "__main__":
    main()
