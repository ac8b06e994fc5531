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

from graph.infra.database import Pool
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
    # The conversation's status when claimed (active, escalated…).
    status: str = "active"
    # The run took messages that came while it ran: it runs again from this checkpoint.
    rerun_from: str | None = None
    # The conversation's business number: its channel (server/runner/transport.py).
    phone_number_id: str = ""
    # When the customer last rated this conversation (a CSAT answer), if ever: only a
    # text soon after can be the rating's comment (server/outcomes/csat.py).
    rated_at: datetime | None = None
    # The language the customer was last recognised writing in (None: not yet).
    language: str | None = None


@dataclass(frozen=True)
class Quiet:
    """The customer is still typing (the double-texting window): claim again later."""

    wait_s: float


async def claim_turn(
    pool: Pool, conversation_id: str, job_id: int | None, worker: str, *, quiet_s: float = 0.0
) -> Claim | Quiet | None:
    """The conversation's open run (counted as one more attempt unless it is not due
    yet), else a new run for every waiting message; None when there is nothing to do
    (or the conversation was erased). One round trip: `wa_claim_turn` (migration 0021),
    and when the customer last rated the conversation (index: migration 0030)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            _CLAIM_TURN,
            {
                "conversation": conversation_id,
                "job": job_id,
                "worker": worker,
                "new_run": str(uuid.uuid4()),
                "quiet_s": quiet_s,
            },
        )
        row = await cur.fetchone()
    if row is None:
        return None
    if row["run_id"] is None:
        return Quiet(row["wait_s"])
    return Claim(
        run_id=str(row["run_id"]),
        conversation_id=conversation_id,
        wa_id=row["wa_id"],
        customer_name=row["profile_name"],
        messages=[_as_customer_message(m) for m in row["messages"]],
        attempts=row["attempts"],
        resumed=row["resumed"],
        staged=row["staged"],
        retry_at=row["retry_at"],
        status=row["status"],
        rerun_from=row["rerun_from"],
        phone_number_id=row["phone_number_id"],
        rated_at=row["rated_at"],
        language=row["language"],
    )


_CLAIM_TURN = """
SELECT t.*, (SELECT max(r.answered_at) FROM csat_responses r
             WHERE r.conversation_id = %(conversation)s AND r.rating IS NOT NULL) AS rated_at,
       (SELECT k.language FROM contacts k WHERE k.wa_id = t.wa_id) AS language
FROM wa_claim_turn(%(conversation)s, %(job)s, %(worker)s, %(new_run)s, %(quiet_s)s) t
"""


async def claim_more(pool: Pool, claim: Claim, base: str) -> list[HumanMessage]:
    """Messages that arrived while the run ran, taken into it: all its messages in order,
    or [] when none came. The run will run again from `base` (kept, in case it is
    resumed after a crash before that)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT wa_claim_more(%s, %s, %s) AS messages",
            (claim.run_id, claim.conversation_id, base),
        )
        row = await cur.fetchone()
    rows = row["messages"] if row else []
    return [_as_customer_message(m) for m in rows]


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


async def refuse_taken_messages(pool: Pool, run_id: str, wamids: list[str], reason: str) -> None:
    """Messages taken into a run that the abuse gate refused: handled, with the reason,
    and no longer the run's to answer (`wa_run_messages` leaves them out, so a run
    resumed after a crash does not feed them to the graph either)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE inbound_messages SET processed_at = now(), gate = %s"
            " WHERE run_id = %s AND wamid = ANY(%s)",
            (reason, run_id, wamids),
        )


async def finish_run(pool: Pool, run_id: str) -> bool:
    """The run done and its messages answered; True when more messages wait."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT wa_finish_run(%s) AS more", (run_id,))
        row = await cur.fetchone()
    return bool(row and row["more"])


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


async def gate_of(pool: Pool, run_id: str) -> str | None:
    """What the abuse gate decided for this run, if it decided yet."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT gate FROM conversation_runs WHERE id = %s", (run_id,))
        row = await cur.fetchone()
    return row["gate"] if row else None


async def record_gate(pool: Pool, run_id: str, decision: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE conversation_runs SET gate = %s WHERE id = %s", (decision, run_id)
        )


async def close_refused_run(pool: Pool, run_id: str, reason: str) -> None:
    """The run refused by the gate: it and its messages are done, with the reason."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE conversation_runs SET status = 'refused', gate = %s,"
            " finished_at = now() WHERE id = %s",
            (reason, run_id),
        )
        await conn.execute(
            "UPDATE inbound_messages SET processed_at = now(), gate = %s WHERE run_id = %s",
            (reason, run_id),
        )


def _as_customer_message(row: dict[str, Any]) -> HumanMessage:
    return customer_message(
        row["text"],
        wamid=row["wamid"],
        kind=row["kind"],
        supported=row["supported"],
        reply_id=row["reply_id"],
    )
