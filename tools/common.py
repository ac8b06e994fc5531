"""What every business tool shares: who the customer is, idempotency keys, confirmations,
money formatting, and the rule that a tool answers the model instead of crashing the run.

The customer's WhatsApp id never comes from the model's arguments (a prompt injection
could name someone else): it is read from the run itself, the runtime context's `wa_id`
(`graph/context.py` ConversationContext), with `configurable["wa_id"]` as a fallback for
ad-hoc callers such as LangGraph Studio.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, ParamSpec

import psycopg
import structlog
from langchain_core.tools import StructuredTool, ToolException
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt import ToolRuntime
from langgraph.types import interrupt
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, ValidationError

from graph.state import MediaReply, TextReply

log = structlog.get_logger(__name__)

# The service's pool (graph.infra.database.Pool), restated here: tools do not import graph/.
Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]
Connection = psycopg.AsyncConnection[DictRow]

CONFIRM_YES = "confirm:yes"
# How a tool's answer starts when it refused (a ToolFailure) or when the customer did not
# confirm; the rule-based menu (nodes/menu.py) reads these instead of the sentences.
REFUSED = "Not done: "
DECLINED = "The customer did not confirm; "
CONFIRM_NO = "confirm:no"
_YES_VALUES = frozenset({CONFIRM_YES, "yes", "confirm", "confirmed"})

# What a tool's answer may carry for the customer, beside the text the model reads: a
# product's photo, a receipt, or the receipt of an action the customer just confirmed.
Shown = MediaReply | TextReply
# The answer of a tool built with `showing_tool`: the model's text, what the customer sees.
ToolAnswer = tuple[str, list[Shown]]

# ISO 4217 minor-unit exponents of the currencies a shop in the region meets.
_EXPONENTS = {"RWF": 0, "UGX": 0, "BIF": 0, "KES": 2, "TZS": 2, "USD": 2, "EUR": 2}


class ToolArgs(BaseModel):
    """Arguments the model gives: unknown names are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class CustomerToolArgs(ToolArgs):
    """Arguments of a tool acting for the run's customer.

    `runtime` is injected by LangGraph's ToolNode and never shown to the model; declaring
    it here keeps `extra="forbid"` from refusing it.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    runtime: ToolRuntime[Any, Any]


class ToolFailure(Exception):
    """A refusal the model should read and relay: bad ids, a taken slot, no stock."""


class CustomerUnknown(ToolFailure):
    def __init__(self) -> None:
        super().__init__(
            "I cannot tell which customer this is, so I cannot look up or change their "
            "records. Tell the customer this action is unavailable right now."
        )


def customer_wa_id(runtime: ToolRuntime[Any, Any]) -> str:
    """The customer of this run, from the runtime context, else `configurable`."""
    wa_id = _from_context(runtime, "wa_id")
    if not wa_id:
        wa_id = (runtime.config.get("configurable") or {}).get("wa_id", "")
    if not isinstance(wa_id, str) or not wa_id:
        raise CustomerUnknown()
    return wa_id


# The catalog items a conversation may see and buy: those sold on every number, and
# those of its own number; every item where no number is known (Studio, tests).
SOLD_HERE = (
    "(%(number)s::text IS NULL OR catalog_items.phone_number_id IS NULL"
    " OR catalog_items.phone_number_id = %(number)s)"
)


def business_number(runtime: ToolRuntime[Any, Any]) -> str | None:
    """The business number of this run's conversation; None where none is known."""
    number = _from_context(runtime, "phone_number_id")
    return number if isinstance(number, str) and number else None


def _from_context(runtime: ToolRuntime[Any, Any], name: str) -> object:
    """A field of the run's context, whether a ConversationContext or a plain mapping."""
    context = runtime.context
    return context.get(name) if isinstance(context, Mapping) else getattr(context, name, "")


def idempotency_key(runtime: ToolRuntime[Any, Any], action: str, wa_id: str) -> str:
    """A key stable across re-runs of the same tool call, unique across conversations.

    The tool call id is checkpointed with the model's message, so a resumed or replayed
    tool node sees the same id; model-generated ids are only unique per conversation, so
    the thread and the customer are part of the key.
    """
    thread_id = (runtime.config.get("configurable") or {}).get("thread_id", "")
    raw = f"{action}|{wa_id}|{thread_id}|{runtime.tool_call_id}"
    return f"{action}:{hashlib.sha256(raw.encode()).hexdigest()[:32]}"


def confirmed(
    action: str,
    summary: str,
    details: Mapping[str, Any] | None = None,
    *,
    yes_title: str = "Confirm",
    no_title: str = "Cancel",
) -> bool:
    """Ask the customer to confirm, pausing the run with `interrupt()` until they answer.

    The first pass raises GraphInterrupt (the caller sends the buttons); on resume the
    tool runs again from the top and this returns whether the answer was a yes. Only an
    explicit yes proceeds: a free-text reply, a timeout or anything unexpected declines.
    Button titles stay within WhatsApp's 20 characters.
    """
    answer = interrupt(
        {
            "type": "confirmation",
            "action": action,
            "summary": summary,
            "details": dict(details or {}),
            "buttons": [
                {"id": CONFIRM_YES, "title": yes_title[:20]},
                {"id": CONFIRM_NO, "title": no_title[:20]},
            ],
        }
    )
    return is_yes(answer)


def receipt(text: str) -> list[Shown]:
    """What a confirmed action tells the customer itself ("Booking #12: Tue 08 Dec …"),
    in the artifact of its tool's answer: the graph sends it with no model call
    (nodes/receipts.py), so a tap on Confirm costs no tokens."""
    return [{"kind": "text", "text": text}]


def declined(what_stayed: str) -> str:
    """A tool's answer when the customer tapped Cancel (or wrote instead of tapping)."""
    return DECLINED + what_stayed


def is_yes(answer: object) -> bool:
    if answer is True:
        return True
    if isinstance(answer, Mapping):
        answer = answer.get("id", answer.get("confirmed"))
        if answer is True:
            return True
    return isinstance(answer, str) and answer.strip().lower() in _YES_VALUES


def format_money(amount_minor: int, currency: str) -> str:
    """`12000, "RWF"` → `12,000 RWF`; `1250, "USD"` → `12.50 USD`."""
    exponent = _EXPONENTS.get(currency, 2)
    if exponent == 0:
        return f"{amount_minor:,} {currency}"
    return f"{amount_minor / 10**exponent:,.{exponent}f} {currency}"


P = ParamSpec("P")


def answers_model(
    name: str,
) -> Callable[[Callable[P, Awaitable[str]]], Callable[P, Awaitable[str]]]:
    """Turn every failure of a tool body into a message for the model.

    `ToolFailure` (a refusal: the tool worked) is relayed as is; anything else (database
    down, a provider timeout) is logged and becomes a polite "try again later" so the run
    goes on, as an error the tool's caller can count. LangGraph's own
    control flow (interrupts, commands) passes through untouched.
    """

    def decorate(body: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
        @functools.wraps(body)
        async def run(*args: P.args, **kwargs: P.kwargs) -> str:
            try:
                return await body(*args, **kwargs)
            except GraphBubbleUp:
                raise
            except ToolFailure as failure:
                return f"{REFUSED}{failure}"
            except Exception as exc:
                # Raised as a ToolException: the model reads the same sentence, and the
                # ToolMessage is marked status="error", so the tool registry records a
                # failure instead of a success.
                log.warning("tool.failed", tool=name, error_type=type(exc).__name__)
                raise ToolException(
                    f"Error: {name} is temporarily unavailable ({type(exc).__name__}). "
                    "Nothing was changed. Apologise and suggest trying again shortly, "
                    "or offer to hand over to a person."
                ) from exc

        return run

    return decorate


def validation_message(error: ValidationError) -> str:
    """Pydantic's complaint, shortened to what the model needs to correct its call."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'arguments'}: {item['msg']}"
        for item in error.errors(include_url=False)
    ]
    return "Invalid arguments, nothing was done. " + "; ".join(problems)


def business_tool(
    coroutine: Callable[..., Awaitable[str]],
    *,
    name: str,
    description: str,
    args_schema: type[BaseModel],
) -> StructuredTool:
    """A LangChain tool whose bad arguments and failures come back as messages."""
    return _tool(answers_model(name)(coroutine), name, description, args_schema, "content")


def showing_tool(
    coroutine: Callable[..., Awaitable[ToolAnswer]],
    *,
    name: str,
    description: str,
    args_schema: type[BaseModel],
) -> StructuredTool:
    """A business tool whose answer comes with something to show the customer (a
    product's photo, a confirmed action's receipt): the text goes to the model, the rest
    rides in the ToolMessage's `artifact`, which the model never reads: the specialist
    sends media after its answer, a receipt is sent instead of one."""

    @functools.wraps(coroutine)
    async def run(*args: Any, **kwargs: Any) -> ToolAnswer:
        media: list[Shown] = []

        async def text_only() -> str:
            text, found = await coroutine(*args, **kwargs)
            media.extend(found)
            return text

        # A refusal or a failure is a message for the model, as for every tool: no media.
        return await answers_model(name)(text_only)(), media

    return _tool(run, name, description, args_schema, "content_and_artifact")


def _tool(
    coroutine: Callable[..., Awaitable[Any]],
    name: str,
    description: str,
    args_schema: type[BaseModel],
    response_format: Literal["content", "content_and_artifact"],
) -> StructuredTool:
    return StructuredTool.from_function(
        coroutine=coroutine,
        name=name,
        description=description,
        args_schema=args_schema,
        handle_validation_error=validation_message,
        handle_tool_error=True,
        response_format=response_format,
    )


async def ensure_contact(conn: Connection, wa_id: str) -> None:
    """Customer rows reference contacts; a terminal chat or a test may not have one yet."""
    await conn.execute(
        "INSERT INTO contacts (wa_id) VALUES (%s) ON CONFLICT (wa_id) DO NOTHING", (wa_id,)
    )
