"""The day a customer names ("Saturday", "demain", "kesho", "amanhã", "ejo", "غدا"), read
with dateparser plus a small table of words it does not know.

dateparser (PyPI, maintained, 200+ locales) reads relative days, weekdays and dates in
English, French, Spanish, Portuguese, Swahili and Arabic. Kinyarwanda has no locale in
it, and texting forms ("tmrw") are in no locale: prompts/router/day_words.yaml holds
those, so an operator can add words without touching code. Only days within the
bookable horizon count: a match further away is far more often a misreading ("on the
9th" read as 6 September) than a customer booking months ahead, and the menu shows every
free day when no day is read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml
from dateparser.search import search_dates

from nodes.routing.examples import ROUTER_PROMPTS_DIR, normalize_text

log = structlog.get_logger(__name__)

DAY_WORDS_FILE = ROUTER_PROMPTS_DIR / "day_words.yaml"
# Languages dateparser reads well for this purpose (checked: relative days, weekdays).
DATEPARSER_LANGUAGES = frozenset({"en", "fr", "es", "pt", "sw", "ar"})
HORIZON_DAYS = 14
# "at 2pm", "saa 3", "à 10h": a time alone names no day.
_TIME_ONLY = re.compile(r"^\W*(at|a|à|as|saa|las|la|às)?\s*\d{1,2}([:h.]\d{2})?\s*(am|pm|h)?\W*$")
_MIN_MATCH_CHARS = 3  # French "je" is read as "jeudi" otherwise


@dataclass(frozen=True)
class DayWords:
    """Phrases (normalised) → days from today, and → weekday (0 = Monday)."""

    relative: Mapping[str, int]
    weekdays: Mapping[str, int]

    @classmethod
    def load(cls, path: Path = DAY_WORDS_FILE) -> DayWords:
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(
            relative={normalize_text(k): int(v) for k, v in (raw.get("relative") or {}).items()},
            weekdays={normalize_text(k): int(v) for k, v in (raw.get("weekdays") or {}).items()},
        )


class DayReader:
    """`read(text, language, today)` → the day named, or None. Thread-safe."""

    def __init__(self, words: DayWords | None = None, horizon_days: int = HORIZON_DAYS) -> None:
        self.words = words or DayWords.load()
        self.horizon = dt.timedelta(days=horizon_days)
        # Longest phrase first: "ejo bundi" before "ejo".
        phrases = [*self.words.relative, *self.words.weekdays]
        self._phrases = sorted(phrases, key=len, reverse=True)

    def warm_up(self, languages: tuple[str, ...] = tuple(sorted(DATEPARSER_LANGUAGES))) -> None:
        """dateparser loads each language's data on first use (~0.1 s): at start, not
        on a customer's message."""
        for language in languages:
            self._from_dateparser("tomorrow", language, dt.date.today())

    def read(self, text: str, language: str | None, today: dt.date) -> dt.date | None:
        day = self._from_table(text, today)
        if day is None:
            day = self._from_dateparser(text, language, today)
        return day

    def _from_table(self, text: str, today: dt.date) -> dt.date | None:
        padded = f" {normalize_text(text)} "
        for phrase in self._phrases:
            if f" {phrase} " not in padded:
                continue
            if phrase in self.words.relative:
                return today + dt.timedelta(days=self.words.relative[phrase])
            ahead = (self.words.weekdays[phrase] - today.weekday()) % 7
            return today + dt.timedelta(days=ahead)
        return None

    def _from_dateparser(self, text: str, language: str | None, today: dt.date) -> dt.date | None:
        if language is None:  # unsure of the language: any of them, English first
            languages = ["en", *sorted(DATEPARSER_LANGUAGES - {"en"})]
        elif language in DATEPARSER_LANGUAGES and language != "en":
            languages = [language, "en"]  # customers mix in English ("nimebook Jumamosi")
        else:
            languages = ["en"]
        settings = {
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": dt.datetime.combine(today, dt.time(12)),
        }
        try:
            found = search_dates(text, languages=languages, settings=settings) or []
        except Exception as exc:  # a library bug must cost the day, never the answer
            log.warning("menu.day_unreadable", error_type=type(exc).__name__)
            return None
        for matched, when in found:
            if len(matched.strip()) < _MIN_MATCH_CHARS or _TIME_ONLY.match(matched.lower()):
                continue
            day = when.date()
            if today <= day <= today + self.horizon:
                return day
        return None
