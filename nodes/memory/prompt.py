"""How memories and the running summary read in an agent's system prompt.

Both are material about the customer, not instructions: they come from the customer's
own words (possibly months old), so the prompt says to use them when relevant, to let
the customer correct them, and never to recite them.
"""

from __future__ import annotations

from collections.abc import Sequence

from graph.state import RecalledMemory


def memory_section(memories: Sequence[RecalledMemory] | None, summary: str | None) -> str:
    """The text to append to the system prompt; empty when there is nothing."""
    parts = []
    if memories:
        lines = "\n".join(f"- {memory['content']}" for memory in memories)
        parts.append(
            "What the business remembers about this customer from earlier "
            "conversations (use it when it helps, do not recite it, and trust the "
            f"customer if they say otherwise):\n{lines}"
        )
    if summary:
        parts.append(
            "Summary of this conversation so far (the older messages are not shown "
            f"below):\n{summary}"
        )
    return "\n\n".join(parts)
