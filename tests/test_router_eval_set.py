"""The router's data: the example files load, and the labelled evaluation set stays
disjoint from the examples — otherwise its accuracy would measure memory, not routing.

Disjoint means, for every evaluation message against every example:
- not the same message once case, accents and punctuation are ignored;
- character-trigram Jaccard similarity below 0.6 (catches typo-level and one-word
  variants: "mnafunga saa ngapi?" against "Mnafungua saa ngapi?" scores 0.80);
- within the same intent, neither message's words contained in the other's ("can i
  pay cash" inside "Can I pay the deposit in cash when I arrive?").
Move or rewrite the *example* when this fails: the evaluation set is the fixed ruler.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nodes.routing.classifier import tune_threshold
from nodes.routing.examples import RouterExamplesError, load_router_examples, normalize_text
from nodes.routing.intents import FOLLOWUP, INTENTS, LABELS
from server.operations.router_eval import read_labelled

EVAL_SET = Path(__file__).resolve().parent / "data" / "router_eval.jsonl"
MAX_TRIGRAM_JACCARD = 0.6


def trigrams(text: str) -> set[str]:
    padded = f" {normalize_text(text)} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def test_examples_cover_every_label_in_several_languages() -> None:
    examples = load_router_examples()
    assert set(examples.by_label) == set(LABELS)
    for label in LABELS:
        assert len(examples.by_label[label]) >= 60, label
    assert set(examples.descriptions) == set(INTENTS)
    assert "{intents}" in examples.llm_prompt and "{active_agent}" in examples.llm_prompt
    assert set(examples.rules) <= set(INTENTS)


def test_the_evaluation_set_is_large_varied_and_well_formed() -> None:
    items = read_labelled(EVAL_SET)
    assert len(items) >= 300
    per_intent = Counter(item.intent for item in items)
    assert set(per_intent) == set(INTENTS) and min(per_intent.values()) >= 30
    assert len({normalize_text(item.text) for item in items}) == len(items)
    one_word = [item for item in items if len(item.text.split()) == 1]
    assert len(one_word) >= 30
    # Scripts other than Latin: Arabic at least.
    assert any("\u0600" <= char <= "\u06ff" for item in items for char in item.text)


def test_the_evaluation_set_is_disjoint_from_the_examples() -> None:
    examples = load_router_examples()
    pairs = [(label, text) for label, texts in examples.by_label.items() for text in texts]
    example_grams = [(label, text, trigrams(text)) for label, text in pairs]
    example_keys = {normalize_text(text): text for _, text in pairs}
    problems: list[str] = []
    for item in read_labelled(EVAL_SET):
        key = normalize_text(item.text)
        if key in example_keys:
            problems.append(f"copy: {item.text!r} = {example_keys[key]!r}")
            continue
        grams, words = trigrams(item.text), set(key.split())
        for label, text, other in example_grams:
            score = jaccard(grams, other)
            if score >= MAX_TRIGRAM_JACCARD:
                problems.append(f"variant ({score:.2f}): {item.text!r} ~ {text!r}")
            other_words = set(normalize_text(text).split())
            contained = words <= other_words or other_words <= words
            if label == item.intent and min(len(words), len(other_words)) >= 2 and contained:
                problems.append(f"contained: {item.text!r} ~ {text!r}")
    assert not problems, "\n".join(problems)


def test_an_example_under_two_labels_is_refused(tmp_path: Path) -> None:
    source = load_router_examples()
    for label in LABELS:
        texts = ["Hello there"] if label in {"sales", FOLLOWUP} else [f"only {label}"]
        lines = [f"intent: {label}", "description: d", "examples:", "  en:"]
        lines += [f"    - {text}" for text in texts]
        (tmp_path / f"{label}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "llm_prompt.md").write_text(source.llm_prompt, encoding="utf-8")
    with pytest.raises(RouterExamplesError, match="'Hello there' is an example of sales"):
        load_router_examples(tmp_path)


def test_threshold_tuning_keeps_the_target_precision() -> None:
    confidences = [0.9] * 40 + [0.6] * 40 + [0.3] * 20
    correct = [True] * 40 + [True] * 36 + [False] * 4 + [False] * 20
    # 0.6 and up: 76 right of 80 = 0.95; lower adds 20 wrong ones.
    assert tune_threshold(confidences, correct, target_precision=0.95) == 0.31
    assert tune_threshold(confidences, correct, target_precision=0.99) == 0.61
    assert tune_threshold([0.5] * 30, [False] * 30, target_precision=0.9) == 1.0
