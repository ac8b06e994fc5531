"""The router's knowledge, read from prompts/router/ at start: example messages and a
description per intent, precise keyword rules, and the LLM router's prompt.

Editing these files is how an operator teaches the router; the code holds no
vocabulary of its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodes.routing.intents import FOLLOWUP, INTENTS, LABELS

# prompts/ is a top-level folder of text, read relative to the repository.
ROUTER_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts" / "router"
LLM_PROMPT_FILE = "llm_prompt.md"
RULES_FILE = "rules.yaml"


class RouterExamplesError(ValueError):
    """The files in prompts/router/ are inconsistent; the message names the problem."""


def normalize_text(text: str) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: two messages
    that differ only in these are the same message to the router."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(re.findall(r"\w+", bare))


@dataclass(frozen=True)
class RouterExamples:
    # label (an intent or FOLLOWUP) → its example messages, deduplicated, in file order
    by_label: Mapping[str, tuple[str, ...]]
    # intent → what it covers (shown to the LLM router)
    descriptions: Mapping[str, str]
    rules: Mapping[str, tuple[re.Pattern[str], ...]]
    llm_prompt: str
    # language code (the files' keys: en, fr, rw, ...) → its example messages, all
    # labels together: what the menu's language guess learns from
    by_language: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def training_set(self) -> tuple[list[str], list[str]]:
        """(texts, labels) in a stable order, for the local classifier."""
        texts: list[str] = []
        labels: list[str] = []
        for label in LABELS:
            for text in self.by_label.get(label, ()):
                texts.append(text)
                labels.append(label)
        return texts, labels

    def __len__(self) -> int:
        return sum(len(texts) for texts in self.by_label.values())


def load_router_examples(directory: Path = ROUTER_PROMPTS_DIR) -> RouterExamples:
    """Read and check every file; a mistake fails at start, never at a customer."""
    by_label: dict[str, tuple[str, ...]] = {}
    by_language: dict[str, list[str]] = {}
    descriptions: dict[str, str] = {}
    for label in LABELS:
        path = directory / f"{label}.yaml"
        if not path.is_file():
            raise RouterExamplesError(f"missing {path}")
        raw = _read_yaml(path)
        if raw.get("intent") != label:
            raise RouterExamplesError(f"{path}: `intent` must be {label!r}")
        pairs = _example_texts(path, raw.get("examples"))
        by_label[label] = tuple(text for text, _ in pairs)
        for text, language in pairs:
            by_language.setdefault(language, []).append(text)
        if label != FOLLOWUP:
            descriptions[label] = " ".join(str(raw.get("description", "")).split())
    _reject_shared_examples(by_label)
    return RouterExamples(
        by_label=by_label,
        descriptions=descriptions,
        rules=_load_rules(directory / RULES_FILE),
        llm_prompt=(directory / LLM_PROMPT_FILE).read_text(encoding="utf-8").strip(),
        by_language={language: tuple(texts) for language, texts in by_language.items()},
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise RouterExamplesError(f"{path}: expected a mapping at the top")
    return raw


def _example_texts(path: Path, raw: object) -> list[tuple[str, str]]:
    """`examples:` is a mapping language → list of messages; (message, language) pairs."""
    if not isinstance(raw, dict) or not raw:
        raise RouterExamplesError(f"{path}: `examples` must map languages to messages")
    seen: set[str] = set()
    texts: list[tuple[str, str]] = []
    for language, messages in raw.items():
        if not isinstance(messages, list):
            raise RouterExamplesError(f"{path}: examples.{language} must be a list")
        for message in messages:
            if not isinstance(message, str) or not message.strip():
                raise RouterExamplesError(f"{path}: {message!r} is not a text (quote it)")
            key = normalize_text(message) or message.strip()
            if key not in seen:
                seen.add(key)
                texts.append((message.strip(), str(language)))
    return texts


def _reject_shared_examples(by_label: Mapping[str, tuple[str, ...]]) -> None:
    """One message under two labels would teach the classifier to hesitate."""
    owner: dict[str, str] = {}
    for label, texts in by_label.items():
        for text in texts:
            key = normalize_text(text) or text
            if key in owner and owner[key] != label:
                raise RouterExamplesError(f"{text!r} is an example of {owner[key]} and {label}")
            owner[key] = label


def _load_rules(path: Path) -> dict[str, tuple[re.Pattern[str], ...]]:
    if not path.is_file():
        return {}
    rules: dict[str, tuple[re.Pattern[str], ...]] = {}
    for intent, patterns in _read_yaml(path).items():
        if intent not in INTENTS or not isinstance(patterns, list):
            raise RouterExamplesError(f"{path}: {intent!r} is not an intent with a list")
        try:
            rules[intent] = tuple(re.compile(str(p), re.IGNORECASE) for p in patterns)
        except re.error as exc:
            raise RouterExamplesError(f"{path}: {intent}: {exc}") from exc
    return rules
