"""Which deferred jobs wake the workers.

Every worker process listens for new jobs and fetches when told of one. A job scheduled
for later cannot be fetched before its time, so telling the workers of it only makes
each of them fetch in vain; the runner schedules one after nearly every turn (the
remember job). Such a job is found by the workers' polling once it is due.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from server.runner.memory_jobs import enqueue_remember
from server.runner.queue import create_queue_app, schedule_answer
from tests.support import eventually, service_settings


async def test_only_a_job_due_now_wakes_the_workers(db_url: str) -> None:
    queue = create_queue_app(db_url, service_settings(db_url))
    postponed, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute("LISTEN procrastinate_any_queue_v1")
        async with queue.open_async():
            await enqueue_remember(queue, waiting, delay_seconds=60)
            later = datetime.now(UTC) + timedelta(minutes=5)
            await schedule_answer(queue, postponed, at=later)  # a run waiting on Meta, say
            await schedule_answer(queue, waiting)  # a new message: due now
        woken = [
            json.loads(note.payload)["job_id"]
            async for note in listener.notifies(timeout=10, stop_after=1)
        ]
        # Notifications arrive in commit order: one for a later job would come first.
        cur = await listener.execute(
            "SELECT id, task_name, queueing_lock, scheduled_at IS NULL AS due"
            " FROM procrastinate_jobs ORDER BY id"
        )
        jobs = await cur.fetchall()
    assert [(task, lock, due) for _, task, lock, due in jobs] == [
        ("remember_conversation", f"remember:{waiting}", False),
        ("answer_conversation", postponed, False),
        ("answer_conversation", waiting, True),
    ]
    assert woken == [jobs[2][0]]


async def test_a_job_already_waiting_covers_the_next_without_a_failed_insert(
    db_url: str,
) -> None:
    """The first turn of a conversation defers its remember job a minute ahead; each later
    turn before it runs is covered by it. A run postponed while a newer message's job
    waits is covered by that job. Neither may show up in Postgres as a failed insert (a
    rolled-back transaction, an ERROR in the server's log), as both did through
    procrastinate's client: for nearly every message, and throughout a Meta outage."""
    queue = create_queue_app(db_url, service_settings(db_url))
    conversation = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        before = await _rollbacks(conn)
        async with queue.open_async():
            deferred = [
                await enqueue_remember(queue, conversation, delay_seconds=60) for _ in range(3)
            ]
            answered = await schedule_answer(queue, conversation)  # a new message
            later = datetime.now(UTC) + timedelta(seconds=30)
            postponed = await schedule_answer(queue, conversation, at=later)
        # A server process reports its statistics as it exits: once the queue's
        # connections are gone, what they did is counted.
        await eventually(lambda: _no_other_sessions(conn), what="the queue's sessions to end")
        after = await _rollbacks(conn)
        cur = await conn.execute(
            "SELECT task_name, lock, queueing_lock, args, status,"
            " scheduled_at - now() AS ahead FROM procrastinate_jobs ORDER BY id"
        )
        [job, answer] = await cur.fetchall()
    assert deferred == [True, False, False]
    assert (answered, postponed) == (True, False)
    assert after == before
    assert answer[:5] == (
        "answer_conversation",
        conversation,
        conversation,
        {"conversation_id": conversation},
        "todo",
    )
    assert answer[5] is None  # due now still: the postponed run's time did not delay it
    task, lock, queueing_lock, args, status, ahead = job
    assert (task, lock, queueing_lock, status) == (
        "remember_conversation",
        f"remember:{conversation}",
        f"remember:{conversation}",
        "todo",
    )
    assert args == {"conversation_id": conversation, "attempt": 1}
    assert timedelta(seconds=55) < ahead <= timedelta(seconds=60)


async def _rollbacks(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> int:
    cur = await conn.execute(
        "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _no_other_sessions(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    row = await cur.fetchone()
    return row is not None and row[0] == 0
