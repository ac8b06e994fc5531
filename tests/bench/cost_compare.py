"""bench_cost's figures kept and compared: the same conversations before and after a change,
in one table (`--save FILE` writes a run's figures, `--compare FILE` prints them beside
the current run's).

A before figure comes from running the bench on the earlier service (the harness is the
same: its scripted model hands over the way each request offers, so it plays any version
of the service), which is how "before" stays a measurement rather than a memory.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.bench.common import percentile, print_table
from tests.bench.cost_report import ConversationFigures
from tests.support import REPO

# Each kept figure: how it is read off a run's ConversationFigures.
FIELDS: Mapping[str, Callable[[ConversationFigures], float]] = {
    "turns": lambda f: f.turns,
    "calls": lambda f: sum(f.calls.values()),
    "prompt": lambda f: f.prompt,
    "new": lambda f: f.new,
    "cached": lambda f: f.cached,
    "completion": lambda f: f.completion,
    "billed_prompt": lambda f: f.billed_prompt,
    "cost_usd": lambda f: f.cost_usd,
}


def as_rows(figures: Sequence[ConversationFigures]) -> dict[str, dict[str, float]]:
    """Conversation id → its figures, as plain numbers."""
    return {f.conversation.id: {k: pick(f) for k, pick in FIELDS.items()} for f in figures}


def save(path: Path, figures: Sequence[ConversationFigures], *, isolated: bool) -> None:
    """The run's figures with what it ran against (commit, cache mode)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    body = {"commit": commit or "unknown", "isolated": isolated, "conversations": as_rows(figures)}
    path.write_text(json.dumps(body, indent=1), encoding="utf-8")
    print(f"figures saved to {path}", flush=True)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _pair(before: float, after: float, money: bool = False) -> str:
    if money:
        return f"{before:.5f} → {after:.5f}"
    return f"{before:,.0f} → {after:,.0f}"


COLUMNS = ("calls", "new", "cached", "completion", "billed_prompt", "cost_usd")
HEADERS = [
    "conversation",
    "model calls",
    "prompt new",
    "prompt cached",
    "completion",
    "billed prompt",
    "cost $",
]


def print_comparison(before: Mapping[str, Any], figures: Sequence[ConversationFigures]) -> None:
    """Per conversation, then median, p90 and total: before → after, one table."""
    old: Mapping[str, Mapping[str, float]] = before["conversations"]
    new = as_rows(figures)
    common = [cid for cid in new if cid in old]
    rows: list[list[object]] = [
        [cid, *(_pair(old[cid][k], new[cid][k], k == "cost_usd") for k in COLUMNS)]
        for cid in common
    ]
    stats: list[tuple[str, Callable[[list[float]], float]]] = [
        ("median", statistics.median),
        ("p90", lambda xs: percentile(xs, 90)),
        ("total", sum),
    ]
    for name, stat in stats:
        cells = []
        for key in COLUMNS:
            b = stat([old[cid][key] for cid in common])
            a = stat([new[cid][key] for cid in common])
            cells.append(_pair(b, a, key == "cost_usd"))
        rows.append([name, *cells])
    mode = "isolated" if before.get("isolated") else "shared cache"
    print(f"Before ({before.get('commit')}, {mode}) → after, the same {len(common)} conversations")
    print_table(HEADERS, rows)
    for label, rows_of in (("before", old), ("after", new)):
        prompt = sum(rows_of[c]["prompt"] for c in common)
        cached = sum(rows_of[c]["cached"] for c in common)
        print(f"  {label}: {cached / max(prompt, 1):.1%} of prompt tokens served from the cache")
    print(flush=True)
