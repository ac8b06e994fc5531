"""Human takeover: the bot tells the customer a person is coming, then waits.

`escalate` speaks once; `human_takeover` pauses the run with `interrupt()` until an
operator hands the conversation back (`Command(resume=...)`). While it waits, customer
and operator messages are added to the thread from outside the run, and the bot stays
silent.
"""

from __future__ import annotations

from typing import Any

import structlog
from langgraph.types import interrupt

from graph.state import ConversationState, text_reply
from nodes.handoffs import HUMAN

log = structlog.get_logger(__name__)

HANDOVER_NOTICE = (
    "I'm passing you to a member of our team. They will answer you here as soon as they can."
)


async def escalate(state: ConversationState) -> dict[str, Any]:
    handoffs = state.get("handoffs", [])
    reason = handoffs[-1]["reason"] if handoffs else "the customer asked for a person"
    return {
        "mode": "human",
        "active_agent": HUMAN,
        "replies": [text_reply(HANDOVER_NOTICE)],
        "handoffs": [*handoffs, {"source": "bot", "target": HUMAN, "reason": reason}],
    }


async def human_takeover(state: ConversationState) -> dict[str, Any]:
    handoffs = state.get("handoffs", [])
    reason = handoffs[-1]["reason"] if handoffs else ""
    released = interrupt({"type": "human", "reason": reason})
    log.info("conversation.released", by=released.get("by") if isinstance(released, dict) else None)
    # Back to the bot; the next message is routed from scratch.
    return {"mode": "bot", "active_agent": None, "replies": [], "handoffs": []}
