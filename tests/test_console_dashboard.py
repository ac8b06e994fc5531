"""The dashboard's login and pages over HTTP: the session cookie's protections, the CSP,
Chart.js served from node_modules, and the admin API usable with the session."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from server.http.dashboard.session import (
    COOKIE,
    LOGIN_FAILURE_LIMIT,
    LOGIN_FAILURE_WINDOW_SECONDS,
    FailedLogins,
)
from tests.fakes.graph_api import FakeGraphAPI
from tests.support import RunningService, running_service, service_settings

TOKENS = "alice:alice-token-0123456789abcdef0123,bob:bob-token-0123456789abcdef01234"
DASHBOARD = {"X-WA-Agent-Dashboard": "1"}


def settings(db_url: str, graph_api: FakeGraphAPI) -> Any:
    return service_settings(db_url, whatsapp_api_base_url=graph_api.base_url, admin_tokens=TOKENS)


async def log_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """The login form, and its session cookie kept for the next requests. The cookie is
    Secure, which httpx honours by sending it over https only: these tests speak plain
    http to 127.0.0.1, so the value is copied into a cookie of their own."""
    answer = await client.post("/admin/login", data={"token": token})
    if COOKIE in answer.cookies:
        client.cookies.set(COOKIE, answer.cookies[COOKIE], path="/admin")
    return answer


async def seed_conversation(service: RunningService, wa_id: str, said: str) -> str:
    await service.execute("INSERT INTO contacts (wa_id, profile_name) VALUES (%s, 'Eve')", wa_id)
    rows = await service.fetch(
        "INSERT INTO agent_conversations (phone_number_id, wa_id) VALUES ('PNID', %s) RETURNING id",
        wa_id,
    )
    await service.execute(
        "INSERT INTO agent_messages (conversation_id, role, content) VALUES (%s, 'customer', %s)",
        rows[0]["id"],
        said,
    )
    return str(rows[0]["id"])


async def test_login_sets_a_strict_http_only_session_and_pages_need_it(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    async with running_service(settings(db_url, graph_api), with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            assert (await client.get("/admin")).headers["location"] == "/admin/login"
            refused = await client.post("/admin/login", data={"token": "guess"})
            assert refused.status_code == 401 and "not valid" in refused.text
            assert "set-cookie" not in refused.headers

            answer = await log_in(client, "bob-token-0123456789abcdef01234")
            assert answer.status_code == 303
            cookie = answer.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
            assert "Secure" in cookie
            assert "bob-token" not in cookie  # a signature, never the token

            page = await client.get("/admin")
            assert page.status_code == 200
            assert "<canvas" in page.text and 'id="overview-data"' in page.text
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'self'" in csp
            # No inline script: every <script> has a src, or is a JSON data block.
            for tag in re.findall(r"<script[^>]*>", page.text):
                assert "src=" in tag or 'type="application/json"' in tag, tag
            for path in (
                "/admin/conversations",
                "/admin/inbox",
                "/admin/agents",
                "/admin/blacklist",
            ):
                assert (await client.get(path)).status_code == 200, path

            chart = await client.get("/admin/assets/chart.js")
            assert chart.status_code == 200 and "javascript" in chart.headers["content-type"]
            assert "Chart" in chart.text[:5000]

            await client.post("/admin/logout")
            assert (await client.get("/admin")).status_code == 303

        async with httpx.AsyncClient(base_url=service.base_url) as forger:
            forged = f"bob:{uuid.uuid4()}:99999999999:" + "0" * 64
            forger.cookies.set("wa_agent_admin", forged, path="/admin")
            assert (await forger.get("/admin")).status_code == 303
        audit = await service.fetch(
            "SELECT actor, action, target, remote_addr FROM audit_log"
            " WHERE action IN ('admin.auth_failed', 'admin.login') ORDER BY id"
        )
    assert audit == [  # the refused login, then bob's, by name and address
        {
            "actor": "anonymous",
            "action": "admin.auth_failed",
            "target": "/admin/login",
            "remote_addr": "127.0.0.1",
        },
        {
            "actor": "bob",
            "action": "admin.login",
            "target": "dashboard",
            "remote_addr": "127.0.0.1",
        },
    ]


async def test_the_session_acts_through_the_admin_api_with_the_dashboard_header(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    async with running_service(settings(db_url, graph_api), with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            await log_in(client, "alice-token-0123456789abcdef0123")
            assert (await client.get("/admin/api/console/overview")).status_code == 200
            block = {"wa_id": "+250 788 123 456", "reason": "spam"}
            # Without the dashboard's header, a cookie alone changes nothing.
            assert (await client.post("/admin/api/blacklist", json=block)).status_code == 401
            assert await service.fetch("SELECT wa_id FROM blacklist") == []
            made = await client.post("/admin/api/blacklist", json=block, headers=DASHBOARD)
            assert made.status_code == 201
            page = await client.get("/admin/blacklist")
            assert "********3456" in page.text and "250788123456" not in page.text

            # What customers write is shown as text, never run as markup.
            hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>"
            conversation = await seed_conversation(service, "250788654321", hostile)
            page = await client.get(f"/admin/conversations/{conversation}")
            assert hostile not in page.text and "&lt;script&gt;alert(" in page.text
            assert "********4321" in page.text

            flag = {"enabled": True, "rollout_percent": 30}
            changed = await client.put("/admin/api/flags/ai_agent", json=flag, headers=DASHBOARD)
            assert changed.status_code == 200
        audit = await service.fetch(
            "SELECT actor, action FROM audit_log WHERE action IN ('blacklist.add', 'flag.update')"
            " ORDER BY id"
        )
        assert [(a["actor"], a["action"]) for a in audit] == [
            ("alice", "blacklist.add"),
            ("alice", "flag.update"),
        ]


async def test_failed_logins_lock_the_address_out_and_only_that_address(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """Ten wrong tokens from one address, then 429 with Retry-After for everything it
    tries — the right token too — while another address logs in; the lockout is audited
    once however often it is hit."""
    bob = "bob-token-0123456789abcdef01234"
    async with running_service(settings(db_url, graph_api), with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as guesser:
            guesses = [
                (await guesser.post("/admin/login", data={"token": f"guess-{n}"})).status_code
                for n in range(LOGIN_FAILURE_LIMIT)
            ]
            locked = [await guesser.post("/admin/login", data={"token": "guess"}) for _ in range(3)]
            right_token = await guesser.post("/admin/login", data={"token": bob})
        neighbour = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=service.base_url, transport=neighbour) as other:
            elsewhere = await other.post("/admin/login", data={"token": bob})
        audit = await service.fetch(
            "SELECT actor, action, remote_addr, details FROM audit_log"
            " WHERE action IN ('admin.login_locked_out', 'admin.login') ORDER BY id"
        )
    assert guesses == [401] * LOGIN_FAILURE_LIMIT
    for response in [*locked, right_token]:
        assert response.status_code == 429 and "Too many failed logins" in response.text
        assert 0 < int(response.headers["retry-after"]) <= LOGIN_FAILURE_WINDOW_SECONDS
        assert "set-cookie" not in response.headers
    assert elsewhere.status_code == 303 and "set-cookie" in elsewhere.headers
    assert [(a["actor"], a["action"], a["remote_addr"]) for a in audit] == [
        ("anonymous", "admin.login_locked_out", "127.0.0.1"),
        ("bob", "admin.login", "127.0.0.2"),
    ]


def test_a_lockout_ends_with_its_window_and_a_login_clears_the_count() -> None:
    now = [1000.0]
    failures = FailedLogins(limit=3, window_seconds=300, clock=lambda: now[0])
    for _ in range(3):
        assert failures.retry_after("10.0.0.1") is None
        failures.failed("10.0.0.1")
    now[0] += 100
    assert failures.retry_after("10.0.0.1") == 200  # the window opened at the first failure
    assert failures.retry_after("10.0.0.2") is None
    now[0] += 200
    assert failures.retry_after("10.0.0.1") is None  # a new window: three more tries
    failures.failed("10.0.0.1")
    failures.failed("10.0.0.1")
    failures.succeeded("10.0.0.1")
    failures.failed("10.0.0.1")
    failures.failed("10.0.0.1")
    assert failures.retry_after("10.0.0.1") is None  # the login cleared the earlier two
