"""Intent routing: rules, a local classifier over example messages, and an LLM last.

Public API::

    router = IntentRouter.create(embeddings, model=chat_model, config=RouterConfig(...))
    decision = await router.route(text, reply_id=..., active_agent=..., enabled=...)
"""

from nodes.routing.examples import RouterExamples, load_router_examples
from nodes.routing.intents import (
    DEFAULT_INTENT,
    FOLLOWUP,
    INTENTS,
    Intent,
    RouteMethod,
)
from nodes.routing.router import IntentRouter, LocalRoute, RouterConfig

__all__ = [
    "DEFAULT_INTENT",
    "FOLLOWUP",
    "INTENTS",
    "Intent",
    "IntentRouter",
    "LocalRoute",
    "RouteMethod",
    "RouterConfig",
    "RouterExamples",
    "load_router_examples",
]
