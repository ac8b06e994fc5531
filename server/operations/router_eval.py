"""`wa-agent eval-router FILE.jsonl [--no-llm] [--tune]`: how well the intent router routes.

FILE holds one `{"text": ..., "intent": ...}` per line (optionally `"active_agent"`).
Every message goes through the router as a first message of a conversation (or with
that active agent). The report separates what the router decides locally (rules and
the classifier, no LLM) from what it leaves to the LLM, because a local figure and a
figure that depends on an LLM mean different things:

- coverage: the share decided without an LLM, and the accuracy on that share;
- overall accuracy with the undecided share counted as (a) what the router answers
  when the LLM is off or fails (the fallback), (b) wrong ("unknown"), and (c) the
  classifier's best guess; with an LLM, (d) what the LLM said;
- latency of the local path (p50/p95), a confusion matrix of the final decisions, and
  the local decisions that were wrong (the errors no LLM gets a chance to fix).

`--tune` prints the thresholds that 10-fold cross-validation on the *examples* in
prompts/router/ recommends; the evaluation file plays no part in that.

`--conversations DIR` (tests/data/cost_conversations/) measures the rule-based menu's
typed path on scripted conversations: the share of typed customer turns that reach the
action the scripted agent took (its first tool), with no model.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import yaml

from graph.composition.routing import router_config
from graph.infra.chat_models import build_chat_model
from graph.infra.embeddings import build_embeddings
from graph.settings import Settings
from graph.state import RouteDecision
from nodes.intents.shared import reader_over
from nodes.routing.classifier import (
    cross_validated_proba,
    tune_lexical_threshold,
    tune_threshold,
)
from nodes.routing.intents import DEFAULT_INTENT, FOLLOWUP, INTENTS
from nodes.routing.router import IntentRouter, embed_texts

# Target precisions of the local path, from the goal (95 %): the plain
# threshold for a first message, a stricter one to take a conversation from its agent.
TARGET_PRECISION = 0.95
TARGET_SWITCH_PRECISION = 0.98
# Where the lexical half alone decides, it must be the classifier's own decision this often.
TARGET_LEXICAL_AGREEMENT = 0.995


@dataclass(frozen=True)
class LabelledMessage:
    text: str
    intent: str
    active_agent: str | None = None
    lang: str = ""  # optional in the file: figures per language when given
    hard: bool = False  # optional: figures for the hard subset when any is marked


@dataclass(frozen=True)
class Outcome:
    item: LabelledMessage
    local: RouteDecision | None  # None: the router would ask the LLM
    guess: str  # the classifier's best intent (used by figure (c))
    final: RouteDecision  # what `route` returns in this run
    local_seconds: float


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    llm_used: bool = False

    def share(self, predicate: Any) -> float:
        return sum(1 for o in self.outcomes if predicate(o)) / max(1, len(self.outcomes))


def read_labelled(path: Path) -> list[LabelledMessage]:
    """Parse and check the file; a bad line names its number."""
    items: list[LabelledMessage] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            text, intent = raw["text"], raw["intent"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: expected {{'text', 'intent'}}: {exc}") from exc
        active = raw.get("active_agent")
        if intent not in INTENTS or (active is not None and active not in INTENTS):
            raise ValueError(f"{path}:{number}: unknown intent {intent!r} / {active!r}")
        lang, hard = str(raw.get("lang") or ""), bool(raw.get("hard", False))
        items.append(LabelledMessage(str(text), intent, active, lang, hard))
    if not items:
        raise ValueError(f"{path}: no labelled messages")
    return items


async def evaluate(
    router: IntentRouter, items: Sequence[LabelledMessage], *, use_llm: bool
) -> Report:
    """Route every message; time the local path alone (the LLM is not part of it)."""
    allowed = router.allowed_intents(None)
    report = Report(llm_used=use_llm and router.judge is not None)
    router.local_scores("warm up")  # the first call pays for lazy loading
    for item in items:
        started = time.perf_counter()
        local = router.route_locally(item.text, None, item.active_agent, allowed)
        elapsed = time.perf_counter() - started
        final = local.decision
        if final is None and report.llm_used:
            final = await router.resolve_with_llm(item.text, local, item.active_agent, allowed)
        elif final is None:
            final = router.fallback_decision(local, item.active_agent, allowed)
        report.outcomes.append(Outcome(item, local.decision, local.guess, final, elapsed))
    return report


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def format_report(report: Report) -> list[str]:
    outcomes = report.outcomes
    local = [o for o in outcomes if o.local is not None]
    local_right = sum(
        1 for o in local if o.local is not None and o.local["intent"] == o.item.intent
    )
    undecided = [o for o in outcomes if o.local is None]
    total = len(outcomes)
    latencies_ms = [o.local_seconds * 1000 for o in outcomes]
    final_right = sum(1 for o in outcomes if o.final["intent"] == o.item.intent)
    fallback_right = local_right + sum(
        1 for o in undecided if (o.item.active_agent or DEFAULT_INTENT) == o.item.intent
    )
    guess_right = local_right + sum(1 for o in undecided if o.guess == o.item.intent)
    lines = [
        f"messages: {total}",
        f"routed without LLM: {len(local)}/{total} = {len(local) / total:.3f}",
        f"accuracy of the local path on its share: {local_right / max(1, len(local)):.3f}",
        f"local path latency: p50 {percentile(latencies_ms, 50):.1f} ms,"
        f" p95 {percentile(latencies_ms, 95):.1f} ms",
        "",
        "overall accuracy, the LLM share counted as:",
        f"  (a) the fallback's answer (LLM off/failing): {fallback_right / total:.3f}",
        f"  (b) unknown (always wrong):                  {local_right / total:.3f}",
        f"  (c) the classifier's best guess:             {guess_right / total:.3f}",
    ]
    if report.llm_used:
        lines.append(f"  (d) the LLM's answer:                        {final_right / total:.3f}")
    lines += ["", *_per_group(outcomes)]
    lines += ["", *_per_method(outcomes), "", *_confusion(outcomes), "", *_local_errors(local)]
    lines += ["", f"accuracy: {final_right / total:.3f}"]
    return lines


def _group_line(name: str, outcomes: Sequence[Outcome]) -> str:
    """Confident share and its accuracy, and the best guess, for one group of messages."""
    confident = [o for o in outcomes if o.local is not None]
    right = sum(1 for o in confident if o.local is not None and o.local["intent"] == o.item.intent)
    best = right + sum(1 for o in outcomes if o.local is None and o.guess == o.item.intent)
    total = max(1, len(outcomes))
    return (
        f"  {name:<10} {len(outcomes):>4}  confident {len(confident) / total:.3f}"
        f" at {right / max(1, len(confident)):.3f}   best guess {best / total:.3f}"
    )


def _per_group(outcomes: Sequence[Outcome]) -> list[str]:
    """Per language and for the hard subset, when the file says which is which."""
    lines = ["per group (confident share at its accuracy; best guess overall):"]
    languages = sorted({o.item.lang for o in outcomes if o.item.lang})
    for lang in languages:
        lines.append(_group_line(lang, [o for o in outcomes if o.item.lang == lang]))
    if languages:
        others = [o for o in outcomes if o.item.lang not in ("", "en")]
        lines.append(_group_line("non-en", others))
    hard = [o for o in outcomes if o.item.hard]
    if hard:
        lines.append(_group_line("hard", hard))
        lines.append(_group_line("not hard", [o for o in outcomes if not o.item.hard]))
    lines.append(_group_line("all", outcomes))
    return lines


def _per_method(outcomes: Sequence[Outcome]) -> list[str]:
    counts = Counter(o.final["method"] for o in outcomes)
    right = Counter(o.final["method"] for o in outcomes if o.final["intent"] == o.item.intent)
    lines = ["per method (final decisions):"]
    for method, count in counts.most_common():
        lines.append(f"  {method:<10} {count:>4}  accuracy {right[method] / count:.3f}")
    return lines


def _confusion(outcomes: Sequence[Outcome]) -> list[str]:
    short = {intent: intent[:8] for intent in INTENTS}
    matrix = Counter((o.item.intent, o.final["intent"]) for o in outcomes)
    header = "expected \\ routed  " + " ".join(f"{short[i]:>8}" for i in INTENTS)
    lines = ["confusion matrix (final decisions):", header]
    for expected in INTENTS:
        cells = " ".join(f"{matrix[(expected, routed)]:>8}" for routed in INTENTS)
        lines.append(f"{expected:<18} {cells}")
    return lines


def _local_errors(local: Sequence[Outcome], limit: int = 25) -> list[str]:
    wrong = [o for o in local if o.local is not None and o.local["intent"] != o.item.intent]
    lines = [f"local decisions that were wrong: {len(wrong)}"]
    for o in wrong[:limit]:
        assert o.local is not None
        lines.append(
            f"  {o.item.intent} → {o.local['intent']} ({o.local['method']}"
            f" {o.local['confidence']:.2f}): {o.item.text}"
        )
    return lines


def tune_report(router: IntentRouter, vectors_cache: Path | None = None) -> list[str]:
    """Recommended thresholds from out-of-fold predictions on the examples alone. The
    examples' vectors are read again (from `vectors_cache`, where the router's start
    left them): a running router keeps only the copy grouped by label."""
    texts, labels = router.examples.training_set()
    vectors = embed_texts(router.embeddings, texts, cache=vectors_cache)
    out_of_fold = cross_validated_proba(texts, labels, vectors)
    names, proba = out_of_fold.labels, out_of_fold.combined
    best = proba.argmax(axis=1)
    confidence = proba[np.arange(len(texts)), best]
    # A follow-up with no agent in charge is answered by customer service: right when
    # the example is a follow-up or a customer-service message.
    expected = ["customer_service" if label == FOLLOWUP else label for label in labels]
    predicted = ["customer_service" if names[i] == FOLLOWUP else names[i] for i in best]
    correct = [p == e for p, e in zip(predicted, expected, strict=True)]
    threshold = tune_threshold(confidence, correct, target_precision=TARGET_PRECISION)
    switch = tune_threshold(confidence, correct, target_precision=TARGET_SWITCH_PRECISION)
    routed = confidence >= threshold
    lexical = tune_lexical_threshold(
        out_of_fold, route_threshold=router.config.threshold, agreement=TARGET_LEXICAL_AGREEMENT
    )
    skipped = out_of_fold.lexical.max(axis=1) >= lexical
    return [
        f"examples: {len(texts)}; 10-fold cross-validated top-1 accuracy: {np.mean(correct):.3f}",
        f"WA_AGENT_ROUTER_THRESHOLD={threshold:.2f}  (precision ≥ {TARGET_PRECISION}:"
        f" routes {routed.mean():.3f} of the examples at"
        f" {np.mean(np.asarray(correct)[routed]):.3f})",
        f"WA_AGENT_ROUTER_SWITCH_THRESHOLD={max(switch, threshold):.2f}"
        f"  (precision ≥ {TARGET_SWITCH_PRECISION})",
        f"RouterConfig.lexical_threshold={lexical:.2f}  (at the threshold in use,"
        f" {router.config.threshold:.2f}, the classifier would have routed the same on"
        f" ≥ {TARGET_LEXICAL_AGREEMENT} of what it covers: skips the"
        f" embedding for {skipped.mean():.3f} of the examples)",
    ]


# The menu action that an agent's first tool call in a turn corresponds to. A turn that
# starts with create_booking accepts an offer just made: in the menu that is a tap.
_ACTION_OF_TOOL = {
    "check_availability": "booking",
    "list_my_bookings": "booking",
    "cancel_booking": "booking",
    "reschedule_booking": "booking",
    "search_catalog": "products",
    "get_product": "products",
    "create_payment": "payment",
    "get_payment_status": "payment",
    "cancel_payment": "payment",
    "create_support_ticket": "ticket",
    "add_ticket_comment": "ticket",
    "get_ticket_status": "ticket",
    "escalate_to_human": "human",
}
_TAPPED_TOOLS = frozenset({"create_booking"})


def scripted_turns(directory: Path) -> list[tuple[str, str]]:
    """(text, expected action) of every typed turn; the action is "topics" where the
    agent only talked or searched the knowledge base. (The scripts' dates are shifted to
    keep conversations apart, so the day a text names is checked by the tests instead.)"""
    turns: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.yaml")):
        for turn in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("turns", []):
            if "customer" not in turn:
                continue  # a tap
            tools = [step for step in turn.get("model") or [] if "tool" in step]
            if tools and tools[0]["tool"] in _TAPPED_TOOLS:
                continue
            expected = _ACTION_OF_TOOL.get(tools[0]["tool"], "topics") if tools else "topics"
            if turn.get("agent") == "human":
                expected = "human"
            turns.append((str(turn["customer"]), expected))
    return turns


def typed_path(router: IntentRouter, directory: Path) -> tuple[Counter[str], list[str]]:
    """Counts of the menu's typed path on scripted turns, and the wrong actions."""
    reader = reader_over(router, dict(router.examples.by_language))
    today = dt.datetime.now(ZoneInfo("Africa/Kigali")).date()
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    for text, expected in scripted_turns(directory):
        request = reader.read(text, today)
        acted = request.action if request.action not in (None, "topics") else "topics"
        kind = "actionable" if expected != "topics" else "other"
        counts[kind] += 1
        counts[f"{kind} right"] += acted == expected
        if acted != expected and acted != "topics":
            counts["wrong action"] += 1
            wrong.append(f"  {expected} → {acted}: {text}")
    return counts, wrong


def actions_report(router: IntentRouter, directory: Path) -> list[str]:
    counts, wrong = typed_path(router, directory)
    total = counts["actionable"] + counts["other"]
    right = counts["actionable right"] + counts["other right"]
    reached = counts["actionable right"] / max(1, counts["actionable"])
    return [
        f"typed turns: {total} (turns that accept an offer are taps in the menu: left out)",
        f"right action without a model: {right}/{total} = {right / max(1, total):.3f}",
        f"  actionable turns that reach their action: {counts['actionable right']}"
        f"/{counts['actionable']} = {reached:.3f}",
        f"  other turns answered with the topic menu: {counts['other right']}/{counts['other']}",
        f"  a wrong action: {counts['wrong action']}",
        *wrong,
    ]


def add_command(commands: Any) -> None:
    """The `eval-router` subcommand's arguments (called by server/cli.py)."""
    parser = commands.add_parser("eval-router", help="measure the intent router on a JSONL file")
    parser.add_argument("file", type=Path, help='lines {"text": ..., "intent": ...}')
    parser.add_argument("--no-llm", action="store_true", help="never call the chat model")
    parser.add_argument("--tune", action="store_true", help="recommend thresholds (examples)")
    parser.add_argument(
        "--conversations", type=Path, help="scripted conversations: the menu's typed path"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    items = read_labelled(args.file)
    use_llm = not args.no_llm and settings.router_llm
    model = build_chat_model(settings) if use_llm else None
    vectors_cache = settings.data_dir / "cache"
    router = IntentRouter.create(
        build_embeddings(settings),
        model=model,
        config=router_config(settings),
        vectors_cache=vectors_cache,
    )
    report = asyncio.run(evaluate(router, items, use_llm=use_llm))
    print(f"thresholds: {router.config.threshold} / switch {router.config.switch_threshold}")
    print("\n".join(format_report(report)))
    if args.tune:
        print("\n" + "\n".join(tune_report(router, vectors_cache)))
    if args.conversations:
        print("\nzero-token menu, typed turns of scripted conversations:")
        print("\n".join(actions_report(router, args.conversations)))
    return 0
