"""Run every benchmark in sequence, each in its own process with its default arguments.

    .venv/bin/python -m tests.bench [--only NAME ...]      (`make bench` runs this)

Each benchmark starts its own embedded Postgres in a temporary directory and its own
service processes, prints its tables, and stops what it started. The whole suite is
bounded: each benchmark gets at most `TIMEOUT_S` seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from tests.support import REPO

BENCHMARKS = (
    "bench_webhook_ack",
    "bench_end_to_end",
    "bench_load",
    "bench_recovery",
    "bench_checkpointer_concurrency",
    "bench_agent_turns",
    "bench_graph_cpu",
    "bench_router",
    "bench_rate_limit",
    "bench_memory",
    "bench_tool_wrapper",
    "bench_sandbox",
    "bench_documents",
    "bench_answer_cache",
    "bench_streaming",
    "bench_accounting",
    "bench_dashboard",
    "bench_cost",
    "bench_retention",
)
TIMEOUT_S = 600  # bench_load, the longest, takes about seven minutes


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        head, dirty = "", ""
    if not head:
        return "an unknown revision (not a git checkout)"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def run_one(name: str) -> tuple[int, float]:
    """Run `python -m tests.bench.NAME`, its output straight to ours; (exit code, seconds)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", f"tests.bench.{name}"], cwd=REPO, start_new_session=True
    )
    try:
        code = process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # its own service processes stop with it
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        print(f"{name}: stopped after {TIMEOUT_S} s", flush=True)
        code = 124
    return code, time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    names = parser.parse_args(argv).only
    print(f"wa-agent benchmarks at {git_revision()}\n", flush=True)
    outcomes = []
    for name in names:
        code, seconds = run_one(name)
        outcomes.append((name, code, seconds))
        print(flush=True)
    print("summary")
    for name, code, seconds in outcomes:
        print(f"  {name:32} {'ok' if code == 0 else f'FAILED ({code})':12} {seconds:6.0f} s")
    print(f"  {'total':32} {'':12} {sum(s for _, _, s in outcomes):6.0f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
