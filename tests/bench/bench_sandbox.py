"""code_interpreter sandbox: start-to-result time of `print(1+1)`, and where it goes.

    .venv/bin/python -m tests.bench.bench_sandbox [--runs 50]

Times the tool as an agent calls it (`ainvoke` on the tool: prlimit ▸ bwrap with all
namespaces ▸ python -I -S ▸ output read ▸ process group killed), against the parts:
the interpreter alone outside any sandbox, and bwrap around `true` (no Python).
Runs one after another, in this process; nothing else is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable

from tests.bench.common import (
    measuring,
    ms,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tools.sandbox import (
    SandboxLimits,
    make_code_interpreter_tool,
    run_sandboxed,
    sandbox_command,
)

GOAL_P50_MS = 150.0


async def time_runs(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await call()  # warm the page cache and the probe
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def run_process(argv: list[str], stdin: bytes) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await process.communicate(stdin)
    return output


async def measure(runs: int) -> dict[str, list[float]]:
    limits = SandboxLimits()
    tool = make_code_interpreter_tool(limits)
    answer = await tool.ainvoke({"code": "print(1+1)"})
    assert str(answer).splitlines() == ["ok", "2"], answer
    command = sandbox_command(
        limits, processes=limits.max_processes, uid=None, seccomp_fd=None
    )  # no control group, no uid change, no system-call filter: the launch alone
    bwrap_only = [*command[:-5], "/usr/bin/true"]
    with measuring():
        return {
            "code_interpreter tool, print(1+1)": await time_runs(
                lambda: tool.ainvoke({"code": "print(1+1)"}), runs
            ),
            "run_sandboxed (no tool wrapper)": await time_runs(
                lambda: run_sandboxed("print(1+1)", limits), runs
            ),
            "python -I -S, no sandbox": await time_runs(
                lambda: run_process([limits.python, "-I", "-S", "-"], b"print(1+1)"), runs
            ),
            "prlimit + bwrap around /usr/bin/true (no cgroup, seccomp)": await time_runs(
                lambda: run_process(bwrap_only, b""), runs
            ),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    tune_benchmark_process()
    print_header(
        "code_interpreter sandbox: start-to-result for print(1+1)",
        [
            "bubblewrap (--unshare-all, read-only /usr, tmpfs scratch) under prlimit, as a"
            " throwaway uid; /usr/bin/python3 -I -S",
            f"{args.runs} sequential runs per row, in this process",
        ],
    )
    samples = asyncio.run(measure(args.runs))
    rows = [
        [
            name,
            len(values),
            ms(percentile(values, 50)),
            ms(percentile(values, 95)),
            ms(max(values)),
        ]
        for name, values in samples.items()
    ]
    print_table(["per run", "n", "p50 ms", "p95 ms", "max ms"], rows)
    p50 = percentile(samples["code_interpreter tool, print(1+1)"], 50) * 1000
    print_table(
        ["goal", "target", "measured", "met"],
        [["print(1+1) p50", f"< {GOAL_P50_MS:.0f} ms", f"{p50:.1f} ms", p50 < GOAL_P50_MS]],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
