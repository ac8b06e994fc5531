"""Our service against the naive adapter of public templates, same traffic, same run.

    .venv/bin/python -m tests.bench.bench_naive_adapter [--ours 0 1] [--rate 20]
        [--duration 10] [--conversations 400]

The naive adapter (tests/bench/naive_adapter.py) is one uvicorn process that runs the
same graph in a FastAPI BackgroundTasks call and POSTs the reply with httpx: no inbox,
no queue, no dedupe, one checkpointer. Ours runs as `wa-agent serve` with its
in-process worker (`--ours 0`: one process, like the naive one) and/or as `serve
--no-worker` beside N `wa-agent worker` processes (`--ours N`). Every server gets a
fresh database and the same two measurements as bench_end_to_end (latency at a fixed
rate, throughput at saturation); ours is reported as ratios to the naive adapter.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from tests.bench.common import (
    BenchGraphAPI,
    BenchPostgres,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.e2e import (
    LATENCY_HEADERS,
    THROUGHPUT_HEADERS,
    Measured,
    measure_both,
    start_naive,
    start_service,
)
from tests.bench.processes import (
    CpuMeter,
    free_port,
    process_group,
    service_environment,
)
from tests.fakes.openai_server import FakeOpenAIServer

GOAL_LATENCY_RATIO = 1.5
NAIVE = -1  # the naive adapter, in the list of targets beside worker counts


def label(target: int) -> str:
    if target == NAIVE:
        return "naive adapter (1 process)"
    if target == 0:
        return "ours: serve + in-process worker (1 process)"
    return f"ours: serve --no-worker + {target} worker process(es)"


async def run_target(
    postgres: BenchPostgres,
    fakes: tuple[FakeOpenAIServer, BenchGraphAPI],
    target: int,
    run: int,
    args: argparse.Namespace,
) -> Measured:
    openai, graph_api = fakes
    db_url = await postgres.fresh_database("naive" if target == NAIVE else f"ours_{target}")
    port = free_port()
    env = service_environment(db_url, openai.base_url, graph_api.base_url, PORT=str(port))
    with process_group() as group:
        if target == NAIVE:
            url = await start_naive(group, env, port)
        else:
            url = await start_service(group, env, db_url, port, target)
        cpu = CpuMeter(group.pids, postgres.data_dir)
        phases = (args.rate, args.duration, args.conversations)
        measured = await measure_both(url, graph_api, cpu, run, phases)
        group.check_alive()
    return measured


def report(results: dict[int, Measured], args: argparse.Namespace) -> None:
    rows = [[label(t), *m.latency.cells()] for t, m in results.items()]
    print(f"Latency, open loop at {args.rate:g} conversations/s for {args.duration:g} s (ms)")
    print_table(["server", *LATENCY_HEADERS], rows)
    rows = [[label(t), *m.throughput.cells()] for t, m in results.items()]
    print(f"Throughput, {args.conversations} conversations × 1 message, offered at once")
    print_table(["server", *THROUGHPUT_HEADERS], rows)
    naive = results[NAIVE]
    naive_p50 = percentile(naive.latency.end_to_end, 50)
    naive_p95 = percentile(naive.latency.end_to_end, 95)
    ratios = []
    for target, ours in results.items():
        if target == NAIVE:
            continue
        p50 = percentile(ours.latency.end_to_end, 50) / naive_p50
        p95 = percentile(ours.latency.end_to_end, 95) / naive_p95
        tput = ours.throughput.per_second / naive.throughput.per_second
        verdict = "met" if p50 < GOAL_LATENCY_RATIO and tput > 1 else "NOT met"
        ratios.append([label(target), f"{p50:.2f}×", f"{p95:.2f}×", f"{tput:.2f}×", verdict])
    print("Ours as ratios to the naive adapter (latency: lower is better; throughput: higher)")
    headers = ["server", "p50 ours/naive", "p95 ours/naive", "conv/s ours/naive"]
    print_table([*headers, f"goal (<{GOAL_LATENCY_RATIO:g}× p50, >1× conv/s)"], ratios)


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_naive_adapter: our service vs the naive BackgroundTasks adapter",
        [
            "naive: `python -m tests.bench.naive_adapter` subprocess (uvicorn, same graph, "
            "same ChatOpenAI, one AsyncPostgresSaver, httpx reply)",
            "ours: `wa-agent serve` (+ `wa-agent worker`) subprocesses, defaults, "
            "WA_AGENT_COALESCE_MS=0",
            "this process: load generator (raw asyncio, one connection per POST), "
            "FakeOpenAIServer (no delay, echo), FakeGraphAPI (TCP_NODELAY)",
            "each conversation: a new customer, one text; 20 warm-up conversations first",
        ],
    )
    results: dict[int, Measured] = {}
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        async with open_postgres() as postgres:
            print(f"postgres: embedded {await postgres.server_version()}\n", flush=True)
            for index, target in enumerate([NAIVE, *args.ours]):
                fakes = (openai, graph_api)
                results[target] = await run_target(postgres, fakes, target, 10 * index, args)
                print(f"  {label(target)} done", flush=True)
    print()
    report(results, args)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ours",
        type=int,
        nargs="+",
        default=[0, 1],
        help="our shapes: 0 = serve with its in-process worker, N = serve + N workers",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase, per second")
    parser.add_argument("--duration", type=float, default=10.0, help="latency phase, seconds")
    parser.add_argument("--conversations", type=int, default=400, help="throughput phase")
    args = parser.parse_args(argv)
    if not all(0 <= n <= 8 for n in args.ours) or len(set(args.ours)) != len(args.ours):
        parser.error("--ours takes distinct worker counts in 0..8")
    if not (0 < args.rate <= 500 and 0 < args.duration <= 120):
        parser.error("rate must be in (0, 500] and duration in (0, 120] s")
    if not 1 <= args.conversations <= 5000:
        parser.error("conversations must be in 1..5000")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
