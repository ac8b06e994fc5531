"""The token budget of the history the model sees, and where the history may be cut.

The budget covers the running summary and the messages after it: both are the
conversation's past as the model reads it, so a long summary leaves fewer messages.
A cut never separates an assistant's tool call from its tool results (the model API
refuses a tool result without its call), and prefers the start of a customer turn, so
the model never reads an answer without its question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from nodes.memory.tokens import TokenCounter


def valid_cuts(messages: Sequence[AnyMessage]) -> list[int]:
    """Indexes where the kept history may start: never on a tool result, never right
    after a tool call (whose results would be cut off from it)."""
    cuts: list[int] = []
    for index, message in enumerate(messages):
        if isinstance(message, ToolMessage):
            continue
        previous = messages[index - 1] if index else None
        if isinstance(previous, AIMessage) and previous.tool_calls:
            continue
        cuts.append(index)
    return cuts


def current_turn_start(messages: Sequence[AnyMessage]) -> int:
    """Where the latest customer turn begins: it is never cut away or summarised."""
    index = len(messages)
    while index > 0 and not isinstance(messages[index - 1], HumanMessage):
        index -= 1
    while index > 0 and isinstance(messages[index - 1], HumanMessage):
        index -= 1
    return index


@dataclass(frozen=True)
class HistoryBudget:
    """`max_tokens` of summary + messages for the model; `summary_tokens` for the
    summary alone; after a fold the messages are brought down to `refill_ratio` of
    what the summary leaves, so the next fold is several turns away."""

    counter: TokenCounter
    max_tokens: int = 1500
    summary_tokens: int = 300
    refill_ratio: float = 0.6

    def summary_cost(self, summary: str | None) -> int:
        return self.counter.count_text(summary) if summary else 0

    def total(self, messages: Sequence[AnyMessage], summary: str | None) -> int:
        cost = sum(self.counter.count_message(m) for m in messages)
        return cost + self.summary_cost(summary)

    def over(self, messages: Sequence[AnyMessage], summary: str | None) -> bool:
        return self.total(messages, summary) > self.max_tokens

    def fold_point(self, messages: Sequence[AnyMessage]) -> int:
        """How many of the oldest messages to fold into the summary: the first cut at
        the start of a customer turn after which the rest fits the refill target, or
        everything before the current turn; never part of the current turn."""
        target = int((self.max_tokens - self.summary_tokens) * self.refill_ratio)
        limit = current_turn_start(messages)
        tails = _suffix_sums([self.counter.count_message(m) for m in messages])
        cuts = [cut for cut in valid_cuts(messages) if 0 < cut <= limit]
        for cut in cuts:
            if tails[cut] <= target and _starts_turn(messages, cut):
                return cut
        return cuts[-1] if cuts else 0

    def select(self, messages: Sequence[AnyMessage], summary: str | None) -> list[AnyMessage]:
        """The newest messages that fit the budget next to the summary, from a valid
        cut, preferably a customer's message. The current turn is always sent, even
        alone over the budget: the model cannot answer a question it does not see."""
        allowance = self.max_tokens - self.summary_cost(summary)
        costs = [self.counter.count_message(m) for m in messages]
        limit = current_turn_start(messages)
        cuts = [cut for cut in valid_cuts(messages) if cut <= limit] or [limit]
        tails = _suffix_sums(costs)
        fitting = [cut for cut in cuts if tails[cut] <= allowance]
        if not fitting:
            return list(messages[limit:])
        turn_starts = [cut for cut in fitting if _starts_turn(messages, cut)]
        return list(messages[(turn_starts or fitting)[0] :])


def _suffix_sums(costs: Sequence[int]) -> list[int]:
    """tails[i] = sum(costs[i:]), with tails[len(costs)] = 0."""
    tails = [0] * (len(costs) + 1)
    for index in range(len(costs) - 1, -1, -1):
        tails[index] = tails[index + 1] + costs[index]
    return tails


def _starts_turn(messages: Sequence[AnyMessage], cut: int) -> bool:
    return cut >= len(messages) or isinstance(messages[cut], HumanMessage)
