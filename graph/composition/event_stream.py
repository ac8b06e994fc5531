"""A turn as a stream of events: the agent's tokens as the model writes them, and the
steps around them (which agent took the turn, tool calls, handoffs).

`StreamingGraph` stands in for the compiled graph inside `run_turn`: reads and state
updates pass through, and `ainvoke` runs `astream` instead, handing each event to a
callback and returning what `ainvoke` would have returned. The turn logic (resuming a
confirmation, human mode, retried runs) therefore stays in one place, graph/composition/turns.py,
whether the answer is streamed to a browser (SSE), cut into WhatsApp parts as it is
written (partial delivery), or not streamed at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from langchain_core.runnables import RunnableConfig

from graph.composition.builder import ConversationGraph
from graph.composition.turns import GraphStandIn
from nodes.handoffs import HUMAN

AGENT_NODE_PREFIX = "agent_"


@dataclass(frozen=True)
class TurnEvent:
    """`kind`: token | agent | tool_call | tool_result | handoff (data: JSON-shaped)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[TurnEvent], Awaitable[None]]


class StreamingGraph(GraphStandIn):
    """The compiled graph, with `ainvoke` streamed into `sink`."""

    def __init__(self, graph: ConversationGraph, sink: EventSink) -> None:
        super().__init__(graph)
        self.sink = sink

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        durability: Any = None,
        interrupt_before: Any = None,
    ) -> Any:
        """What `ainvoke` returns — the final values, with `__interrupt__` when the run
        paused — after streaming every token and step to the sink."""
        final: dict[str, Any] = {}
        interrupts: list[Any] = []
        async for item in self.graph.astream(
            input,
            config,
            context=context,
            durability=durability,
            interrupt_before=interrupt_before,
            stream_mode=["messages", "updates", "values"],
        ):
            mode, chunk = cast(tuple[str, Any], item)
            if mode == "values":
                final = dict(chunk)
            elif mode == "messages":
                await self._token(chunk)
            elif mode == "updates":
                interrupts.extend(chunk.get("__interrupt__", ()))
                for event in step_events(chunk):
                    await self.sink(event)
        if interrupts:
            final["__interrupt__"] = interrupts
        return final

    async def _token(self, chunk: tuple[Any, dict[str, Any]]) -> None:
        message, metadata = chunk
        node = str(metadata.get("langgraph_node", ""))
        if not node.startswith(AGENT_NODE_PREFIX) or not isinstance(message, AIMessageChunk):
            return  # the router's or the summariser's model calls are not the answer
        if message.tool_call_chunks:
            await self.sink(TurnEvent("tool_call_started", {"message_id": message.id}))
        text = message.text
        if text:
            agent = node.removeprefix(AGENT_NODE_PREFIX)
            await self.sink(TurnEvent("token", {"text": text, "agent": agent, "id": message.id}))


def step_events(update: dict[str, Any]) -> list[TurnEvent]:
    """The events one node's update means for someone watching the turn."""
    events: list[TurnEvent] = []
    for node, value in update.items():
        for written in value if isinstance(value, Sequence) else [value]:
            if isinstance(written, dict):
                events.extend(_node_events(node, written))
    return events


def _node_events(node: str, written: dict[str, Any]) -> list[TurnEvent]:
    if node == "router" and "route" in written:
        route = written["route"]
        return [TurnEvent("agent", {"agent": written.get("active_agent"), **route})]
    if node == "escalate":
        return [TurnEvent("handoff", {"target": HUMAN, "reason": "escalation"})]
    events: list[TurnEvent] = []
    for message in written.get("messages") or []:
        if isinstance(message, AIMessage):
            agent = node.removeprefix(AGENT_NODE_PREFIX)
            for call in message.tool_calls:
                call_data = {"agent": agent, "name": call["name"], "args": call["args"]}
                events.append(TurnEvent("tool_call", {**call_data, "id": call["id"]}))
        elif isinstance(message, ToolMessage):
            data: dict[str, Any] = {"name": message.name, "id": message.tool_call_id}
            data["status"] = message.status
            events.append(TurnEvent("tool_result", data))
    if node == "tools" and written.get("handoffs"):
        events.append(TurnEvent("handoff", dict(written["handoffs"][-1])))
    return events
