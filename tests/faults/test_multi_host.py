"""Beyond one machine: Postgres (with Redis beside it), the webhook and two workers each
on a host of its own — network namespaces on a bridge, talking TCP, Postgres asking for
a password — as deploy/compose.yaml and the Kubernetes manifests lay them out. The
schema is applied by a one-off `wa-agent migrate` (the migration Job), and serve and
the workers start with WA_AGENT_MIGRATE_ON_START=false.

Customers write while one worker host loses its network and then its power in the
middle of turns (the model is thinking). Meta's side keeps delivering; at the end every
acknowledged message is answered exactly once, in order, nothing is left running, the
database has let go of the lost host's connections, and the survivors stop gracefully
on SIGTERM. The figures seen on the way (connections per host, recovery) are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import httpx
import psycopg
import pytest

from graph.settings import Settings
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta, answered_count, check_invariants
from tests.faults.netns import (
    Host,
    NamespacedPostgres,
    Network,
    Relay,
    namespaces_work,
    network,
    wait_for_port,
)
from tests.faults.settings import fault_settings
from tests.support import REPO, eventually, query, service_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

CUSTOMERS = 12
TURNS = 4
PORT = 8000


@dataclass
class Cluster:
    net: Network
    db: Host
    web: Host
    workers: list[Host]
    db_url: str
    settings: Settings
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.web.address}:{PORT}"

    def env(self, **extra: str) -> dict[str, str]:
        return service_env(self.settings) | {"WA_AGENT_MIGRATE_ON_START": "false", **extra}

    def start(self, name: str, host: Host, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log: IO[bytes] = (self.logs / f"{name}.log").open("wb")
        process = host.popen(
            [sys.executable, "-m", "server.cli", *args],
            cwd=REPO,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in self.logs.glob("*")
        )


@pytest.fixture
def cluster(
    tmp_path: Path, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> Iterator[Cluster]:
    if not namespaces_work():
        pytest.skip("needs root and `ip netns` to make hosts")
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(network())
        db, web, *workers = (net.add(name) for name in ("db", "web", "w1", "w2"))
        postgres = NamespacedPostgres(db, tmp_path / "postgres" / "data")
        postgres.start()
        stack.callback(postgres.stop)
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE wa_agent")
        db.popen(
            [
                "redis-server",
                "--bind",
                db.address,
                "--port",
                "6379",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(db.address, 6379)
        model = Relay(net.gateway, port_of(openai_server.base_url))
        meta_api = Relay(net.gateway, port_of(graph_api.base_url))
        stack.callback(model.close)
        stack.callback(meta_api.close)
        settings = fault_settings(
            postgres.url("wa_agent"),
            graph_api,
            openai_server,
            whatsapp_api_base_url=meta_api.url(net.gateway),
            openai_base_url=model.url(net.gateway) + "/v1",
            redis_url=f"redis://{db.address}:6379/0",
            model_timeout_seconds=20.0,
            worker_concurrency=4,
        )
        (tmp_path / "logs").mkdir()
        cluster = Cluster(
            net, db, web, workers, postgres.url("wa_agent"), settings, tmp_path / "logs"
        )
        stack.callback(_stop_all, cluster)
        yield cluster


def port_of(url: str) -> int:
    return int(urlparse(url).port or 80)


def _stop_all(cluster: Cluster) -> None:
    for process in cluster.processes.values():
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def start_service(cluster: Cluster) -> None:
    """The migration Job, then the webhook host, then both worker hosts."""
    migrate = cluster.start("migrate", cluster.web, "migrate")
    assert await asyncio.to_thread(migrate.wait, 120) == 0, cluster.tail()
    cluster.start(
        "web", cluster.web, "serve", "--no-worker", HOST=cluster.web.address, PORT=str(PORT)
    )
    for number, host in enumerate(cluster.workers, start=1):
        cluster.start(f"worker{number}", host, "worker")

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(cluster.base_url + "/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def workers_beating() -> bool:
        rows = await query(
            cluster.db_url,
            "SELECT count(*) AS n FROM procrastinate_workers"
            " WHERE last_heartbeat > now() - interval '3 seconds'",
        )
        return int(rows[0]["n"]) >= len(cluster.workers)

    try:
        await eventually(ready, within=120, what="the webhook host ready")
        await eventually(workers_beating, within=120, what="both worker hosts running")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{cluster.tail()}") from None


@dataclass
class Connections:
    """The most connections each host held at once, as Postgres saw them."""

    peak: dict[str, int] = field(default_factory=dict)

    async def sample(self, cluster: Cluster, every_s: float = 0.5) -> None:
        names = {host.address: host.name for host in cluster.net.hosts.values()}
        names[cluster.net.gateway] = "test"
        while True:
            rows = await query(
                cluster.db_url,
                "SELECT client_addr::text AS addr, count(*) AS n FROM pg_stat_activity"
                " WHERE datname = 'wa_agent' AND client_addr IS NOT NULL GROUP BY 1",
            )
            for row in rows:
                name = names.get(str(row["addr"]).split("/")[0], str(row["addr"]))
                self.peak[name] = max(self.peak.get(name, 0), int(row["n"]))
            await asyncio.sleep(every_s)


async def lose_mid_run(cluster: Cluster, victim: Host, openai: FakeOpenAIServer) -> set[str]:
    """Hold the model until the victim has turns in it, then cut the victim off."""
    openai.hold()
    try:

        async def victim_thinking() -> bool:
            pids = [str(pid) for pid in victim.pids()]
            rows = await query(
                cluster.db_url,
                "SELECT id::text AS id FROM conversation_runs WHERE status = 'running'"
                " AND split_part(worker, ':', 2) = ANY(%s)",
                pids,
            )
            runs.update(row["id"] for row in rows)
            return bool(rows) and openai.waiting >= 1

        runs: set[str] = set()
        await eventually(victim_thinking, within=60, what="a turn running on the victim host")
        victim.lose_power()
    finally:
        openai.release()
    return runs


async def test_a_worker_host_lost_mid_turn_leaves_every_conversation_answered_once_in_order(
    cluster: Cluster, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    await start_service(cluster)
    connections = Connections()
    sampling = asyncio.create_task(connections.sample(cluster))
    meta = Meta(cluster.base_url, redeliver_after_s=0.5)
    talk = asyncio.gather(
        *(meta.converse(f"2507887{n:05d}", n, TURNS, pause_s=1.0) for n in range(CUSTOMERS))
    )
    victim = cluster.workers[0]
    cut_runs = await lose_mid_run(cluster, victim, openai_server)
    lost_at = time.monotonic()
    await talk

    async def all_answered() -> bool:
        return await answered_count(cluster.db_url) == meta.acknowledged_count

    await eventually(all_answered, within=120, what="every acknowledged message answered")
    recovered_s = time.monotonic() - lost_at
    await asyncio.sleep(1.0)
    await check_invariants(meta, cluster.db_url, graph_api)
    assert meta.acknowledged_count == CUSTOMERS * TURNS
    finished = await query(
        cluster.db_url,
        "SELECT count(*) AS n FROM conversation_runs WHERE id::text = ANY(%s) AND status = 'done'",
        list(cut_runs),
    )
    assert int(finished[0]["n"]) == len(cut_runs)  # the lost host's turns, finished elsewhere

    async def lost_host_released() -> bool:
        rows = await query(
            cluster.db_url,
            "SELECT count(*) AS n FROM pg_stat_activity WHERE client_addr = %s::inet",
            victim.address,
        )
        return int(rows[0]["n"]) == 0

    await eventually(lost_host_released, within=60, what="Postgres dropping the lost host")
    sampling.cancel()
    memory = {name: rss_mib(cluster.processes[name].pid) for name in ("web", "worker2")}
    await _stops_gracefully(cluster)
    print(
        f"\nconnections per host (peak): {connections.peak}; lost host's turns: {len(cut_runs)};"
        f" all answered {recovered_s:.1f} s after the loss; resident MiB: {memory}"
    )


def rss_mib(pid: int) -> int:
    """A process's resident memory (what a container's memory limit counts)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


async def _stops_gracefully(cluster: Cluster) -> None:
    """SIGTERM: the webhook and the surviving worker leave on their own within their
    grace periods. uvicorn re-raises the signal once it has shut down gracefully, so
    `serve` ends as a SIGTERM'd process does (128 + 15); the worker ends with 0."""
    for name, grace, codes in (("web", 30.0, (0, 143)), ("worker2", 60.0, (0,))):
        process = cluster.processes[name]
        process.terminate()
        code: Any = await asyncio.to_thread(process.wait, grace)
        assert code in codes, f"{name} exited {code}\n{cluster.tail()}"
