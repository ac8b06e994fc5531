"""Meta's side of a conversation under faults, and what must hold at the end.

`Meta` delivers each customer's messages the way the Cloud API does: signed, one
delivery at a time per customer, delivered again (after a pause) until the webhook
answers 200. A message counts as *acknowledged* when it got that 200. The service then
owes it a reply, exactly once, in order; `check_invariants` says whether it paid.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, new_wamid, sign, text_message
from tests.support import APP_SECRET, query

# What the fake model echoes back: every message carries a token naming it.
TOKEN = re.compile(r"\bc(\d+)m(\d+)\b")


def message_text(customer: int, turn: int) -> str:
    return f"c{customer}m{turn} hello"


@dataclass
class Delivery:
    wamid: str
    text: str
    tries: int = 0
    refusals: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds)


@dataclass
class Meta:
    base_url: str
    redeliver_after_s: float = 0.5
    give_up_after_s: float = 300.0
    acknowledged: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    refused: list[tuple[int, float]] = field(default_factory=list)

    async def deliver(self, client: httpx.AsyncClient, wa_id: str, text: str) -> Delivery:
        """Deliver one message until it is acknowledged (Meta retries for days)."""
        delivery = Delivery(new_wamid(), text)
        body = json.dumps(envelope(text_message(wa_id, text, wamid=delivery.wamid))).encode()
        headers = {"X-Hub-Signature-256": sign(body, APP_SECRET)}
        deadline = time.monotonic() + self.give_up_after_s
        while True:
            delivery.tries += 1
            started = time.monotonic()
            try:
                response = await client.post("/webhook", content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError:
                status = 0  # no answer in time: Meta counts that as a failure too
            if status == 200:
                self.acknowledged[wa_id].append(delivery)
                return delivery
            refusal = (status, time.monotonic() - started)
            delivery.refusals.append(refusal)
            self.refused.append(refusal)
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} was never acknowledged: {delivery.refusals}")
            await asyncio.sleep(self.redeliver_after_s)

    async def converse(self, wa_id: str, customer: int, turns: int, pause_s: float) -> None:
        """One customer writing `turns` messages, one after another."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5.0) as client:
            for turn in range(turns):
                await self.deliver(client, wa_id, message_text(customer, turn))
                await asyncio.sleep(pause_s)

    @property
    def acknowledged_count(self) -> int:
        return sum(len(deliveries) for deliveries in self.acknowledged.values())


async def answered_count(db_url: str) -> int:
    rows = await query(
        db_url,
        "SELECT count(*) AS n FROM inbound_messages m JOIN conversation_runs r ON r.id = m.run_id"
        " WHERE m.processed_at IS NOT NULL AND r.status = 'done'",
    )
    return int(rows[0]["n"])


async def stuck_report(db_url: str) -> str:
    """What an unanswered message is waiting on: its run and the run's job, for a failure
    message that says where the spine let go."""
    rows = await query(
        db_url,
        "SELECT m.wa_id, m.id, m.run_id::text AS run_id, r.status AS run, r.attempts,"
        " r.waiting_on, r.retry_at, r.staged_at IS NOT NULL AS staged, r.error,"
        " j.id AS job, j.status AS job_status, j.attempts AS job_attempts,"
        " (SELECT count(*) FROM procrastinate_jobs q WHERE q.lock = m.conversation_id::text"
        "   AND q.status IN ('todo', 'doing')) AS open_jobs"
        " FROM inbound_messages m LEFT JOIN conversation_runs r ON r.id = m.run_id"
        " LEFT JOIN procrastinate_jobs j ON j.id = r.job_id"
        " WHERE m.processed_at IS NULL OR r.status IS DISTINCT FROM 'done' ORDER BY m.id",
    )
    return "\n".join(str(row) for row in rows) or "nothing unanswered"


async def check_invariants(meta: Meta, db_url: str, graph_api: FakeGraphAPI) -> None:
    """Every acknowledged message answered exactly once, in order; nothing wedged."""
    problems: list[str] = []
    for wa_id, deliveries in meta.acknowledged.items():
        problems += await _check_customer(wa_id, deliveries, db_url, graph_api)
    leftovers = await _leftovers(db_url)
    for _ in range(100):  # a job that just answered is still ending: give it a moment
        if not any(leftovers.values()):
            break
        await asyncio.sleep(0.1)
        leftovers = await _leftovers(db_url)
    if any(leftovers.values()):
        problems.append(f"left behind: {leftovers}")
    assert not problems, "\n".join(problems)


async def _leftovers(db_url: str) -> dict[str, int]:
    """Jobs still running, messages not answered, runs not finished."""
    rows = await query(
        db_url,
        "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing') AS doing,"
        " (SELECT count(*) FROM inbound_messages WHERE processed_at IS NULL) AS unanswered,"
        " (SELECT count(*) FROM conversation_runs WHERE status = 'running') AS open_runs",
    )
    return {key: int(value) for key, value in rows[0].items()}


async def _check_customer(
    wa_id: str, deliveries: list[Delivery], db_url: str, graph_api: FakeGraphAPI
) -> list[str]:
    wamids = [d.wamid for d in deliveries]
    rows = await query(
        db_url,
        "SELECT m.wamid, m.run_id::text AS run_id, m.processed_at IS NOT NULL AS processed,"
        " r.status AS run_status FROM inbound_messages m"
        " LEFT JOIN conversation_runs r ON r.id = m.run_id WHERE m.wamid = ANY(%s)",
        wamids,
    )
    by_wamid = {row["wamid"]: row for row in rows}
    problems = [
        f"{wa_id}: {d.text!r} acknowledged but {by_wamid.get(d.wamid) or 'not stored'}"
        for d in deliveries
        if not (by_wamid.get(d.wamid) or {}).get("processed")
        or by_wamid[d.wamid]["run_status"] != "done"
    ]
    runs = list(dict.fromkeys(by_wamid[w]["run_id"] for w in wamids if w in by_wamid))
    parts = await query(
        db_url,
        "SELECT run_id::text AS run_id, part, status, wamid FROM outbound_messages"
        " WHERE wa_id = %s ORDER BY id",
        wa_id,
    )
    problems += _check_parts(wa_id, runs, parts, graph_api)
    problems += _check_echo_order(wa_id, deliveries, graph_api)
    return problems


def _check_parts(
    wa_id: str, runs: list[str], parts: list[dict[str, Any]], graph_api: FakeGraphAPI
) -> list[str]:
    """Each run replied; every part the outbox holds for the customer reached them once
    (or is `unknown`: its send was cut off mid-flight), in the order it was staged."""
    problems = [
        f"{wa_id}: run {run} answered nothing"
        for run in runs
        if not any(p["run_id"] == run for p in parts)
    ]
    received = [m["wamid"] for m in graph_api.sent_to(wa_id)]
    expected: list[str] = []
    cut_off = 0
    for part in parts:
        if part["status"] == "unknown":
            cut_off += 1
            continue
        if part["wamid"] is None or part["status"] not in ("sent", "delivered", "read"):
            problems.append(f"{wa_id}: part {part['part']} of {part['run_id']} is {part['status']}")
            continue
        expected.append(part["wamid"])
    known = [wamid for wamid in received if wamid in set(expected)]
    strays = len(received) - len(known)  # only a part cut off mid-send may have arrived unseen
    if known != expected or strays > cut_off:
        problems.append(f"{wa_id}: replies arrived as {received}, the outbox says {expected}")
    return problems


def _check_echo_order(wa_id: str, deliveries: list[Delivery], graph_api: FakeGraphAPI) -> list[str]:
    """Where the model answered (it echoes each message's token), tokens come in the
    order the messages were acknowledged, each once."""
    order = {TOKEN.search(d.text).group(0): i for i, d in enumerate(deliveries)}  # type: ignore[union-attr]
    seen = [m.group(0) for text in graph_api.texts_to(wa_id) for m in TOKEN.finditer(text)]
    echoed = [order[token] for token in seen if token in order]
    if echoed != sorted(set(echoed)):
        return [f"{wa_id}: messages were answered out of order or twice: {seen}"]
    return []
