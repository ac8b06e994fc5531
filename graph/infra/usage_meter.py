"""Metering every model call: tokens, cost, latency, agent, success.

`AccountingHandler` is a LangChain callback handed to each run in its config (and set
for the worker's jobs through a configure hook, server/runner/accounting.py), so it sees
every chat-model call of every node, sub-agent, tool and job, wherever it is made.
It only measures and hands a record to a `sink` (a non-blocking put on the writer's
queue, server/runner/accounting.py): nothing here waits for the database, and no failure
here can fail a reply (LangChain logs a raising handler and carries on, and the
handler catches its own errors besides).

The same events feed Prometheus (tokens, cost, latency per agent), and the router's
and the escalation node's ends, and handoff tool calls, become turn events: what the
console's routing and escalation figures are computed from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict
from uuid import UUID

import structlog
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from prometheus_client import Counter, Histogram

from graph.settings.console import ModelPrice

log = structlog.get_logger(__name__)

MODEL_TOKENS = Counter(
    "wa_agent_model_tokens_total",
    "Model tokens by agent, model and kind",
    ["agent", "model", "kind"],
)
MODEL_COST = Counter("wa_agent_model_cost_usd_total", "Model cost in USD", ["agent", "model"])
MODEL_CALLS = Counter(
    "wa_agent_model_calls_total", "Model calls by agent and result", ["agent", "result"]
)
MODEL_SECONDS = Histogram(
    "wa_agent_model_call_seconds",
    "Latency of one model call, by agent",
    ["agent"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
# Nodes whose end is a turn event; every other chain end is ignored at a dict lookup.
EVENT_NODES = frozenset({"router", "escalate"})
HANDOFF_PREFIX = "transfer_to_"
MAX_TRACKED_CONVERSATIONS = 10_000
MAX_PENDING = 10_000  # model calls / nodes started and not ended yet, per process


class PriceTable:
    """Cost of a call from the configured prices; unknown models cost 0 (and say so)."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        # Longest names first, so "gpt-4o-mini" wins over "gpt-4o" for gpt-4o-mini-2024.
        self._prices = sorted(prices.items(), key=lambda item: -len(item[0]))
        self._resolved: dict[str, ModelPrice | None] = {}

    def price_of(self, model: str) -> ModelPrice | None:
        if model not in self._resolved:
            name = model.split(":", 1)[-1]
            match = next((p for key, p in self._prices if name.startswith(key)), None)
            if match is None:
                log.warning("accounting.unpriced_model", model=model)
            self._resolved[model] = match
        return self._resolved[model]

    def cost(self, model: str, prompt: int, completion: int, cached: int) -> float:
        price = self.price_of(model)
        if price is None:
            return 0.0
        cached_price = price.input if price.cached_input is None else price.cached_input
        fresh = max(prompt - cached, 0)
        return (fresh * price.input + cached * cached_price + completion * price.output) / 1e6


@dataclass(frozen=True)
class ModelCall:
    """One row of agent_metrics."""

    conversation_id: str | None
    run_id: str | None
    agent: str | None
    node: str | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    latency_ms: float
    success: bool
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class TurnEvent:
    """A routing decision, a handoff or an escalation (one row of agent_turn_events)."""

    conversation_id: str | None
    run_id: str | None
    kind: str  # route | handoff | escalation
    agent: str | None  # route: the intent chosen; handoff: the agent handed to
    source: str | None = None  # handoff: the agent handing over
    method: str | None = None  # route: rule | embedding | llm | sticky | default
    confidence: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


Record = ModelCall | TurnEvent
Sink = Callable[[Record], None]


def agent_of(node: str | None) -> str | None:
    """`agent_sales` → `sales`; other nodes (router, summarize) are their own name."""
    if node is None:
        return None
    return node.removeprefix("agent_")


@dataclass
class _Started:
    at: float
    metadata: Mapping[str, Any]
    model: str = ""


class AccountingHandler(AsyncCallbackHandler):
    """One per process, shared by every run (state is keyed by LangChain's run ids)."""

    run_inline = True

    def __init__(self, prices: PriceTable, sink: Sink) -> None:
        self.prices = prices
        self.sink = sink
        self._calls: dict[UUID, _Started] = {}
        self._nodes: dict[UUID, tuple[str, Mapping[str, Any]]] = {}
        # conversation → the agent that called the model last: a handoff tool runs in
        # the shared tool node, so this is how its source is known.
        self._in_charge: dict[str, str] = {}

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        model = str(params.get("model") or params.get("model_name") or "")
        metadata = metadata or {}
        _bounded(self._calls)[run_id] = _Started(time.perf_counter(), metadata, model)
        node = metadata.get("langgraph_node")
        conversation = _keys(metadata)["conversation_id"]
        if conversation and isinstance(node, str) and node.startswith("agent_"):
            self._in_charge.pop(conversation, None)  # re-inserted last: oldest go first
            self._in_charge[conversation] = node.removeprefix("agent_")
            if len(self._in_charge) > MAX_TRACKED_CONVERSATIONS:
                del self._in_charge[next(iter(self._in_charge))]

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._calls.pop(run_id, None)
        if started is None:
            return
        try:
            self._record_call(started, response)
        except Exception as exc:  # metering must never cost a reply
            log.warning("accounting.record_failed", error=str(exc)[:200])

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._calls.pop(run_id, None)
        if started is None:
            return
        node = started.metadata.get("langgraph_node")
        call = ModelCall(
            **_keys(started.metadata),
            agent=agent_of(node),
            node=node,
            model=started.model,
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            cost_usd=0.0,
            latency_ms=(time.perf_counter() - started.at) * 1000,
            success=False,
            error=type(error).__name__,
        )
        self._emit(call)

    def _record_call(self, started: _Started, response: LLMResult) -> None:
        usage: Mapping[str, Any] = {}
        model = started.model
        message = _first_message(response)
        if message is not None:
            usage = getattr(message, "usage_metadata", None) or {}
            model = str(message.response_metadata.get("model_name") or model)
        prompt = int(usage.get("input_tokens", 0))
        completion = int(usage.get("output_tokens", 0))
        cached = int((usage.get("input_token_details") or {}).get("cache_read", 0) or 0)
        node = started.metadata.get("langgraph_node")
        self._emit(
            ModelCall(
                **_keys(started.metadata),
                agent=agent_of(node),
                node=node,
                model=model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=cached,
                cost_usd=self.prices.cost(model, prompt, completion, cached),
                latency_ms=(time.perf_counter() - started.at) * 1000,
                success=True,
            )
        )

    def _emit(self, record: Record) -> None:
        if isinstance(record, ModelCall):
            _observe_call(record)
        try:
            self.sink(record)
        except Exception as exc:
            log.warning("accounting.sink_failed", error=str(exc)[:200])

    # --- handoffs (tool calls themselves are counted by tools/monitoring.py) -------

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        if name.startswith(HANDOFF_PREFIX):
            keys = _keys(metadata or {})
            source = self._in_charge.get(keys["conversation_id"] or "")
            target = name.removeprefix(HANDOFF_PREFIX)
            self._emit(TurnEvent(**keys, kind="handoff", agent=target, source=source))

    # --- turn events: the router's decision, an escalation ---------------------------

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name")
        if name in EVENT_NODES and metadata and metadata.get("langgraph_node") == name:
            _bounded(self._nodes)[run_id] = (str(name), metadata)

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._nodes.pop(run_id, None)
        if node is None or not isinstance(outputs, Mapping):
            return
        name, metadata = node
        if name == "escalate":
            self._emit(TurnEvent(**_keys(metadata), kind="escalation", agent=None))
            return
        route = outputs.get("route")
        if isinstance(route, Mapping):
            self._emit(
                TurnEvent(
                    **_keys(metadata),
                    kind="route",
                    agent=str(route.get("intent")),
                    method=str(route.get("method")),
                    confidence=float(route.get("confidence") or 0.0),
                )
            )

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._nodes.pop(run_id, None)


class _Keys(TypedDict):
    conversation_id: str | None
    run_id: str | None


def _bounded(pending: dict[UUID, Any]) -> dict[UUID, Any]:
    """Calls whose end never came (a process cancelled mid-call) must not pile up."""
    while len(pending) >= MAX_PENDING:
        del pending[next(iter(pending))]
    return pending


def _keys(metadata: Mapping[str, Any]) -> _Keys:
    """Our run and conversation ids, as graph/turns.thread_config puts them."""
    conversation = metadata.get("conversation_id") or metadata.get("thread_id")
    run = metadata.get("run_id")
    return {
        "conversation_id": str(conversation) if conversation else None,
        "run_id": str(run) if run else None,
    }


def _first_message(response: LLMResult) -> Any:
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration):
                return generation.message
    return None


def _observe_call(call: ModelCall) -> None:
    agent = call.agent or "none"
    MODEL_CALLS.labels(agent=agent, result="ok" if call.success else "error").inc()
    MODEL_SECONDS.labels(agent=agent).observe(call.latency_ms / 1000)
    if call.success:
        tokens = MODEL_TOKENS.labels
        tokens(agent=agent, model=call.model, kind="prompt").inc(call.prompt_tokens)
        tokens(agent=agent, model=call.model, kind="completion").inc(call.completion_tokens)
        tokens(agent=agent, model=call.model, kind="cached").inc(call.cached_tokens)
        MODEL_COST.labels(agent=agent, model=call.model).inc(call.cost_usd)
