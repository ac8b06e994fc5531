"""Accounting off the hot path: the batched writer, the totals, the spending caps.

The callback (graph/infra/usage_meter.py) hands each record to `AccountingWriter.put`, a
deque append that never waits; a background task writes what piled up every
`WA_AGENT_ACCOUNTING_FLUSH_S` in one statement per table. A database that is down
costs records (counted in /metrics and logged), never a reply.

Caps are checked before a turn, from what is already written (so they may lag by
one flush interval): over the per-conversation token cap or the customer's daily
cost cap, the turn runs on `WA_AGENT_CHEAPER_MODEL`, or is answered with the polite
`WA_AGENT_CAP_MESSAGE` when no cheaper model is set or the action says so.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers.context import register_configure_hook
from prometheus_client import Counter, Gauge

from graph.context import ConversationContext
from graph.infra.database import Pool
from graph.infra.usage_meter import AccountingHandler, ModelCall, PriceTable, Record, TurnEvent
from graph.settings import Settings

log = structlog.get_logger(__name__)

RECORDS = Counter("wa_agent_accounting_records_total", "Accounting records by fate", ["fate"])
BACKLOG = Gauge("wa_agent_accounting_backlog", "Accounting records waiting to be written")
CAPPED_TURNS = Counter(
    "wa_agent_capped_turns_total", "Turns over a spending cap", ["cap", "action"]
)

CAPS_FLAG = "spending_caps"

# Model calls no run config reaches (the queue's jobs: memory extraction) are metered
# through this: LangChain adds the handler to every call made in a context where it is
# set, and never twice to a call that already has it. Registered once per process.
_PROCESS_METER: contextvars.ContextVar[AccountingHandler | None] = contextvars.ContextVar(
    "wa_agent_process_meter", default=None
)
register_configure_hook(_PROCESS_METER, inheritable=True)

# A record of a conversation erased since (wa-agent forget) is not written: the flush
# comes up to a second after the turn, and must never bring a forgotten customer back.
_STILL_THERE = (
    " WHERE %(conversation_id)s::uuid IS NULL OR EXISTS"
    " (SELECT 1 FROM agent_conversations WHERE id = %(conversation_id)s::uuid)"
)
_INSERT_CALLS = (
    "INSERT INTO agent_metrics (conversation_id, run_id, agent, node, model, prompt_tokens,"
    " completion_tokens, cached_tokens, cost_usd, latency_ms, success, error, created_at)"
    " SELECT %(conversation_id)s::uuid, %(run_id)s::uuid, %(agent)s, %(node)s, %(model)s,"
    " %(prompt_tokens)s, %(completion_tokens)s, %(cached_tokens)s, %(cost_usd)s,"
    " %(latency_ms)s, %(success)s, %(error)s, %(created_at)s" + _STILL_THERE
)
_INSERT_EVENTS = (
    "INSERT INTO agent_turn_events (conversation_id, run_id, kind, agent, source, method,"
    " confidence, created_at) SELECT %(conversation_id)s::uuid, %(run_id)s::uuid, %(kind)s,"
    " %(agent)s, %(source)s, %(method)s, %(confidence)s, %(created_at)s" + _STILL_THERE
)


class AccountingWriter:
    """A bounded in-memory backlog and the task that empties it into Postgres."""

    def __init__(self, pool: Pool, *, flush_seconds: float, max_backlog: int) -> None:
        self.pool = pool
        self.flush_seconds = flush_seconds
        # deque appends are atomic: a callback fired from a worker thread is safe too.
        self._backlog: collections.deque[Record] = collections.deque()
        self._max_backlog = max_backlog
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def put(self, record: Record) -> None:
        if len(self._backlog) >= self._max_backlog:
            RECORDS.labels(fate="dropped").inc()
            return
        self._backlog.append(record)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="accounting-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Write everything waiting now; the number of records written."""
        async with self._lock:
            batch = [self._backlog.popleft() for _ in range(len(self._backlog))]
            BACKLOG.set(len(self._backlog))
            if not batch:
                return 0
            try:
                await self._write(batch)
            except Exception as exc:
                RECORDS.labels(fate="failed").inc(len(batch))
                log.error("accounting.write_failed", records=len(batch), error=str(exc)[:200])
                return 0
            RECORDS.labels(fate="written").inc(len(batch))
            return len(batch)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def _write(self, batch: list[Record]) -> None:
        calls = [_call_row(r) for r in batch if isinstance(r, ModelCall)]
        events = [_event_row(r) for r in batch if isinstance(r, TurnEvent)]
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if calls:
                await cur.executemany(_INSERT_CALLS, calls)
            if events:
                await cur.executemany(_INSERT_EVENTS, events)


def _call_row(call: ModelCall) -> dict[str, Any]:
    return {**dataclasses.asdict(call), "cost_usd": round(call.cost_usd, 8)}


def _event_row(event: TurnEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


@dataclass(frozen=True)
class Totals:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def new_tokens(self) -> int:
        """Prompt tokens the provider did not serve from its prompt cache (full price)."""
        return self.prompt_tokens - self.cached_tokens

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tokens": self.tokens, "new_tokens": self.new_tokens}


_TOTALS = (
    "SELECT count(*) AS calls, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
    " coalesce(sum(completion_tokens), 0) AS completion_tokens,"
    " coalesce(sum(cached_tokens), 0) AS cached_tokens,"
    " coalesce(sum(cost_usd), 0)::float8 AS cost_usd FROM agent_metrics m"
)


async def conversation_totals(pool: Pool, conversation_id: str) -> Totals:
    async with pool.connection() as conn:
        cur = await conn.execute(f"{_TOTALS} WHERE conversation_id = %s", (conversation_id,))
        return Totals(**(await cur.fetchone() or {}))


async def customer_day_totals(pool: Pool, wa_id: str) -> Totals:
    """Today's (UTC) totals over every conversation of this customer."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"{_TOTALS} WHERE conversation_id IN"
            " (SELECT id FROM agent_conversations WHERE wa_id = %s)"
            " AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
            (wa_id,),
        )
        return Totals(**(await cur.fetchone() or {}))


@dataclass(frozen=True)
class TurnPlan:
    """How a turn runs: its config (with the meter attached) and context, or a refusal."""

    config: RunnableConfig
    context: ConversationContext
    capped: bool = False  # over a cap with no cheaper model: the turn is not run
    cap_message: str | None = None  # the business's own text; None: the notice


@dataclass(frozen=True)
class AccountingOptions:
    """What the meter and the spending caps need of the settings."""

    prices: PriceTable
    flush_seconds: float
    max_backlog: int
    conversation_token_cap: int = 0  # 0: no cap
    customer_daily_cost_cap_usd: float = 0.0  # 0: no cap
    cheaper_model: str | None = None  # over a cap: this model, when the action allows
    cap_action: Literal["cheaper_model", "message"] = "cheaper_model"
    cap_message: str | None = None  # None: prompts/notices/'s `spending_cap`

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountingOptions:
        return cls(
            prices=PriceTable(settings.model_prices),
            flush_seconds=settings.accounting_flush_seconds,
            max_backlog=settings.accounting_queue_max,
            conversation_token_cap=settings.conversation_token_cap,
            customer_daily_cost_cap_usd=settings.user_daily_cost_cap_usd,
            cheaper_model=settings.cheaper_model,
            cap_action=settings.cap_action,
            cap_message=settings.cap_message,
        )


class Accounting:
    """The meter a worker attaches to each run, and the caps it checks before one."""

    def __init__(self, pool: Pool, options: AccountingOptions) -> None:
        self.pool = pool
        self.options = options
        self.writer = AccountingWriter(
            pool, flush_seconds=options.flush_seconds, max_backlog=options.max_backlog
        )
        self.handler = AccountingHandler(options.prices, self.writer.put)

    def meter_context(self) -> contextvars.Token[AccountingHandler | None]:
        """Meter every model call made from the current context on, including in the
        tasks it creates (the worker's jobs); undo with `unmeter_context(token)`."""
        return _PROCESS_METER.set(self.handler)

    @staticmethod
    def unmeter_context(token: contextvars.Token[AccountingHandler | None]) -> None:
        _PROCESS_METER.reset(token)

    def attach(self, config: RunnableConfig) -> RunnableConfig:
        callbacks = list(config.get("callbacks") or [])  # type: ignore[arg-type]
        return {**config, "callbacks": [*callbacks, self.handler]}

    async def plan_turn(self, config: RunnableConfig, context: ConversationContext) -> TurnPlan:
        plan = TurnPlan(self.attach(config), context)
        if not context.flag(CAPS_FLAG):
            return plan
        cap = await self._cap_reached(context)
        if cap is None:
            return plan
        cheaper = self.options.cheaper_model
        if self.options.cap_action == "cheaper_model" and cheaper:
            CAPPED_TURNS.labels(cap=cap, action="cheaper_model").inc()
            log.info("accounting.cap_reached", cap=cap, action="cheaper_model", model=cheaper)
            agents = {n: dataclasses.replace(a, model=cheaper) for n, a in context.agents.items()}
            return dataclasses.replace(plan, context=dataclasses.replace(context, agents=agents))
        CAPPED_TURNS.labels(cap=cap, action="message").inc()
        log.info("accounting.cap_reached", cap=cap, action="message")
        return dataclasses.replace(plan, capped=True, cap_message=self.options.cap_message)

    async def _cap_reached(self, context: ConversationContext) -> str | None:
        """Which cap this turn is over, if any; never while a person has the conversation
        (the bot is silent then anyway)."""
        token_cap = self.options.conversation_token_cap
        cost_cap = self.options.customer_daily_cost_cap_usd
        if not token_cap and not cost_cap:
            return None
        if await self._escalated(context.conversation_id):
            return None
        if (
            token_cap
            and (await conversation_totals(self.pool, context.conversation_id)).tokens >= token_cap
        ):
            return "conversation_tokens"
        if cost_cap and (await customer_day_totals(self.pool, context.wa_id)).cost_usd >= cost_cap:
            return "customer_daily_cost"
        return None

    async def _escalated(self, conversation_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status = 'escalated' AS escalated FROM agent_conversations WHERE id = %s",
                (conversation_id,),
            )
            row = await cur.fetchone()
        return bool(row and row["escalated"])
