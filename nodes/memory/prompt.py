"""How memories and the running summary reach an agent's model call.

Both are material about the customer, not instructions: they come from the customer's
own words (possibly months old), so the notes say to use them when relevant, to let
the customer correct them, and never to recite them.

They are separate system notes, not part of the agent's system prompt: the system
prompt and the tool schemas after it must stay the same from turn to turn for the
provider's prompt cache to serve them (nodes/specialists.py `prompt_messages`), and
recalled memories can change at every turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from graph.state import RecalledMemory

MEMORY_HEADING = "What the business remembers about this customer"
SUMMARY_HEADING = "Summary of this conversation so far"


def memory_note(memories: Sequence[RecalledMemory] | None) -> str:
    """The recalled memories as one note; empty when there are none."""
    if not memories:
        return ""
    lines = "\n".join(f"- {memory['content']}" for memory in memories)
    return (
        f"{MEMORY_HEADING} from earlier conversations (use it when it helps, do not "
        f"recite it, trust the customer if they say otherwise):\n{lines}"
    )


def summary_note(summary: str | None) -> str:
    """The running summary as one note; empty before the first fold."""
    if not summary:
        return ""
    return f"{SUMMARY_HEADING} (the older messages are not shown):\n{summary}"
