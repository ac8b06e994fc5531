"""What the customer reads around a paused tool's Confirm and Cancel buttons, in their
language (prompts/confirmations.yaml).

A tool writes its question's summary in English ("Pay 15,000 RWF for a City helmet?",
tools/common.py `confirmed`). In another language the summary follows a translated
lead-in and the buttons are the translated Confirm and Cancel, so what the customer
taps is always in words they read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from graph.composition.prompts import PROMPTS_DIR

REFERENCE_LANGUAGE = "en"


@dataclass(frozen=True)
class ConfirmationTexts:
    question: str
    confirm: str
    cancel: str
    stale_with_question: str
    stale: str
    language: str = REFERENCE_LANGUAGE
    translations: dict[str, ConfirmationTexts] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path = PROMPTS_DIR / "confirmations.yaml") -> ConfirmationTexts:
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        english = _texts(raw, REFERENCE_LANGUAGE, None)
        translations = {
            str(code): _texts(texts, str(code), english)
            for code, texts in (raw.get("languages") or {}).items()
        }
        return dataclasses.replace(english, translations=translations)

    def in_language(self, language: str | None) -> ConfirmationTexts:
        """The texts in `language`, English when it has none."""
        return self.translations.get(language or REFERENCE_LANGUAGE, self)

    @property
    def translated(self) -> bool:
        return self.language != REFERENCE_LANGUAGE

    def question_body(self, summary: str | None) -> str:
        """The question as the customer reads it: a tool's English summary follows the
        translated lead-in; with no summary, the lead-in alone."""
        if not summary:
            return self.question
        return f"{self.question}\n{summary}" if self.translated else summary


def _texts(
    raw: dict[str, Any], language: str, english: ConfirmationTexts | None
) -> ConfirmationTexts:
    """One language's texts; a key it leaves out is said in English."""

    def text(name: str) -> str:
        value = raw.get(name)
        if value:
            return str(value).strip()
        if english is None:
            raise ValueError(f"prompts/confirmations.yaml: {name} is missing")
        return str(getattr(english, name))

    return ConfirmationTexts(
        question=text("question"),
        confirm=text("confirm"),
        cancel=text("cancel"),
        stale_with_question=text("stale_with_question"),
        stale=text("stale"),
        language=language,
    )
