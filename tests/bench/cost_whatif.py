"""What a layout would have cost: the requests of a bench_cost run, replayed through the
fake's tokenizer and prompt cache with their layout changed.

    .venv/bin/python -m tests.bench.bench_cost --dump run.json
    .venv/bin/python -m tests.bench.cost_whatif run.json

Why: the service's cost is set by a few choices (which tools each call carries, what
history it re-sends, which calls happen at all), and a bench run takes minutes. A run's
requests, recorded in order with who caused them, are replayed here in the same order
through a fresh `PromptCache` (no expiry: a run lasts minutes) under each what-if, and
summed per conversation as the bench does. The identity what-if reproduces the run's
own figures; the others are estimates of the model calls a changed service would make,
not measurements of one (a real change may also change what the model answers).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.bench.common import percentile, print_table
from tests.fakes.openai_stream import JSON, content_text
from tests.fakes.openai_usage import PromptCache, default_tokenizer, prompt_token_ids

Record = dict[str, Any]  # {"label": [conversation, kind, agent, turn] | None, "body", "reply"}
Transform = Callable[[JSON, list[Any] | None], JSON]
HANDOFFS = ("hand_over", "transfer_to_")
NOTE = "[Context, not a request:"  # the service's profile-name note (nodes/specialists.py)


def dump(path: Path, exchanges: Sequence[Any], labels: dict[int, Any]) -> None:
    """A bench run's requests in order, each with its label and the reply it got."""
    records = []
    for exchange in exchanges:
        label = labels.get(id(exchange.body))
        records.append(
            {
                "label": [label.conversation, label.kind, label.agent, label.turn]
                if label
                else None,
                "body": exchange.body,
                "reply": repr(exchange.reply),
            }
        )
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    print(f"requests dumped to {path}", flush=True)


def billed(records: Sequence[Record], transform: Transform, cached_price: float) -> list[float]:
    """Billed prompt tokens per conversation: new + cached x `cached_price` (of input)."""
    tokenizer, cache = default_tokenizer(), PromptCache(ttl_seconds=1e9)
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        label = record["label"]
        tokens = prompt_token_ids(transform(record["body"], label), tokenizer)
        cached = cache.lookup(tokens)
        if label and label[0]:
            per[label[0]][0] += len(tokens)
            per[label[0]][1] += cached
    return [prompt - cached * (1 - cached_price) for prompt, cached in per.values()]


def _agent(label: list[Any] | None) -> bool:
    return bool(label) and label is not None and label[1] == "agent"


def identity(body: JSON, label: list[Any] | None) -> JSON:
    return body


def current_turn_only(body: JSON, label: list[Any] | None) -> JSON:
    """History cut to the current customer turn (system prompt and name note kept)."""
    if not _agent(label):
        return body
    body = copy.deepcopy(body)
    messages = body["messages"]
    starts = [
        i
        for i, m in enumerate(messages)
        if m["role"] == "user"
        and not content_text(m.get("content")).startswith(NOTE)
        and not (i and messages[i - 1]["role"] == "user")
    ]
    if starts:
        head = [m for m in messages[: starts[-1]] if m["role"] == "system"][:1]
        notes = [m for m in messages if content_text(m.get("content")).startswith(NOTE)]
        body["messages"] = [*head, *notes, *messages[starts[-1] :]]
    return body


def no_tools(body: JSON, label: list[Any] | None) -> JSON:
    body = current_turn_only(body, label)
    return {**body, "tools": []} if _agent(label) else body


def short_tool_results(body: JSON, label: list[Any] | None) -> JSON:
    """Every tool result cut to 600 characters, as if the tools returned less."""
    if not _agent(label):
        return body
    body = copy.deepcopy(body)
    for message in body["messages"]:
        if message["role"] == "tool":
            message["content"] = content_text(message.get("content"))[:600]
    return body


def shared_tool_block(records: Sequence[Record]) -> Transform:
    """Every agent offered the same tools (all of them, one order) after a system prompt
    common to all, its own instructions in a second system message."""
    tools: dict[str, JSON] = {}
    for record in records:
        for tool in record["body"].get("tools") or []:
            tools.setdefault(tool["function"]["name"], tool)
    block = [tools[name] for name in sorted(tools)]

    def transform(body: JSON, label: list[Any] | None) -> JSON:
        if not _agent(label):
            return body
        body = copy.deepcopy(body)
        common, _, own = str(body["messages"][0]["content"]).partition("\n\n")
        body["messages"][0]["content"] = common
        body["messages"].insert(1, {"role": "system", "content": own})
        body["tools"] = block
        return body

    return transform


def _without(records: Sequence[Record], *, handoffs: bool, memory: bool) -> list[Record]:
    def kept(record: Record) -> bool:
        label = record["label"]
        if handoffs and _agent(label) and any(h in record["reply"] for h in HANDOFFS):
            return False
        return not (memory and label and label[1] == "memory")

    return [r for r in records if kept(r)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump", type=Path, help="bench_cost --dump FILE")
    args = parser.parse_args(argv)
    records: list[Record] = json.loads(args.dump.read_text(encoding="utf-8"))
    no_handoffs = _without(records, handoffs=True, memory=False)
    bare = _without(records, handoffs=True, memory=True)
    cases: list[tuple[str, Sequence[Record], Transform, float]] = [
        ("as run (gpt-4o-mini: cached at 50 %)", records, identity, 0.5),
        ("no handoff calls (every turn routed to its agent)", no_handoffs, identity, 0.5),
        ("... and no memory extraction", bare, identity, 0.5),
        ("... and only the current turn as history", bare, current_turn_only, 0.5),
        ("... and no tool schemas at all", bare, no_tools, 0.5),
        ("tool results of at most 600 characters", records, short_tool_results, 0.5),
        ("one tool block shared by all agents", records, shared_tool_block(records), 0.5),
        ("as run, cached at 25 % of input", records, identity, 0.25),
        ("shared block, cached at 25 % of input", records, shared_tool_block(records), 0.25),
        ("as run, cached at 10 % of input", records, identity, 0.1),
        ("shared block, cached at 10 % of input", records, shared_tool_block(records), 0.1),
    ]
    rows = []
    for name, subset, transform, price in cases:
        figures = billed(subset, transform, price)
        rows.append([name, f"{statistics.median(figures):,.0f}", f"{percentile(figures, 90):,.0f}"])
    print("Billed prompt tokens per conversation, replayed (estimates; see the module doc)")
    print_table(["what if", "median", "p90"], rows)


if __name__ == "__main__":
    main()
