"""Before and after, interleaved: the default deployment of an earlier commit against
this tree's, each rate measured several times in turn.

    git worktree add /tmp/before COMMIT
    .venv/bin/python -m tests.bench.bench_ab --before /tmp/before [--rates 60 100]
        [--rounds 3] [--duration 10] [--model-seconds 0]

Why: on this machine the same code measures up to a fifth apart from one hour to the
next, more than most single changes move it; measured in turn, both versions see the
same machine. Each is `bench_load`'s "ours (default)" measurement: its own fresh database
cloned from a template migrated by its own tree's migrations, its processes started in
its own tree (the virtual environment is this one's), 20 warm-up conversations, then
`rate × duration` new customers offered open loop. Printed: every run, then the mean of
each version per rate. `--model-seconds`: the fake model answers after that long
(bench_load's option; labelled, not the default).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

from tests.bench.bench_load import HEADERS, Load, add_model_seconds, measure
from tests.bench.common import (
    BenchGraphAPI,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.bench.common import bench_postgres as open_postgres
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import REPO

BEFORE, AFTER = "before", "after (this tree)"


async def main(args: argparse.Namespace) -> None:
    tune_benchmark_process()
    print_header(
        "bench_ab: the default deployment, an earlier tree against this one, interleaved",
        [
            f"before: {args.before}; after: {REPO}",
            f"{args.rounds} round(s) of {args.duration:g} s of new customers per rate",
            f"the fake model answers after {args.model_seconds:g} s"
            + ("" if args.model_seconds else " (the zero-latency default)"),
        ],
    )
    runs: list[Load] = []
    run = 10
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        openai.delay = args.model_seconds
        async with open_postgres() as postgres:
            before_template = await postgres.template_from(args.before / "migrations")
            trees = {BEFORE: (args.before, before_template), AFTER: (REPO, None)}
            for round_number in range(1, args.rounds + 1):
                for rate in args.rates:
                    for version, (tree, template) in trees.items():
                        load = await measure(
                            postgres,
                            (openai, graph_api),
                            f"{version} #{round_number}",
                            rate,
                            args.duration,
                            run,
                            tree=tree,
                            template=template,
                        )
                        runs.append(load)
                        run += 2
                        print(f"  {load.target} at {rate:g}/s done", flush=True)
    print()
    print_table(HEADERS, [load.cells() for load in runs])
    print("\nmeans per version and rate:")
    print_table(["version", "offered", "conv/s", "e2e p50", "CPU ms/turn", "PG ms"], means(runs))


def means(runs: Sequence[Load]) -> list[list[str]]:
    rows = []
    for rate in sorted({load.rate for load in runs}):
        for version in (BEFORE, AFTER):
            mine = [r for r in runs if r.rate == rate and r.target.startswith(version)]
            rows.append(
                [
                    version,
                    f"{rate:g}/s",
                    f"{mean(r.per_second for r in mine):.1f}",
                    f"{mean(percentile(r.end_to_end, 50) for r in mine) * 1000:.0f} ms",
                    f"{mean(r.cpu_ms.get('service', 0) for r in mine):.1f}",
                    f"{mean(r.cpu_ms.get('postgres', 0) for r in mine):.1f}",
                ]
            )
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="an earlier source tree")
    parser.add_argument("--rates", type=float, nargs="+", default=[60.0, 100.0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    add_model_seconds(parser)
    args = parser.parse_args(argv)
    if not (args.before / "server" / "cli.py").is_file():
        parser.error(f"{args.before} is not a wa-agent source tree (no server/cli.py)")
    if not (all(0 < r <= 500 for r in args.rates) and 1 <= args.rounds <= 10):
        parser.error("rates must be in (0, 500] and rounds in 1..10")
    if not 0 < args.duration <= 60:
        parser.error("duration must be in (0, 60] s")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
