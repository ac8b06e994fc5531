"""Handoff and escalation tools: how an agent gives the conversation to another.

They update the state rather than jump (`Command(update=...)` without `goto`): the edge
after the tool node then sends the turn to whoever is now in charge, so a handoff can
never run two agents at once. The tool message keeps the history valid for the model.

The model is offered one `hand_over(agent, reason)` whose `agent` lists the colleagues
(`hand_over_schema`), not a `transfer_to_<agent>` per colleague: every agent's every
model call carries these schemas, and one with an enum is about 40 % of four. The tool
node still runs `transfer_to_<agent>` (`as_transfer` rewrites the call, same id), and a
model that calls that name directly, as the history shows it, is understood too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command
from pydantic import BaseModel, Field

from nodes.counters import HANDOFFS

HUMAN = "human"
MAX_HANDOFFS_PER_TURN = 3
HAND_OVER = "hand_over"
REASON = "What the customer wants."


class HandoffArgs(BaseModel):
    reason: str = Field(
        min_length=3,
        max_length=300,
        description=REASON,
    )
    tool_call_id: Annotated[str, InjectedToolCallId]
    state: Annotated[dict[str, Any], InjectedState]


def handoff_tool_name(target: str) -> str:
    return f"transfer_to_{target}"


def hand_over_schema(targets: Mapping[str, str]) -> dict[str, Any]:
    """The one handoff tool the model sees: `targets` maps each colleague it may hand
    over to (enabled, not itself) to what that colleague handles."""
    listed = "; ".join(f"{name} ({_clause(what)})" for name, what in targets.items())
    return {
        "type": "function",
        "function": {
            "name": HAND_OVER,
            "description": f"Hand the conversation to a colleague: {listed}.",
            "parameters": {
                "type": "object",
                "properties": {
                    "agent": {"type": "string", "enum": list(targets)},
                    "reason": {"type": "string", "description": REASON},
                },
                "required": ["agent", "reason"],
            },
        },
    }


def as_transfer(call: ToolCall, targets: Mapping[str, str]) -> ToolCall | None:
    """A `hand_over` call as the `transfer_to_<agent>` call the tool node runs (the same
    id, so the tool message answers it); None when it names no colleague on offer."""
    target = call["args"].get("agent")
    if not isinstance(target, str) or target not in targets:
        return None
    reason = call["args"].get("reason", "")
    return tool_call(name=handoff_tool_name(target), args={"reason": reason}, id=call["id"])


def _clause(description: str) -> str:
    """ "Products, prices." → "products, prices": one clause of a list."""
    text = description.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _hand_over(target: str, reason: str, tool_call_id: str, state: dict[str, Any]) -> Command[str]:
    source = state.get("active_agent") or "router"
    HANDOFFS.labels(source=source, target=target).inc()
    handoffs = [*state.get("handoffs", []), {"source": source, "target": target, "reason": reason}]
    note = "A person from the team" if target == HUMAN else f"The {target} agent"
    message = ToolMessage(f"{note} now handles the conversation.", tool_call_id=tool_call_id)
    return Command(update={"messages": [message], "active_agent": target, "handoffs": handoffs})


def make_handoff_tool(target: str, description: str) -> BaseTool:
    def transfer(reason: str, tool_call_id: str, state: dict[str, Any]) -> Command[str]:
        return _hand_over(target, reason, tool_call_id, state)

    return StructuredTool.from_function(
        transfer,
        name=handoff_tool_name(target),
        description=f"Hand over to {target}: {description}",
        args_schema=HandoffArgs,
    )


def make_escalation_tool() -> BaseTool:
    def escalate_to_human(reason: str, tool_call_id: str, state: dict[str, Any]) -> Command[str]:
        return _hand_over(HUMAN, reason, tool_call_id, state)

    return StructuredTool.from_function(
        escalate_to_human,
        name="escalate_to_human",
        description="Hand over to a person: asked for, upset, or beyond the tools (refunds).",
        args_schema=HandoffArgs,
    )
