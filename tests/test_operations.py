"""What a platform engineer and a developer touch: health, metrics, the CLI, the
embedded database surviving a crash, and logs without phone numbers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import httpx
import psycopg
import pytest

from graph.privacy import mask_text, mask_value
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.support import REPO, query, running_service, service_env, service_settings


async def test_health_readiness_and_metrics(db_url: str, graph_api: FakeGraphAPI) -> None:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings) as service:
        await service.post_webhook(envelope(text_message("250788000111", "hi")))
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            metrics = (await client.get("/metrics")).text
    assert health.json() == {"status": "ok"}
    body = ready.json()
    assert ready.status_code == 200 and body["ready"] is True
    assert body["checks"]["migrations"] == "ok" and body["checks"]["worker"] == "ok"
    assert body["pool"]["size"] >= 1
    assert 'wa_agent_webhook_requests_total{status="200"}' in metrics
    assert "wa_agent_db_pool_size" in metrics


async def test_readiness_fails_while_a_migration_is_missing(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings, with_worker=False) as service:
        await service.execute("DELETE FROM schema_migrations WHERE version = '0002_agents'")
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["migrations"] == {"pending": ["0002_agents"]}


class Terminal:
    """`wa-agent chat` as someone at a terminal uses it: a line in, the bot's lines out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def say(self, line: str) -> list[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        lines: list[str] = []
        while True:
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), 3.0 if lines else 60)
            except TimeoutError:
                return lines
            lines.append(raw.decode().rstrip())


def _first_id(lines: list[str], prefix: str) -> str:
    return next(line.split("[", 1)[1].split("]", 1)[0] for line in lines if f"[{prefix}" in line)


async def test_chat_in_the_terminal_runs_the_production_path(db_url: str) -> None:
    """No WhatsApp, no model: the demo business is loaded on first use, typed ids are
    taps, and a booking goes through the menu's actions, its Confirm question included,
    exactly as a customer's would."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "chat",
        "--as",
        "tester",
        cwd=REPO,
        env=service_env(service_settings(db_url)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    terminal = Terminal(process)
    try:
        assert any("[menu:booking] Bookings" in line for line in await terminal.say("hello"))
        assert any("[book:days]" in line for line in await terminal.say("menu:booking"))
        days = await terminal.say("book:days")
        slots = await terminal.say(_first_id(days, "day:"))
        question = await terminal.say(_first_id([s for s in slots if "[day:" not in s], ""))
        confirm = _first_id(question, "confirm:yes")
        booked = await terminal.say(confirm)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0
    assert any("booked" in line.lower() for line in booked), booked
    rows = await query(db_url, "SELECT status FROM bookings")
    assert [r["status"] for r in rows] == ["confirmed"]
    runs = await query(db_url, "SELECT count(*) AS n FROM conversation_runs WHERE status = 'done'")
    assert runs[0]["n"] == 6  # every line went through the runner


def test_migrate_applies_each_step_once(db_url: str) -> None:
    env = service_env(service_settings(db_url))
    command = [sys.executable, "-m", "server.cli", "migrate"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "applied 0 migration(s)"  # the template is migrated


_HOLD_EMBEDDED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from graph.infra.database import start_embedded_postgres
    print("URI=" + start_embedded_postgres(Path(sys.argv[1])), flush=True)
    if sys.argv[2] == "hold":
        time.sleep(600)
    """
)


def _uri(lines: Iterable[str]) -> str:
    for line in lines:
        if line.startswith("URI="):
            return line.removeprefix("URI=").strip()
    raise AssertionError("the embedded server printed no URI")


def _start_embedded(data_dir: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLD_EMBEDDED, str(data_dir), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_embedded_postgres_comes_back_after_a_crash(tmp_path: Path) -> None:
    data_dir = tmp_path / "postgres"
    first = _start_embedded(data_dir, "hold")
    assert first.stdout is not None
    uri = _uri(first.stdout.readline() for _ in range(20))
    with psycopg.connect(uri) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('before the crash')")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    second = _start_embedded(data_dir, "exit")  # reuses the server, then exits cleanly
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_uri(out.splitlines()), connect_timeout=2)  # the clean exit stopped it

    third = _start_embedded(data_dir, "hold")
    assert third.stdout is not None
    uri = _uri(third.stdout.readline() for _ in range(20))
    with psycopg.connect(uri) as conn:  # up again, on the same data
        assert conn.execute("SELECT note FROM kept").fetchall() == [("before the crash",)]
    os.killpg(third.pid, signal.SIGINT)  # Ctrl-C: a clean stop
    third.wait(timeout=30)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(uri, connect_timeout=2)


def test_masking_hides_numbers_emails_and_cards() -> None:
    text = "I'm +250 788 123 456, mail ada@example.org, card 4111 1111 1111 1111, order 1234"
    masked = mask_text(text)
    assert "788 123" not in masked and "ada@example.org" not in masked and "4111" not in masked
    assert masked.endswith("order 1234")  # short numbers are not personal data
    assert mask_value({"wa_id": "250788123456", "nested": ["call 250788123456"]}) == {
        "wa_id": "********3456",
        "nested": ["call ********3456"],
    }


def test_logs_never_print_a_customer_number(db_url: str) -> None:
    script = textwrap.dedent(
        """
        import structlog
        from graph.settings import Settings
        from server.logging import configure_logging
        configure_logging(Settings(_env_file=None, log_format="json"))
        structlog.get_logger().warning("reply.failed", wa_id="250788123456",
                                       error="could not reach 250788123456 / ada@example.org")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert "250788123456" not in result.stderr and "ada@example.org" not in result.stderr
    assert line["wa_id"] == "********3456" and line["event"] == "reply.failed"


def test_studio_starts_while_the_database_is_away() -> None:
    """`langgraph dev` imports `langgraph.json`'s entry at start-up: importing it opens
    nothing, so Studio comes up before the database does (the graph opens it on the
    first run, tests/test_studio_dev_server.py)."""
    config = json.loads((REPO / "langgraph.json").read_text())
    assert config["graphs"]["wa_agent"] == "./graph/composition/studio.py:graph"
    script = (
        "import inspect, graph.composition.studio as s; print(inspect.iscoroutinefunction(s.graph))"
    )
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nowhere"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "OPENAI_API_KEY": "sk-offline", "LOG_LEVEL": "WARNING"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"
