"""Real parts for the abuse-protection tests: Redis servers, a clock tests can move, and
helpers to talk to a running service and read what a customer received.

- `shared_redis_url()`: the machine's Redis (`TEST_REDIS_URL`, default db 15 on
  127.0.0.1:6379); where none answers, one private `redis-server` for the session.
  Tests sharing it keep apart by a key prefix of their own (`unique_prefix()`).
- `RedisProcess`: a private `redis-server` on a free port in a temporary directory, for
  tests that stop Redis mid-way — the machine's own is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis

from graph.settings import Settings
from nodes.notices import Notices
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, new_wamid, sign, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import APP_SECRET, RunningService, eventually, service_settings


def unique_prefix() -> str:
    return f"wa-test:{uuid.uuid4().hex[:12]}:"


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        with contextlib.closing(client):
            return bool(client.ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """`redis-server` as a child process; `stop()` kills it, `start()` brings it back on
    the same port (an empty server: no persistence, like a restarted cache)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="wa-test-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not _answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_shared: RedisProcess | None = None


def shared_redis_url() -> str:
    global _shared
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if _answers(url):
        return url
    if _shared is None:
        _shared = RedisProcess().start()
        atexit.register(_shared.close)
    return _shared.url


class FakeClock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the service ---------------------------------------------------------------

NOTICES = Notices.load()  # what an English-speaking customer reads
WARNING = NOTICES.say("rate_warning", "en")
BLOCK_PREFIX = NOTICES.reference["rate_block"].split("{", 1)[0]
BLACKLIST = NOTICES.say("blacklisted", "en")
BUDGET = NOTICES.say("daily_budget", "en")


async def post(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    """A signed delivery on a shared client (one client per request costs ~30 ms)."""
    body = json.dumps(payload).encode()
    headers = {"X-Hub-Signature-256": sign(body, APP_SECRET), "Content-Type": "application/json"}
    return await client.post("/webhook", content=body, headers=headers)


def new_customer() -> str:
    return "2507" + str(uuid.uuid4().int)[:8]


def abuse_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "whatsapp_api_base_url": graph_api.base_url,
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url + "/v1",
        "worker_concurrency": 4,
    }
    values.update(overrides)
    return service_settings(db_url, **values)


def kinds(graph_api: FakeGraphAPI, customer: str) -> list[str]:
    """What the customer received, as 'warning' / 'block' / 'blacklist' / 'reply'."""
    found = []
    for text in graph_api.texts_to(customer):
        if text == WARNING:
            found.append("warning")
        elif text.startswith(BLOCK_PREFIX):
            found.append("block")
        elif text == BLACKLIST:
            found.append("blacklist")
        else:
            found.append("reply")
    return found


async def graph_runs_for(service: RunningService, run_ids: list[Any]) -> int:
    """Checkpoints written by these runs: zero means the graph never ran for them."""
    rows = await service.fetch(
        "SELECT count(*) AS n FROM checkpoints WHERE metadata->>'run_id' = ANY(%s)",
        [str(run_id) for run_id in run_ids],
    )
    return int(rows[0]["n"])


async def all_processed(service: RunningService, customer: str) -> bool:
    rows = await service.fetch(
        "SELECT count(*) FILTER (WHERE processed_at IS NULL) AS waiting, count(*) AS stored"
        " FROM inbound_messages WHERE wa_id = %s",
        customer,
    )
    return bool(rows[0]["stored"]) and rows[0]["waiting"] == 0


def model_saw(openai: FakeOpenAIServer, text: str) -> bool:
    return any(text in str(request.get("messages")) for request in openai.requests)


async def processed(service: RunningService, wamid: str) -> bool:
    rows = await service.fetch(
        "SELECT processed_at IS NOT NULL AS done FROM inbound_messages WHERE wamid = %s", wamid
    )
    return bool(rows and rows[0]["done"])


async def send_and_settle(service: RunningService, customer: str, text: str = "hi") -> str:
    """Deliver one text and wait until the service has handled it (answered or refused)."""
    wamid = new_wamid()
    response = await service.post_webhook(envelope(text_message(customer, text, wamid=wamid)))
    assert response.status_code == 200, response.text
    await eventually(lambda: processed(service, wamid), what=f"{wamid} handled")
    return wamid
