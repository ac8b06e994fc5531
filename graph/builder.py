"""`build_graph`: the conversation state machine, in one readable place.

START ─▶ route_turn ─┬─▶ agent        (a model is configured, the customer wrote)
                     ├─▶ unsupported  (only kinds the bot cannot read this turn)
                     └─▶ fallback     (no model: the rule-based menu)
         every branch ─▶ END
"""

from __future__ import annotations

from typing import Literal

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.context import ConversationContext
from graph.prompts import Prompts
from graph.state import ConversationState, latest_customer_messages, whatsapp_meta
from nodes.agent import make_agent_node
from nodes.fallback import make_fallback_node, make_unsupported_node

ConversationGraph = CompiledStateGraph[
    ConversationState, ConversationContext, ConversationState, ConversationState
]

Route = Literal["agent", "unsupported", "fallback"]


def build_graph(
    model: BaseChatModel | None,
    prompts: Prompts,
    *,
    checkpointer: BaseCheckpointSaver[str] | None = None,
) -> ConversationGraph:
    """Compile the graph; `checkpointer=None` for LangGraph Studio, which brings its own."""

    def route_turn(state: ConversationState) -> Route:
        turn = latest_customer_messages(state["messages"])
        if turn and not any(whatsapp_meta(m).get("supported", True) for m in turn):
            return "unsupported"
        return "agent" if model is not None else "fallback"

    builder = StateGraph(ConversationState, context_schema=ConversationContext)
    builder.add_node("fallback", make_fallback_node(prompts.fallback))
    builder.add_node("unsupported", make_unsupported_node(prompts.fallback))
    routes: list[str] = ["unsupported", "fallback"]
    if model is not None:
        builder.add_node("agent", make_agent_node(model, prompts.assistant, prompts.fallback))
        routes.append("agent")
    builder.add_conditional_edges(START, route_turn, routes)
    for node in routes:
        builder.add_edge(node, END)
    return builder.compile(checkpointer=checkpointer, name="wa-agent")
