"""Who the client is, and how long a dashboard session lives: the server as `wa-agent
serve` configures uvicorn believes no X-Forwarded-For unless told which proxy sends it,
so one header no longer moves a guesser to a fresh lockout window; the session cookie
is Secure, and logging out ends the session on the server, copies of the cookie too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from graph.settings import Settings
from server.app import create_app
from server.http.dashboard.session import COOKIE
from server.http.serving import uvicorn_config
from tests.fakes.graph_api import FakeGraphAPI
from tests.support import service_settings

TOKEN = "proxy-test-admin-token-0123456789"


def settings_with(db_url: str, graph_api: FakeGraphAPI, **overrides: Any) -> Settings:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        admin_token=TOKEN,
        auth_failure_limit=3,
        **overrides,
    )


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[str, FastAPI]]:
    """The app under uvicorn exactly as `serve_http` configures it, on a free port."""
    app = create_app(settings, run_worker_here=False)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=0, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


async def audit_rows(app: FastAPI, *actions: str) -> list[dict[str, Any]]:
    async with app.state.services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, remote_addr FROM audit_log WHERE action = ANY(%s) ORDER BY id",
            (list(actions),),
        )
        return [dict(row) for row in await cur.fetchall()]


async def guess_logins(base_url: str, count: int) -> list[int]:
    """`count` wrong logins, each claiming another address in X-Forwarded-For."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        return [
            (
                await client.post(
                    "/admin/login",
                    data={"token": f"guess-{n}"},
                    headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
                )
            ).status_code
            for n in range(count)
        ]


async def test_a_forwarded_header_does_not_dodge_the_lockout(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    async with served(settings_with(db_url, graph_api)) as (base_url, app):
        statuses = await guess_logins(base_url, 5)
        audit = await audit_rows(app, "admin.auth_failed", "admin.login_locked_out")
    assert statuses == [401, 401, 401, 429, 429]
    assert {row["remote_addr"] for row in audit} == {"127.0.0.1"}


async def test_a_named_proxy_is_believed_about_its_clients(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """Behind a reverse proxy (here: 127.0.0.1, named in WA_AGENT_FORWARDED_ALLOW_IPS)
    each client has its own window and the audit log says who it was."""
    settings = settings_with(db_url, graph_api, forwarded_allow_ips="127.0.0.1")
    async with served(settings) as (base_url, app):
        statuses = await guess_logins(base_url, 5)
        audit = await audit_rows(app, "admin.auth_failed")
    assert statuses == [401] * 5
    assert audit[0]["remote_addr"] == "203.0.113.1"


async def log_in(client: httpx.AsyncClient) -> str:
    """Log in; the session cookie's value (sent back by hand: httpx keeps a Secure
    cookie for https, and these tests speak plain http)."""
    answer = await client.post("/admin/login", data={"token": TOKEN})
    assert answer.status_code == 303
    return answer.cookies[COOKIE]


async def test_the_session_cookie_is_secure_unless_development_says_otherwise(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    cookies = []
    for insecure in (False, True):
        settings = settings_with(db_url, graph_api, dashboard_insecure_cookie=insecure)
        async with served(settings) as (base_url, _):
            async with httpx.AsyncClient(base_url=base_url) as client:
                answer = await client.post("/admin/login", data={"token": TOKEN})
                cookies.append(answer.headers["set-cookie"])
    assert "; secure" in cookies[0].lower()
    assert "; secure" not in cookies[1].lower()


async def test_logging_out_ends_the_session_for_every_copy_of_the_cookie(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    async with served(settings_with(db_url, graph_api)) as (base_url, app):
        async with httpx.AsyncClient(base_url=base_url) as browser:
            captured = await log_in(browser)
            session = {"Cookie": f"{COOKIE}={captured}"}
            before = await browser.get("/admin", headers=session)
            logged_out = await browser.post("/admin/logout", headers=session)
        async with httpx.AsyncClient(base_url=base_url) as thief:
            page = await thief.get("/admin", headers=session)
            api = await thief.get("/admin/api/blacklist", headers=session)
        audit = await audit_rows(app, "admin.login", "admin.logout")
    assert before.status_code == 200
    assert logged_out.status_code == 303
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    assert api.status_code == 401
    assert [row["action"] for row in audit] == ["admin.login", "admin.logout"]
