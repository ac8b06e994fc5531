"""End-to-end measurements shared by bench_end_to_end and bench_load.

End to end = from the moment the webhook POST leaves this process to the moment the
reply's POST reaches the FakeGraphAPI in this process (both `time.perf_counter()`),
matched by the customer's wa_id: every conversation here is one customer sending one
message, so each wa_id gets exactly one reply.

Requests go out on a new connection each (`Connection: close`), the same for every
server under test: a server that keeps working on a request after answering it (as
FastAPI `BackgroundTasks` do) holds its keep-alive connection meanwhile, and reusing
that socket would charge the wait to the next request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench.common import (
    SignedMessage,
    customer_id,
    measuring,
    ms,
    percentile,
    signed_text,
)
from tests.bench.loadgen import WebhookClient, closed_loop, open_loop
from tests.bench.processes import (
    CpuMeter,
    ProcessGroup,
    wait_for_quiet,
    wait_for_workers,
    wait_until_ready,
)
from tests.fakes.graph_api import FakeGraphAPI

REPLY_TIMEOUT_S = 120.0
WARM_UP_CONVERSATIONS = 20
OFFER_CONCURRENCY = 16


@dataclass(frozen=True)
class LatencyResult:
    rate: float
    offered: int
    end_to_end: list[float]  # seconds, one per answered conversation
    acks: list[float]
    failed_posts: int
    other_cores: float  # CPU used by the rest of the machine meanwhile, in cores

    @property
    def missing(self) -> int:
        return self.offered - self.failed_posts - len(self.end_to_end)

    def cells(self) -> list[str]:
        e2e = self.end_to_end
        return [
            f"{self.rate:g}/s",
            str(self.offered),
            ms(percentile(e2e, 50)),
            ms(percentile(e2e, 95)),
            ms(percentile(e2e, 99)),
            ms(percentile(self.acks, 50)),
            str(self.missing + self.failed_posts),
            f"{self.other_cores:.2f}",
        ]


LATENCY_HEADERS = [
    "rate",
    "convs",
    "e2e p50",
    "e2e p95",
    "e2e p99",
    "ack p50",
    "unanswered",
    "other load",
]


@dataclass(frozen=True)
class ThroughputResult:
    offered: int
    completed: int
    wall: float  # first POST sent → last reply received
    offer_time: float  # how long the service took to accept every POST
    cpu: dict[str, float]  # CPU seconds used meanwhile: service, postgres, bench, other

    @property
    def per_second(self) -> float:
        return self.completed / self.wall if self.wall > 0 else float("nan")

    def cells(self) -> list[str]:
        return [
            str(self.offered),
            str(self.completed),
            f"{self.offer_time:.2f}",
            f"{self.wall:.2f}",
            f"{self.per_second:.1f}",
            "/".join(f"{1000 * self.cpu.get(k, 0.0) / max(1, self.completed):.1f}" for k in CPU),
            f"{self.cpu.get('other', 0.0) / self.wall if self.wall > 0 else 0.0:.2f}",
        ]


CPU = ("service", "postgres", "bench")
THROUGHPUT_HEADERS = [
    "offered",
    "answered",
    "accept s",
    "wall s",
    "conv/s",
    "CPU ms/conv service/pg/bench",
    "other load",
]


def conversations(run: int, count: int, tag: str) -> list[SignedMessage]:
    """`count` new customers, one text message each."""
    return [
        signed_text(customer_id(run, i), f"{tag} question {i}", f"wamid.{tag}-{run}-{i}")
        for i in range(count)
    ]


async def wait_for_replies(
    graph_api: FakeGraphAPI, wa_ids: Sequence[str], within: float = REPLY_TIMEOUT_S
) -> dict[str, float]:
    """First reply arrival (perf_counter) per customer, once all arrived or `within` s passed."""
    wanted = set(wa_ids)
    arrivals: dict[str, float] = {}
    seen = 0
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sent = graph_api.sent
        for message in sent[seen:]:
            to = str(message.get("to"))
            if to in wanted and to not in arrivals:
                arrivals[to] = float(message["received_at"])
        seen = len(sent)
        if len(arrivals) == len(wanted):
            break
        await asyncio.sleep(0.02)
    return arrivals


async def warm_up(url: str, graph_api: FakeGraphAPI, run: int) -> None:
    """A few conversations first: connections, prepared statements, lazy imports."""
    messages = conversations(run, WARM_UP_CONVERSATIONS, "warm")
    await open_loop(WebhookClient(url, keep_alive=False), messages, 20.0)
    arrivals = await wait_for_replies(graph_api, [m.wa_id for m in messages], 60.0)
    if len(arrivals) < len(messages):
        raise RuntimeError(f"warm-up: {len(arrivals)}/{len(messages)} answered at {url}")


async def measure_latency(
    url: str, graph_api: FakeGraphAPI, run: int, rate: float, duration: float, cpu: CpuMeter
) -> LatencyResult:
    """Open loop at a fixed, moderate rate: the latency of one conversation."""
    messages = conversations(run, max(1, int(rate * duration)), "lat")
    cpu.start()
    samples = await open_loop(WebhookClient(url, keep_alive=False), messages, rate)
    arrivals = await wait_for_replies(graph_api, [m.wa_id for m in messages])
    cpu.stop()
    end_to_end = [
        arrivals[m.wa_id] - s.sent
        for m, s in zip(messages, samples, strict=True)
        if s.status == 200 and m.wa_id in arrivals
    ]
    return LatencyResult(
        rate=rate,
        offered=len(messages),
        end_to_end=end_to_end,
        acks=[s.latency for s in samples if s.status == 200],
        failed_posts=sum(1 for s in samples if s.status != 200),
        other_cores=cpu.other_cores,
    )


async def measure_throughput(
    url: str, graph_api: FakeGraphAPI, run: int, count: int, cpu: CpuMeter
) -> ThroughputResult:
    """`count` conversations offered as fast as the service accepts them (16 senders):
    completed conversations per second of wall time, and the CPU it took."""
    messages = conversations(run, count, "tput")
    cpu.start()
    samples = await closed_loop(WebhookClient(url, keep_alive=False), messages, OFFER_CONCURRENCY)
    arrivals = await wait_for_replies(graph_api, [m.wa_id for m in messages])
    used = cpu.stop()
    start = min(s.sent for s in samples)
    accepted = max(s.done for s in samples)
    last = max(arrivals.values(), default=start)
    return ThroughputResult(count, len(arrivals), last - start, accepted - start, used)


@dataclass(frozen=True)
class Measured:
    latency: LatencyResult
    throughput: ThroughputResult


async def start_service(
    group: ProcessGroup, env: dict[str, str], db_url: str, port: int, workers: int
) -> str:
    """`wa-agent serve` as `make serve` runs it (workers=0), `serve --no-worker`
    beside `workers` worker processes, or `serve --no-worker` alone (workers < 0: jobs
    pile up unanswered); returns the webhook URL once all are ready."""
    serve = ["-m", "server.cli", "serve"] + (["--no-worker"] if workers else [])
    group.start("serve", serve, env)
    for _ in range(workers):
        group.start("worker", ["-m", "server.cli", "worker"], env)
    await wait_until_ready(f"http://127.0.0.1:{port}", group)
    if workers >= 0:
        await wait_for_workers(db_url, max(1, workers), group)
    return f"http://127.0.0.1:{port}/webhook"


async def measure_both(
    url: str,
    graph_api: FakeGraphAPI,
    cpu: CpuMeter,
    run: int,
    phases: tuple[float, float, int],
) -> Measured:
    """Warm-up, then the latency phase, then the throughput phase; customer numbers
    `run`, `run + 1`, `run + 2` must be unused in this FakeGraphAPI. `phases`: the
    latency phase's rate and duration, the throughput phase's conversations."""
    rate, duration, count = phases
    await warm_up(url, graph_api, run)
    await wait_for_quiet()
    with measuring():
        latency = await measure_latency(url, graph_api, run + 1, rate, duration, cpu)
    await wait_for_quiet()
    with measuring():
        throughput = await measure_throughput(url, graph_api, run + 2, count, cpu)
    return Measured(latency, throughput)
