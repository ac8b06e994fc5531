"""The router node: decides which specialist answers this turn.

The decision itself (rules, local classifier, LLM) belongs to the intent router; this
node feeds it the customer's turn and the agents the operator has enabled, and writes
the decision into the state, where Studio, replays and metrics read it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from langgraph.runtime import Runtime

from graph.context import AgentConfig, ConversationContext
from graph.state import ConversationState, RouteDecision, latest_customer_messages, whatsapp_meta
from nodes.counters import ROUTE_DECISIONS
from nodes.handoffs import HUMAN
from nodes.node_types import ContextNode
from nodes.specialists import current_agents


class DecidesRoute(Protocol):
    """What the router node needs of the intent router (nodes.routing.IntentRouter)."""

    async def route(
        self,
        text: str,
        *,
        reply_id: str | None,
        active_agent: str | None,
        enabled: Collection[str],
    ) -> RouteDecision: ...


def customer_turn_text(state: ConversationState) -> tuple[str, str | None]:
    """The turn's readable text (messages joined in order) and the last tapped id."""
    turn = latest_customer_messages(state["messages"])
    texts = [str(m.content) for m in turn if whatsapp_meta(m).get("supported", True)]
    reply_ids = [whatsapp_meta(m).get("reply_id") for m in turn]
    tapped = next((r for r in reversed(reply_ids) if isinstance(r, str)), None)
    return "\n".join(t for t in texts if t), tapped


def make_router_node(router: DecidesRoute, defaults: Mapping[str, AgentConfig]) -> ContextNode:
    async def route_intent(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        agents = current_agents(runtime, defaults)
        enabled = {name for name, config in agents.items() if config.enabled} | {HUMAN}
        text, reply_id = customer_turn_text(state)
        decision = await router.route(
            text, reply_id=reply_id, active_agent=state.get("active_agent"), enabled=enabled
        )
        ROUTE_DECISIONS.labels(intent=decision["intent"], method=decision["method"]).inc()
        return {"route": decision, "active_agent": decision["intent"], "handoffs": []}

    return route_intent
