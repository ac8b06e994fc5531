"""Where a worker's CPU goes: py-spy samples of `wa-agent serve` (defaults) under load.

    .venv/bin/python -m tests.bench.profile_load [--rate 60] [--duration 25]
        [--py-spy PATH] [--out /tmp/wa-agent-profile.txt]

Starts the default deployment exactly as bench_load does (fresh embedded Postgres, the
zero-latency fake model, the fake Graph API), offers `rate` new customers per second for
`duration` seconds, and records the serve process and its worker processes with py-spy
(`--subprocesses --idle` off, so only busy samples count). py-spy is not a dependency:
install it apart (`pip install --target /tmp/pyspy py-spy`) and pass its path.

The collapsed stacks go to `--out`; the summary printed groups each sample by the first
frame of ours or of a library it passes through, so the figures read as "router 25 %".
With `--gil` (a sample is then CPU) it also prints the CPU per turn of the whole service
and of our own code's frames alone, against the 15 ms budget; use a rate the service
keeps up with, so that the turns offered are the turns done while it samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.bench.bench_load import add_model_seconds, started
from tests.bench.common import BenchGraphAPI, fetch_value, print_header, tune_benchmark_process
from tests.bench.common import bench_postgres as open_postgres
from tests.bench.e2e import conversations, wait_for_replies
from tests.bench.loadgen import WebhookClient, open_loop
from tests.fakes.openai_server import FakeOpenAIServer

# py-spy's sampling rate: with `--gil`, a sample is 1/SAMPLES_PER_S s of CPU.
SAMPLES_PER_S = 200
# Postgres publishes a backend's statistics at most once a second.
STATS_FLUSH_S = 2.0

# Where a sample's time goes: the first frame (searched leaf to root) in one of these
# installed packages names its area; else the first frame of ours. py-spy records full
# file names (`--full-filenames`): shortened, langgraph's `graph/` read as ours and its
# runtime fell under whatever called it (procrastinate, for a job).
AREAS: tuple[tuple[str, str], ...] = (
    ("onnxruntime", "embedding (onnxruntime)"),
    ("tokenizers", "embedding (tokenizer)"),
    ("sklearn", "router classifier (sklearn)"),
    ("scipy", "router classifier (sklearn)"),
    ("numpy", "numpy"),
    ("langgraph/checkpoint", "checkpoint (langgraph)"),
    ("psycopg", "SQL (psycopg)"),
    ("procrastinate", "queue (procrastinate)"),
    ("openai", "model client (openai)"),
    ("langchain_openai", "model client (openai)"),
    ("aiohttp", "HTTP client (aiohttp, httpx)"),
    ("httpx", "HTTP client (aiohttp, httpx)"),
    ("httpcore", "HTTP client (aiohttp, httpx)"),
    ("h11", "HTTP client (aiohttp, httpx)"),
    ("anyio", "HTTP client (aiohttp, httpx)"),
    ("tiktoken", "token counting (tiktoken)"),
    ("pydantic", "pydantic"),
    ("langchain_core", "langchain_core"),
    ("langgraph", "langgraph runtime"),
    ("uvicorn", "webhook (uvicorn)"),
    ("starlette", "webhook (starlette)"),
    ("fastapi", "webhook (fastapi)"),
    ("prometheus_client", "metrics (prometheus_client)"),
    ("structlog", "logging"),
)
OUR_PACKAGES = ("server", "graph", "nodes", "tools")
_FILE = re.compile(r"\((?P<path>[^()]*?)(?::\d+)?\)$")
# Up to our package's name in a file name, for printing it short.
_OUR_PREFIX = re.compile(r"\([^()]*/(?=(?:" + "|".join(OUR_PACKAGES) + r")/)")


def _site_package(frame: str) -> str | None:
    """`langgraph/pregel` for a frame in site-packages/langgraph/pregel/…, else None."""
    match = _FILE.search(frame)
    if match is None or "site-packages/" not in match["path"]:
        return None
    return match["path"].split("site-packages/", 1)[1]


def _is_ours(frame: str) -> bool:
    match = _FILE.search(frame)
    if match is None or "site-packages/" in match["path"]:
        return False
    return any(f"/{package}/" in match["path"] for package in OUR_PACKAGES)


def area_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        package = _site_package(frame)
        if package is None:
            continue
        for needle, area in AREAS:
            if package.startswith(needle):
                return area
    if any(_is_ours(frame) for frame in frames):
        return "ours (and the standard library)"
    return "other"


def ours_frame(stack: str) -> str:
    """The deepest frame of our own code in a stack: which of our functions led here."""
    for frame in reversed(stack.split(";")):
        if _is_ours(frame):
            return _OUR_PREFIX.sub("(", frame)
    return "(none)"


def process_of(stack: str) -> str:
    """`serve` or `worker`: the innermost `process N:"… server.cli ROLE"` frame py-spy adds."""
    roles = re.findall(r'process \d+:"[^"]*server\.cli (\w+)', stack)
    return roles[-1] if roles else "other"


def runs_in_ours(stack: str) -> bool:
    """The sample's innermost frame is our own code: time spent in it, not below it."""
    return _is_ours(stack.rsplit(";", 1)[-1])


def summarise(collapsed: Path, top: int, turns: int | None = None) -> None:
    """Samples by process and area; with `turns` (and `--gil`, so that a sample is CPU)
    also the CPU per turn, of the whole service and of our own code alone."""
    by_process: dict[str, tuple[collections.Counter[str], collections.Counter[str]]] = {}
    in_ours = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        areas, ours = by_process.setdefault(
            process_of(stack), (collections.Counter(), collections.Counter())
        )
        areas[area_of(stack)] += int(count)
        ours[ours_frame(stack)] += int(count)
        in_ours += int(count) if runs_in_ours(stack) else 0
    _print_processes(by_process, top)
    total = sum(sum(areas.values()) for areas, _ in by_process.values())
    print(f"\nin our own code (innermost frame ours): {100 * in_ours / max(total, 1):.1f} %")
    if turns:
        per_turn = 1000 / SAMPLES_PER_S / turns
        print(
            f"CPU per turn over {turns} turns: the service {total * per_turn:.1f}"
            f" ms, of it in our own code {in_ours * per_turn:.1f} ms (budget: 15 ms)"
        )


def _print_processes(
    by_process: dict[str, tuple[collections.Counter[str], collections.Counter[str]]], top: int
) -> None:
    for process, (areas, ours) in sorted(by_process.items()):
        total = sum(areas.values())
        print(f"\n{process}: {total} busy samples")
        for area, n in areas.most_common():
            print(f"  {100 * n / total:5.1f} %  {area}")
        print(f"  deepest frame of our code, top {top}:")
        for frame, n in ours.most_common(top):
            print(f"    {100 * n / total:5.1f} %  {frame}")


async def profile(args: argparse.Namespace) -> None:
    with FakeOpenAIServer() as openai, BenchGraphAPI() as graph_api:
        openai.delay = args.model_seconds
        async with (
            open_postgres() as postgres,
            started(postgres, (openai, graph_api)) as server,
        ):
            messages = conversations(2, int(args.rate * args.duration), "profile")
            committed = await transactions(server.db_url)
            recorder = await asyncio.create_subprocess_exec(
                *[args.py_spy, "record", "--pid", str(server.group.pids[0]), "--subprocesses"],
                *["--format", "raw", "--rate", str(SAMPLES_PER_S), "--nonblocking"],
                *["--full-filenames"],
                *["--duration", str(int(args.duration)), "--output", str(args.out)],
                *(["--gil"] if args.gil else []),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await open_loop(WebhookClient(server.url, keep_alive=False), messages, args.rate)
            await recorder.wait()
            await wait_for_replies(graph_api, [m.wa_id for m in messages])
            await asyncio.sleep(STATS_FLUSH_S)
            committed = await transactions(server.db_url) - committed
    print(f"\nPostgres transactions per turn (webhook and worker): {committed / len(messages):.1f}")
    summarise(args.out, args.top, len(messages) if args.gil else None)


async def transactions(db_url: str) -> int:
    """Committed transactions of the database so far: with autocommit, one per statement
    (an explicit transaction counts once)."""
    value = await fetch_value(
        db_url, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=25.0)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy")
    parser.add_argument("--out", type=Path, default=Path("/tmp/wa-agent-profile.txt"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--summarise-only", action="store_true")
    add_model_seconds(parser)
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples of the thread holding the GIL: Python's own CPU, without "
        "native work that releases it (onnxruntime) and without threads py-spy takes "
        "for busy while they wait (a thread pool's idle workers, uvloop's poll)",
    )
    args = parser.parse_args(argv)
    if not (0 < args.rate <= 500 and 0 < args.duration <= 120):
        parser.error("rate must be in (0, 500] and duration in (0, 120] s")
    return args


def main() -> None:
    args = parse_args()
    if args.summarise_only:  # the per-turn figures need the run's --rate and --duration
        summarise(args.out, args.top, int(args.rate * args.duration) if args.gil else None)
        return
    tune_benchmark_process()
    print_header(
        "profile_load: py-spy of `wa-agent serve` (defaults) under open-loop load",
        [f"{args.rate:g} new customers/s for {args.duration:g} s; stacks in {args.out}"],
    )
    asyncio.run(profile(args))


if __name__ == "__main__":
    main()
