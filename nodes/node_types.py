"""The shapes of the graph's node callables, so that each factory says what it returns
and `build_graph` knows what it wires: a state update, or a `Command` that also says
where the turn goes next. LangGraph passes the runtime by keyword: the parameter is
named `runtime`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from langgraph.runtime import Runtime
from langgraph.types import Command

from graph.context import ConversationContext
from graph.state import ConversationState

Update = dict[str, Any]


class StateNode(Protocol):
    """A node that reads only the state."""

    def __call__(self, state: ConversationState) -> Awaitable[Update]: ...


class ContextNode(Protocol):
    """A node that also reads the run's context (the customer, agents, flags)."""

    def __call__(
        self, state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> Awaitable[Update]: ...


class RoutingNode(Protocol):
    """A node that may also send the turn elsewhere."""

    def __call__(
        self, state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> Awaitable[Update | Command[str]]: ...
