"""bench_cost's figures: what each conversation's model calls cost, and the goal lines.

Prices: gpt-4o-mini, USD per million tokens, as OpenAI lists them ("Prompt Caching in
the API", https://openai.com/index/api-prompt-caching/): input 0.15, cached input 0.075
(half price, hence billed prompt tokens = new + cached x 0.5), output 0.60.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.bench.common import percentile, print_table
from tests.bench.cost_data import Conversation
from tests.bench.cost_script import Label
from tests.fakes.openai_stream import JSON, Exchange

INPUT_USD_PER_M = 0.15
CACHED_INPUT_USD_PER_M = 0.075
OUTPUT_USD_PER_M = 0.60
CACHED_DISCOUNT = CACHED_INPUT_USD_PER_M / INPUT_USD_PER_M  # 0.5
GOAL_BILLED_PROMPT_TOKENS = 2000
GOAL_COST_USD = 0.005


@dataclass(frozen=True)
class Metered:
    """The service's own accounting (agent_metrics) over the run."""

    calls: int = 0
    cost_usd: float = 0.0
    prompt: int = 0
    cached: int = 0


@dataclass
class ConversationFigures:
    conversation: Conversation
    calls: Counter[str] = field(default_factory=Counter)  # by request kind
    prompt: int = 0
    cached: int = 0
    completion: int = 0
    problems: list[str] = field(default_factory=list)
    handoffs_added: list[str] = field(default_factory=list)
    without_model: list[str] = field(default_factory=list)  # turns a rule answered

    @property
    def new(self) -> int:
        return self.prompt - self.cached

    @property
    def billed_prompt(self) -> float:
        return self.new + self.cached * CACHED_DISCOUNT

    @property
    def cost_usd(self) -> float:
        return (
            self.new * INPUT_USD_PER_M
            + self.cached * CACHED_INPUT_USD_PER_M
            + self.completion * OUTPUT_USD_PER_M
        ) / 1e6

    @property
    def turns(self) -> int:
        return len(self.conversation.turns)


def figures_for(
    conversation: Conversation,
    exchanges: Sequence[Exchange],
    labels: Mapping[int, Label],
    problems: Sequence[str],
) -> ConversationFigures:
    """Every model call labelled with this conversation, added up."""
    figures = ConversationFigures(conversation, problems=list(problems))
    for exchange in exchanges:
        label = labels.get(id(exchange.body))
        if label is None or label.conversation != conversation.id:
            continue
        usage = exchange.usage
        figures.calls[label.kind] += 1
        figures.prompt += int(usage["prompt_tokens"])
        figures.cached += _cached(usage)
        figures.completion += int(usage["completion_tokens"])
    return figures


def _calls(figures: ConversationFigures) -> str:
    order = ("agent", "router", "summary", "memory")
    parts = [f"{figures.calls[kind]}" for kind in order]
    others = sum(n for kind, n in figures.calls.items() if kind not in order)
    return "/".join(parts) + (f"+{others}" if others else "")


def _row(f: ConversationFigures) -> list[object]:
    c = f.conversation
    return [
        c.id,
        ",".join(c.languages),
        f.turns,
        sum(f.calls.values()),
        _calls(f),
        f"{f.prompt:,}",
        f"{f.cached:,}",
        f"{f.billed_prompt:,.0f}",
        f"{f.completion:,}",
        f"{f.cost_usd:.5f}",
        len(f.handoffs_added) or "",
        len(f.problems) or "",
    ]


HEADERS = [
    "conversation",
    "lang",
    "turns",
    "calls",
    "agent/router/summ/mem",
    "prompt",
    "cached",
    "billed prompt",
    "completion",
    "cost $",
    "handoffs+",
    "issues",
]


def _stat_rows(figures: Sequence[ConversationFigures]) -> list[list[object]]:
    """Median, p90 (nearest rank) and mean of each figure, under its column."""
    Pick = Callable[[ConversationFigures], float]
    numbers: list[Pick] = [
        lambda f: f.turns,
        lambda f: sum(f.calls.values()),
        lambda f: f.prompt,
        lambda f: f.cached,
        lambda f: f.billed_prompt,
        lambda f: f.completion,
    ]
    stats: list[tuple[str, Callable[[list[float]], float]]] = [
        ("median", statistics.median),
        ("p90", lambda xs: percentile(xs, 90)),
        ("mean", statistics.fmean),
    ]
    rows: list[list[object]] = []
    for name, stat in stats:
        turns, calls, *tokens = (stat([pick(f) for f in figures]) for pick in numbers)
        cost = stat([f.cost_usd for f in figures])
        counts = [f"{turns:.1f}", f"{calls:.1f}", ""]
        rows.append([name, "", *counts, *(f"{t:,.0f}" for t in tokens), f"{cost:.5f}", "", ""])
    return rows


def by_kind(exchanges: Sequence[Exchange], labels: Mapping[int, Label]) -> list[list[object]]:
    """Where the tokens go: calls and mean tokens per kind of call (and agent)."""
    groups: dict[str, list[JSON]] = {}
    for exchange in exchanges:
        label = labels.get(id(exchange.body))
        if label is not None and label.conversation is not None:
            name = label.kind + (f" ({label.agent})" if label.agent else "")
            groups.setdefault(name, []).append(exchange.usage)
    total = sum(_billed(u) for usages in groups.values() for u in usages) or 1.0
    rows: list[list[object]] = []
    for name, usages in sorted(groups.items(), key=lambda item: -len(item[1])):
        n = len(usages)
        rows.append(
            [
                name,
                n,
                f"{sum(u['prompt_tokens'] for u in usages) / n:,.0f}",
                f"{sum(_cached(u) for u in usages) / n:,.0f}",
                f"{sum(u['completion_tokens'] for u in usages) / n:,.0f}",
                f"{sum(_billed(u) for u in usages) / total:.0%}",
            ]
        )
    return rows


KIND_HEADERS = ["call", "calls", "prompt/call", "cached/call", "completion/call", "billed share"]


def print_calls(exchanges: Sequence[Exchange], labels: Mapping[int, Label]) -> None:
    """Every model call in order: which conversation and turn, what kind, its tokens."""
    rows: list[list[object]] = []
    for exchange in exchanges:
        label = labels.get(id(exchange.body)) or Label(None, "?", None)
        usage = exchange.usage
        rows.append(
            [
                label.conversation or "-",
                label.turn or "-",
                label.kind + (f" ({label.agent})" if label.agent else ""),
                usage["prompt_tokens"],
                _cached(usage),
                usage["completion_tokens"],
            ]
        )
    print("Every model call")
    print_table(["conversation", "turn", "call", "prompt", "cached", "completion"], rows)


def _cached(usage: JSON) -> int:
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))


def _billed(usage: JSON) -> float:
    cached = _cached(usage)
    return int(usage["prompt_tokens"]) - cached + cached * CACHED_DISCOUNT


def report(
    figures: Sequence[ConversationFigures],
    kinds: Sequence[Sequence[object]],
    metered: Metered,
) -> None:
    """The tables, the statistics, the goal lines, and what did not go as scripted."""
    print()
    print("Per conversation (tokens summed over every model call the conversation caused)")
    print_table(HEADERS, [_row(f) for f in figures] + _stat_rows(figures))
    print("By kind of model call (all conversations)")
    print_table(KIND_HEADERS, kinds)
    calls = sum(sum(f.calls.values()) for f in figures)
    cost = sum(f.cost_usd for f in figures)
    print(
        f"all: {len(figures)} conversations, {calls} model calls, ${cost:.4f}, "
        f"{sum(f.prompt for f in figures):,} prompt tokens of which "
        f"{sum(f.cached for f in figures):,} cached; the service's "
        f"own accounting (agent_metrics, what the dashboard shows): {metered.calls} calls, "
        f"${metered.cost_usd:.4f}, {metered.prompt:,} prompt tokens of which "
        f"{metered.cached:,} cached (the same prices; it also meters calls of no conversation)"
    )
    cached = sum(f.cached for f in figures) / max(1, sum(f.prompt for f in figures))
    print(f"share of prompt tokens served from the cache: {cached:.1%}")
    billed = statistics.median(f.billed_prompt for f in figures)
    median_cost = statistics.median(f.cost_usd for f in figures)
    goals = (
        ("median billed prompt tokens", billed, GOAL_BILLED_PROMPT_TOKENS, f"{billed:,.0f}"),
        ("median cost per conversation", median_cost, GOAL_COST_USD, f"${median_cost:.5f}"),
    )
    for (what, value, goal, shown), limit in zip(goals, ("2,000", "$0.005"), strict=True):
        print(f"goal: {what} < {limit} -> {shown}: {'met' if value < goal else 'NOT met'}")
    _listed("handoffs+: the router gave the turn to another agent, which handed over", figures)
    served = [(f.conversation.id, note) for f in figures for note in f.without_model]
    print(f"\nanswered with no model call (the script's text not needed): {len(served) or 'none'}")
    for conversation, note in served:
        print(f"  {conversation}: {note}")
    issues = [(f.conversation.id, p) for f in figures for p in f.problems]
    print(f"\nnot as scripted: {len(issues) or 'nothing'}")
    for conversation, problem in issues:
        print(f"  {conversation}: {problem}")
    print(flush=True)


def _listed(title: str, figures: Sequence[ConversationFigures]) -> None:
    added = [(f.conversation.id, h) for f in figures for h in f.handoffs_added]
    if added:
        print(f"\n{title}:")
        for conversation, handoff in added:
            print(f"  {conversation}: {handoff}")
