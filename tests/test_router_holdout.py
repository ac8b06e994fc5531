"""The router's held-out set (tests/data/router_holdout.jsonl, see router_holdout.md):
frozen, varied, and disjoint from the examples the router learns from — an example
added later that copies or nearly copies a held-out message would make the held-out
figures measure memory. Change the example, never the held-out file."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from nodes.routing.examples import load_router_examples, normalize_text
from nodes.routing.intents import INTENTS
from server.operations.router_eval import read_labelled
from tests.test_router_eval_set import MAX_TRIGRAM_JACCARD, jaccard, trigrams

DATA = Path(__file__).resolve().parent / "data"
HOLDOUT = DATA / "router_holdout.jsonl"
FROZEN_SHA256 = "9c9191072d56f2391b1fc0267f1471fffd6b4a236aeeb267186152831ad36332"


def test_the_held_out_set_is_the_frozen_one() -> None:
    digest = hashlib.sha256(HOLDOUT.read_bytes()).hexdigest()
    assert digest == FROZEN_SHA256, "router_holdout.jsonl changed: add a new set instead"
    assert FROZEN_SHA256 in (DATA / "router_holdout.md").read_text(encoding="utf-8")


def test_the_held_out_set_is_large_multilingual_and_has_a_hard_subset() -> None:
    items = read_labelled(HOLDOUT)
    assert len(items) >= 250
    languages = Counter(item.lang for item in items)
    assert {"en", "fr", "es", "pt", "sw", "rw", "ar"} <= set(languages)
    assert min(languages.values()) >= 30
    assert set(Counter(item.intent for item in items)) == set(INTENTS)
    assert sum(item.hard for item in items) >= 60
    assert len({normalize_text(item.text) for item in items}) == len(items)


def test_the_examples_stay_disjoint_from_the_held_out_set() -> None:
    examples = load_router_examples()
    pairs = [(label, text) for label, texts in examples.by_label.items() for text in texts]
    keys = {normalize_text(text): text for _, text in pairs}
    grams = [
        (label, text, trigrams(text), set(normalize_text(text).split())) for label, text in pairs
    ]
    problems: list[str] = []
    for item in read_labelled(HOLDOUT):
        key = normalize_text(item.text)
        if key in keys:
            problems.append(f"copy: {item.text!r} = {keys[key]!r}")
            continue
        item_grams, words = trigrams(item.text), set(key.split())
        for label, text, other, other_words in grams:
            score = jaccard(item_grams, other)
            if score >= MAX_TRIGRAM_JACCARD:
                problems.append(f"variant ({score:.2f}): {item.text!r} ~ {text!r}")
            contained = words <= other_words or other_words <= words
            if label == item.intent and min(len(words), len(other_words)) >= 2 and contained:
                problems.append(f"contained: {item.text!r} ~ {text!r}")
    assert not problems, "\n".join(problems)
