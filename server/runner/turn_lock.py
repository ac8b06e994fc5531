"""One run per conversation, for turns that do not come through the queue (SSE).

Concurrent runs on one LangGraph thread lose updates silently (STACK.md), and the
worker's turns are kept apart by procrastinate's job `lock` (= the conversation id):
no job is fetched while another job with its lock is `doing`, and a unique index allows
only one `doing` job per lock. A streamed turn takes that very lock by holding a marker
job in `doing` under a worker registration of its own, heartbeat included:

- while a worker runs the conversation, the marker cannot be inserted (unique index):
  the stream waits, up to `stream_wait_seconds`, then gives up with `ConversationBusy`;
- while the marker is held, the worker fetches no job of the conversation; the job
  runs, in order, once the marker is removed;
- if this process dies mid-stream, its heartbeat stops and the stalled-job sweep puts
  the marker back to `todo`, where the no-op `stream_turn` task finishes it: the lock
  cannot leak.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import procrastinate
import psycopg
from psycopg.types.json import Jsonb

from graph.infra.database import Pool

STREAM_TURN_TASK = "stream_turn"
_RETRY_EVERY_S = 0.05


class ConversationBusy(RuntimeError):
    """Another turn of this conversation is running and did not end in time."""


def register_stream_turn_task(queue: procrastinate.App) -> None:
    """A marker that outlived its stream is finished by a worker, harmlessly."""

    @queue.task(name=STREAM_TURN_TASK)
    async def stream_turn(conversation_id: str) -> None:
        return None


@contextlib.asynccontextmanager
async def conversation_turn_lock(
    queue: procrastinate.App,
    pool: Pool,
    conversation_id: str,
    *,
    wait_seconds: float,
    heartbeat_seconds: float,
) -> AsyncIterator[None]:
    """Hold the queue's lock of this conversation for the duration of the block."""
    worker_id = await queue.job_manager.register_worker()
    job_id: int | None = None
    heartbeat: asyncio.Task[None] | None = None
    try:
        job_id = await _take(pool, conversation_id, worker_id, wait_seconds)
        heartbeat = asyncio.create_task(_beat(queue, worker_id, heartbeat_seconds))
        yield
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        if job_id is not None:
            async with pool.connection() as conn:
                await conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", (job_id,))
        await queue.job_manager.unregister_worker(worker_id)


async def _take(pool: Pool, conversation_id: str, worker_id: int, wait_seconds: float) -> int:
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO procrastinate_jobs"
                    " (queue_name, task_name, lock, args, status, worker_id)"
                    " VALUES ('default', %s, %s, %s, 'doing', %s) RETURNING id",
                    (
                        STREAM_TURN_TASK,
                        conversation_id,
                        Jsonb({"conversation_id": conversation_id}),
                        worker_id,
                    ),
                )
                row = await cur.fetchone()
                assert row is not None
                return int(row["id"])
        except psycopg.errors.UniqueViolation:
            if asyncio.get_running_loop().time() >= deadline:
                raise ConversationBusy(
                    "another turn of this conversation is running; try again shortly"
                ) from None
            await asyncio.sleep(_RETRY_EVERY_S)


async def _beat(queue: procrastinate.App, worker_id: int, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        with contextlib.suppress(Exception):  # a missed beat only risks an early release
            await queue.job_manager.update_heartbeat(worker_id)
