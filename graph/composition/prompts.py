"""Prompt and canned-answer files from prompts/, read once at start.

They are defaults: the `agent_configurations` table can override a prompt at run time.
"""

from __future__ import annotations

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
    menu = raw["menu"]
    sections = cast(list[MenuSection], menu["sections"])
    return FallbackTexts(
        menu={"kind": "menu", "body": menu["body"], "button": menu["button"], "sections": sections},
        topic_acknowledgement=raw["topic_acknowledgement"],
        unsupported=raw["unsupported"],
        actions={key: str(text).strip() for key, text in raw["actions"].items()},
    )
