"""Prompt and canned-answer files from prompts/, read once at start.

They are defaults: the `agent_configurations` table can override a prompt at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from graph.state import MenuSection
from nodes.fallback import FallbackTexts
from nodes.notices import Notices

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True)
class Prompts:
    assistant: str
    fallback: FallbackTexts
    notices: Notices


def load_prompts(business_name: str, directory: Path = PROMPTS_DIR) -> Prompts:
    assistant = (directory / "assistant.md").read_text(encoding="utf-8")
    raw = yaml.safe_load((directory / "fallback_menu.yaml").read_text(encoding="utf-8"))
    return Prompts(
        assistant=assistant.format(business_name=business_name).strip(),
        fallback=_fallback_texts(raw),
        notices=Notices.load(directory / "notices"),
    )


def _fallback_texts(raw: dict[str, Any]) -> FallbackTexts:
    default = _texts_of(raw)
    translations = {
        str(language): _texts_of({**raw, **(section or {})}, actions=default.actions)
        for language, section in (raw.get("languages") or {}).items()
    }
    return FallbackTexts(
        default.menu,
        default.topic_acknowledgement,
        default.unsupported,
        default.actions,
        translations,
    )


def _texts_of(raw: dict[str, Any], actions: Mapping[str, str] | None = None) -> FallbackTexts:
    """One language's texts; what a translation leaves out comes from `raw`'s English.
    (Translated `actions` are read key by key by nodes/menu_texts.py.)"""
    menu = raw["menu"]
    sections = cast(list[MenuSection], menu["sections"])
    return FallbackTexts(
        menu={"kind": "menu", "body": menu["body"], "button": menu["button"], "sections": sections},
        topic_acknowledgement=str(raw["topic_acknowledgement"]).strip(),
        unsupported=str(raw["unsupported"]).strip(),
        actions=actions or {key: str(text).strip() for key, text in raw["actions"].items()},
    )
