"""Recall: at the start of each turn, what the business remembers about this customer
and that bears on what they just wrote, for the system prompt of the agent in charge.

The customer is the run's (`ConversationContext.wa_id`), never anything the model or
the message says, so one customer's memories cannot reach another's conversation.
Recall is a courtesy, not a dependency: when it fails or takes too long the turn is
answered without memories, and the log says why.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from langgraph.runtime import Runtime

from graph.context import ConversationContext
from graph.state import (
    ConversationState,
    RecalledMemory,
    latest_customer_messages,
    whatsapp_meta,
)
from nodes.memory.counters import RECALL_SECONDS, RECALLS
from nodes.memory.store import LongTermMemory
from nodes.node_types import ContextNode

log = structlog.get_logger(__name__)

# The recall query reads this much of a turn: its topic, not a pasted document.
MAX_QUERY_CHARS = 1000


def turn_query(state: ConversationState) -> str:
    turn = latest_customer_messages(state["messages"])
    texts = [m.text.strip() for m in turn if whatsapp_meta(m).get("supported", True)]
    return "\n".join(t for t in texts if t)[:MAX_QUERY_CHARS]


def make_recall_node(memory: LongTermMemory | None, *, timeout_seconds: float = 2.0) -> ContextNode:
    async def recall_memories(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        context = runtime.context if runtime is not None else None
        customer = context.wa_id if context is not None else ""
        query = turn_query(state)
        if memory is None or not customer or not query:
            return {"memories": []}
        try:
            with RECALL_SECONDS.time():
                async with asyncio.timeout(timeout_seconds):
                    ranked = await memory.recall(customer, query)
        except Exception as exc:
            RECALLS.labels(outcome="failed").inc()
            log.warning("memory.recall_failed", error_type=type(exc).__name__)
            return {"memories": []}
        RECALLS.labels(outcome="recalled" if ranked else "none").inc()
        recalled: list[RecalledMemory] = [
            {
                "content": item.memory.content,
                "kind": item.memory.kind,
                "score": round(item.score, 4),
            }
            for item in ranked
        ]
        return {"memories": recalled}

    return recall_memories
