"""Retention: table sizes after 100k conversations with and without it, and its cost.

    .venv/bin/python -m tests.bench.bench_retention [--conversations 100000]
        [--turns 4] [--days 730] [--batch 2000]

An embedded Postgres of its own is filled, in time order as the service writes, with
`--conversations` conversations spread evenly over the last `--days` days, each of
`--turns` turns: per turn an inbound and an outbound message, two transcript lines, a
run, a model call, a turn event and every other turn a tool call; per conversation a
closed episode and its latest checkpoint (2 KB of state that does not compress); an
audit row per 20 conversations. Then, with every retention default:

- sizes and rows per table as they stand without retention (two years of traffic);
- one retention run: seconds, rows deleted per table, rows per second;
- sizes after it, after VACUUM (space reusable by new rows: what steady state holds)
  and after VACUUM FULL (the footprint the retention window alone needs);
- a second run with nothing left to delete: what every hourly tick costs from then on.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import psycopg

from graph.infra.database import open_pool
from server.operations.retention import RetentionOptions, RetentionReport, enforce_retention
from tests.bench.common import bench_postgres, print_header, print_table, tune_benchmark_process
from tests.support import service_settings

TABLES = (
    "inbound_messages",
    "outbound_messages",
    "agent_messages",
    "conversation_runs",
    "agent_metrics",
    "agent_turn_events",
    "agent_tool_executions",
    "console_conversation_days",
    "conversation_episodes",
    "checkpoints",
    "checkpoint_blobs",
    "audit_log",
)

# %(n)s conversations over %(days)s days, %(turns)s turns each; conversation k starts at
# now - days + k * days / n, so ids follow time as they do in service.
_FILL = (
    "CREATE TEMP TABLE plan AS SELECT k, 'c' || lpad(k::text, 9, '0') AS wa_id,"
    " now() - make_interval(days => %(days)s) + (k * %(days)s::float / %(n)s) * interval '1 day'"
    " AS at FROM generate_series(1, %(n)s) k",
    "INSERT INTO contacts (wa_id, created_at) SELECT wa_id, at FROM plan ORDER BY k",
    "INSERT INTO agent_conversations (phone_number_id, wa_id, created_at, last_inbound_at,"
    " updated_at) SELECT 'PNID', wa_id, at, at, at FROM plan ORDER BY k",
    "CREATE TEMP TABLE turns AS SELECT c.id AS conversation_id, p.wa_id, p.k, t,"
    " p.at + t * interval '1 minute' AS at, gen_random_uuid() AS run_id FROM plan p"
    " JOIN agent_conversations c USING (wa_id), generate_series(1, %(turns)s) t",
    "INSERT INTO conversation_runs (id, conversation_id, status, started_at, finished_at,"
    " worker) SELECT run_id, conversation_id, 'done', at, at, 'bench:1' FROM turns ORDER BY k, t",
    "INSERT INTO inbound_messages (wamid, conversation_id, wa_id, kind, text, payload, sent_at,"
    " received_at, run_id, processed_at) SELECT 'wamid.' || run_id, conversation_id, wa_id,"
    " 'text', 'Hello, do you have the blue city bike in size M?', jsonb_build_object('from',"
    " wa_id, 'id', 'wamid.' || run_id, 'type', 'text', 'text', jsonb_build_object('body',"
    " 'Hello, do you have the blue city bike in size M?'), 'timestamp', extract(epoch FROM at)),"
    " at, at, run_id, at FROM turns ORDER BY k, t",
    "INSERT INTO outbound_messages (conversation_id, run_id, part, wa_id, kind, payload, status,"
    " wamid, created_at, sent_at, updated_at) SELECT conversation_id, run_id, 0, wa_id, 'text',"
    " jsonb_build_object('type', 'text', 'text', jsonb_build_object('body', repeat('Yes, the"
    " blue city bike in M is in stock at 350,000 RWF. ', 4))), 'read', 'wamid.out.' || run_id,"
    " at, at, at FROM turns ORDER BY k, t",
    "INSERT INTO agent_messages (conversation_id, run_id, role, agent, content, created_at)"
    " SELECT conversation_id, run_id, role, 'sales', repeat('a line of the conversation ', 4),"
    " at FROM turns, unnest(ARRAY['customer', 'agent']) role ORDER BY k, t",
    "INSERT INTO agent_metrics (conversation_id, run_id, agent, node, model, prompt_tokens,"
    " completion_tokens, cost_usd, latency_ms, success, created_at) SELECT conversation_id,"
    " run_id, 'sales', 'agent_sales', 'gpt-4o-mini', 1800, 120, 0.00034, 900 + t * 37, true, at"
    " FROM turns ORDER BY k, t",
    "INSERT INTO agent_turn_events (conversation_id, run_id, kind, agent, method, confidence,"
    " created_at) SELECT conversation_id, run_id, 'route', 'sales', 'embedding', 0.8, at"
    " FROM turns ORDER BY k, t",
    "INSERT INTO agent_tool_executions (conversation_id, run_id, agent, tool, arguments,"
    " result_size, success, duration_ms, created_at) SELECT conversation_id, run_id, 'sales',"
    " 'search_catalog', '{\"query\": \"blue city bike\"}', 900, true, 40, at FROM turns"
    " WHERE t %% 2 = 0 ORDER BY k, t",
    "INSERT INTO conversation_episodes (conversation_id, wa_id, started_at, last_customer_at,"
    " first_response_at, closed_at, close_reason, outcome, turns) SELECT id, wa_id,"
    " created_at, created_at, created_at, created_at + interval '1 hour', 'idle',"
    " 'resolved_bot', %(turns)s FROM agent_conversations ORDER BY created_at",
    "INSERT INTO checkpoints (thread_id, checkpoint_id, type, checkpoint, metadata) SELECT"
    " id::text, '1', 'msgpack', jsonb_build_object('ts', updated_at, 'v', 4, 'id', '1'), '{}'"
    " FROM agent_conversations",
    "INSERT INTO checkpoint_blobs (thread_id, channel, version, type, blob) SELECT c.id::text,"
    " 'messages', '1', 'msgpack', (SELECT decode(string_agg(md5(random()::text), ''), 'hex')"
    " FROM generate_series(1, 128) WHERE c.id IS NOT NULL) FROM agent_conversations c",
    "INSERT INTO audit_log (occurred_at, actor, action, target) SELECT at, 'admin',"
    " 'blacklist.add', wa_id FROM plan WHERE k %% 20 = 0 ORDER BY k",
)


async def fill(db_url: str, conversations: int, turns: int, days: int) -> float:
    started = time.monotonic()
    params = {"n": conversations, "turns": turns, "days": days}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for statement in _FILL:
            await conn.execute(statement.encode(), params)
        await conn.execute(b"VACUUM ANALYZE")
    return time.monotonic() - started


async def sizes(db_url: str) -> dict[str, tuple[int, int]]:
    """(rows, bytes with indexes and TOAST) per table."""
    out: dict[str, tuple[int, int]] = {}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for table in TABLES:
            cur = await conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}".encode()
            )
            row = await cur.fetchone()
            assert row is not None
            out[table] = (int(row[0]), int(row[1]))
        cur = await conn.execute(b"SELECT pg_database_size(current_database())")
        row = await cur.fetchone()
        out["(database)"] = (0, int(row[0]) if row else 0)
    return out


async def vacuum(db_url: str, *, full: bool) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for table in TABLES:
            await conn.execute(f"VACUUM {'FULL ' if full else ''}ANALYZE {table}".encode())


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def print_sizes(stages: Sequence[tuple[str, dict[str, tuple[int, int]]]]) -> None:
    headers = ["table", *(f"{name} rows" for name, _ in stages[::2])]
    headers += [f"{name} MiB" for name, _ in stages]
    rows = []
    for table in (*TABLES, "(database)"):
        counts = [f"{s[table][0]:,}" if table != "(database)" else "" for _, s in stages[::2]]
        rows.append([table, *counts, *(mib(s[table][1]) for _, s in stages)])
    print_table(headers, rows)


def print_run(report: RetentionReport) -> None:
    rate = report.total / report.seconds if report.seconds else 0.0
    print(
        f"retention run: {report.total:,} rows in {report.seconds:.1f} s = {rate:,.0f} rows/s"
        f" (complete: {report.complete})"
    )
    rows = []
    for table, deleted in report.deleted.items():
        seconds = report.table_seconds.get(table, 0.0)
        if deleted:
            rows.append([table, f"{deleted:,}", f"{seconds:.1f}", f"{deleted / seconds:,.0f}"])
    print_table(["table", "deleted", "seconds", "rows/s"], rows)


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_retention: table sizes with and without retention, and its cost",
        [
            f"{args.conversations:,} conversations x {args.turns} turns over {args.days} days,"
            f" retention defaults, batch {args.batch}",
            "embedded Postgres 18, its default settings; one retention run at a time",
        ],
    )
    async with bench_postgres() as postgres:
        db_url = await postgres.fresh_database("retention")
        print(f"filled in {await fill(db_url, args.conversations, args.turns, args.days):.0f} s")
        before = await sizes(db_url)
        settings = service_settings(
            db_url, retention_batch=args.batch, retention_max_seconds=3600.0
        )
        async with open_pool(db_url, settings) as pool:
            report = await enforce_retention(pool, RetentionOptions.from_settings(settings))
            after = await sizes(db_url)
            await vacuum(db_url, full=False)
            vacuumed = await sizes(db_url)
            await vacuum(db_url, full=True)
            compacted = await sizes(db_url)
            idle = await enforce_retention(pool, RetentionOptions.from_settings(settings))
    print_run(report)
    print_sizes(
        [
            ("without", before),
            ("after run", after),
            ("with", vacuumed),
            ("VACUUM FULL", compacted),
        ]
    )
    print(f"a run with nothing to delete: {idle.seconds * 1000:.0f} ms ({idle.total} rows)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args(argv)
    if not (1 <= args.conversations <= 1_000_000 and 1 <= args.turns <= 50):
        parser.error("conversations must be 1..1,000,000 and turns 1..50")
    if not (1 <= args.days <= 3650 and 1 <= args.batch <= 100_000):
        parser.error("days must be 1..3650 and the batch 1..100,000")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
