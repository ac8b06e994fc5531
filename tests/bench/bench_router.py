"""Intent router: accuracy and share routed without an LLM on the labelled set, latency
of the local path, and the cost of building the router at start.

    .venv/bin/python -m tests.bench.bench_router [--file tests/data/router_eval.jsonl] [--rounds 3]

No LLM is involved (there is no real one here): messages the router would send to the
LLM are reported as such, and the overall accuracy is given with that share counted as
the fallback's answer, as wrong, and as the classifier's best guess. Everything runs in
this process on the real MiniLM model; nothing needs Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from graph.infra.embeddings import LocalMiniLMEmbeddings
from nodes.routing import IntentRouter
from nodes.routing.router import embed_texts
from server.operations.router_eval import evaluate, format_report, read_labelled, tune_report
from tests.bench.common import (
    measuring,
    ms,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.support import REPO

DEFAULT_FILE = REPO / "tests" / "data" / "router_eval.jsonl"
GOAL_P50_MS = 15.0
GOAL_COVERAGE = 0.70
GOAL_ACCURACY = 0.95


def build_router() -> tuple[IntentRouter, float, float]:
    """A router from a cold model (no vector cache): (router, load s, build s). The
    model keeps no recent vectors: each pass over the file would otherwise time the
    vectors the previous step left, not the model (a turn's own message is new to it)."""
    embeddings = LocalMiniLMEmbeddings(recent=0)
    started = time.perf_counter()
    embeddings.warm_up()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    router = IntentRouter.create(embeddings)
    return router, loaded, time.perf_counter() - started


def time_local_path(router: IntentRouter, texts: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds per message: the whole local decision, and its two costly parts."""
    allowed = router.allowed_intents(None)
    samples: dict[str, list[float]] = {"local path": [], "embedding": [], "classifier": []}
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            router.route_locally(text, None, None, allowed)
            samples["local path"].append(time.perf_counter() - started)
            started = time.perf_counter()
            vectors = embed_texts(router.embeddings, [text])
            samples["embedding"].append(time.perf_counter() - started)
            started = time.perf_counter()
            router.classifier.predict_proba([text], vectors)
            samples["classifier"].append(time.perf_counter() - started)
    return samples


async def time_async_route(router: IntentRouter, texts: list[str]) -> list[float]:
    """`await router.route(...)` as the graph calls it (thread hop included)."""
    samples: list[float] = []
    for text in texts:
        started = time.perf_counter()
        await router.route(text)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--rounds", type=int, default=3, help="timing passes over the file")
    args = parser.parse_args()
    tune_benchmark_process()
    items = read_labelled(args.file)
    texts = [item.text for item in items]
    print_header(
        "Intent router: accuracy, share without LLM, local latency",
        [
            f"{args.file.relative_to(REPO) if args.file.is_relative_to(REPO) else args.file}"
            f" ({len(items)} messages), no LLM",
            "local MiniLM (int8 ONNX, 1 thread) + char TF-IDF/LR, in this process",
        ],
    )
    router, loaded, built = build_router()
    print(f"start-up: model load {loaded:.2f} s; router build {built:.2f} s", end="")
    print(f" ({len(router.examples)} examples embedded and fitted, no cache)\n")

    report = asyncio.run(evaluate(router, items, use_llm=False))
    print("\n".join(format_report(report)), end="\n\n")

    with measuring():
        samples = time_local_path(router, texts, args.rounds)
        samples["route() (async)"] = asyncio.run(time_async_route(router, texts))
    rows = [
        [
            name,
            len(values),
            ms(percentile(values, 50)),
            ms(percentile(values, 95)),
            ms(percentile(values, 99)),
        ]
        for name, values in samples.items()
    ]
    print_table(["per message", "n", "p50 ms", "p95 ms", "p99 ms"], rows)

    local = [o for o in report.outcomes if o.local is not None]
    coverage = len(local) / len(report.outcomes)
    local_accuracy = sum(o.local["intent"] == o.item.intent for o in local if o.local) / len(local)
    p50 = percentile(samples["local path"], 50) * 1000
    print_table(
        ["goal", "target", "measured", "met"],
        [
            [
                "routed without LLM",
                f"≥ {GOAL_COVERAGE:.2f}",
                f"{coverage:.3f}",
                coverage >= GOAL_COVERAGE,
            ],
            [
                "accuracy, local share",
                f"≥ {GOAL_ACCURACY:.2f}",
                f"{local_accuracy:.3f}",
                local_accuracy >= GOAL_ACCURACY,
            ],
            ["local path p50", f"< {GOAL_P50_MS:.0f} ms", f"{p50:.1f} ms", p50 < GOAL_P50_MS],
        ],
    )
    print("thresholds recommended by cross-validation on the examples (not the file):")
    print("\n".join(f"  {line}" for line in tune_report(router)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
