"""A random schedule of every fault at once against 30 conversations of several turns:
Meta and the model failing for a while, Postgres and Redis restarted, workers killed.
At the end every acknowledged message is answered exactly once, in order, and nothing
is left running or waiting. `WA_AGENT_CHAOS_SEED` replays a schedule."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta, answered_count, check_invariants, stuck_report
from tests.faults.outages import StoppablePostgres, StoppableRedis
from tests.faults.settings import fault_settings
from tests.support import eventually, running_service, spawn_worker, stop_process

pytestmark = [pytest.mark.timeout(480), pytest.mark.slow]

CONVERSATIONS = 30
SCHEDULE_S = 40.0


@dataclass
class Chaos:
    rng: random.Random
    postgres: StoppablePostgres
    redis: StoppableRedis
    graph_api: FakeGraphAPI
    openai: FakeOpenAIServer
    workers: list[subprocess.Popen[bytes]]
    settings: object
    log: list[str] = field(default_factory=list)
    # Every worker started, for the end: two kills of one slot close together start two.
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {what}")

    async def meta_outage(self) -> None:
        seconds = self.rng.uniform(3, 10)
        status = self.rng.choice([500, 503, 429, 0])
        self.note(f"Meta {'drops connections' if status == 0 else status} for {seconds:.1f}s")
        self.graph_api.outage(seconds, status=status or 500, retry_after=2, drop=status == 0)

    async def model_outage(self) -> None:
        seconds = self.rng.uniform(3, 8)
        self.note(f"model 500 for {seconds:.1f}s")
        self.openai.outage(seconds, status=500)

    async def postgres_restart(self) -> None:
        seconds = self.rng.uniform(3, 8)
        self.note(f"Postgres down for {seconds:.1f}s")
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.postgres.start)
        self.note("Postgres up")

    async def redis_restart(self) -> None:
        seconds = self.rng.uniform(3, 8)
        self.note(f"Redis down for {seconds:.1f}s")
        self.redis.stop()
        await asyncio.sleep(seconds)
        self.redis.start()
        self.note("Redis up")

    async def worker_kill(self) -> None:
        index = self.rng.randrange(len(self.workers))
        self.note(f"SIGKILL worker {index}")
        stop_process(self.workers[index], kill=True)
        await asyncio.sleep(self.rng.uniform(0.5, 3))
        self.workers[index] = spawn_worker(self.settings)  # type: ignore[arg-type]
        self.spawned.append(self.workers[index])
        self.note(f"worker {index} started again")

    async def run(self) -> None:
        faults = [self.postgres_restart, self.redis_restart]
        faults += [self.meta_outage] * 3 + [self.model_outage] * 2 + [self.worker_kill] * 3
        self.rng.shuffle(faults)
        at = sorted(self.rng.uniform(1, SCHEDULE_S) for _ in faults)
        pending = []
        for fault, when in zip(faults, at, strict=True):
            await asyncio.sleep(max(0.0, when - (time.monotonic() - self.started)))
            pending.append(asyncio.create_task(fault()))
        await asyncio.gather(*pending)
        self.note("schedule over")


async def test_random_faults_against_thirty_conversations(
    fault_db_url: str,
    stoppable_postgres: StoppablePostgres,
    stoppable_redis: StoppableRedis,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
) -> None:
    seed = int(os.environ.get("WA_AGENT_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    settings = fault_settings(
        fault_db_url,
        graph_api,
        openai_server,
        redis_url=stoppable_redis.url,
        redis_retry_seconds=1.0,
        worker_concurrency=6,
    )
    workers = [spawn_worker(settings), spawn_worker(settings)]
    chaos = Chaos(
        rng, stoppable_postgres, stoppable_redis, graph_api, openai_server, workers, settings
    )
    try:
        async with running_service(settings, with_worker=False) as service:
            meta = Meta(service.base_url, redeliver_after_s=1.0)
            talk = [
                meta.converse(f"2507886{n:05d}", n, rng.randint(3, 5), rng.uniform(2, 9))
                for n in range(CONVERSATIONS)
            ]
            await asyncio.gather(chaos.run(), *talk)

            async def all_answered() -> bool:
                return await answered_count(fault_db_url) == meta.acknowledged_count

            print(f"seed {seed}", *chaos.log, sep="\n")  # shown with -s, or on failure
            try:
                await eventually(all_answered, within=180, what="every message answered")
                await asyncio.sleep(1.0)
                await check_invariants(meta, fault_db_url, graph_api)
            except AssertionError as failure:
                schedule = "\n".join(chaos.log)
                stuck = await stuck_report(fault_db_url)
                raise AssertionError(f"seed {seed}\n{schedule}\n{failure}\n{stuck}") from None
    finally:
        for worker in chaos.workers + chaos.spawned:
            stop_process(worker, kill=True)
