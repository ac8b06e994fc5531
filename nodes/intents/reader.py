"""From a typed message to the menu action a tap would have chosen.

The intent comes from the intent router's local path (rules, then the calibrated
classifier) and only when it is confident: a confident mistake sends the customer to
the wrong list, an unsure message gets the topic menu, which costs one tap. The router
is the one the agents use, so what is measured by `wa-agent eval-router` is what the
menu acts on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, Protocol

from nodes.intents.days import DayReader
from nodes.intents.language import MIN_PROBABILITY, LanguageGuesser
from nodes.routing.router import LocalRoute

Action = Literal["booking", "products", "payment", "ticket", "human", "topics"]

# The menu action each agent's topic leads to; customer service is the topic menu
# (greetings, hours, returns: the menu has no better answer than its topics).
ACTION_OF_INTENT: dict[str, Action] = {
    "booking": "booking",
    "sales": "products",
    "payment": "payment",
    "tech_support": "ticket",
    "human": "human",
    "customer_service": "topics",
}


class LocalRouter(Protocol):
    """What the reader needs of the intent router (nodes.routing.IntentRouter)."""

    def route_locally(
        self,
        text: str,
        reply_id: str | None,
        active_agent: str | None,
        allowed: frozenset[str],
    ) -> LocalRoute: ...

    def allowed_intents(self, enabled: Collection[str] | None) -> frozenset[str]: ...


@dataclass(frozen=True)
class TypedRequest:
    """What a typed message asks for. `action` None: unsure (the topic menu answers)."""

    text: str
    action: Action | None
    language: str | None = None
    day: dt.date | None = None
    intent: str | None = None
    confidence: float = 0.0


class RequestReader:
    """Built once, shared by every conversation; `read` is CPU only (run it in a thread)."""

    def __init__(self, router: LocalRouter, languages: LanguageGuesser, days: DayReader) -> None:
        self.router = router
        self.languages = languages
        self.days = days

    def read(self, text: str, today: dt.date, *, awaiting_day: bool = False) -> TypedRequest:
        """`awaiting_day`: the menu just showed the days with free slots, so a message
        that names a day and nothing else picks that day."""
        language = self.languages.guess(text)
        route = self.router.route_locally(text, None, None, self.router.allowed_intents(None))
        decision = route.decision
        action: Action | None = None
        if decision is not None and decision["method"] in ("rule", "embedding"):
            action = ACTION_OF_INTENT.get(decision["intent"])
        day = None
        if action in (None, "booking", "topics"):
            day = self.days.read(text, language, today)
        if day is not None and (awaiting_day or (action is None and route.guess == "booking")):
            # The days are on screen, or booking is the best (if unsure) guess: a day is
            # a day to book. Not otherwise: "see you on Saturday" books nothing.
            action = "booking"
        intent = decision["intent"] if decision is not None else None
        confidence = decision["confidence"] if decision is not None else route.guess_confidence
        return TypedRequest(text, action, language, day, intent, confidence)

    def language_of(self, text: str, *, min_probability: float = MIN_PROBABILITY) -> str | None:
        return self.languages.guess(text, min_probability=min_probability)
