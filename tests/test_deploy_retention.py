"""Retention against a real migrated database: old rows go, young and unfinished rows
stay, the dashboard's figures and the audit trail's guard survive, and the periodic job
is registered where the workers run it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import empty_checkpoint

from graph.infra.database import Pool, create_checkpointer, open_pool
from graph.settings import Settings
from server.operations.retention import (
    RETENTION_TASK,
    RetentionOptions,
    enforce_retention,
    message_days,
)
from server.services import open_services
from tests.support import query, service_settings

pytestmark = pytest.mark.timeout(120)

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=800)  # older than every default period
RECENT = NOW - timedelta(days=2)  # younger than every default period


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    async with open_pool(db_url, service_settings(db_url)) as opened:
        yield opened


async def run(pool: Pool, db_url: str, **overrides: Any) -> dict[str, int]:
    options = RetentionOptions.from_settings(service_settings(db_url, **overrides))
    report = await enforce_retention(pool, options)
    assert report.complete
    return report.deleted


async def sql(db_url: str, statement: str, *params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(statement.encode(), params)


async def count(db_url: str, table: str, where: str = "true") -> int:
    return int((await query(db_url, f"SELECT count(*) AS n FROM {table} WHERE {where}"))[0]["n"])


async def conversation(db_url: str, wa_id: str, at: datetime) -> str:
    await sql(db_url, "INSERT INTO contacts (wa_id) VALUES (%s) ON CONFLICT DO NOTHING", wa_id)
    rows = await query(
        db_url,
        "INSERT INTO agent_conversations (phone_number_id, wa_id, last_inbound_at, updated_at)"
        " VALUES ('PNID', %s, %s, %s) RETURNING id::text AS id",
        wa_id,
        at,
        at,
    )
    return str(rows[0]["id"])


async def traffic(db_url: str, conv: str, wa_id: str, at: datetime, *, finished: bool) -> None:
    """One turn's rows of every kind, `at` that time; `finished=False`: still open."""
    run_id = str(uuid.uuid4())
    await sql(
        db_url,
        "INSERT INTO inbound_messages (wamid, conversation_id, wa_id, kind, payload, sent_at,"
        " received_at, run_id, processed_at) VALUES (%s, %s, %s, 'text', '{}', %s, %s, %s, %s)",
        f"wamid.{uuid.uuid4().hex}",
        conv,
        wa_id,
        at,
        at,
        run_id,
        at if finished else None,
    )
    await sql(
        db_url,
        "INSERT INTO outbound_messages (conversation_id, run_id, part, wa_id, kind, payload,"
        " status, created_at) VALUES (%s, %s, 0, %s, 'text', '{}', %s, %s)",
        conv,
        run_id,
        wa_id,
        "delivered" if finished else "pending",
        at,
    )
    await sql(
        db_url,
        "INSERT INTO conversation_runs (id, conversation_id, status, started_at)"
        " VALUES (%s, %s, %s, %s)",
        run_id,
        conv,
        "done" if finished else "running",
        at,
    )
    await sql(
        db_url,
        "INSERT INTO agent_messages (conversation_id, run_id, role, content, created_at)"
        " VALUES (%s, %s, 'customer', 'hello', %s)",
        conv,
        run_id,
        at,
    )
    for statement in (
        "INSERT INTO agent_metrics (conversation_id, run_id, agent, node, success, latency_ms,"
        " created_at) VALUES (%s, %s, 'sales', 'agent_sales', true, 900, %s)",
        "INSERT INTO agent_tool_executions (conversation_id, run_id, tool, success, created_at)"
        " VALUES (%s, %s, 'search_catalog', true, %s)",
        "INSERT INTO agent_turn_events (conversation_id, run_id, kind, agent, method, created_at)"
        " VALUES (%s, %s, 'route', 'sales', 'rule', %s)",
        "INSERT INTO answer_cache_events (conversation_id, run_id, agent, language, hit,"
        " created_at) VALUES (%s, %s, 'sales', 'en', false, %s)",
    ):
        await sql(db_url, statement, conv, run_id, at)


async def episodes_and_sessions(db_url: str, old_conv: str, young_conv: str) -> None:
    """A closed old episode and an open one, each with a CSAT answer; an expired and a
    live dashboard session."""
    for conv, wa_id, closed in ((old_conv, "250788600001", OLD), (young_conv, "x", None)):
        rows = await query(
            db_url,
            "INSERT INTO conversation_episodes (conversation_id, wa_id, started_at,"
            " last_customer_at, closed_at) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            conv,
            wa_id,
            OLD,
            OLD,
            closed,
        )
        await sql(
            db_url,
            "INSERT INTO csat_responses (episode_id, conversation_id, rating) VALUES (%s, %s, 5)",
            rows[0]["id"],
            conv,
        )
    await sql(
        db_url,
        "INSERT INTO dashboard_sessions (admin, created_at, expires_at) VALUES"
        " ('admin', %s, %s), ('admin', %s, %s)",
        OLD,
        OLD,
        NOW,
        NOW + timedelta(hours=12),
    )


async def test_old_rows_go_and_young_or_unfinished_rows_stay(pool: Pool, db_url: str) -> None:
    old_conv = await conversation(db_url, "250788600001", OLD)
    young_conv = await conversation(db_url, "250788600002", RECENT)
    await traffic(db_url, old_conv, "250788600001", OLD, finished=True)
    await traffic(db_url, old_conv, "250788600001", OLD, finished=False)  # stuck a long time
    await traffic(db_url, young_conv, "250788600002", RECENT, finished=True)
    await episodes_and_sessions(db_url, old_conv, young_conv)

    deleted = await run(pool, db_url)

    # The old conversation's finished turn went; its unfinished one and the young one stayed.
    for table in ("inbound_messages", "outbound_messages", "conversation_runs"):
        assert deleted[table] == 1, table
        assert await count(db_url, table) == 2, table
    assert await count(db_url, "inbound_messages", "processed_at IS NULL") == 1
    assert await count(db_url, "outbound_messages", "status = 'pending'") == 1
    assert await count(db_url, "conversation_runs", "status = 'running'") == 1
    for table in (
        "agent_messages",
        "agent_metrics",
        "agent_tool_executions",
        "agent_turn_events",
        "answer_cache_events",
    ):
        assert deleted[table] == 2, table  # both old turns' rows
        assert await count(db_url, table) == 1, table
    assert deleted["conversation_episodes"] == 1
    assert await count(db_url, "conversation_episodes") == 1  # the open one
    assert await count(db_url, "csat_responses") == 1  # the closed one's answer cascaded
    assert deleted["dashboard_sessions"] == 1
    # The rollups of 800 days ago are past their two years too; today's stay.
    assert deleted["console_conversation_days"] >= 1
    assert await count(db_url, "console_conversation_days", "day > current_date - 30") == 1

    # A second run finds nothing more: each statement stops at the first young row.
    assert sum((await run(pool, db_url)).values()) == 0


async def test_aging_metrics_leave_the_dashboard_figures_standing(pool: Pool, db_url: str) -> None:
    at = NOW - timedelta(days=100)  # past the metrics' 90 days, within the rollups' 730
    conv = await conversation(db_url, "250788600011", at)
    await traffic(db_url, conv, "250788600011", at, finished=True)
    latency = "SELECT coalesce(sum(calls), 0) AS n FROM console_agent_latency"
    routes = "SELECT coalesce(sum(decisions), 0) AS n FROM console_route_days"
    assert (await query(db_url, latency))[0]["n"] == 1
    assert (await query(db_url, routes))[0]["n"] == 1

    deleted = await run(pool, db_url)

    assert deleted["agent_metrics"] == 1 and deleted["agent_turn_events"] == 1
    assert (await query(db_url, latency))[0]["n"] == 1
    assert (await query(db_url, routes))[0]["n"] == 1
    assert await count(db_url, "console_conversation_days") == 1
    # Outside retention (an erasure deleting a customer's calls) the figures still follow.
    await traffic(db_url, conv, "250788600011", at, finished=True)
    await sql(db_url, "DELETE FROM agent_metrics")
    assert (await query(db_url, latency))[0]["n"] == 1


async def test_the_audit_log_expires_only_through_its_own_door(pool: Pool, db_url: str) -> None:
    for at in (NOW - timedelta(days=1200), NOW - timedelta(days=400), NOW):
        await sql(
            db_url,
            "INSERT INTO audit_log (occurred_at, actor, action) VALUES (%s, 'admin', 'x')",
            at,
        )
    with pytest.raises(psycopg.errors.RaiseException, match="never rewritten or deleted"):
        await sql(db_url, "DELETE FROM audit_log WHERE occurred_at < now() - interval '1000 days'")
    with pytest.raises(psycopg.errors.RaiseException, match="at least 30 days"):
        await sql(db_url, "SELECT audit_log_expire(now() - interval '29 days', 10)")
    with pytest.raises(psycopg.errors.RaiseException, match="never rewritten or deleted"):
        await sql(db_url, "TRUNCATE audit_log")

    assert (await run(pool, db_url))["audit_log"] == 1  # three years by default
    assert await count(db_url, "audit_log") == 2
    shorter = {"retention_audit_days": 365, "retention_rollup_days": 365}
    assert (await run(pool, db_url, **shorter))["audit_log"] == 1
    assert await count(db_url, "audit_log") == 1


def test_the_audit_log_must_be_kept_longest(db_url: str) -> None:
    with pytest.raises(ValueError, match="audit log must be kept longest"):
        service_settings(db_url, retention_audit_days=100)  # messages are kept 365
    with pytest.raises(ValueError, match="audit log must be kept longest"):
        service_settings(db_url, retention_message_days=0)  # messages forever, audit not
    with pytest.raises(ValueError, match="at least 30 days"):
        service_settings(db_url, retention_audit_days=10, retention_message_days=5)
    assert service_settings(db_url, retention_message_days=0, retention_audit_days=0)


def test_messages_outlive_the_webhooks_memory_of_redeliveries(db_url: str) -> None:
    assert message_days(service_settings(db_url, retention_message_days=1)) == 8.0
    days = message_days(service_settings(db_url, retention_message_days=3, webhook_max_age_days=20))
    assert days == 21.0
    forever = service_settings(db_url, retention_message_days=0, retention_audit_days=0)
    assert message_days(forever) is None
    assert message_days(service_settings(db_url)) == 365.0


async def test_tombstones_go_once_the_freshness_window_refuses_their_messages(
    pool: Pool, db_url: str
) -> None:
    for days in (30, 2):
        await sql(
            db_url,
            "INSERT INTO erased_wamids (wamid_sha256, erased_at) VALUES (%s, %s)",
            uuid.uuid4().hex * 2,
            NOW - timedelta(days=days),
        )
    assert (await run(pool, db_url, webhook_max_age_days=0)).get("erased_wamids") is None
    assert await count(db_url, "erased_wamids") == 2
    assert (await run(pool, db_url))["erased_wamids"] == 1  # the 7-day window, plus a day
    assert await count(db_url, "erased_wamids") == 1


async def test_finished_jobs_go_with_their_events(pool: Pool, db_url: str) -> None:
    async def job(status: str, event_at: datetime) -> None:
        rows = await query(
            db_url,
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, args)"
            " VALUES ('default', 'operator_reply', %s, %s) RETURNING id",
            status,
            json.dumps({"conversation_id": str(uuid.uuid4())}),
        )
        await sql(
            db_url,
            "INSERT INTO procrastinate_events (job_id, type, at) VALUES (%s, 'failed', %s)",
            rows[0]["id"],
            event_at,
        )

    await job("failed", NOW - timedelta(days=30))
    await job("failed", NOW - timedelta(hours=1))
    await job("todo", NOW - timedelta(days=30))  # waiting, however long: never
    deleted = await run(pool, db_url)
    assert deleted["procrastinate_jobs"] == 1
    assert await count(db_url, "procrastinate_jobs") == 2
    assert await count(db_url, "procrastinate_events", "at < now() - interval '7 days'") == 1


async def test_batches_take_turns_and_a_spent_budget_leaves_the_rest_to_the_next_run(
    pool: Pool, db_url: str
) -> None:
    conv = await conversation(db_url, "250788600021", OLD)
    for _ in range(20):  # in time order, as the service inserts them
        await traffic(db_url, conv, "250788600021", OLD, finished=True)
    await traffic(db_url, conv, "250788600021", RECENT, finished=True)

    settings = service_settings(db_url, retention_batch=2, retention_max_seconds=1e-6)
    first = await enforce_retention(pool, RetentionOptions.from_settings(settings))
    assert not first.complete and 0 < first.total < 20 * 9

    rest = await run(pool, db_url, retention_batch=3)
    assert rest["inbound_messages"] + first.deleted["inbound_messages"] == 20
    assert rest["agent_metrics"] + first.deleted["agent_metrics"] == 20
    for table in ("inbound_messages", "outbound_messages", "agent_messages", "agent_metrics"):
        assert await count(db_url, table) == 1, table


async def test_idle_threads_lose_their_checkpoints_busy_ones_keep_them(
    pool: Pool, db_url: str
) -> None:
    idle = await conversation(db_url, "250788600031", OLD)
    waiting = await conversation(db_url, "250788600032", OLD)
    young = await conversation(db_url, "250788600033", RECENT)
    await traffic(db_url, waiting, "250788600032", OLD, finished=False)  # a message unanswered
    saver = create_checkpointer(pool)
    for thread in (idle, waiting, young):
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        await saver.aput(config, empty_checkpoint(), {}, {})  # type: ignore[arg-type]

    deleted = await run(pool, db_url)

    assert deleted["checkpoint_threads"] == 1
    kept = await query(db_url, "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id")
    assert {row["thread_id"] for row in kept} == {waiting, young}


async def test_the_workers_run_retention_periodically(db_url: str) -> None:
    settings: Settings = service_settings(db_url, retention_cron="*/7 * * * *")
    async with open_services(settings, run_worker_here=False, migrate=False) as services:
        assert RETENTION_TASK in services.queue.tasks
        periodic = [
            p
            for p in services.queue.periodic_registry.periodic_tasks.values()
            if p.task.name == RETENTION_TASK
        ]
        assert [p.cron for p in periodic] == ["*/7 * * * *"]
    off = service_settings(db_url, retention_enabled=False)
    async with open_services(off, run_worker_here=False, migrate=False) as services:
        assert RETENTION_TASK not in services.queue.tasks
