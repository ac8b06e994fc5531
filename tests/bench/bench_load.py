"""Load: the default deployment against the naive template, side by side in one run.

    .venv/bin/python -m tests.bench.bench_load [--rates 30 60 100] [--duration 10]
        [--scaling 1 2 4] [--ack-rate 300] [--model-seconds 0]

- **ours (default)**: `wa-agent serve` with nothing configured but the fakes — what
  `make serve` runs (worker processes, the router, memory, accounting, limits,
  outcomes, durable inbox/queue/outbox, the default double-texting behaviour).
- **naive template**: tests/bench/naive_adapter.py — FastAPI `BackgroundTasks`, one
  agent node, one `AsyncPostgresSaver`, as public LangGraph WhatsApp templates do.

Both answer through the same zero-latency fake model and fake Graph API held by this
process. For every rate, each server gets a fresh database and fresh processes, 20
warm-up conversations, then `rate × duration` new customers offered open loop (one
message each, the way Meta delivers). Reported: conversations answered per second
(answered ÷ first POST → last reply), end-to-end p50/p95, CPU ms per turn of the
service processes and of Postgres. Then, ours only: throughput with 1, 2, 4 worker
processes at the highest rate, and the webhook's acknowledgement latency at
`--ack-rate` while the workers are saturated (0: not measured).

`--model-seconds S` (not the default, and labelled so): the fake model answers each
call after S seconds, as a real one does. With no delay every figure measures CPU; with
one, a turn mostly waits, and what bounds a server is how many turns it keeps in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import (
    BenchGraphAPI,
    BenchPostgres,
    measuring,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.e2e import conversations, wait_for_replies, warm_up
from tests.bench.loadgen import WebhookClient, open_loop
from tests.bench.processes import (
    CpuMeter,
    ProcessGroup,
    free_port,
    process_group,
    service_environment,
    wait_for_quiet,
    wait_until_ready,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import REPO

OURS, NAIVE = "ours (default)", "naive template"


@dataclass(frozen=True)
class Load:
    target: str
    rate: float
    offered: int
    answered: int
    per_second: float
    end_to_end: list[float]
    acks: list[float]
    cpu_ms: dict[str, float]  # per offered conversation

    def cells(self) -> list[str]:
        return [
            self.target,
            f"{self.rate:g}/s",
            f"{self.answered}/{self.offered}",
            f"{self.per_second:.1f}",
            f"{percentile(self.end_to_end, 50) * 1000:.0f} ms",
            f"{percentile(self.end_to_end, 95) * 1000:.0f} ms",
            f"{self.cpu_ms.get('service', 0):.1f}",
            f"{self.cpu_ms.get('postgres', 0):.1f}",
        ]


HEADERS = ["server", "offered", "answered", "conv/s", "e2e p50", "e2e p95", "CPU ms/turn", "PG ms"]


async def start(
    target: str, group: ProcessGroup, env: dict[str, str], port: int, *, tree: Path = REPO
) -> str:
    if target == NAIVE:
        group.start("naive", ["-m", "tests.bench.naive_adapter"], env)
        await wait_until_ready(f"http://127.0.0.1:{port}", group, path="/healthz")
    else:
        group.start("serve", ["-m", "server.cli", "serve"], env, tree=tree)
        await wait_until_ready(f"http://127.0.0.1:{port}", group)
    return f"http://127.0.0.1:{port}/webhook"


async def offer(
    url: str,
    fakes: tuple[FakeOpenAIServer, BenchGraphAPI],
    run: int,
    rate: float,
    duration: float,
    cpu: CpuMeter,
    target: str,
) -> Load:
    _, graph_api = fakes
    messages = conversations(run, max(1, int(rate * duration)), "load")
    await wait_for_quiet()
    with measuring():
        cpu.start()
        samples = await open_loop(WebhookClient(url, keep_alive=False), messages, rate)
        arrivals = await wait_for_replies(graph_api, [m.wa_id for m in messages])
        used = cpu.stop()
    sent = {m.wa_id: s.sent for m, s in zip(messages, samples, strict=True)}
    end_to_end = [arrivals[w] - sent[w] for w in arrivals]
    first = min(sent.values())
    span = (max(arrivals.values()) - first) if arrivals else float("inf")
    return Load(
        target,
        rate,
        len(messages),
        len(arrivals),
        len(arrivals) / span,
        end_to_end,
        [s.latency for s in samples if s.status == 200],
        {name: seconds * 1000 / len(messages) for name, seconds in used.items()},
    )


@dataclass(frozen=True)
class Started:
    """A server under test, warmed up: its webhook URL, its processes, its database."""

    url: str
    group: ProcessGroup
    db_url: str


@contextlib.asynccontextmanager
async def started(
    postgres: BenchPostgres,
    fakes: tuple[FakeOpenAIServer, BenchGraphAPI],
    target: str = OURS,
    run: int = 1,
    *,
    tree: Path = REPO,
    template: str | None = None,
    **env_extra: str,
) -> AsyncIterator[Started]:
    """`target` on a fresh database, its processes stopped on exit. `tree` and
    `template`: another source tree and the database template migrated by its own
    migrations (tests/bench/bench_ab.py); by default this tree's."""
    openai, graph_api = fakes
    db_url = await postgres.fresh_database(template=template)
    port = free_port()
    env = service_environment(db_url, openai.base_url, graph_api.base_url, PORT=str(port))
    env.update(env_extra)
    with process_group() as group:
        url = await start(target, group, env, port, tree=tree)
        await warm_up(url, graph_api, run)
        yield Started(url, group, db_url)


async def measure(
    postgres: BenchPostgres,
    fakes: tuple[FakeOpenAIServer, BenchGraphAPI],
    target: str,
    rate: float,
    duration: float,
    run: int,
    *,
    tree: Path = REPO,
    template: str | None = None,
    **env_extra: str,
) -> Load:
    """`rate × duration` new customers offered to `target` (see `started`)."""
    async with started(
        postgres, fakes, target, run, tree=tree, template=template, **env_extra
    ) as server:
        cpu = CpuMeter(server.group.pids, postgres.data_dir)
        return await offer(server.url, fakes, run + 1, rate, duration, cpu, target)


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_load: the default deployment vs the naive LangGraph WhatsApp template",
        [
            f"ours: `wa-agent serve`, defaults (worker processes: auto); naive: "
            f"tests/bench/naive_adapter.py; {args.duration:g} s of new customers per rate",
            "this process: open-loop load generator, FakeOpenAIServer (echo; "
            + (
                f"each call answered after {args.model_seconds:g} s: NOT the zero-latency "
                "default), "
                if args.model_seconds
                else "no delay), "
            )
            + "FakeGraphAPI",
        ],
    )
    rows: list[Load] = []
    scaling: list[Load] = []
    run = 10
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        openai.delay = args.model_seconds
        fakes = (openai, graph_api)
        async with open_postgres() as postgres:
            for rate in args.rates:
                for target in (NAIVE, OURS):
                    rows.append(await measure(postgres, fakes, target, rate, args.duration, run))
                    run += 2
                    print(f"  {target} at {rate:g}/s done", flush=True)
            for workers in args.scaling:
                load = await measure(
                    postgres,
                    fakes,
                    f"ours, {workers} worker process(es)",
                    max(args.rates),
                    args.duration,
                    run,
                    WA_AGENT_WORKER_PROCESSES=str(workers),
                )
                scaling.append(load)
                run += 2
            acks = (
                await measure(postgres, fakes, OURS, args.ack_rate, 5.0, run)
                if args.ack_rate
                else None
            )
    print()
    print_table(HEADERS, [r.cells() for r in rows])
    if scaling:
        print("\nworker processes (ours), at the highest rate:")
        print_table(HEADERS, [r.cells() for r in scaling])
    if acks is None:
        return
    p50, p99 = percentile(acks.acks, 50) * 1000, percentile(acks.acks, 99) * 1000
    print(
        f"\nwebhook ack at {args.ack_rate:g}/s, workers saturated: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (goal p99 <= 20 ms)"
    )


def add_model_seconds(parser: argparse.ArgumentParser) -> None:
    """`--model-seconds`: the fake model answers after that long, as a real one does
    (not the default, and labelled so wherever it is printed)."""

    def seconds(text: str) -> float:
        value = float(text)
        if not 0 <= value <= 10:
            raise argparse.ArgumentTypeError("model seconds must be in [0, 10]")
        return value

    parser.add_argument("--model-seconds", type=seconds, default=0.0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[30.0, 60.0, 100.0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--scaling", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--ack-rate", type=float, default=300.0)
    add_model_seconds(parser)
    args = parser.parse_args(argv)
    if not (all(0 < r <= 500 for r in args.rates) and 0 <= args.ack_rate <= 500):
        parser.error("rates must be in (0, 500] (the ack rate in [0, 500])")
    if not (0 < args.duration <= 60 and all(1 <= w <= 8 for w in args.scaling)):
        parser.error("duration must be in (0, 60] s and worker counts 1..8")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
