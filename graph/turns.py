"""One customer turn against the graph, whatever state the conversation is in.

A conversation can be waiting: for a confirmation tap (a tool paused on `interrupt()`),
or for an operator (human mode). A turn then resumes or feeds the thread instead of
starting a new run. Every write carries the run id, so a job retried after a crash
can tell a finished turn (deliver its replies) from an interrupted one (resume it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from graph.builder import ConversationGraph
from graph.context import ConversationContext
from graph.state import ButtonsReply, ConversationState, Reply, whatsapp_meta

Waiting = Literal["confirmation", "human"]

# Each step's checkpoint is written before the next step starts: a worker killed
# mid-turn leaves exactly the steps it finished, which the retried job resumes from.
DURABILITY: Literal["sync"] = "sync"

CONFIRM_YES = "confirm:yes"
CONFIRM_NO = "confirm:no"


@dataclass(frozen=True)
class TurnOutcome:
    replies: list[Reply] = field(default_factory=list)
    waiting: Waiting | None = None
    # The thread's values after the turn, so that work after delivery (episodes) need
    # not read the checkpoint again.
    state: Mapping[str, Any] = field(default_factory=dict)


class TurnGraph(Protocol):
    """What a turn needs of the graph: the compiled graph itself, or a stand-in that
    streams it (graph/streaming.py)."""

    async def aget_state(self, config: RunnableConfig) -> Any: ...

    async def aupdate_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None
    ) -> Any: ...

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        durability: Any = None,
    ) -> Any: ...


class GraphStandIn:
    """Base of the stand-ins (streaming, replay): state is read and written through the
    compiled graph unchanged; a subclass changes only how a run goes (`ainvoke`)."""

    def __init__(self, graph: ConversationGraph) -> None:
        self.graph = graph

    async def aget_state(self, config: RunnableConfig) -> Any:
        return await self.graph.aget_state(config)

    async def aupdate_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None
    ) -> Any:
        return await self.graph.aupdate_state(config, values, as_node=as_node)


def thread_config(conversation_id: str, *, run_id: str, wa_id: str = "") -> RunnableConfig:
    return {
        "configurable": {"thread_id": conversation_id, "wa_id": wa_id},
        "metadata": {"run_id": run_id, "conversation_id": conversation_id},
        "tags": ["whatsapp"],
    }


async def run_turn(
    graph: TurnGraph,
    config: RunnableConfig,
    context: ConversationContext,
    messages: Sequence[HumanMessage],
    run_id: str,
) -> TurnOutcome:
    snapshot = await graph.aget_state(config)
    values: dict[str, Any] = dict(snapshot.values)
    if values.get("run_id") == run_id:  # a retried job: this turn already started
        if snapshot.interrupts or not snapshot.next or values.get("mode") == "human":
            return _outcome(values, snapshot.interrupts)
        result = await graph.ainvoke(None, config, context=context, durability=DURABILITY)
        return _outcome(result, result.get("__interrupt__"))
    if values.get("mode") == "human":
        update = {"messages": list(messages), "run_id": run_id, "replies": []}
        await graph.aupdate_state(config, update, as_node="escalate")
        return TurnOutcome(waiting="human", state={**values, **update})
    pending = _pending_interrupt(snapshot.interrupts)
    if pending is not None and pending.get("type") == "confirmation":
        taps, typed = _split_taps(messages)
        answer = {"confirmed": bool(taps) and taps[-1] == CONFIRM_YES}
        resume: Command[str] = Command(resume=answer, update={"run_id": run_id, "replies": []})
        result = await graph.ainvoke(resume, config, context=context, durability=DURABILITY)
        if not typed or "__interrupt__" in result:
            return _outcome(result, result.get("__interrupt__"))
        messages = typed  # the customer wrote instead of tapping: cancelled, then answered
    turn: ConversationState = {"messages": list(messages), "run_id": run_id, "replies": []}
    result = await graph.ainvoke(turn, config, context=context, durability=DURABILITY)
    return _outcome(result, result.get("__interrupt__"))


def _pending_interrupt(interrupts: Sequence[Any]) -> dict[str, Any] | None:
    for item in interrupts:
        if isinstance(item.value, dict):
            return item.value
    return None


def _split_taps(messages: Sequence[HumanMessage]) -> tuple[list[str], list[HumanMessage]]:
    taps: list[str] = []
    typed: list[HumanMessage] = []
    for message in messages:
        reply_id = whatsapp_meta(message).get("reply_id")
        if reply_id in (CONFIRM_YES, CONFIRM_NO):
            taps.append(str(reply_id))
        else:
            typed.append(message)
    return taps, typed


def _outcome(result: dict[str, Any], interrupts: Any) -> TurnOutcome:
    replies: list[Reply] = list(result.get("replies", []))
    pending = _pending_interrupt(interrupts or ())
    if pending is None:
        return TurnOutcome(replies=replies, state=result)
    if pending.get("type") == "confirmation":
        replies.append(confirmation_buttons(pending))
        return TurnOutcome(replies=replies, waiting="confirmation", state=result)
    return TurnOutcome(replies=replies, waiting="human", state=result)


def confirmation_buttons(request: dict[str, Any]) -> ButtonsReply:
    """The question a paused tool asks, as WhatsApp reply buttons."""
    buttons = request.get("buttons") or [
        {"id": CONFIRM_YES, "title": "Confirm"},
        {"id": CONFIRM_NO, "title": "Cancel"},
    ]
    body = str(request.get("summary") or "Please confirm.")
    return {"kind": "buttons", "body": body[:1024], "buttons": list(buttons)[:3]}
