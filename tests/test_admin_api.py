"""The admin API as an operator and an attacker meet it: tokens with names, the
blacklist with typed numbers, strict bodies, the audit trail, headers and no CORS."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service, service_settings
from tests.support_abuse import (
    abuse_settings,
    graph_runs_for,
    kinds,
    send_and_settle,
)

ALICE = {"Authorization": "Bearer alice-token-0123456789"}
BOB = {"Authorization": "Bearer bob-token-9876543210"}
TOKENS = {"admin_tokens": "alice:alice-token-0123456789,bob:bob-token-9876543210"}


async def test_every_route_needs_a_named_token(db_url: str, graph_api: FakeGraphAPI) -> None:
    config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url, **TOKENS)
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            missing = await client.get("/admin/api/blacklist")
            wrong = await client.get(
                "/admin/api/blacklist", headers={"Authorization": "Bearer alice-token-01234567"}
            )
            basic = await client.get(
                "/admin/api/audit", headers={"Authorization": "Basic YWxpY2U6eA=="}
            )
            alice = await client.get("/admin/api/blacklist", headers=ALICE)
            audit = (await client.get("/admin/api/audit", headers=BOB)).json()
    assert (missing.status_code, wrong.status_code, basic.status_code) == (401, 401, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert alice.status_code == 200 and alice.json() == []
    refusals = [row for row in audit if row["action"] == "admin.auth_failed"]
    assert len(refusals) == 1  # three refusals from one address fold into one row
    assert refusals[0]["remote_addr"] == "127.0.0.1" and refusals[0]["actor"] == "anonymous"


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
        db_url, graph_api, openai_server, admin_token="root-token-0123", **TOKENS
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
