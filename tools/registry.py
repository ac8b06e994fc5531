"""The tool registry: every tool declared once, every call through one wrapper.

A `ToolDeclaration` says what a tool is (name, description, factory) and how it may be
used (timeout, per-customer and global rate limits, enabled, the feature flag that must
be on for the customer, the agents that may use it). Declarations come from three
places: the built-ins (business tools, web search, research, the code interpreter),
Python entry points in the `wa_agent.tools` group, and MCP servers named in
configuration (tools/mcp.py).

`ToolRegistry.wrap_tool_call` is handed to LangGraph's ToolNode (`awrap_tool_call`), so
it sees every call with the run it belongs to: the customer and the conversation from
the runtime context, the run id from the config, the agent in charge from the state.
Whatever happens — over a limit, too slow, an exception — the model gets a short
message it can act on and the turn goes on; only LangGraph's own control flow
(`interrupt()` for confirmations) passes through. Each call leaves a row in
`agent_tool_executions` and Prometheus figures (tools/monitoring.py).

A replay or a fork (the run's context says `replay`, or its metadata does) must change
nothing in the world, whichever node calls the tool: a call of a side-effecting tool is
held here, never run, and recorded as held. Side-effecting is the default — a booking,
a payment, a ticket, any plugin or MCP tool — and only tools known to read nothing but
data (READ_ONLY_TOOLS, or a declaration with `read_only=True`) run again in a replay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

import structlog
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, interrupt

from tools.limits import LocalRateLimiter, RateLimit, RateLimiter
from tools.monitoring import TOOL_CALLS, TOOL_SECONDS, ExecutionRecorder, ToolExecution

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "wa_agent.tools"
DEFAULT_TIMEOUT_SECONDS = 30.0
# Keys in BaseTool.metadata that carry the declaration to whoever offers tools to agents.
AGENTS_KEY = "wa_agent_agents"
FLAG_KEY = "wa_agent_flag"

# The interrupt a side-effecting call raises in a replay instead of running (`"type"`):
# the replay stops there and reports the call (graph/composition/replay.py).
HELD = "held"
HELD_TEXT = "held: not executed in a replay"

# Built-in tools that only read (the catalog, free slots, the customer's own records,
# the knowledge base, the web): a replay may run them again. `get_payment_status` asks
# the provider and may copy its answer into our row, which only brings our copy in line.
READ_ONLY_TOOLS = frozenset(
    {
        "check_availability",
        "list_my_bookings",
        "search_catalog",
        "get_product",
        "search_knowledge_base",
        "get_payment_status",
        "get_ticket_status",
        "web_search",
        "deep_research",
    }
)

ToolResult = ToolMessage | Command[Any]
Execute = Callable[[ToolCallRequest], Awaitable[ToolResult]]


@dataclass(frozen=True)
class ToolDeclaration:
    """One tool, as the registry knows it.

    `agents=None` leaves the choice to the agents' allow-lists (`agent_configurations
    .tools`); a set offers the tool to exactly those agents, whatever their lists say.
    `flag` names a feature flag (graph/composition/feature_flags.py) that must be on for
    the customer.
    """

    name: str
    factory: Callable[[], BaseTool]
    description: str = ""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    per_user_limit: RateLimit | None = None
    global_limit: RateLimit | None = None
    enabled: bool = True
    flag: str | None = None
    agents: frozenset[str] | None = None
    source: str = "builtin"
    # None: a built-in named in READ_ONLY_TOOLS reads only, anything else has effects.
    read_only: bool | None = None

    def __post_init__(self) -> None:
        if not self.name or self.timeout_seconds <= 0:
            raise ValueError(f"a tool needs a name and a positive timeout: {self.name!r}")

    @classmethod
    def of(cls, tool: BaseTool, **options: Any) -> ToolDeclaration:
        """A declaration of a tool that is already built (business tools, MCP tools)."""
        options.setdefault("description", tool.description)
        return cls(name=tool.name, factory=lambda: tool, **options)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ToolDeclaration:
        """Apply an operator's settings (`WA_AGENT_TOOLS`) over the code's defaults."""
        changes: dict[str, Any] = {}
        for key in ("timeout_seconds", "enabled", "flag"):
            if key in overrides:
                changes[key] = overrides[key]
        for key in ("per_user_limit", "global_limit"):
            if key in overrides:
                value = overrides[key]
                changes[key] = RateLimit.parse(value) if isinstance(value, str) else value
        if "agents" in overrides:
            agents = overrides["agents"]
            changes["agents"] = None if agents is None else frozenset(agents)
        return replace(self, **changes)

    @property
    def side_effects(self) -> bool:
        """Whether a call may change anything outside the conversation: held in replays."""
        if self.read_only is not None:
            return not self.read_only
        return not (self.source == "builtin" and self.name in READ_ONLY_TOOLS)


@dataclass(frozen=True)
class CallFacts:
    """Who a call is for, read from the run (never from the model's arguments)."""

    tool: str
    arguments: Any
    wa_id: str = ""
    conversation_id: str = ""
    run_id: str = ""
    agent: str = ""
    flag: Callable[[str], bool] | None = field(default=None, compare=False)
    # A replay or fork: nothing may change outside the throw-away thread.
    dry_run: bool = False

    @classmethod
    def of(cls, request: ToolCallRequest) -> CallFacts:
        runtime = request.runtime
        config = getattr(runtime, "config", None) or {}
        configurable = config.get("configurable") or {}
        metadata = config.get("metadata") or {}
        context = getattr(runtime, "context", None)
        state = request.state if isinstance(request.state, Mapping) else {}
        flag = getattr(context, "flag", None)
        return cls(
            tool=request.tool_call["name"],
            arguments=request.tool_call.get("args", {}),
            wa_id=str(getattr(context, "wa_id", "") or configurable.get("wa_id") or ""),
            conversation_id=str(
                getattr(context, "conversation_id", "")
                or metadata.get("conversation_id")
                or configurable.get("thread_id")
                or ""
            ),
            run_id=str(state.get("run_id") or metadata.get("run_id") or ""),
            agent=str(state.get("active_agent") or ""),
            flag=flag if callable(flag) else None,
            dry_run=bool(getattr(context, "replay", False) or metadata.get("replay")),
        )


def offered_to(
    tool: BaseTool,
    agent: str,
    allow_list: Collection[str],
    flag: Callable[[str], bool] | None = None,
) -> bool:
    """Whether an agent is offered a tool: its declaration's agents if it names any,
    else the agent's allow-list; and the tool's feature flag on for this customer."""
    metadata = tool.metadata or {}
    agents = metadata.get(AGENTS_KEY)
    permitted = agent in agents if agents is not None else tool.name in allow_list
    flag_name = metadata.get(FLAG_KEY)
    return permitted and (flag_name is None or flag is None or flag(flag_name))


class ToolRegistry:
    """Declarations, the tools built from them, and the one wrapper of every call."""

    def __init__(
        self,
        *,
        limiter: RateLimiter | None = None,
        recorder: ExecutionRecorder | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.limiter: RateLimiter = limiter or LocalRateLimiter()
        self.recorder = recorder
        self.overrides = dict(overrides or {})
        self.declarations: dict[str, ToolDeclaration] = {}
        self.tools: dict[str, BaseTool] = {}

    # -- loading ---------------------------------------------------------------------

    def declare(self, declaration: ToolDeclaration) -> BaseTool | None:
        """Build and keep the tool; a disabled or failing one is logged and left out.

        A name declared twice is a bug among the built-ins (raised), but only a skipped
        tool when a plugin or an MCP server brings it (logged): a package must not keep
        the service from starting.
        """
        if declaration.name in self.declarations:
            if declaration.source == "builtin":
                raise ValueError(f"tool {declaration.name!r} is declared twice")
            log.warning("tool.duplicate_skipped", tool=declaration.name, source=declaration.source)
            return None
        declaration = declaration.with_overrides(self.overrides.get(declaration.name, {}))
        self.declarations[declaration.name] = declaration
        if not declaration.enabled:
            log.info("tool.disabled", tool=declaration.name, source=declaration.source)
            return None
        try:
            tool = declaration.factory()
        except Exception as exc:
            log.warning("tool.factory_failed", tool=declaration.name, error_type=type(exc).__name__)
            return None
        if tool.name != declaration.name:
            raise ValueError(f"declared {declaration.name!r} but the factory built {tool.name!r}")
        tool.metadata = {
            **(tool.metadata or {}),
            **({AGENTS_KEY: sorted(declaration.agents)} if declaration.agents is not None else {}),
            **({FLAG_KEY: declaration.flag} if declaration.flag else {}),
        }
        self.tools[tool.name] = tool
        return tool

    def declare_all(self, declarations: Iterable[ToolDeclaration]) -> None:
        for declaration in declarations:
            self.declare(declaration)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Declare the tools installed packages publish in `group`; the number loaded.

        An entry point names a `ToolDeclaration`, a `BaseTool`, an iterable of them, or
        a callable without arguments returning any of these. A broken package is logged
        and skipped: it must not keep the service from starting.
        """
        loaded = 0
        for point in entry_points(group=group):
            try:
                declarations = list(_declarations_from(point.load()))
            except Exception as exc:
                log.warning("tool.entry_point_failed", entry_point=point.name, error=str(exc))
                continue
            for declaration in declarations:
                if self.declare(replace(declaration, source=f"entry_point:{point.name}")):
                    loaded += 1
        return loaded

    # -- the wrapper -----------------------------------------------------------------

    async def wrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> ToolResult:
        """ToolNode's `awrap_tool_call`: limits, timeout, isolation, records."""
        declaration = self.declarations.get(request.tool_call["name"])
        if declaration is None:  # handoffs and escalation: the graph's own control flow
            return await execute(request)
        call = CallFacts.of(request)
        started = time.perf_counter()
        if call.dry_run and declaration.side_effects:
            return self._hold(request, call, started)
        refusal = await self._refusal(declaration, call)
        if refusal is not None:
            outcome, text = refusal
            return self._finish(request, call, started, outcome, _error_message(request, text))
        try:
            async with asyncio.timeout(declaration.timeout_seconds):
                result = await execute(request)
        except GraphBubbleUp:
            TOOL_CALLS.labels(call.tool, "interrupted").inc()
            raise
        except TimeoutError:
            text = (
                f"{call.tool} did not answer within {declaration.timeout_seconds:g} s and was "
                "stopped; nothing more will come from this call. Answer the customer "
                "without it, or say it is unavailable right now and offer to try later."
            )
            return self._finish(request, call, started, "timeout", _error_message(request, text))
        except Exception as exc:
            log.warning("tool.failed", tool=call.tool, error_type=type(exc).__name__)
            text = (
                f"{call.tool} failed ({type(exc).__name__}). Nothing was done; answer "
                "without it or offer to hand over to a person."
            )
            return self._finish(request, call, started, "error", _error_message(request, text))
        failed = isinstance(result, ToolMessage) and result.status == "error"
        return self._finish(request, call, started, "error" if failed else "ok", result)

    def _hold(self, request: ToolCallRequest, call: CallFacts, started: float) -> ToolResult:
        """Not run: recorded, then the replay stops here (`interrupt`) and reports the
        call. Whoever resumes anyway gets the held result, never the side effect."""
        held = _error_message(request, f"{call.tool} {HELD_TEXT}; nothing was changed.")
        self._finish(request, call, started, HELD, held)
        interrupt(
            {
                "type": HELD,
                "name": call.tool,
                "args": call.arguments,
                "id": request.tool_call["id"],
            }
        )
        return held

    async def _refusal(
        self, declaration: ToolDeclaration, call: CallFacts
    ) -> tuple[str, str] | None:
        if declaration.agents is not None and call.agent and call.agent not in declaration.agents:
            return "refused", f"{call.tool} is not available to this agent."
        if declaration.flag and call.flag is not None and not call.flag(declaration.flag):
            return "refused", f"{call.tool} is not available for this customer."
        limits: list[tuple[str, RateLimit]] = []
        if declaration.per_user_limit is not None:
            who = call.wa_id or call.conversation_id or "anonymous"
            limits.append((f"tool:{call.tool}:user:{who}", declaration.per_user_limit))
        if declaration.global_limit is not None:
            limits.append((f"tool:{call.tool}:all", declaration.global_limit))
        full = await self.limiter.acquire(limits) if limits else None
        if full is not None:
            per_user = declaration.per_user_limit is not None and full == 0
            return "rate_limited", _limit_text(call.tool, limits[full][1], per_user)
        return None

    def _finish(
        self,
        request: ToolCallRequest,
        call: CallFacts,
        started: float,
        outcome: str,
        result: ToolResult,
    ) -> ToolResult:
        seconds = time.perf_counter() - started
        TOOL_CALLS.labels(call.tool, outcome).inc()
        TOOL_SECONDS.labels(call.tool).observe(seconds)
        if self.recorder is not None:
            content = result.content if isinstance(result, ToolMessage) else None
            self.recorder.record(
                ToolExecution(
                    tool=call.tool,
                    arguments=call.arguments,  # the recorder masks it, and the error
                    success=outcome == "ok",
                    duration_ms=seconds * 1000,
                    result_size=_size(content),
                    error=None if outcome == "ok" else f"{outcome}: {_text(content)}",
                    conversation_id=call.conversation_id,
                    run_id=call.run_id,
                    agent=call.agent or None,
                )
            )
        return result


def _declarations_from(obj: Any) -> Iterable[ToolDeclaration]:
    if isinstance(obj, ToolDeclaration):
        yield obj
    elif isinstance(obj, BaseTool):
        yield ToolDeclaration.of(obj)
    elif isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
        for item in obj:
            yield from _declarations_from(item)
    elif callable(obj):
        yield from _declarations_from(obj())
    else:
        raise TypeError(f"not a tool declaration: {type(obj).__name__}")


def _limit_text(tool: str, limit: RateLimit, per_user: bool) -> str:
    who = "this customer has used it" if per_user else "it has been used"
    return (
        f"{tool} was not run: {who} {limit.calls} times in the last "
        f"{limit.window_seconds:g} s, the most allowed. Do not call it again now; answer "
        "with what you already know, or tell the customer politely to try again later."
    )


def _error_message(request: ToolCallRequest, text: str) -> ToolMessage:
    call = request.tool_call
    return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"], status="error")


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, default=str)


def _size(content: Any) -> int | None:
    return None if content is None else len(_text(content))
