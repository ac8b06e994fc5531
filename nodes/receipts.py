"""The zero-token receipt: a confirmed action's outcome goes to the customer as it is.

When the customer taps Confirm, the paused tool runs and its answer carries the receipt
the customer should read ("Booking #12: Tue 08 Dec 08:00–12:30, E-bike 1, 15,000 RWF.",
tools/common.py `receipt`). A model call there would only re-read the whole
conversation to restate it, so the graph sends it itself, after a short lead-in in the
customer's language (the `done` notice, prompts/notices/), as the confirmation question
before it was sent. A declined confirmation or a refusal carries no receipt: the agent
reads those and answers.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage, ToolMessage
from langgraph.runtime import Runtime

from graph.context import ConversationContext
from graph.state import ConversationState, text_reply
from nodes.fallback import as_history
from nodes.node_types import ContextNode
from nodes.notices import GuessLanguage, Notices, customer_language


def receipts_of_last_tools(messages: list[AnyMessage]) -> list[str]:
    """The receipts carried by the tool answers the tool node just added, in order."""
    found: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        artifact = message.artifact if isinstance(message.artifact, list) else []
        texts = [
            shown["text"]
            for shown in artifact
            if isinstance(shown, dict)
            and shown.get("kind") == "text"
            and isinstance(shown.get("text"), str)
        ]
        found[:0] = texts
    return found


def make_receipt_node(notices: Notices, language_of: GuessLanguage | None) -> ContextNode:
    """The node that sends the receipts, under the `done` lead-in in the language of the
    customer's latest words that tell one, else the one kept on the contact."""

    async def send_receipt(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        language = customer_language(state, runtime.context, language_of)
        lines = [notices.say("done", language), *receipts_of_last_tools(state["messages"])]
        reply = text_reply("\n".join(lines))
        return {"messages": [as_history(reply, "receipt")], "replies": [reply]}

    return send_receipt
