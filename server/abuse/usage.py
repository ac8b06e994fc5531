"""Model tokens spent by one turn, whatever nodes and agents the graph runs.

A LangChain callback registered through a context variable sees every chat-model call
made inside the `with` block — in any node, sub-agent or tool — without the graph
having to pass anything along. The gate counts the total against the customer's daily
budget once the turn is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from langchain_core.callbacks.usage import UsageMetadataCallbackHandler
from langchain_core.tracers.context import register_configure_hook

# Registered once per process: LangChain keeps every registered hook for good.
_TURN_USAGE: ContextVar[UsageMetadataCallbackHandler | None] = ContextVar(
    "wa_agent_turn_usage", default=None
)
register_configure_hook(_TURN_USAGE, inheritable=True)


class _ModelUsage(UsageMetadataCallbackHandler):
    """LangChain's usage counter, told what it needs: model events only, handled in
    place. As a plain sync handler it was handed to a thread pool for every start and
    end of every runnable of the graph — a tenth of a turn's CPU for a dict update."""

    run_inline = True

    @property
    def ignore_chain(self) -> bool:
        return True

    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True


class TurnUsage:
    def __init__(self) -> None:
        self.handler: UsageMetadataCallbackHandler = _ModelUsage()

    @property
    def total_tokens(self) -> int:
        return sum(usage.get("total_tokens", 0) for usage in self.handler.usage_metadata.values())


@contextmanager
def metered_usage() -> Iterator[TurnUsage]:
    """`with metered_usage() as usage: await graph.ainvoke(...)`, then `usage.total_tokens`."""
    usage = TurnUsage()
    token = _TURN_USAGE.set(usage.handler)
    try:
        yield usage
    finally:
        _TURN_USAGE.reset(token)
