"""Guessing secrets from outside: admin bearer tokens are throttled per client address,
tokens too short to face the internet stop the service from starting, and the API's
schema is for admins only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.http.admin.auth import MIN_TOKEN_CHARS, WeakToken
from tests.fakes.graph_api import FakeGraphAPI
from tests.support import REPO, running_service, service_settings

ALICE_TOKEN = "alice-token-0123456789abcdef"
ALICE = {"Authorization": f"Bearer {ALICE_TOKEN}"}


async def test_guessed_admin_tokens_are_throttled_per_address(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """Three wrong tokens (the limit here), then 429 with Retry-After for whatever the
    address presents — the right token too — while another address works; the
    refusals are audited, folded into one row per address."""
    config = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        admin_tokens=f"alice:{ALICE_TOKEN}",
        auth_failure_limit=3,
    )
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as guesser:
            guesses = [
                await guesser.get(
                    "/admin/api/blacklist", headers={"Authorization": f"Bearer guess-{n:030d}"}
                )
                for n in range(3)
            ]
            throttled = [
                await guesser.get("/admin/api/blacklist", headers={"Authorization": "Bearer x"}),
                await guesser.get("/admin/api/blacklist", headers=ALICE),
            ]
        neighbour = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=service.base_url, transport=neighbour) as other:
            elsewhere = await other.get("/admin/api/blacklist", headers=ALICE)
        audit = await service.fetch(
            "SELECT action, remote_addr, details FROM audit_log"
            " WHERE action IN ('admin.auth_failed', 'auth.throttled') ORDER BY id"
        )
    assert [g.status_code for g in guesses] == [401, 401, 401]
    for response in throttled:
        assert response.status_code == 429
        assert 0 < int(response.headers["retry-after"]) <= config.auth_failure_window_seconds
    assert elsewhere.status_code == 200
    assert [(row["action"], row["remote_addr"]) for row in audit] == [
        ("admin.auth_failed", "127.0.0.1"),
        ("auth.throttled", "127.0.0.1"),
    ]
    assert audit[1]["details"]["credential"] == "admin_token"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"admin_token": "admin-secret"}, "ADMIN_TOKEN"),
        ({"admin_tokens": f"alice:{ALICE_TOKEN},bob:bob-short"}, "ADMIN_TOKENS entry 'bob'"),
        ({"stream_api_token": "web-chat-token"}, "WA_AGENT_STREAM_API_TOKEN"),
    ],
)
def test_a_short_token_stops_the_app_from_being_built(
    db_url: str, setting: dict[str, str], named: str
) -> None:
    with pytest.raises(WeakToken, match=f"{named}: shorter than {MIN_TOKEN_CHARS} characters"):
        create_app(service_settings(db_url, **setting), run_worker_here=False)


def test_wa_agent_serve_refuses_to_start_with_a_short_admin_token(tmp_path: Path) -> None:
    """The real command, in a folder without a .env: exit code 2 and the reason, at
    once, without opening a port or a database."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_TOKEN", "WA_AGENT"))},
        "ADMIN_TOKEN": "short-token",
        "PYTHONPATH": str(REPO),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--no-worker"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "refusing to start: ADMIN_TOKEN: shorter than 24 characters" in completed.stderr


async def test_the_api_schema_is_for_admins_only(db_url: str, graph_api: FakeGraphAPI) -> None:
    config = service_settings(
        db_url, whatsapp_api_base_url=graph_api.base_url, admin_tokens=f"alice:{ALICE_TOKEN}"
    )
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            public = [await client.get(path) for path in ("/openapi.json", "/docs", "/redoc")]
            anonymous = await client.get("/admin/api/openapi.json")
            admin = await client.get("/admin/api/openapi.json", headers=ALICE)
    assert [answer.status_code for answer in public] == [404, 404, 404]
    assert anonymous.status_code == 401
    assert admin.status_code == 200
    assert "/admin/api/blacklist" in admin.json()["paths"]
