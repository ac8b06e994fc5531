"""Per-run facts handed to nodes through LangGraph's runtime context.

Long-lived dependencies (the chat model, prompts) are given to node factories when
the graph is built; what changes from one run to the next lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConversationContext:
    conversation_id: str = ""
    customer_name: str | None = None
    channel: str = "whatsapp"
    # A replay re-runs history for a developer: it must never message the customer.
    replay: bool = False
