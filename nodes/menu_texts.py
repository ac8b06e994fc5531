"""The rule-based menu's sentences in the customer's language.

prompts/fallback_menu.yaml's `actions` are the default (English) texts; its `languages`
section holds translations per language code, key by key. A key without a translation
falls back to the default, so a language can be added one sentence at a time and a
missing sentence is English, never an error or silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nodes.fallback import FallbackTexts

FALLBACK_MENU_FILE = Path(__file__).resolve().parents[1] / "prompts" / "fallback_menu.yaml"


class MenuTexts:
    """Default texts plus translations; read-only once loaded."""

    def __init__(
        self, default: FallbackTexts, translations: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        self.default = default
        self.translations = translations or {}

    @classmethod
    def load(cls, default: FallbackTexts, path: Path = FALLBACK_MENU_FILE) -> MenuTexts:
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        translations: dict[str, dict[str, str]] = {}
        for language, section in (raw.get("languages") or {}).items():
            actions = (section or {}).get("actions") or {}
            translations[str(language)] = {k: str(v).strip() for k, v in actions.items()}
        return cls(default, translations)

    def say(self, key: str, language: str | None, **values: object) -> str:
        text = self.translations.get(language or "", {}).get(key) or self.default.actions[key]
        return text.format(**values)
