"""Prompt tokens and cost per conversation, on the held-out typical conversations.

    .venv/bin/python -m tests.bench.bench_cost [--conversations DIR] [--only ID ...]
        [--remember-wait 150] [--calls] [--isolated] [--save FILE] [--compare FILE]
        [--dump FILE]

The service runs as it ships (`wa-agent serve` with its default worker processes, default
settings but the demo shop's name) on a fresh embedded Postgres seeded with `wa-agent
seed-demo`. Each conversation of tests/data/cost_conversations/ is a new customer: its
turns go out as signed webhooks, each after the previous turn's replies were sent, and a
tap answers the Confirm/Cancel question the service sent. The fake model plays the script
(tests/bench/cost_script.py says how answers find their request) and reports usage as
OpenAI does: o200k tokens and automatic prompt caching (tests/fakes/openai_usage.py).
Memory extraction runs a minute after a conversation's first reply, as configured; the
bench waits for those calls too, since they are billed to the conversation.

Conversations follow each other within seconds, so each finds the prefixes (system
prompt, tool schemas) the previous customers' requests left in the prompt cache: a shop
with steady traffic. `--isolated` empties the cache before each conversation instead: a
quiet shop, where only the conversation's own earlier requests can be cached.

`--save FILE` keeps the run's figures per conversation; `--compare FILE` prints a kept
run beside this one, conversation by conversation (tests/bench/cost_compare.py): run the
bench on the service before a change with `--save`, after it with `--compare`. `--dump
FILE` records every request, for tests/bench/cost_whatif.py to replay under other layouts.

Billed prompt tokens = new + cached x 0.5, and cost, at gpt-4o-mini's prices: $0.15 per
million input tokens, $0.075 per million cached input tokens (the 50 % discount) and
$0.60 per million output tokens (OpenAI, "Prompt Caching in the API", 2024-10-01,
https://openai.com/index/api-prompt-caching/; the same figures as the service's own
default price table, graph/settings/console.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.bench.common import (
    BenchGraphAPI,
    print_header,
    tune_benchmark_process,
)
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.cost_compare import load, print_comparison, save
from tests.bench.cost_data import DATA_DIR, Conversation, load_conversations
from tests.bench.cost_report import Metered, by_kind, figures_for, print_calls, report
from tests.bench.cost_script import ScriptedModel
from tests.bench.cost_whatif import dump
from tests.bench.e2e import start_service
from tests.bench.processes import free_port, process_group, service_environment
from tests.fakes.meta_payloads import envelope, interactive_reply, sign, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import APP_SECRET, REPO

TURN_TIMEOUT_S = 60.0
BUSINESS_NAME = "Inzira Bikes"
_TURN_STATE = """
SELECT m.processed_at IS NOT NULL AS processed,
       (SELECT count(*) FROM conversation_runs r
         WHERE r.conversation_id = m.conversation_id AND r.status = 'running') AS running,
       (SELECT count(*) FROM outbound_messages o
         WHERE o.conversation_id = m.conversation_id AND o.status IN ('pending', 'sending'))
         AS sending
FROM inbound_messages m WHERE m.wamid = %s
"""
_WAITING_MEMORY_JOBS = (
    "SELECT count(*) FROM procrastinate_jobs"
    " WHERE task_name = 'remember_conversation' AND status IN ('todo', 'doing')"
)


class Customer:
    """One conversation's customer: writes and taps through signed webhooks, and reads
    what the (fake) Graph API received for them."""

    def __init__(self, url: str, graph_api: BenchGraphAPI, wa_id: str, name: str) -> None:
        self.url, self.graph_api, self.wa_id, self.name = url, graph_api, wa_id, name
        self.count = 0

    def received(self) -> list[dict[str, Any]]:
        return [m for m in self.graph_api.sent if str(m.get("to")) == self.wa_id]

    async def send(self, client: httpx.AsyncClient, value: dict[str, Any]) -> None:
        body = json.dumps(envelope(value)).encode()
        headers = {"X-Hub-Signature-256": sign(body, APP_SECRET)}
        answer = await client.post(self.url, content=body, headers=headers)
        answer.raise_for_status()

    def next_wamid(self) -> str:
        self.count += 1
        return f"wamid.cost-{self.wa_id}-{self.count}"

    def text(self, text: str, wamid: str) -> dict[str, Any]:
        return text_message(self.wa_id, text, wamid=wamid, name=self.name)

    def tap(self, answer: str, wamid: str) -> dict[str, Any]:
        """A tap on the latest question's Confirm (yes) or Cancel (no) button."""
        for message in reversed(self.received()):
            buttons = (message.get("interactive") or {}).get("action", {}).get("buttons") or []
            for button in buttons:
                reply = button.get("reply") or {}
                if str(reply.get("id", "")).startswith(f"confirm:{answer}"):
                    return interactive_reply(
                        self.wa_id,
                        reply["id"],
                        reply.get("title", answer),
                        wamid=wamid,
                        name=self.name,
                        replied_to=message.get("wamid"),
                    )
        raise LookupError(f"no confirm:{answer} button was sent to {self.wa_id}")


async def turn_done(conn: psycopg.AsyncConnection[Any], wamid: str) -> bool:
    cur = await conn.execute(_TURN_STATE, (wamid,))
    row = await cur.fetchone()
    return row is not None and bool(row[0]) and row[1] == 0 and row[2] == 0


async def play(
    conversation: Conversation,
    customer: Customer,
    model: ScriptedModel,
    conn: psycopg.AsyncConnection[Any],
) -> list[str]:
    """Every turn, each after the previous one's replies went out; what went wrong."""
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for index, turn in enumerate(conversation.turns):
            before = len(customer.received())
            wamid = customer.next_wamid()
            model.begin(conversation.id, index)
            try:
                if turn.tap is not None:
                    await customer.send(client, customer.tap(turn.tap, wamid))
                else:
                    await customer.send(client, customer.text(str(turn.customer), wamid))
                deadline = time.monotonic() + TURN_TIMEOUT_S
                while not await turn_done(conn, wamid):
                    if time.monotonic() > deadline:
                        problems.append(f"turn {index + 1}: not answered in {TURN_TIMEOUT_S} s")
                        break
                    await asyncio.sleep(0.05)
            finally:
                model.end()
            sent = customer.received()[before:]
            problems += _check_replies(conversation, index, sent, model)
    return problems


def _check_replies(
    conversation: Conversation, index: int, sent: Sequence[dict[str, Any]], model: ScriptedModel
) -> list[str]:
    """Did the customer get this turn's scripted text (or a question to tap)? A turn the
    service answered with no agent call (a rule: thanks answered by a notice) has no
    scripted text to deliver; it is listed apart, not as a problem."""
    turn = conversation.turns[index]
    texts = [str((m.get("text") or {}).get("body", "")) for m in sent]
    if turn.final_text is not None:
        expected = model.resolved_text(conversation.id, turn.final_text)
        if any(expected.strip() in text for text in texts):
            return []
        if texts and model.answered_without_model(conversation.id, texts[0]):
            return []
        return [f"turn {index + 1}: the scripted answer did not reach the customer"]
    elif not sent:
        return [f"turn {index + 1}: no reply"]
    return []


async def wait_for_memory_jobs(db_url: str, within: float) -> bool:
    """Until no memory extraction job waits (they run a minute after a reply)."""
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute(_WAITING_MEMORY_JOBS)
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return True
            await asyncio.sleep(1.0)
    return False


def seed_demo(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "seed-demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seed-demo failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


async def run(conversations: Sequence[Conversation], args: argparse.Namespace) -> None:
    model = ScriptedModel(conversations, ScriptedModel.today_in())
    with FakeOpenAIServer(usage_mode="openai") as openai, BenchGraphAPI() as graph_api:
        openai.responder = model
        async with open_postgres() as postgres:
            db_url = await postgres.fresh_database("cost")
            port = free_port()
            env = service_environment(
                db_url,
                openai.base_url,
                graph_api.base_url,
                PORT=str(port),
                WA_AGENT_BUSINESS_NAME=BUSINESS_NAME,
            )
            print(f"seed-demo: {await asyncio.to_thread(seed_demo, env)}", flush=True)
            problems: dict[str, list[str]] = {}
            with process_group() as group:
                url = await start_service(group, env, db_url, port, 0)
                async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                    for number, conversation in enumerate(conversations, start=1):
                        if args.isolated:
                            openai.prompt_cache.clear()
                        wa_id = f"2507881{number:05d}"
                        customer = Customer(url, graph_api, wa_id, conversation.customer_name)
                        problems[conversation.id] = await play(conversation, customer, model, conn)
                        print(f"  played {conversation.id}", flush=True)
                drained = await wait_for_memory_jobs(db_url, args.remember_wait)
                if not drained:
                    print(f"  note: memory jobs still waiting after {args.remember_wait:g} s")
                group.check_alive()
                metered = await _service_accounting(db_url)
    figures = [
        figures_for(c, openai.exchanges, model.labels, problems[c.id] + model.notes(c.id))
        for c in conversations
    ]
    for f in figures:
        f.handoffs_added = model.handoffs_added(f.conversation.id)
        f.without_model = model.without_model(f.conversation.id)
    if args.calls:
        print_calls(openai.exchanges, model.labels)
    report(figures, by_kind(openai.exchanges, model.labels), metered)
    if args.save:
        save(args.save, figures, isolated=args.isolated)
    if args.dump:
        dump(args.dump, openai.exchanges, model.labels)
    if args.compare:
        print_comparison(load(args.compare), figures)


async def _service_accounting(db_url: str) -> Metered:
    """What the service's own accounting saw (agent_metrics, what the dashboard reads):
    calls, cost, prompt tokens and how many of them were cached."""
    await asyncio.sleep(2.0)  # the accounting writer flushes every second
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            "SELECT count(*), coalesce(sum(cost_usd), 0), coalesce(sum(prompt_tokens), 0),"
            " coalesce(sum(cached_tokens), 0) FROM agent_metrics"
        )
        row = await cur.fetchone()
    return Metered(int(row[0]), float(row[1]), int(row[2]), int(row[3])) if row else Metered()


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    conversations = load_conversations(args.conversations)
    if args.only:
        conversations = [c for c in conversations if c.id in set(args.only)]
    print_header(
        "bench_cost: prompt tokens and cost per typical conversation (gpt-4o-mini prices)",
        [
            "service: `wa-agent serve` (default worker processes), default settings, "
            "seeded with `wa-agent seed-demo`",
            f"conversations: {len(conversations)} from {args.conversations}",
            "model: FakeOpenAIServer(usage_mode='openai'): o200k counts, prompt caching "
            "(1,024+ tokens, 128-token steps, 5 min); scripted by request kind",
            "prompt cache: "
            + ("emptied before each conversation" if args.isolated else "shared by all"),
        ],
    )
    await run(conversations, args)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=Path, default=DATA_DIR)
    parser.add_argument("--only", nargs="+", help="conversation ids")
    parser.add_argument(
        "--remember-wait", type=float, default=150.0, help="seconds to wait for memory jobs"
    )
    parser.add_argument("--calls", action="store_true", help="also list every model call")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="empty the prompt cache before each conversation (a quiet shop: no other "
        "customer's request in the last 5 minutes to share a prefix with)",
    )
    parser.add_argument("--save", type=Path, help="write this run's figures (JSON)")
    parser.add_argument("--compare", type=Path, help="a saved run to print beside this one")
    parser.add_argument("--dump", type=Path, help="write every request (cost_whatif.py)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
