"""Webhook acknowledgement latency under open-loop load, and proof that nothing is lost.

    .venv/bin/python -m tests.bench.bench_webhook_ack [--rates 100 300] [--duration 20]
        [--workers 0 -1]

`wa-agent serve` runs as its own process exactly as `make serve` starts it (`--workers
0`: its default worker processes, one per core, supervised by `serve`), so the workers
answering the messages compete for the CPU as they would in production. For
comparison, `--workers -1` measures the webhook path alone (`serve --no-worker`, no
worker anywhere: jobs pile up) and `--workers N` measures `serve --no-worker` beside N
`wa-agent worker` processes. This process holds the fake model,
the fake Graph API and the load generator. Each (shape, rate) gets a fresh database and
fresh processes. After each run every request answered 200 must have its row in
`inbound_messages`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench.common import (
    BenchGraphAPI,
    BenchPostgres,
    SignedMessage,
    customer_id,
    fetch_value,
    measuring,
    ms,
    percentile,
    print_header,
    print_table,
    signed_text,
    tune_benchmark_process,
)
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.e2e import start_service
from tests.bench.loadgen import Sample, WebhookClient, open_loop
from tests.bench.processes import (
    CpuMeter,
    free_port,
    process_group,
    service_environment,
    wait_for_quiet,
)
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer

WARM_UP_S = 2.0
GOAL_P99_MS = 30.0


@dataclass(frozen=True)
class AckResult:
    workers: int
    rate: float
    samples: list[Sample]
    stored_ok: int
    lost: int
    answered_by_worker: int
    other_cores: float

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 200]

    @property
    def achieved_rate(self) -> float:
        span = self.samples[-1].sent - self.samples[0].sent
        return (len(self.samples) - 1) / span if span > 0 else float("nan")

    def failures(self) -> str:
        counts = Counter(s.error or str(s.status) for s in self.samples if s.status != 200)
        return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "none"


def build_messages(run: int, count: int, customers: int, tag: str) -> list[SignedMessage]:
    return [
        signed_text(customer_id(run, i % customers), f"{tag} {i}", f"wamid.bench-{tag}-{run}-{i}")
        for i in range(count)
    ]


async def stored_wamids(db_url: str, wamids: Sequence[str]) -> int:
    found = await fetch_value(
        db_url, "SELECT count(*) FROM inbound_messages WHERE wamid = ANY(%s)", list(wamids)
    )
    return int(found)


async def run_rate(
    postgres: BenchPostgres,
    fakes: tuple[FakeOpenAIServer, FakeGraphAPI],
    run: int,
    shape: tuple[int, float],
    args: argparse.Namespace,
) -> AckResult:
    openai, graph_api = fakes
    workers, rate = shape
    db_url = await postgres.fresh_database(f"ack_{workers}w_{int(rate)}")
    port = free_port()
    env = service_environment(db_url, openai.base_url, graph_api.base_url, PORT=str(port))
    warm = build_messages(run, int(rate * WARM_UP_S), args.customers, "warm")
    measured = build_messages(run, int(rate * args.duration), args.customers, "load")
    with process_group() as group:
        url = await start_service(group, env, db_url, port, workers)
        client = WebhookClient(url)
        cpu = CpuMeter(group.pids, postgres.data_dir)
        await wait_for_quiet()
        with measuring():
            await open_loop(client, warm, rate)
            cpu.start()
            samples = await open_loop(client, measured, rate)
            cpu.stop()
        client.close()
        group.check_alive()
        answered = await fetch_value(
            db_url, "SELECT count(*) FROM inbound_messages WHERE processed_at IS NOT NULL"
        )
    ok_wamids = [measured[s.index].wamid for s in samples if s.status == 200]
    stored = await stored_wamids(db_url, ok_wamids)
    lost = len(ok_wamids) - stored
    return AckResult(workers, rate, samples, stored, lost, int(answered), cpu.other_cores)


def report(results: Sequence[AckResult], duration: float) -> None:
    rows = []
    for r in results:
        lat = [s.latency for s in r.ok]
        slip = [s.sent - s.due for s in r.samples]
        rows.append(
            [
                shape_label(r.workers),
                f"{r.rate:g}/s",
                f"{r.achieved_rate:.1f}/s",
                len(r.samples),
                len(r.ok),
                ms(percentile(lat, 50)),
                ms(percentile(lat, 95)),
                ms(percentile(lat, 99)),
                ms(max(lat, default=float("nan"))),
                ms(percentile(slip, 99)),
                r.failures(),
                f"{r.stored_ok}/{len(r.ok)}",
                r.lost,
                r.answered_by_worker,
                f"{r.other_cores:.2f}",
            ]
        )
    print(f"Webhook acknowledgement latency, open loop, {duration:g} s per rate (ms)")
    headers = ["service", "offered", "achieved", "sent", "200", "p50", "p95", "p99", "max"]
    headers += ["gen slip p99", "non-200", "rows/200s", "lost", "answered", "other load"]
    print_table(headers, rows)
    for r in results:
        p99 = percentile([s.latency for s in r.ok], 99) * 1000
        verdict = "met" if p99 < GOAL_P99_MS and r.lost == 0 else "NOT met"
        print(
            f"goal, {shape_label(r.workers)} at {r.rate:g}/s: p99 < {GOAL_P99_MS:g} ms "
            f"and zero lost -> {verdict}"
        )
    print(
        "\n'answered' = inbound messages the worker(s) had finished when the run ended "
        "(warm-up included); 'gen slip' = how late the generator sent; 'other load' = "
        "cores used by the rest of the machine meanwhile."
    )


def shape_label(workers: int) -> str:
    if workers < 0:
        return "serve, no worker at all"
    return "serve (default)" if workers == 0 else f"serve + {workers} worker proc"


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_webhook_ack: POST /webhook acknowledgement latency",
        [
            "service: `wa-agent serve` subprocess as `make serve` runs it (worker processes "
            "one per core, 16 slots each, pool 20), every default, LOG_LEVEL=WARNING; for "
            "comparison `serve --no-worker` with no worker at all (the webhook path alone)",
            "this process: load generator (raw asyncio HTTP/1.1, keep-alive pool), "
            "FakeOpenAIServer (no delay, echo), FakeGraphAPI (TCP_NODELAY)",
            f"traffic: signed text messages, unique wamids, {args.customers} customers, "
            f"{WARM_UP_S:g} s warm-up at the same rate (not measured)",
        ],
    )
    results = []
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        async with open_postgres() as postgres:
            print(f"postgres: embedded {await postgres.server_version()}\n", flush=True)
            shapes = itertools.product(args.workers, args.rates)
            for run, (workers, rate) in enumerate(shapes):
                started = time.monotonic()
                fakes = (openai, graph_api)
                results.append(await run_rate(postgres, fakes, run, (workers, rate), args))
                elapsed = time.monotonic() - started
                print(f"  {shape_label(workers)}, {rate:g}/s: done in {elapsed:.0f} s", flush=True)
    print()
    report(results, args.duration)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 300.0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, -1],
        help="0 = serve as make serve runs it (the default shape), -1 = serve without "
        "any worker, N = serve + N worker processes",
    )
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 300 and all(0 < r <= 2000 for r in args.rates)):
        parser.error("duration must be in (0, 300] s and rates in (0, 2000]/s")
    if not (all(-1 <= w <= 8 for w in args.workers) and 1 <= args.customers <= 100_000):
        parser.error("workers must be in -1..8 and customers in 1..100000")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
