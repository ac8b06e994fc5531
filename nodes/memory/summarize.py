"""Short-term memory: fold the oldest messages into a running summary.

Runs at the start of a turn, before the router. While the summary and the messages
fit the budget it does nothing (no model call). Past it, the oldest messages, cut at
the start of a customer turn and never inside a tool call and its results, are
folded into the summary by one model call and removed from the state with
`RemoveMessage`; the messages are brought well under the budget (`refill_ratio`), so
the next fold is several turns away and most turns pay nothing.

If the model fails, nothing is removed and the turn goes on: the specialist still
sends only what fits (`HistoryBudget.select`), so the budget holds either way, and the
next turn tries again. The business's transcript (`agent_messages`) keeps every
message; only the model's view is folded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

from graph.state import ConversationState
from nodes.memory.counters import SUMMARIES
from nodes.memory.history import HistoryBudget
from nodes.node_types import StateNode

log = structlog.get_logger(__name__)

# A tool's answer (a catalog, a list of slots) matters for its gist, not its bulk.
TOOL_RESULT_CHARS = 400

SUMMARY_PROMPT = """\
You keep the running summary of a WhatsApp conversation between a customer and the \
assistant of {business_name}. Rewrite the summary so that it also covers the new \
messages.

Keep what later turns may need: who the customer is and what they told about \
themselves, what they asked for, what was decided or done (bookings, orders, payments, \
tickets, with their references, dates and amounts), promises made, open questions. \
Drop greetings and small talk. Write short plain sentences in English, at most \
{max_words} words, oldest first. Output only the summary."""


def render_transcript(messages: Sequence[AnyMessage]) -> str:
    """The messages as plain lines the summariser can read."""
    lines = []
    for message in messages:
        text = message.text.strip()
        if isinstance(message, HumanMessage):
            lines.append(f"Customer: {text}")
        elif isinstance(message, ToolMessage):
            lines.append(f"Tool result: {text[:TOOL_RESULT_CHARS]}")
        elif isinstance(message, AIMessage):
            speaker = f"Assistant ({message.name})" if message.name else "Assistant"
            calls = ", ".join(f"{c['name']}({c['args']})" for c in message.tool_calls)
            if text:
                lines.append(f"{speaker}: {text}")
            if calls:
                lines.append(f"{speaker} used: {calls}")
    return "\n".join(lines)


class Summarizer:
    def __init__(
        self,
        model: BaseChatModel,
        budget: HistoryBudget,
        *,
        business_name: str = "the business",
        timeout_seconds: float = 20.0,
    ) -> None:
        self.model = model
        self.budget = budget
        self.business_name = business_name
        self.timeout_seconds = timeout_seconds

    async def fold(self, summary: str | None, messages: Sequence[AnyMessage]) -> str:
        """The summary rewritten to cover `messages`, cut to `summary_tokens`."""
        max_words = max(40, int(self.budget.summary_tokens * 0.7))
        prompt = SUMMARY_PROMPT.format(business_name=self.business_name, max_words=max_words)
        request = (
            f"Summary so far:\n{summary or '(none yet)'}\n\n"
            f"New messages:\n{render_transcript(messages)}"
        )
        async with asyncio.timeout(self.timeout_seconds):
            response = await self.model.ainvoke(
                [SystemMessage(content=prompt), HumanMessage(content=request)]
            )
        text = response.text.strip() if isinstance(response, AIMessage) else ""
        if not text:
            raise ValueError("the model returned an empty summary")
        return self.budget.counter.truncate(text, self.budget.summary_tokens)


def make_summarize_node(summarizer: Summarizer) -> StateNode:
    budget = summarizer.budget

    async def summarize(state: ConversationState) -> dict[str, Any]:
        messages = state["messages"]
        summary = state.get("summary")
        if not budget.over(messages, summary):
            return {}
        cut = budget.fold_point(messages)
        folded = [message for message in messages[:cut] if message.id]
        if not folded:
            return {}
        try:
            new_summary = await summarizer.fold(summary, folded)
        except Exception as exc:  # the specialist's trim keeps the budget meanwhile
            SUMMARIES.labels(outcome="failed").inc()
            log.warning("memory.summary_failed", error_type=type(exc).__name__)
            return {}
        SUMMARIES.labels(outcome="folded").inc()
        log.info("memory.summarized", folded=len(folded), kept=len(messages) - cut)
        removals = [RemoveMessage(id=str(m.id)) for m in folded]
        return {"summary": new_summary, "messages": removals}

    return summarize
