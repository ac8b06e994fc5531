"""Handoff and escalation tools: how an agent gives the conversation to another.

They update the state rather than jump (`Command(update=...)` without `goto`): the edge
after the tool node then sends the turn to whoever is now in charge, so a handoff can
never run two agents at once. The tool message keeps the history valid for the model.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command
from pydantic import BaseModel, Field

from nodes.metrics import HANDOFFS

HUMAN = "human"
MAX_HANDOFFS_PER_TURN = 3


class HandoffArgs(BaseModel):
    reason: str = Field(
        min_length=3,
        max_length=300,
        description="What the customer wants.",
    )
    tool_call_id: Annotated[str, InjectedToolCallId]
    state: Annotated[dict[str, Any], InjectedState]


def handoff_tool_name(target: str) -> str:
    return f"transfer_to_{target}"


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
