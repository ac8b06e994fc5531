"""Recovery: how long conversations wait after an outage ends, and what the sweep costs.

    .venv/bin/python -m tests.bench.bench_recovery [--conversations 100]
        [--meta-outage 60] [--db-outage 10] [--sweep-rows 200000]

`wa-agent serve` with every default (its worker processes, answering at once) runs as
its own process on an embedded Postgres of this benchmark's own; this
process holds the zero-latency fake model, the fake Graph API and "Meta", which
delivers each customer's message until the webhook answers 200, again every second.

- Meta outage: every send fails (500) for `--meta-outage` s while `--conversations`
  customers write once each; measured from the end of the outage to each answer.
- Database restart: the customers write once each while Postgres is stopped for
  `--db-outage` s (the webhook answers 503 meanwhile); measured from the restart to
  each answer.
- Sweep: the three self-healing sweeps on a database holding `--sweep-rows` answered
  messages and one waiting job per conversation, timed per run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import procrastinate

from graph.infra.database import apply_migrations
from server.runner.healing import (
    JobWatch,
    heal_unanswered_conversations,
    recover_orphaned_jobs,
    recover_stalled_jobs,
)
from tests.bench.common import percentile, print_header, print_table, tune_benchmark_process
from tests.bench.processes import (
    ProcessGroup,
    free_port,
    process_group,
    service_environment,
    wait_until_ready,
)
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.faults.meta import Meta
from tests.faults.outages import StoppablePostgres
from tests.support import create_database, unique_name


async def answers_after(
    graph_api: FakeGraphAPI, wa_ids: Sequence[str], since: float, within: float = 300
) -> list[float]:
    """Seconds from `since` (perf_counter) to each customer's first reply."""
    deadline = time.monotonic() + within
    arrivals: dict[str, float] = {}
    while len(arrivals) < len(wa_ids) and time.monotonic() < deadline:
        for wa_id in wa_ids:
            if wa_id not in arrivals and (sent := graph_api.sent_to(wa_id)):
                arrivals[wa_id] = float(sent[0]["received_at"]) - since
        await asyncio.sleep(0.05)
    if len(arrivals) < len(wa_ids):
        raise RuntimeError(f"only {len(arrivals)}/{len(wa_ids)} answered within {within} s")
    return sorted(arrivals.values())


async def meta_outage(
    url: str, graph_api: FakeGraphAPI, count: int, outage_s: float
) -> list[float]:
    wa_ids = [f"2556100{i:05d}" for i in range(count)]
    meta = Meta(url, redeliver_after_s=1.0)
    graph_api.outage(outage_s, status=500)
    ends = time.perf_counter() + outage_s
    await asyncio.gather(*(meta.converse(w, i, 1, 0) for i, w in enumerate(wa_ids)))
    return await answers_after(graph_api, wa_ids, since=ends)


async def db_restart(
    url: str, graph_api: FakeGraphAPI, postgres: StoppablePostgres, count: int, outage_s: float
) -> tuple[list[float], int]:
    wa_ids = [f"2556200{i:05d}" for i in range(count)]
    meta = Meta(url, redeliver_after_s=1.0)
    await asyncio.to_thread(postgres.stop)
    talk = asyncio.gather(*(meta.converse(w, i, 1, 0) for i, w in enumerate(wa_ids)))
    await asyncio.sleep(outage_s)
    await asyncio.to_thread(postgres.start)
    restarted = time.perf_counter()
    await talk
    return await answers_after(graph_api, wa_ids, since=restarted), len(meta.refused)


async def sweep_cost(db_url: str, rows: int, conversations: int, runs: int = 20) -> list[float]:
    """Seconds per run of the three sweeps, on a database of realistic size."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for statement in _FILL:
            await conn.execute(statement, {"conversations": conversations, "rows": rows})
        await conn.execute("ANALYZE")
    queue = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url))
    from graph.infra.database import create_pool
    from graph.settings import Settings

    pool = create_pool(db_url, Settings(_env_file=None))  # type: ignore[call-arg]
    await pool.open()
    watch = JobWatch(worker_id=1)
    timings = []
    async with queue.open_async():
        for _ in range(runs):
            started = time.perf_counter()
            await recover_stalled_jobs(queue, 30.0)
            await recover_orphaned_jobs(queue, pool, watch)
            await heal_unanswered_conversations(queue, pool, 10.0)
            timings.append(time.perf_counter() - started)
    await pool.close()
    return timings


_FILL = (
    "INSERT INTO contacts (wa_id) SELECT '2557' || lpad(g::text, 8, '0')"
    " FROM generate_series(1, %(conversations)s) g",
    "INSERT INTO agent_conversations (phone_number_id, wa_id) SELECT 'PNID', wa_id FROM contacts",
    "INSERT INTO inbound_messages (wamid, conversation_id, wa_id, kind, text, payload, sent_at,"
    " processed_at, run_id)"
    " SELECT 'wamid.sweep-' || g, c.id, c.wa_id, 'text', 'hello', '{}', now(), now(),"
    " gen_random_uuid() FROM generate_series(1, %(rows)s) g"
    " JOIN (SELECT id, wa_id, row_number() OVER () - 1 AS n FROM agent_conversations) c"
    " ON c.n = g %% %(conversations)s",
    "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args, status)"
    " SELECT 'default', 'answer_conversation', id::text, id::text,"
    " jsonb_build_object('conversation_id', id::text), 'todo' FROM agent_conversations",
)


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_recovery: waiting conversations after an outage ends; the sweep's cost",
        [
            "service: `wa-agent serve`, every default (worker processes: auto, 16 slots "
            "each, no double-texting wait, healing every 10 s)",
            "this process: FakeOpenAIServer (no delay), FakeGraphAPI, and Meta: each "
            "customer's message delivered again every second until answered 200",
        ],
    )
    with (
        tempfile.TemporaryDirectory(prefix="wa-agent-bench-") as tmp,
        FakeOpenAIServer() as openai,
        FakeGraphAPI() as graph_api,
        process_group() as group,
    ):
        postgres = StoppablePostgres(Path(tmp) / "postgres")
        try:
            await run_all(args, postgres, openai, graph_api, group)
        finally:
            postgres.close()


async def run_all(
    args: argparse.Namespace,
    postgres: StoppablePostgres,
    openai: FakeOpenAIServer,
    graph_api: FakeGraphAPI,
    group: ProcessGroup,
) -> None:
    db_url = await create_database(postgres.url, unique_name("bench_recovery"))
    await apply_migrations(db_url)
    port = free_port()
    env = service_environment(db_url, openai.base_url, graph_api.base_url, PORT=str(port))
    group.start("serve", ["-m", "server.cli", "serve"], env)
    base = f"http://127.0.0.1:{port}"
    await wait_until_ready(base, group)
    meta = await meta_outage(base, graph_api, args.conversations, args.meta_outage)
    db, refusals = await db_restart(base, graph_api, postgres, args.conversations, args.db_outage)
    async with httpx.AsyncClient(base_url=base) as client:
        healed = [
            line
            for line in (await client.get("/metrics")).text.splitlines()
            if line.startswith("wa_agent_conversations_healed_total")
        ]
    sweep_db = await create_database(postgres.url, unique_name("bench_sweep"))
    await apply_migrations(sweep_db)
    sweep = await sweep_cost(sweep_db, args.sweep_rows, args.conversations)
    rows = [
        [f"Meta 500 for {args.meta_outage:g} s, {args.conversations} waiting", "end of outage"]
        + [f"{percentile(meta, p):.1f} s" for p in (50, 95, 100)],
        [f"Postgres down {args.db_outage:g} s, {args.conversations} writing", "restart"]
        + [f"{percentile(db, p):.1f} s" for p in (50, 95, 100)],
    ]
    print_table(["outage", "measured from", "p50", "p95", "last answer"], rows)
    print(f"\nwebhook refusals (503) during the database outage: {refusals}")
    print(f"healed by the sweep: {healed}")
    print(
        f"\nsweep (stalled + orphaned + unanswered), {args.sweep_rows} answered messages, "
        f"{args.conversations} waiting jobs: p50 {percentile(sweep, 50) * 1000:.1f} ms, "
        f"max {max(sweep) * 1000:.1f} ms per run"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--meta-outage", type=float, default=60.0)
    parser.add_argument("--db-outage", type=float, default=10.0)
    parser.add_argument("--sweep-rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    if not (1 <= args.conversations <= 2000 and 0 < args.meta_outage <= 600):
        parser.error("conversations must be 1..2000 and the Meta outage in (0, 600] s")
    if not (0 < args.db_outage <= 120 and 0 <= args.sweep_rows <= 5_000_000):
        parser.error("the database outage must be in (0, 120] s, sweep rows 0..5,000,000")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
