"""The intents the router chooses between, and the decision it hands to the graph.

The decision is `graph.state.RouteDecision` (a JSON-shaped TypedDict), so it can be
written into the checkpoint as it is and read back by Studio, replays and metrics.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final, Literal

from graph.state import RouteDecision

Intent = Literal["customer_service", "sales", "booking", "payment", "tech_support", "human"]
INTENTS: Final[tuple[Intent, ...]] = (
    "customer_service",
    "sales",
    "booking",
    "payment",
    "tech_support",
    "human",
)
# Not an agent: a label of the local classifier for messages that only make sense in
# the conversation ("ok", "how much is it?"). It keeps the active agent in charge.
FOLLOWUP: Final = "followup"
LABELS: Final[tuple[str, ...]] = (*INTENTS, FOLLOWUP)
DEFAULT_INTENT: Final[Intent] = "customer_service"
# Interactive replies (list rows, buttons) whose id names an intent route by rule.
MENU_PREFIX: Final = "menu:"

RouteMethod = Literal["rule", "embedding", "llm", "sticky", "default"]
METHODS: Final[tuple[RouteMethod, ...]] = ("rule", "embedding", "llm", "sticky", "default")


def make_decision(
    intent: str, confidence: float, method: RouteMethod, reason: str
) -> RouteDecision:
    return {
        "intent": intent,
        "confidence": round(min(1.0, max(0.0, confidence)), 4),
        "method": method,
        "reason": reason,
    }


def fallback_intent(enabled: Collection[str]) -> str:
    """Where a message goes when nothing better is known: customer service, or the
    first enabled intent when the operator switched customer service off."""
    if DEFAULT_INTENT in enabled:
        return DEFAULT_INTENT
    return next((intent for intent in INTENTS if intent in enabled), "human")


def menu_intent(reply_id: str | None) -> str | None:
    """`menu:booking` → `booking`; None for any other id (or none)."""
    if reply_id is None or not reply_id.startswith(MENU_PREFIX):
        return None
    intent = reply_id.removeprefix(MENU_PREFIX)
    return intent if intent in INTENTS else None
