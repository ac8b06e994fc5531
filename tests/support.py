"""Real parts for tests: databases cloned from a migrated template, the service on a
real port, worker processes, and polling helpers. Nothing here fakes our own code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from graph.settings import Settings
from server.app import create_app
from server.services import Services
from server.whatsapp.number_book import BusinessNumber, NumberBook
from tests.fakes.meta_payloads import sign

REPO = Path(__file__).resolve().parent.parent
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
ACCESS_TOKEN = "test-token"
PHONE_NUMBER_ID = "PNID"


def database_url(admin_url: str, name: str) -> str:
    return make_conninfo(admin_url, dbname=name)


async def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}'.encode())
    return database_url(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def nice_of(pid: int) -> int:
    """A process's nice: field 19 of /proc/PID/stat (after the command name, which may
    hold spaces)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def service_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for a test service: no `.env`, fakes wired in by the caller."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "whatsapp_app_secret": APP_SECRET,
        "whatsapp_verify_token": VERIFY_TOKEN,
        "whatsapp_access_token": ACCESS_TOKEN,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID,
        "openai_api_key": None,
        "openai_base_url": None,
        "coalesce_window_ms": 0,
        "worker_concurrency": 4,
        "db_pool_min_size": 1,
        "db_pool_max_size": 8,
        "whatsapp_timeout_seconds": 5.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def service_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for `wa-agent` subprocesses."""
    names = {
        "database_url": "DATABASE_URL",
        "openai_api_key": "OPENAI_API_KEY",
        "openai_base_url": "OPENAI_BASE_URL",
        "whatsapp_app_secret": "WHATSAPP_APP_SECRET",
        "whatsapp_verify_token": "WHATSAPP_VERIFY_TOKEN",
        "whatsapp_access_token": "WHATSAPP_ACCESS_TOKEN",
        "whatsapp_phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
        "whatsapp_api_base_url": "WHATSAPP_API_BASE_URL",
        "coalesce_window_ms": "WA_AGENT_COALESCE_MS",
        "worker_concurrency": "WA_AGENT_WORKER_CONCURRENCY",
        "worker_nice": "WA_AGENT_WORKER_NICE",
        "worker_heartbeat_seconds": "WA_AGENT_WORKER_HEARTBEAT_S",
        "stalled_job_seconds": "WA_AGENT_STALLED_JOB_S",
        "model_max_retries": "WA_AGENT_MODEL_MAX_RETRIES",
        "model_timeout_seconds": "WA_AGENT_MODEL_TIMEOUT_S",
        "retry_max_seconds": "WA_AGENT_RETRY_MAX_S",
        "heal_interval_seconds": "WA_AGENT_HEAL_INTERVAL_S",
        "queue_poll_seconds": "WA_AGENT_QUEUE_POLL_S",
        "redis_url": "REDIS_URL",
        "db_pool_max_size": "WA_AGENT_DB_POOL_MAX",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_AGENT", "WHATSAPP"))}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    for field, name in names.items():
        value = getattr(settings, field)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name] = str(value)
    env["LOG_LEVEL"] = "WARNING"
    env["LANGSMITH_TRACING"] = "false"
    return env


@dataclass
class RunningService:
    base_url: str
    services: Services
    settings: Settings

    async def post_webhook(
        self, payload: Mapping[str, Any], *, secret: str = APP_SECRET
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            return await client.post(
                "/webhook",
                content=body,
                headers={
                    "X-Hub-Signature-256": sign(body, secret),
                    "Content-Type": "application/json",
                },
            )

    async def execute(self, sql: str, *params: Any) -> None:
        async with self.services.pool.connection() as conn:
            await conn.execute(sql.encode(), params)

    async def fetch(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with self.services.pool.connection() as conn:
            cur = await conn.execute(sql.encode(), params)
            return list(await cur.fetchall())

    async def add_number(self, phone_number_id: str) -> None:
        """Another business number of the same Meta app (the test token and secret,
        by reference to this process's environment), answered from now on."""
        os.environ.setdefault("WA_TEST_ACCESS_TOKEN", ACCESS_TOKEN)
        os.environ.setdefault("WA_TEST_APP_SECRET", APP_SECRET)
        number = BusinessNumber(
            phone_number_id,
            access_token_ref="env:WA_TEST_ACCESS_TOKEN",
            app_secret_ref="env:WA_TEST_APP_SECRET",
        )
        async with self.services.pool.connection() as conn:
            await NumberBook(self.services.pool).save(number, conn)
        await self.services.numbers.refresh()


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, *, with_worker: bool = True
) -> AsyncIterator[RunningService]:
    """The real app on a real port (uvicorn, port 0), in this event loop."""
    app = create_app(settings, run_worker_here=with_worker)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningService(f"http://127.0.0.1:{port}", app.state.services, settings)
    finally:
        server.should_exit = True
        await task


def spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """A real `wa-agent worker` process, in its own process group so it can be killed.

    Its log goes to an unnamed file: a pipe nobody reads fills after 64 KiB of log lines
    and then blocks the worker on its next write — a wedge of the test's own making."""
    with tempfile.TemporaryFile(prefix="wa-agent-worker-") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "server.cli", "worker"],
            cwd=REPO,
            env=service_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )


def start_serve(env: Mapping[str, str], log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """`wa-agent serve` with `env`, in its own session; its output to `log_path` (None:
    discarded)."""
    output = log_path.open("wb") if log_path else None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=REPO,
            env=dict(env),
            stdout=output or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if output:
            output.close()


async def answers_ready(base_url: str) -> bool:
    """Whether the service at `base_url` says it is ready (`/readyz` 200)."""
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
            return (await client.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def query(db_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        cur = await conn.execute(sql.encode(), params)
        return list(await cur.fetchall())
