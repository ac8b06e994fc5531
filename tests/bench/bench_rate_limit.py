"""Rate limiting: how long a limiter check takes, and what a flood does to everyone else.

    .venv/bin/python -m tests.bench.bench_rate_limit [--checks 20000] [--duration 30]
        [--rate 40] [--flood-rate 1000] [--customers 200] [--repeat 1] [--worker-nice 10]

Part 1, check latency: `RedisLimiter.hit` (the one Lua script a turn costs) against
the machine's Redis (`TEST_REDIS_URL`, else a private `redis-server`), one check at a
time and open loop at 500 and 1,000 checks/s (each its own task, as concurrent worker
slots make them), spread over 1,000 customers with the default policy (20/min, 200/h,
1000/day); the in-process limiter beside it.

Part 2, flood: `wa-agent serve --no-worker` and one `wa-agent worker`, each its own
process (Redis limiter, defaults otherwise — the worker at nice `--worker-nice`, by
default its production default 10), so
the webhook is measured apart from the graph runs it triggers. Other customers post at
`--rate` messages/s in total, open loop, spread so that none of them is over a limit;
the run is made once without and once with one customer flooding at `--flood-rate`
messages/s, sent by `flood_sender` (a lean process at the lowest CPU priority: the
flood stands for traffic made on Meta's side). Each run has a fresh database and a
fresh service; `--repeat` alternates more pairs. The figure of merit: the other
customers' webhook p99 with the flood over their p99 without it, every run of a kind
pooled (goal: at most 1.2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from asyncio.subprocess import PIPE, Process
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from graph.settings import Settings
from server.abuse.blacklist import Limiter
from server.abuse.memory_limiter import MemoryLimiter
from server.abuse.rate_policy import LimiterUnavailable, Policy
from server.abuse.redis_store import RedisLimiter, connect_redis
from tests.bench.common import (
    BenchPostgres,
    SignedMessage,
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
from tests.bench.flood_sender import FloodFigures
from tests.bench.loadgen import Sample, WebhookClient, open_loop
from tests.bench.processes import (
    cpu_seconds,
    free_port,
    process_group,
    service_environment,
    wait_for_workers,
    wait_until_ready,
)
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import APP_SECRET, REPO
from tests.support_abuse import shared_redis_url

GOAL_CHECK_P99_MS = 2.0
GOAL_FLOOD_RATIO = 1.2
WARM_UP_S = 3.0
FLOODER = "255799999999"


# --- part 1: check latency ---------------------------------------------------------------


async def time_checks(limiter: Limiter, count: int, customers: int, rate: float) -> list[float]:
    """`count` checks spread over `customers`; one after another (rate 0) or open loop at
    `rate` per second, each check in its own task, as concurrent worker slots make them."""
    samples: list[float] = []

    async def check(index: int) -> None:
        began = time.perf_counter()
        try:
            await limiter.hit(f"2557{index % customers:08d}", 1)
        except LimiterUnavailable:
            samples.append(float("inf"))  # counted as slower than any answer
            return
        samples.append(time.perf_counter() - began)

    if rate <= 0:
        for index in range(count):
            await check(index)
        return samples
    tasks = []
    start = time.perf_counter()
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(check(index)))
    await asyncio.gather(*tasks)
    return samples


async def check_latency(args: argparse.Namespace) -> list[list[object]]:
    policy = Policy.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    url = shared_redis_url()
    prefix = f"wa-bench:{uuid.uuid4().hex[:8]}:"
    rows: list[list[object]] = []
    for rate in (0.0, 500.0, 1000.0):
        limiters: dict[str, Limiter] = {
            "redis": RedisLimiter(connect_redis(url, 0.25), policy, prefix=f"{prefix}{rate:g}:"),
            "in-process": MemoryLimiter(policy),
        }
        for name, limiter in limiters.items():
            await time_checks(limiter, 2000, 1000, 0)  # warm-up: script loaded, pool open
            with measuring():
                samples = await time_checks(limiter, args.checks, 1000, rate)
            await limiter.aclose()
            rows.append(
                [
                    name,
                    "one at a time" if rate <= 0 else f"{rate:g}/s open loop",
                    len(samples),
                    f"{1000 * percentile(samples, 50):.3f}",
                    f"{1000 * percentile(samples, 90):.3f}",
                    f"{1000 * percentile(samples, 99):.3f}",
                    f"{1000 * percentile(samples, 99.9):.3f}",
                    f"{1000 * max(samples):.3f}",
                    sum(1 for sample in samples if sample == float("inf")),
                ]
            )
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(f"{prefix}*", count=10_000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])
    await client.aclose()
    return rows


# --- part 2: flood -----------------------------------------------------------------------


@dataclass(frozen=True)
class FloodRun:
    flood: bool
    others: list[Sample]
    flooder: FloodFigures
    flood_stored: int
    flood_answered: int
    others_answered: int
    others_sent: int
    serve_cores: float  # the webhook process's CPU while the others were measured

    def p(self, samples: Sequence[Sample], q: float) -> float:
        return percentile([s.latency for s in samples if s.status == 200], q)

    @staticmethod
    def rate(samples: Sequence[Sample]) -> float:
        span = samples[-1].sent - samples[0].sent if len(samples) > 1 else 0.0
        return (len(samples) - 1) / span if span > 0 else float("nan")

    @staticmethod
    def failures(samples: Sequence[Sample]) -> int:
        return sum(1 for s in samples if s.status != 200)


def messages(tag: str, run: int, count: int, customers: int) -> list[SignedMessage]:
    return [
        signed_text(f"2557{run:02d}{i % customers:06d}", f"{tag} {i}", f"wamid.rl-{tag}-{run}-{i}")
        for i in range(count)
    ]


async def others_answered(db_url: str, wamids: Sequence[str], within: float = 20.0) -> int:
    deadline = time.monotonic() + within
    while True:
        done = int(
            await fetch_value(
                db_url,
                "SELECT count(*) FROM inbound_messages WHERE wamid = ANY(%s)"
                " AND processed_at IS NOT NULL",
                list(wamids),
            )
        )
        if done == len(wamids) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.25)


async def start_flooder(url: str, run: int, args: argparse.Namespace) -> Process:
    """The flood comes from a process of its own (`flood_sender`): its 1,000 requests a
    second must not share an event loop (or a GIL) with the one timing the others."""
    command = [sys.executable, "-m", "tests.bench.flood_sender", url, "--secret", APP_SECRET]
    command += ["--rate", str(args.flood_rate), "--duration", str(args.duration)]
    command += ["--wa-id", FLOODER, "--run", str(run)]
    flooder = await asyncio.create_subprocess_exec(
        *command, stdin=PIPE, stdout=PIPE, cwd=REPO, start_new_session=True
    )
    assert flooder.stdout is not None
    if (await flooder.stdout.readline()).strip() != b"ready":
        raise RuntimeError("the flooding process did not start")
    return flooder


async def finish_flooder(flooder: Process) -> FloodFigures:
    out, _ = await flooder.communicate()
    return FloodFigures(**json.loads(out.decode().strip().splitlines()[-1]))


async def flood_run(
    postgres: BenchPostgres,
    fakes: tuple[FakeOpenAIServer, FakeGraphAPI],
    run: int,
    flood: bool,
    args: argparse.Namespace,
) -> FloodRun:
    openai, graph_api = fakes
    db_url = await postgres.fresh_database(f"flood_{run}")
    port = free_port()
    env = service_environment(
        db_url,
        openai.base_url,
        graph_api.base_url,
        PORT=str(port),
        REDIS_URL=shared_redis_url(),
        WA_AGENT_REDIS_PREFIX=f"wa-bench:{uuid.uuid4().hex[:8]}:",
        WA_AGENT_WORKER_NICE=str(args.worker_nice),
    )
    warm = messages("warm", run, int(args.rate * WARM_UP_S), args.customers)
    others = messages("other", run, int(args.rate * args.duration), args.customers)
    with process_group() as group:
        serve = group.start("serve", ["-m", "server.cli", "serve", "--no-worker"], env)
        group.start("worker", ["-m", "server.cli", "worker"], env)
        await wait_until_ready(f"http://127.0.0.1:{port}", group)
        await wait_for_workers(db_url, 1, group)
        url = f"http://127.0.0.1:{port}/webhook"
        others_client = WebhookClient(url)
        flooder = await start_flooder(url, run, args) if flood else None
        with measuring():
            await open_loop(others_client, warm, args.rate)
            if flooder is not None:
                assert flooder.stdin is not None
                flooder.stdin.write(b"go\n")
                await flooder.stdin.drain()
            serve_cpu, began = cpu_seconds(serve.popen.pid), time.monotonic()
            measured = await open_loop(others_client, others, args.rate)
            serve_cores = (cpu_seconds(serve.popen.pid) - serve_cpu) / (time.monotonic() - began)
        flood_result = await finish_flooder(flooder) if flooder is not None else FloodFigures()
        answered = await others_answered(db_url, [m.wamid for m in others])
        group.check_alive()
        others_client.close()
    stored, flood_answered = await flooder_rows(db_url)
    return FloodRun(
        flood, measured, flood_result, stored, flood_answered, answered, len(others), serve_cores
    )


async def flooder_rows(db_url: str) -> tuple[int, int]:
    """The flooder's messages stored (past the ingress guard), and answered by the graph."""
    stored = await fetch_value(
        db_url, "SELECT count(*) FROM inbound_messages WHERE wa_id = %s", FLOODER
    )
    answered = await fetch_value(
        db_url,
        "SELECT count(*) FROM inbound_messages WHERE wa_id = %s AND processed_at IS NOT NULL"
        " AND gate IS NULL",
        FLOODER,
    )
    return int(stored), int(answered)


def report(checks: list[list[object]], runs: Sequence[FloodRun], args: argparse.Namespace) -> None:
    print("Limiter check latency (ms), default policy, 1,000 customers")
    headers = ["limiter", "offered", "checks", "p50", "p90", "p99", "p99.9", "max", "failed"]
    print_table(headers, checks)
    redis_p99 = max(float(str(row[5])) for row in checks if row[0] == "redis")
    verdict = "met" if redis_p99 < GOAL_CHECK_P99_MS else "NOT met"
    print(f"goal: Redis check p99 < {GOAL_CHECK_P99_MS:g} ms -> {verdict} ({redis_p99:.3f} ms)\n")

    print(
        f"Webhook latency of the other customers, {args.rate:g} msg/s over "
        f"{args.customers} customers, {args.duration:g} s per run (ms)"
    )
    rows = []
    for run in runs:
        rows.append(
            [
                f"flood {args.flood_rate:g}/s" if run.flood else "no flood",
                f"{FloodRun.rate(run.others):.1f}/s",
                ms(run.p(run.others, 50)),
                ms(run.p(run.others, 95)),
                ms(run.p(run.others, 99)),
                ms(max((s.latency for s in run.others), default=float("nan"))),
                FloodRun.failures(run.others),
                f"{run.others_answered}/{run.others_sent}",
                f"{run.flooder.rate:.0f}/s" if run.flood else "-",
                f"{run.flooder.p99_ms:.1f}" if run.flood else "-",
                run.flooder.failures if run.flood else "-",
                f"{run.flood_stored}/{run.flooder.sent}" if run.flood else "-",
                run.flood_answered if run.flood else "-",
                f"{run.serve_cores:.2f}",
            ]
        )
    headers = ["run", "others sent", "p50", "p95", "p99", "max", "non-200", "answered"]
    headers += ["flood sent", "flood p99", "flood non-200", "flood stored", "flood answered"]
    headers += ["serve cores"]
    print_table(headers, rows)
    base = [s.latency for r in runs if not r.flood for s in r.others if s.status == 200]
    flooded = [s.latency for r in runs if r.flood for s in r.others if s.status == 200]
    if base and flooded:  # every run of a kind pooled, so --repeat narrows the noise
        ratio = percentile(flooded, 99) / percentile(base, 99)
        verdict = "met" if ratio <= GOAL_FLOOD_RATIO else "NOT met"
        print(
            f"goal: others' p99 with flood / without <= {GOAL_FLOOD_RATIO:g}"
            f" -> {verdict} ({ratio:.2f})"
        )


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_rate_limit: limiter check latency; the webhook for others during a flood",
        [
            f"redis: {shared_redis_url()} (TEST_REDIS_URL, else a private redis-server)",
            "service: `wa-agent serve --no-worker` + one `wa-agent worker`"
            f" (nice {args.worker_nice}), REDIS_URL set,"
            " default limits and ingress guard (5/s, burst 40)",
            "this process: the others' load generator (raw asyncio HTTP/1.1), FakeOpenAIServer,"
            " FakeGraphAPI; the flood: `tests.bench.flood_sender`, its own process, nice 19",
        ],
    )
    checks = await check_latency(args)
    runs: list[FloodRun] = []
    with FakeOpenAIServer() as openai, FakeGraphAPI() as graph_api:
        async with open_postgres() as postgres:
            for index, flood in enumerate([False, True] * args.repeat):
                started = time.monotonic()
                runs.append(await flood_run(postgres, (openai, graph_api), index, flood, args))
                print(
                    f"  run {index} ({'flood' if flood else 'no flood'})"
                    f" in {time.monotonic() - started:.0f} s",
                    flush=True,
                )
    print()
    report(checks, runs, args)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per run")
    parser.add_argument("--rate", type=float, default=40.0, help="other customers, msg/s")
    parser.add_argument("--flood-rate", type=float, default=1000.0)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs")
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="the worker's WA_AGENT_WORKER_NICE"
    )
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 120 and 0 < args.rate <= 500 and 0 < args.flood_rate <= 2000):
        parser.error("duration in (0, 120] s, rate in (0, 500]/s, flood rate in (0, 2000]/s")
    if args.rate / args.customers * 60 >= 20:
        parser.error("each other customer must stay under 20 messages a minute")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
