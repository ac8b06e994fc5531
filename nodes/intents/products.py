"""Which catalog items a typed product question is about, without a model.

The catalog's names are in the business's language (English for the demo shop); a
customer writes "casque", "kofia", "ingofero" or "خوذة". prompts/router/product_words.yaml
maps such words to words of the catalog's names, then items are ranked by the words
they share with the question, rarer words counting more ("city bike": "city" decides,
"bike" is in half the catalog). No match: the caller shows the whole list, as a tap on
"Products & prices" does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nodes.routing.examples import ROUTER_PROMPTS_DIR, normalize_text
from tools.listings import ListRow

PRODUCT_WORDS_FILE = ROUTER_PROMPTS_DIR / "product_words.yaml"
# Words of item names that say nothing about what the customer wants.
_NAME_STOPWORDS = frozenset({"with", "and", "for", "the", "of", "set", "day", "half"})
_MIN_WORD = 3
_PREFIX_WORD = 4  # "helmets" matches "helmet", "repair" matches "repairs"
# Items scoring at least this share of the best item's score are shown with it.
_KEEP_SHARE = 0.7


@dataclass(frozen=True)
class ProductWords:
    """Customer word (normalised) → catalog words it stands for."""

    synonyms: Mapping[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path = PRODUCT_WORDS_FILE) -> ProductWords:
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        synonyms: dict[str, tuple[str, ...]] = {}
        for target, words in raw.items():
            for word in words or []:
                key = normalize_text(str(word))
                synonyms[key] = (*synonyms.get(key, ()), *_words(str(target)))
        return cls(synonyms)

    def customer_words(self, text: str) -> set[str]:
        """The question's words and the catalog words they stand for."""
        words = _words(text)
        padded = f" {normalize_text(text)} "
        found = set(words)
        for phrase, targets in self.synonyms.items():
            if phrase in words or (" " in phrase and f" {phrase} " in padded):
                found |= set(targets)
        return found


def _words(text: str) -> set[str]:
    """Normalised words, also with hyphens joined ("e-bike" → "e", "bike", "ebike") and
    without the Arabic article ("الخوذة" → "خوذة"), which is written joined to its word."""
    plain = normalize_text(text).split()
    joined = normalize_text(text.replace("-", "")).split()
    bare = [w[2:] for w in plain if w.startswith("ال") and len(w) > 4]
    words = [*plain, *joined, *bare]
    return {w for w in words if _meaningful(w)}


def _meaningful(word: str) -> bool:
    """Sizes ("26", "700c") count; short words and filler of item names do not."""
    if word.isdigit():
        return len(word) >= 2
    return len(word) >= _MIN_WORD and word not in _NAME_STOPWORDS


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return len(shorter) >= _PREFIX_WORD and longer.startswith(shorter)


def rank_products(rows: Sequence[ListRow], text: str, words: ProductWords) -> list[ListRow]:
    """The rows the question is about, best first (ties keep the listing's order:
    cheapest first); empty when no row shares a word with it."""
    names = [_words(row.title) for row in rows]
    frequency = Counter(word for name in names for word in name)
    wanted = words.customer_words(text)
    scores: list[float] = []
    for name in names:
        matched = {word for word in name if any(_same(word, w) for w in wanted)}
        scores.append(sum(math.log(1 + len(rows) / frequency[word]) for word in matched))
    best = max(scores, default=0.0)
    if best <= 0:
        return []
    ranked = sorted(range(len(rows)), key=lambda i: -scores[i])
    return [rows[i] for i in ranked if scores[i] >= _KEEP_SHARE * best]
