"""Human takeover: the bot tells the customer a person is coming, then waits.

The escalate node speaks once; `human_takeover` pauses the run with `interrupt()` until an
operator hands the conversation back (`Command(resume=...)`). While it waits, customer
and operator messages are added to the thread from outside the run, and the bot stays
silent.
"""

from __future__ import annotations

from typing import Any

import structlog
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graph.context import ConversationContext
from graph.state import ConversationState, text_reply
from nodes.handoffs import HUMAN
from nodes.node_types import ContextNode
from nodes.notices import GuessLanguage, Notices, customer_language

log = structlog.get_logger(__name__)


def make_escalate_node(notices: Notices, language_of: GuessLanguage | None) -> ContextNode:
    """The node that tells the customer a person is coming, in their language: that of
    their latest words that tell one, else the one kept on the contact, else English."""

    async def escalate(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        handoffs = state.get("handoffs", [])
        reason = handoffs[-1]["reason"] if handoffs else "the customer asked for a person"
        language = customer_language(state, runtime.context, language_of)
        return {
            "mode": "human",
            "active_agent": HUMAN,
            "replies": [text_reply(notices.say("handover", language))],
            "handoffs": [*handoffs, {"source": "bot", "target": HUMAN, "reason": reason}],
        }

    return escalate


async def human_takeover(state: ConversationState) -> dict[str, Any]:
    handoffs = state.get("handoffs", [])
    reason = handoffs[-1]["reason"] if handoffs else ""
    released = interrupt({"type": "human", "reason": reason})
    log.info("conversation.released", by=released.get("by") if isinstance(released, dict) else None)
    # Back to the bot; the next message is routed from scratch.
    return {"mode": "bot", "active_agent": None, "replies": [], "handoffs": []}
