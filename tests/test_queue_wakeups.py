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

import psycopg

from server.runner.memory_jobs import enqueue_remember
from server.runner.queue import create_queue_app, schedule_answer
from tests.support import service_settings


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
