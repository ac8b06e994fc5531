"""The admin API as an operator and an attacker meet it: tokens with names, the
blacklist with typed numbers, strict bodies, the audit trail, headers and no CORS."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from hypothesis import given, settings
from hypothesis import strategies as st

from server.app import create_app
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service, service_settings
from tests.support_abuse import (
    abuse_settings,
    graph_runs_for,
    kinds,
    send_and_settle,
)

ALICE = {"Authorization": "Bearer alice-token-0123456789abcdef"}
BOB = {"Authorization": "Bearer bob-token-9876543210fedcba98"}
TOKENS = {"admin_tokens": "alice:alice-token-0123456789abcdef,bob:bob-token-9876543210fedcba98"}
DASHBOARD = {"X-WA-Agent-Dashboard": "1"}


# Routes under /admin that must stay open: how one logs in, and what the page loads.
OPEN_ROUTES = {
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("POST", "/admin/logout"),
    ("GET", "/admin/assets/{name}"),
}
FORGED_SESSION = f"alice:{uuid.uuid4()}:99999999999:" + "0" * 64


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the real app serves under /admin and /v1/."""
    served: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if path == "/admin" or path.startswith(("/admin/", "/v1/")):
            assert route.methods, f"{path}: not a plain HTTP route (a mount?): check it by hand"
            served |= {(method, path) for method in route.methods}
    return served


def refused(response: httpx.Response) -> bool:
    """401/403, 404 for a conversation that is not a web one (the stream's answer to
    every token), or — for the dashboard's pages — the redirect to the login page."""
    if response.status_code in (401, 403):
        return True
    if response.status_code == 404 and response.url.path.endswith("/stream"):
        return True
    return response.status_code == 303 and response.headers.get("location") == "/admin/login"


async def test_every_route_needs_a_named_token(db_url: str, graph_api: FakeGraphAPI) -> None:
    """Each route of the real app, every method, without a token, with a wrong one and
    with a forged dashboard session: a route added without the token check fails here."""
    config = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        auth_failure_limit=10_000,  # the walk guesses hundreds of times from one address
        **TOKENS,
    )
    served = served_routes(create_app(config, run_worker_here=False))
    assert OPEN_ROUTES <= served  # the exemptions name routes that exist
    routes = sorted(served - OPEN_ROUTES)
    assert len(routes) >= 30, routes  # the enumeration found the app's routes (36 today)
    assert {
        ("PATCH", "/admin/api/agents/{name}"),
        ("GET", "/admin"),
        ("POST", "/v1/conversations/{conversation_id}/stream"),
    } <= set(routes)
    credentials = {
        "none": {},
        "wrong token": {"Authorization": "Bearer alice-token-0123456789abcdeX"},
        "basic": {"Authorization": "Basic YWxpY2U6eA=="},
        "forged session": {"Cookie": f"wa_agent_admin={FORGED_SESSION}", **DASHBOARD},
    }
    let_through: list[str] = []
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            for method, path in routes:
                url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
                for label, headers in credentials.items():
                    response = await client.request(method, url, headers=headers)
                    if not refused(response):
                        let_through.append(f"{method} {path} ({label}): {response.status_code}")
            missing = await client.get("/admin/api/blacklist")
            login_page = await client.get("/admin/login")
            script = await client.get("/admin/assets/dashboard.js")
            alice = await client.get("/admin/api/blacklist", headers=ALICE)
            audit = (await client.get("/admin/api/audit", headers=BOB)).json()
    assert let_through == []
    assert missing.headers["www-authenticate"] == "Bearer"
    assert login_page.status_code == 200 and script.status_code == 200  # open, as they must be
    assert alice.status_code == 200 and alice.json() == []
    refusals = [row for row in audit if row["action"] == "admin.auth_failed"]
    assert len(refusals) == 1  # a hundred refusals from one address fold into one row
    assert refusals[0]["remote_addr"] == "127.0.0.1" and refusals[0]["actor"] == "anonymous"


async def test_standing_with_redis_down_gives_what_postgres_knows(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """The limiter unreachable: the blacklist entry (Postgres) is still shown, the live
    penalty is marked unknown, and nobody is told "nothing against them" (no 404)."""
    config = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        redis_timeout_ms=200,
        **TOKENS,
    )
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url, headers=ALICE) as client:
            block = {"wa_id": "+250 788 123 456", "reason": "abusive language"}
            assert (await client.post("/admin/api/blacklist", json=block)).status_code == 201
            blocked = await client.get("/admin/api/blacklist/250788123456")
            unknown = await client.get("/admin/api/blacklist/250788654321")
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["blacklisted"]["reason"] == "abusive language"
    assert blocked.json()["penalty"] == "unknown" and blocked.json()["limiter"] == "unavailable"
    assert unknown.status_code == 200, unknown.text
    assert unknown.json() == {
        "wa_id": "250788654321",
        "blacklisted": None,
        "penalty": "unknown",
        "limiter": "unavailable",
    }


def closed_port() -> int:
    """A port nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_without_any_token_the_admin_api_is_off(db_url: str, graph_api: FakeGraphAPI) -> None:
    config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            response = await client.get("/admin/api/blacklist", headers=ALICE)
    assert response.status_code == 503


async def test_block_and_unblock_a_typed_number(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Alice blocks "+250 788 123 456": the customer's messages are kept but get no
    answer and reach no model; Bob unblocks; both are in the audit log by name."""
    customer = "250788123456"
    config = abuse_settings(
        db_url, graph_api, openai_server, admin_token="root-token-0123456789abcdef", **TOKENS
    )
    async with running_service(config) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            blocked = await client.post(
                "/admin/api/blacklist",
                json={"wa_id": "+250 788 123 456", "reason": "abusive language"},
                headers=ALICE,
            )
            standing = await client.get("/admin/api/blacklist/+250788123456", headers=ALICE)
            await send_and_settle(service, customer, "are you there?")
            await send_and_settle(service, customer, "hello??")
            unblocked = await client.delete("/admin/api/blacklist/250788123456", headers=BOB)
            again = await client.delete("/admin/api/blacklist/250788123456", headers=BOB)
            await send_and_settle(service, customer, "sorry")
            audit = (await client.get("/admin/api/audit?target=250788123456", headers=BOB)).json()
        refused = await service.fetch("SELECT id FROM conversation_runs WHERE gate = 'blacklisted'")
        refused_graph_runs = await graph_runs_for(service, [row["id"] for row in refused])
        stored = await service.fetch("SELECT gate FROM inbound_messages ORDER BY id")
    assert blocked.status_code == 201
    assert blocked.json()["wa_id"] == customer and blocked.json()["created_by"] == "alice"
    assert standing.json()["blacklisted"]["reason"] == "abusive language"
    assert (unblocked.status_code, again.status_code) == (204, 404)
    assert kinds(graph_api, customer) == ["reply"]  # silence while blocked, then answered
    assert [row["gate"] for row in stored] == ["blacklisted", "blacklisted", None]
    assert len(refused) == 2 and refused_graph_runs == 0
    actions = [(row["actor"], row["action"]) for row in reversed(audit)]
    assert actions == [("alice", "blacklist.add"), ("bob", "blacklist.remove")]


async def test_bad_admin_input_is_refused_and_changes_nothing(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url, **TOKENS)
    bodies: list[dict[str, Any]] = [
        {"wa_id": "+250788123456", "reason": "spam", "role": "superuser"},  # unknown field
        {"wa_id": "+1 555 0100", "reason": "spam"},  # not a valid number
        {"wa_id": "'; DROP TABLE blacklist; --", "reason": "spam"},
        {"wa_id": "+250788123456", "reason": ""},
        {"wa_id": "+250788123456", "reason": "spam", "expires_in_seconds": 5},
        {"reason": "spam"},
    ]
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            codes = [
                (await client.post("/admin/api/blacklist", json=body, headers=ALICE)).status_code
                for body in bodies
            ]
            not_json = await client.post(
                "/admin/api/blacklist",
                content=b"{nope",
                headers={**ALICE, "content-type": "application/json"},
            )
            listed = (await client.get("/admin/api/blacklist", headers=ALICE)).json()
        changes = await service.fetch(
            "SELECT count(*) AS n FROM audit_log WHERE action LIKE 'blacklist.%%'"
        )
    assert codes == [422] * len(bodies)
    assert not_json.status_code == 422
    assert listed == [] and changes[0]["n"] == 0


async def test_security_headers_and_no_cors(db_url: str, graph_api: FakeGraphAPI) -> None:
    config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url, **TOKENS)
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            admin = await client.get("/admin/api/blacklist", headers=ALICE)
            health = await client.get("/healthz")
            preflight = await client.options(
                "/admin/api/blacklist",
                headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "DELETE",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            cross_site = await client.get(
                "/admin/api/blacklist", headers={**ALICE, "Origin": "https://evil.example"}
            )
    assert admin.headers["x-frame-options"] == "DENY"
    assert admin.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in admin.headers["content-security-policy"]
    assert admin.headers["cache-control"] == "no-store"
    assert health.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in health.headers
    for response in (preflight, cross_site):
        assert not any(name.startswith("access-control-") for name in response.headers)
    assert preflight.status_code == 405


async def test_fuzzed_admin_bodies_never_500_and_refusals_change_nothing(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**12), max_value=10**12),
        st.text(max_size=40),
        st.sampled_from(["+250 788 123 456", "250788123456", "US.13491208655302741918", "x"]),
    )
    numbers = st.sampled_from(["+250 788 123 456", "250788123457", "US.13491208655302741918"])
    nearly_valid = st.fixed_dictionaries(
        {
            "wa_id": st.one_of(numbers, numbers, numbers, values),
            "reason": st.one_of(st.sampled_from(["spam", "abusive"]), st.text(max_size=30)),
        },
        optional={"expires_in_seconds": st.integers(-10, 10**9) | values, "source": values},
    )
    anything = st.dictionaries(
        st.sampled_from(["wa_id", "reason", "expires_in_seconds", "source", "created_by"]),
        values,
        max_size=5,
    )
    bodies = nearly_valid | anything
    config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url, **TOKENS)
    statuses: list[int] = []
    async with running_service(config, with_worker=False) as service:
        url = service.base_url + "/admin/api/blacklist"

        @settings(max_examples=100, derandomize=True, deadline=None, database=None)
        @given(body=bodies)
        def post_one(body: dict[str, Any]) -> None:
            with psycopg.connect(db_url) as conn:
                before = conn.execute("SELECT count(*) FROM audit_log").fetchone()
                response = httpx.post(url, json=body, headers=ALICE, timeout=10)
                after = conn.execute("SELECT count(*) FROM audit_log").fetchone()
            statuses.append(response.status_code)
            assert response.status_code in (201, 422), response.text
            if response.status_code == 422:
                assert after == before
            else:
                assert set(body) <= {"wa_id", "reason", "expires_in_seconds"}
                assert response.json()["created_by"] == "alice"

        await asyncio.to_thread(post_one)
    assert statuses.count(201) >= 3 and statuses.count(422) >= 50  # both paths were taken
