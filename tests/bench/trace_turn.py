"""Where the wall-clock time of one turn goes: Postgres's own statement log, turn by turn.

    .venv/bin/python -m tests.bench.trace_turn [--turns 20] [--gap 0.3] [--show 2]

Starts the default deployment as bench_load does, has Postgres log every statement with
its start time, duration and backend (`log_min_duration_statement = 0`), then sends new
customers one at a time, `gap` seconds apart, so no two turns overlap. For each turn the
timeline runs from the webhook's POST to the reply's arrival at the fake Graph API:
every statement, and the time between them (Python, HTTP, the queue's wake-up). It prints
a few turns in full and the median of the totals: time in statements, time between them.

A profile (profile_load) says where CPU goes under load; this says what a single customer
waits for when nothing else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from tests.bench.bench_load import started
from tests.bench.common import BenchGraphAPI, print_header, tune_benchmark_process
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.e2e import conversations, wait_for_replies
from tests.bench.loadgen import Sample, WebhookClient
from tests.fakes.openai_server import FakeOpenAIServer

LINE_PREFIX = "%m [%p] "
# `2026-12-07 09:01:02.345 UTC [1234] LOG:  duration: 0.123 ms  execute s1: SELECT …`
STATEMENT = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \w+ \[(?P<pid>\d+)\] LOG:  "
    r"duration: (?P<ms>[\d.]+) ms  (?P<kind>statement|execute|parse|bind)[^:]*: "
    r"(?P<sql>.*)$"
)


@dataclass(frozen=True)
class Statement:
    ended: float  # wall clock, s (Postgres logs a statement when it ends)
    ms: float
    pid: int
    sql: str

    @property
    def started(self) -> float:
        return self.ended - self.ms / 1000


@dataclass(frozen=True)
class Turn:
    posted: float  # wall clock, s
    answered: float
    statements: list[Statement]  # until the reply arrived
    after: list[Statement]  # after it, before the next turn's POST

    @property
    def total_ms(self) -> float:
        return (self.answered - self.posted) * 1000

    @property
    def in_statements_ms(self) -> float:
        return sum(s.ms for s in self.statements)


def parse_log(text: str) -> list[Statement]:
    """Each statement's execution (a prepared statement's parse and bind lines are
    folded into it: one round trip each), its SQL joined from its continuation lines."""
    found: list[Statement] = []
    pending_ms: dict[int, float] = {}
    sql_lines: list[str] = []
    head: re.Match[str] | None = None

    def close() -> None:
        if head is None:
            return
        pid, ms = int(head["pid"]), float(head["ms"])
        if head["kind"] in ("parse", "bind"):
            pending_ms[pid] = pending_ms.get(pid, 0.0) + ms
            return
        at = datetime.strptime(head["at"], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        sql = " ".join(" ".join(sql_lines).split())
        found.append(Statement(at, ms + pending_ms.pop(pid, 0.0), pid, sql))

    for line in text.splitlines():
        if line.startswith("\t") and head is not None:
            sql_lines.append(line)
            continue
        close()
        head = STATEMENT.match(line)
        sql_lines = [head["sql"]] if head else []
    close()
    return found


async def set_statement_log(admin_url: str, on: bool) -> None:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        if on:
            await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            await conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{LINE_PREFIX}'")
            await conn.execute("ALTER SYSTEM SET log_timezone = 'UTC'")
        else:
            await conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
        await conn.execute("SELECT pg_reload_conf()")


def print_turn(turn: Turn, index: int) -> None:
    print(f"\nturn {index}: {turn.total_ms:.1f} ms from the POST to the reply")
    print("    at ms   gap ms  stmt ms  pid    statement")
    last = turn.posted
    for s in turn.statements:
        gap = (s.started - last) * 1000
        at = (s.started - turn.posted) * 1000
        print(f"  {at:7.2f}  {gap:7.2f}  {s.ms:7.3f}  {s.pid:<6} {s.sql[:90]}")
        last = s.ended
    print(f"  {turn.total_ms:7.2f}  {(turn.answered - last) * 1000:7.2f}           reply arrives")
    for s in turn.after:
        at = (s.started - turn.posted) * 1000
        print(f"  {at:7.2f}           {s.ms:7.3f}  {s.pid:<6} {s.sql[:90]}")


async def trace(args: argparse.Namespace) -> list[Turn]:
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        async with (
            open_postgres() as postgres,
            started(postgres, (openai, graph_api)) as server,
        ):
            await set_statement_log(postgres.admin_url, True)
            await asyncio.sleep(0.5)
            posted: dict[str, float] = {}
            client = WebhookClient(server.url, keep_alive=False)
            for i, message in enumerate(conversations(2, args.turns, "trace")):
                posted[message.wa_id] = time.time()
                await client.send(client.request_bytes(message), Sample(i, 0.0))
                await wait_for_replies(graph_api, [message.wa_id], 10.0)
                await asyncio.sleep(args.gap)
            await set_statement_log(postgres.admin_url, False)
            log_text = (postgres.data_dir / "log").read_text(errors="replace")
        replies = {str(m["to"]): float(m["received_at_wall"]) for m in graph_api.sent}
    statements = parse_log(log_text)
    turns = []
    starts = [*posted.values(), float("inf")]
    for (wa_id, at), until in zip(posted.items(), starts[1:], strict=True):
        answered = replies.get(wa_id)
        if answered is None:
            continue
        inside = [s for s in statements if at <= s.started and s.ended <= answered]
        after = [s for s in statements if answered < s.ended and s.started < until]
        turns.append(Turn(at, answered, inside, after))
    return turns


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument("--show", type=int, default=2, help="turns printed in full")
    args = parser.parse_args(argv)
    if not (1 <= args.turns <= 500 and 0 <= args.gap <= 10):
        parser.error("turns must be in [1, 500] and gap in [0, 10] s")
    return args


def main() -> None:
    args = parse_args()
    tune_benchmark_process()
    print_header("trace_turn: one turn's wall-clock time, statement by statement", [])
    turns = asyncio.run(trace(args))
    if not turns:
        raise SystemExit("no turn was answered")
    for index, turn in enumerate(turns[-args.show :] if args.show else []):
        print_turn(turn, index)
    totals = [t.total_ms for t in turns]
    in_sql = [t.in_statements_ms for t in turns]
    counts = [len(t.statements) for t in turns]
    after = [len(t.after) for t in turns]
    print(
        f"\n{len(turns)} turns: median {statistics.median(totals):.1f} ms from the POST to the "
        f"reply, {statistics.median(in_sql):.1f} ms of it in {statistics.median(counts):.0f} "
        f"statements, {statistics.median(totals) - statistics.median(in_sql):.1f} ms between them; "
        f"{statistics.median(after):.0f} statements after the reply"
    )


if __name__ == "__main__":
    main()
