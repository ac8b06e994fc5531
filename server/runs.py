"""Runs: which messages one graph run answers, and where that run stands.

A run is opened when a job claims a conversation's waiting messages and stays
`running` until its replies are settled. A run that cannot go on now is *postponed*
(`retry_at`, `waiting_on`) rather than failed: the next job of the conversation finds it
and resumes it, however that job came to exist (a new message, the run's own follow-up,
the self-healing sweep). Every claim takes the conversation row lock the webhook holds
while it inserts, so no message can be committed unseen between a claim and a job's end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from langchain_core.messages import HumanMessage

from graph.persistence import Pool
from graph.state import customer_message

WaitingOn = Literal["graph", "whatsapp"]


@dataclass(frozen=True)
class Claim:
    """The messages a run answers.

    `resumed`: an earlier attempt of this run was interrupted (postponed or killed).
    `staged`: its replies are already in the outbox; only sending them remains.
    `retry_at`: set when the run must not be tried before then.
    """

    run_id: str
    conversation_id: str
    wa_id: str
    customer_name: str | None
    messages: list[HumanMessage]
    attempts: int
    resumed: bool
    staged: bool = False
    retry_at: datetime | None = None


async def resume_open_run(
    pool: Pool, conversation_id: str, job_id: int | None, worker: str
) -> Claim | None:
    """The conversation's unfinished run, counted as one more attempt, if there is one.

    A run not due yet is returned without counting an attempt: the caller only
    schedules the job that will try it.
    """
    async with pool.connection() as conn, conn.transaction():
        conversation = await _lock_conversation(conn, conversation_id)
        if conversation is None:
            return None
        cur = await conn.execute(
            "UPDATE conversation_runs SET"
            " attempts = attempts + CASE WHEN retry_at > now() THEN 0 ELSE 1 END,"
            " job_id = %s, worker = %s"
            " WHERE conversation_id = %s AND status = 'running'"
            " RETURNING id, attempts, staged_at IS NOT NULL AS staged,"
            " CASE WHEN retry_at > now() THEN retry_at END AS retry_at",
            (job_id, worker, conversation_id),
        )
        run = await cur.fetchone()
        if run is None:
            return None
        cur = await conn.execute(_CLAIMED_ROWS, (run["id"],))
        rows = await cur.fetchall()
    return _claim(conversation_id, conversation, str(run["id"]), rows, run, resumed=True)


async def claim_waiting(
    pool: Pool, conversation_id: str, job_id: int | None, worker: str
) -> Claim | None:
    """Open a run for every message waiting in the conversation, or None when none is."""
    run_id = str(uuid.uuid4())
    async with pool.connection() as conn, conn.transaction():
        conversation = await _lock_conversation(conn, conversation_id)
        if conversation is None:
            return None
        cur = await conn.execute(
            "SELECT 1 FROM conversation_runs WHERE conversation_id = %s AND status = 'running'",
            (conversation_id,),
        )
        if await cur.fetchone() is not None:
            return None  # another job's run, opened since this job looked: it answers them
        cur = await conn.execute(_CLAIM_WAITING, (run_id, conversation_id))
        rows = await cur.fetchall()
        if not rows:
            return None
        await conn.execute(
            "INSERT INTO conversation_runs (id, conversation_id, job_id, worker)"
            " VALUES (%s, %s, %s, %s)",
            (run_id, conversation_id, job_id, worker),
        )
        rows = _in_order(rows)
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO agent_messages (conversation_id, run_id, role, content)"
                " VALUES (%s, %s, 'customer', %s)",
                [(conversation_id, run_id, row["text"] or f"[{row['kind']}]") for row in rows],
            )
    return _claim(conversation_id, conversation, run_id, rows, {"attempts": 1}, resumed=False)


async def newest_waiting_age(pool: Pool, conversation_id: str) -> float | None:
    """Seconds since the newest unclaimed message arrived, or None when none waits."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - max(received_at))::float8 AS age"
            " FROM inbound_messages WHERE conversation_id = %s AND run_id IS NULL",
            (conversation_id,),
        )
        row = await cur.fetchone()
    return row["age"] if row else None


async def postpone_run(pool: Pool, run_id: str, *, after_s: float, waiting_on: WaitingOn) -> None:
    """The run goes on in `after_s` seconds, from where it stopped."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE conversation_runs SET retry_at = now() + make_interval(secs => %s),"
            " waiting_on = %s WHERE id = %s",
            (after_s, waiting_on, run_id),
        )


async def mark_staged(conn: Any, run_id: str) -> None:
    """Inside the staging transaction: from now on a resumed run only sends."""
    await conn.execute(
        "UPDATE conversation_runs SET staged_at = now(), retry_at = NULL, waiting_on = NULL"
        " WHERE id = %s",
        (run_id,),
    )


async def finish_run(pool: Pool, run_id: str) -> None:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE conversation_runs SET status = 'done', finished_at = now(), retry_at = NULL,"
            " waiting_on = NULL WHERE id = %s",
            (run_id,),
        )
        await conn.execute(
            "UPDATE inbound_messages SET processed_at = now() WHERE run_id = %s", (run_id,)
        )


async def wake_runs_waiting_on_whatsapp(pool: Pool) -> list[str]:
    """Meta accepts sends again: runs postponed because of it are due now. Returns their
    conversations, whose scheduled jobs the caller brings forward."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE conversation_runs SET retry_at = now()"
            " WHERE status = 'running' AND waiting_on = 'whatsapp' AND retry_at > now()"
            " RETURNING conversation_id::text AS conversation_id"
        )
        return [row["conversation_id"] for row in await cur.fetchall()]


async def _lock_conversation(conn: Any, conversation_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT c.wa_id, k.profile_name FROM agent_conversations c"
        " JOIN contacts k USING (wa_id) WHERE c.id = %s FOR UPDATE OF c",
        (conversation_id,),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return row  # None: erased since the job was queued


def _in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["sent_at"], r["id"]))


def _claim(
    conversation_id: str,
    conversation: dict[str, Any],
    run_id: str,
    rows: list[dict[str, Any]],
    run: dict[str, Any],
    *,
    resumed: bool,
) -> Claim:
    return Claim(
        run_id=run_id,
        conversation_id=conversation_id,
        wa_id=conversation["wa_id"],
        customer_name=conversation["profile_name"],
        messages=[_as_customer_message(row) for row in _in_order(rows)],
        attempts=run["attempts"],
        resumed=resumed,
        staged=bool(run.get("staged")),
        retry_at=run.get("retry_at"),
    )


_MESSAGE_COLUMNS = "id, wamid, kind, text, supported, reply_id, sent_at"
_CLAIMED_ROWS = f"SELECT {_MESSAGE_COLUMNS} FROM inbound_messages WHERE run_id = %s"
_CLAIM_WAITING = (
    "UPDATE inbound_messages SET run_id = %s"
    " WHERE conversation_id = %s AND run_id IS NULL AND processed_at IS NULL"
    f" RETURNING {_MESSAGE_COLUMNS}"
)


def _as_customer_message(row: dict[str, Any]) -> HumanMessage:
    return customer_message(
        row["text"],
        wamid=row["wamid"],
        kind=row["kind"],
        supported=row["supported"],
        reply_id=row["reply_id"],
    )
