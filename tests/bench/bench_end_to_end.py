"""End-to-end overhead of the service: webhook POST → reply POST at the Graph API.

    .venv/bin/python -m tests.bench.bench_end_to_end [--workers 1 2] [--rate 20]
        [--duration 10] [--conversations 400]

`wa-agent serve --no-worker` and N `wa-agent worker` processes run as their own
processes (production defaults); this process holds the
zero-latency fake model, the fake Graph API and the load generator. Two separate
measurements per worker count, each on a fresh database and fresh processes:

- latency: one new customer per message, open loop at a moderate fixed rate;
- throughput: `--conversations` new customers offered as fast as the webhook accepts
  them; conversations answered per second of wall time (first POST → last reply).
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
    start_service,
)
from tests.bench.processes import (
    CpuMeter,
    free_port,
    process_group,
    service_environment,
)
from tests.fakes.openai_server import FakeOpenAIServer

GOAL_P50_MS = 50.0


async def run_with_workers(
    postgres: BenchPostgres,
    fakes: tuple[FakeOpenAIServer, BenchGraphAPI],
    workers: int,
    args: argparse.Namespace,
) -> Measured:
    openai, graph_api = fakes
    db_url = await postgres.fresh_database(f"e2e_{workers}w")
    port = free_port()
    env = service_environment(db_url, openai.base_url, graph_api.base_url, PORT=str(port))
    with process_group() as group:
        url = await start_service(group, env, db_url, port, workers)
        cpu = CpuMeter(group.pids, postgres.data_dir)
        phases = (args.rate, args.duration, args.conversations)
        measured = await measure_both(url, graph_api, cpu, 10 * workers, phases)
        group.check_alive()
    return measured


def report(runs: Sequence[tuple[int, Measured]], args: argparse.Namespace) -> None:
    print(f"Latency, open loop at {args.rate:g} conversations/s for {args.duration:g} s (ms)")
    print_table(["workers", *LATENCY_HEADERS], [[w, *m.latency.cells()] for w, m in runs])
    print(f"Throughput, {args.conversations} conversations × 1 message, offered at once")
    print_table(["workers", *THROUGHPUT_HEADERS], [[w, *m.throughput.cells()] for w, m in runs])
    for workers, measured in runs:
        p50 = percentile(measured.latency.end_to_end, 50) * 1000
        verdict = "met" if p50 < GOAL_P50_MS else "NOT met"
        print(f"goal with {workers} worker(s): e2e p50 < {GOAL_P50_MS:g} ms -> {verdict}")
    print()


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_end_to_end: webhook POST → reply POST at the (fake) Graph API",
        [
            "service: `wa-agent serve --no-worker` + N `wa-agent worker` subprocesses "
            "(every default: 16 slots per worker, pool 20, answers at once)",
            "this process: load generator (raw asyncio, one connection per POST), "
            "FakeOpenAIServer (no delay, echo), FakeGraphAPI (TCP_NODELAY; timestamps replies)",
            "each conversation: a new customer, one text; 20 warm-up conversations first",
        ],
    )
    runs = []
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        async with open_postgres() as postgres:
            print(f"postgres: embedded {await postgres.server_version()}\n", flush=True)
            for workers in args.workers:
                measured = await run_with_workers(postgres, (openai, graph_api), workers, args)
                runs.append((workers, measured))
                print(f"  {workers} worker(s) done", flush=True)
    print()
    report(runs, args)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase, per second")
    parser.add_argument("--duration", type=float, default=10.0, help="latency phase, seconds")
    parser.add_argument("--conversations", type=int, default=400, help="throughput phase")
    args = parser.parse_args(argv)
    if not (all(1 <= w <= 8 for w in args.workers) and 0 < args.rate <= 500):
        parser.error("workers must be 1..8 and rate in (0, 500]")
    if not (0 < args.duration <= 120 and 1 <= args.conversations <= 5000):
        parser.error("duration must be in (0, 120] s and conversations in 1..5000")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
