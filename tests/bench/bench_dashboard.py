"""Dashboard server time with 100k conversations in the database.

    .venv/bin/python -m tests.bench.bench_dashboard [--conversations 100000] [--requests 20]

Seeds, with generate_series in SQL: the conversations spread over the last 30 days,
two turns each, two model calls per turn (random tokens, latency, 2 % failures), a
routing decision per turn, a tool call per other turn, and 2 % escalated. Then the
real app (uvicorn, in this process, no worker) answers the overview page (/admin,
what the operator opens), its JSON twin, the conversation search and the inbox,
logged in with the session cookie; each timed from request to last byte, over the
loopback. The aggregates alone (the SQL, no HTTP or template) are timed beside them.
Goal: the overview under 300 ms of server time.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from server.http.dashboard import aggregates
from server.http.dashboard.aggregates import Window
from tests.bench.common import (
    bench_postgres,
    measuring,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.support import running_service, service_settings

GOAL_MS = 300.0
TOKEN = "bench-dashboard-token-0123456789abcdef"

SEED = """
INSERT INTO contacts (wa_id, profile_name)
SELECT '2507' || lpad(i::text, 8, '0'), 'Customer ' || i FROM generate_series(1, %(n)s) i;

INSERT INTO agent_conversations (phone_number_id, wa_id, status, created_at, updated_at)
SELECT 'PNID', '2507' || lpad(i::text, 8, '0'),
       CASE WHEN i %% 50 = 0 THEN 'escalated' ELSE 'active' END,
       now() - interval '2 hours' - (i %% 30) * interval '1 day' - (i %% 600) * interval '1 minute',
       now() - interval '1 hour' - (i %% 30) * interval '1 day'
FROM generate_series(1, %(n)s) i;

INSERT INTO conversation_runs (id, conversation_id, status, started_at, finished_at)
SELECT gen_random_uuid(), c.id, 'done', c.created_at + k * interval '10 minutes',
       c.created_at + k * interval '10 minutes' + interval '3 seconds'
FROM agent_conversations c, generate_series(0, 1) k;

INSERT INTO agent_metrics (conversation_id, run_id, agent, node, model, prompt_tokens,
                           completion_tokens, cached_tokens, cost_usd, latency_ms, success,
                           created_at)
SELECT r.conversation_id, r.id, a.agent, 'agent_' || a.agent, 'gpt-4o-mini',
       500 + (random() * 1500)::int, 20 + (random() * 200)::int, (random() * 300)::int,
       0.0001 + random() * 0.0004, 300 + random() * 4000, random() > 0.02,
       r.started_at + k * interval '2 seconds'
FROM conversation_runs r, generate_series(0, 1) k,
     LATERAL (SELECT (ARRAY['customer_service', 'sales', 'booking', 'payment',
                            'technical_support'])[1 + abs(hashtext(r.id::text)) %% 5] AS agent) a;

INSERT INTO agent_turn_events (conversation_id, run_id, kind, agent, method, confidence,
                               created_at)
SELECT r.conversation_id, r.id, 'route',
       (ARRAY['customer_service', 'sales', 'booking', 'payment', 'technical_support'])
           [1 + abs(hashtext(r.id::text)) %% 5],
       (ARRAY['rule', 'embedding', 'embedding', 'llm', 'sticky'])[1 + (random() * 4)::int],
       random(), r.started_at
FROM conversation_runs r;

INSERT INTO agent_turn_events (conversation_id, run_id, kind, created_at)
SELECT c.id, NULL, 'escalation', c.updated_at FROM agent_conversations c
WHERE c.status = 'escalated';

INSERT INTO agent_messages (conversation_id, run_id, role, agent, content, created_at)
SELECT r.conversation_id, r.id, role, NULL, 'message of the turn', r.started_at
FROM conversation_runs r, unnest(ARRAY['customer', 'agent']) role;

INSERT INTO agent_tool_executions (conversation_id, run_id, agent, tool, success,
                                   duration_ms, created_at)
SELECT r.conversation_id, r.id, 'booking', 'check_availability', random() > 0.05,
       5 + random() * 80, r.started_at + interval '1 second'
FROM conversation_runs r WHERE abs(hashtext(r.id::text)) %% 2 = 0;

ANALYZE;
"""


async def seed(url: str, conversations: int) -> float:
    import psycopg

    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, SEED.split(";\n")):
            await conn.execute(statement.encode(), {"n": conversations})
    return time.perf_counter() - started


async def time_requests(client: httpx.AsyncClient, path: str, n: int) -> list[float]:
    samples = []
    for _ in range(n + 2):
        started = time.perf_counter()
        answer = await client.get(path)
        samples.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
    return samples[2:]  # the first two warm caches and prepared statements


async def main_async(conversations: int, requests: int) -> None:
    async with bench_postgres() as postgres:
        url = await postgres.fresh_database("bench_dashboard")
        seconds = await seed(url, conversations)
        print_header(
            f"Dashboard server time, {conversations:,} conversations in the database",
            [
                f"embedded PostgreSQL {await postgres.server_version()}, seeded in {seconds:.0f} s",
                "the app on uvicorn in this process, no worker; loopback HTTP",
            ],
        )
        # The session cookie is Secure; httpx sends it over plain http to 127.0.0.1 only
        # without the flag (a browser would, on localhost). Timing is the same either way.
        settings = service_settings(
            url, admin_token=TOKEN, log_level="WARNING", dashboard_insecure_cookie=True
        )
        async with running_service(settings, with_worker=False) as service:
            rows = []
            window = Window.last_days(settings.dashboard_days)
            sql = []
            with measuring():
                for _ in range(requests + 2):
                    started = time.perf_counter()
                    await aggregates.overview(service.services.pool, window)
                    sql.append(time.perf_counter() - started)
            rows.append(("overview aggregates (SQL only)", sql[2:]))
            async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
                await client.post("/admin/login", data={"token": TOKEN})
                with measuring():
                    for path in (
                        "/admin",
                        "/admin/api/console/overview",
                        "/admin/conversations?q=4242",
                        "/admin/inbox",
                    ):
                        rows.append((f"GET {path}", await time_requests(client, path, requests)))
        table = [
            [name, len(s), f"{percentile(s, 50) * 1000:.0f}", f"{percentile(s, 95) * 1000:.0f}",
             f"{max(s) * 1000:.0f}"]
            for name, s in rows
        ]  # fmt: skip
        print_table(["what", "n", "p50 ms", "p95 ms", "max ms"], table)
        overview = percentile(rows[1][1], 95) * 1000
        verdict = "met" if overview < GOAL_MS else "NOT met"
        print(f"overview page p95 {overview:.0f} ms (goal < {GOAL_MS:.0f} ms: {verdict})\n")


def main() -> None:
    tune_benchmark_process()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main_async(args.conversations, args.requests))


if __name__ == "__main__":
    main()
