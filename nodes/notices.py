"""What the service itself tells a customer, in the customer's language.

The texts live in prompts/notices/, one YAML file per language code (`en.yaml` is the
reference and must hold every key). A key missing from a translation is said in English,
so a language can be added one sentence at a time and a gap is never an error or
silence. The graph's menu has its own texts (nodes/menu_texts.py); these are the
notices around it: the apology, refusals, caps, the handover.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml
from langchain_core.messages import HumanMessage

from graph.context import ConversationContext
from graph.state import ConversationState, whatsapp_meta
from nodes.local_formats import duration_in

NOTICES_DIR = Path(__file__).resolve().parents[1] / "prompts" / "notices"
REFERENCE_LANGUAGE = "en"
# Typed messages looked back at for one that tells its language ("ok" and taps do not).
LANGUAGE_LOOKBACK = 5

GuessLanguage = Callable[[str], str | None]


class RecognisesLanguage(Protocol):
    """A language guess told how sure it must be (nodes/intents/language.py)."""

    def __call__(self, text: str, *, min_probability: float) -> str | None: ...


class Notices:
    """Every language's notices, read once; read-only afterwards."""

    def __init__(self, by_language: Mapping[str, Mapping[str, str]]) -> None:
        if REFERENCE_LANGUAGE not in by_language:
            raise ValueError(f"notices need the {REFERENCE_LANGUAGE!r} texts")
        self.by_language = by_language
        self.reference = by_language[REFERENCE_LANGUAGE]

    @classmethod
    def load(cls, directory: Path = NOTICES_DIR) -> Notices:
        by_language: dict[str, dict[str, str]] = {}
        for path in sorted(directory.glob("*.yaml")):
            raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            by_language[path.stem] = {str(k): str(v).strip() for k, v in raw.items()}
        return cls(by_language)

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self.by_language)

    def say(self, key: str, language: str | None, **values: object) -> str:
        """The notice in `language` if it has one, else in English; a duration among
        the values is written in the language of the text it goes into."""
        texts = self.by_language.get(language or "", {})
        text = texts.get(key)
        written_in = language if text is not None else REFERENCE_LANGUAGE
        shown = {
            name: duration_in(value, written_in) if isinstance(value, dt.timedelta) else value
            for name, value in values.items()
        }
        return (text or self.reference[key]).format(**shown)


def latest_language(state: ConversationState, guess: GuessLanguage | None) -> str | None:
    """The language of the customer's latest typed words that tell one."""
    if guess is None:
        return None
    typed = 0
    for message in reversed(state["messages"]):
        if not isinstance(message, HumanMessage) or whatsapp_meta(message).get("reply_id"):
            continue
        text = str(message.content).strip()
        language = guess(text) if text else None
        typed += 1
        if language is not None or typed >= LANGUAGE_LOOKBACK:
            return language
    return None


def customer_language(
    state: ConversationState, context: ConversationContext | None, guess: GuessLanguage | None
) -> str | None:
    """What the service speaks to the customer: the language of their latest words that
    tell one, else the one kept on the contact (None: English)."""
    kept = context.language if context is not None else None
    return latest_language(state, guess) or kept
