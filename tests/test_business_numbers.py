"""Several business numbers in one deployment, as Meta and the customers meet them: each
customer answered from the number they wrote to, with that number's token; a delivery
only trusted for the numbers whose app signed it; a number nobody configured refused,
and answered once an operator adds it (the CLI, a separate process, writes the row the
running service reads)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph.settings import Settings
from server.whatsapp.secret_refs import SecretRefError, resolve_ref
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message, unknown_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    REPO,
    RunningService,
    eventually,
    query,
    running_service,
    service_env,
    service_settings,
)
from tests.test_agent_flows import thread_state

ADMIN = {"Authorization": "Bearer alice-token-0123456789abcdef"}
SUPPORT = "109876543210"  # the support line, beside the sales line of the environment
SUPPORT_TOKEN, SUPPORT_SECRET = "support-line-token", "support-line-app-secret"
REFS = {
    "access_token_ref": "env:WA_TEST_SUPPORT_TOKEN",
    "app_secret_ref": "env:WA_TEST_SUPPORT_SECRET",
}


@pytest.fixture
def support_line(monkeypatch: pytest.MonkeyPatch, graph_api: FakeGraphAPI) -> None:
    """The support line's secrets where its references point, and Meta knowing its token."""
    monkeypatch.setenv("WA_TEST_SUPPORT_TOKEN", SUPPORT_TOKEN)
    monkeypatch.setenv("WA_TEST_SUPPORT_SECRET", SUPPORT_SECRET)
    graph_api.number_tokens[SUPPORT] = SUPPORT_TOKEN


def _settings(db_url: str, graph_api: FakeGraphAPI, **overrides: Any) -> Settings:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        admin_tokens="alice:alice-token-0123456789abcdef",
        **overrides,
    )


def _customer() -> str:
    return "2507" + str(uuid.uuid4().int)[:8]


async def _add_support_line(service: RunningService, **fields: Any) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as admin:
        response = await admin.put(
            f"/admin/api/numbers/{SUPPORT}", json={**REFS, **fields}, headers=ADMIN
        )
    assert response.status_code == 200, response.text
    assert response.json()["secret_problems"] == []


async def _stored(service: RunningService) -> list[dict[str, Any]]:
    return await service.fetch(
        "SELECT i.wa_id, c.phone_number_id FROM inbound_messages i"
        " JOIN agent_conversations c ON c.id = i.conversation_id ORDER BY i.id"
    )


@pytest.mark.usefixtures("support_line")
async def test_each_customer_is_answered_from_the_number_they_wrote_to(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    buyer, caller = _customer(), _customer()
    async with running_service(_settings(db_url, graph_api)) as service:
        await _add_support_line(service, display_number="+250 788 000 111")
        sales = await service.post_webhook(envelope(text_message(buyer, "hello")))
        support = await service.post_webhook(
            envelope(text_message(caller, "hello", phone_number_id=SUPPORT)),
            secret=SUPPORT_SECRET,
        )
        assert (sales.status_code, support.status_code) == (200, 200), support.text
        await graph_api.wait_for_async(
            lambda: bool(graph_api.sent_to(buyer) and graph_api.sent_to(caller)), 15
        )
    [to_buyer], [to_caller] = graph_api.sent_to(buyer), graph_api.sent_to(caller)
    assert to_buyer["phone_number_id"] == PHONE_NUMBER_ID
    assert to_caller["phone_number_id"] == SUPPORT  # and the fake took the line's own token
    receipts = {receipt["phone_number_id"] for receipt in graph_api.read_receipts}
    assert receipts == {PHONE_NUMBER_ID, SUPPORT}


@pytest.mark.usefixtures("support_line")
async def test_a_delivery_signed_by_another_numbers_app_is_refused_and_stores_nothing(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    async with running_service(_settings(db_url, graph_api)) as service:
        await _add_support_line(service)
        # The sales line's app secret, claiming a message to the support line.
        forged = envelope(text_message(_customer(), "refund me", phone_number_id=SUPPORT))
        response = await service.post_webhook(forged, secret=APP_SECRET)
        stored = await _stored(service)
        contacts = await service.fetch("SELECT wa_id FROM contacts")
    assert response.status_code == 403
    assert "another app" in response.json()["refused"][SUPPORT]
    assert (stored, contacts, graph_api.sent) == ([], [], [])


@pytest.mark.usefixtures("support_line")
async def test_an_unknown_number_is_refused_then_answered_once_an_operator_adds_it(
    db_url: str, graph_api: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both lines under one Meta app (one secret signs both), as an agency's shops are.
    monkeypatch.setenv("WA_TEST_SHARED_APP_SECRET", APP_SECRET)
    settings = _settings(db_url, graph_api)
    known, stranger = _customer(), _customer()
    # One delivery for the sales line and for a line nobody configured yet.
    body = envelope(
        text_message(known, "hello"),
        text_message(stranger, "hello", phone_number_id=SUPPORT),
    )
    async with running_service(settings) as service:
        refused = await service.post_webhook(body, secret=SUPPORT_SECRET)
        first = await service.post_webhook(body)
        assert refused.status_code == 403  # the support line's app signs for no known number
        assert first.status_code == 403, first.text
        assert "unknown number" in first.json()["refused"][SUPPORT]
        assert await _stored(service) == [{"wa_id": known, "phone_number_id": PHONE_NUMBER_ID}]
        added = _wa_agent(
            settings,
            "numbers",
            "add",
            SUPPORT,
            "--token-ref",
            REFS["access_token_ref"],
            "--secret-ref",
            "env:WA_TEST_SHARED_APP_SECRET",
        )
        assert added.returncode == 0, added.stderr
        again = await service.post_webhook(body)  # Meta's redelivery
        assert again.status_code == 200, again.text
        assert (again.json()["stored"], again.json()["duplicates"]) == (1, 1)
        await graph_api.wait_for_async(lambda: bool(graph_api.sent_to(stranger)), 15)
        await eventually(lambda: _all_answered(service), what="every message answered")
    assert [m["phone_number_id"] for m in graph_api.sent_to(known)] == [PHONE_NUMBER_ID]
    assert [m["phone_number_id"] for m in graph_api.sent_to(stranger)] == [SUPPORT]
    audit = await query(
        db_url, "SELECT action, target, details FROM audit_log WHERE action LIKE 'number.%%'"
    )
    assert [(row["action"], row["target"]) for row in audit] == [("number.add", SUPPORT)]
    assert SUPPORT_TOKEN not in str(audit)


@pytest.mark.usefixtures("support_line")
async def test_a_numbers_own_language_greets_its_newcomers(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    customer = _customer()
    async with running_service(_settings(db_url, graph_api)) as service:
        await _add_support_line(service, default_language="fr")
        # No words to tell their language: the number's language is the one spoken.
        message = unknown_message(customer, phone_number_id=SUPPORT)
        response = await service.post_webhook(envelope(message), secret=SUPPORT_SECRET)
        assert response.status_code == 200, response.text
        await graph_api.wait_for_async(lambda: bool(graph_api.texts_to(customer)), 15)
    assert graph_api.texts_to(customer)[0].startswith("Désolé, je ne peux pas encore lire")


async def test_a_secret_typed_where_its_reference_belongs_is_refused_and_nothing_stored(
    db_url: str,
) -> None:
    settings = service_settings(db_url)
    pasted = _wa_agent(
        settings,
        "numbers",
        "add",
        SUPPORT,
        "--token-ref",
        "EAAGm0PX4ZCpsBAKZA",
        "--secret-ref",
        "env:WA_TEST_SUPPORT_SECRET",
    )
    listed = _wa_agent(settings, "numbers", "list")
    assert pasted.returncode == 2
    assert "by reference" in pasted.stderr and "EAAGm0PX4ZCpsBAKZA" not in pasted.stderr
    assert SUPPORT not in listed.stdout
    assert await query(db_url, "SELECT * FROM business_numbers") == []


def test_a_reference_reads_the_environment_or_a_file_and_never_shows_the_secret(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("file-held-token\n")
    assert resolve_ref(f"file:{secret_file}") == "file-held-token"
    assert resolve_ref("env:LINE_TOKEN", {"LINE_TOKEN": " env-held-token "}) == "env-held-token"
    for ref, environ in (("env:LINE_TOKEN", {"LINE_TOKEN": ""}), (f"file:{tmp_path}/none", {})):
        with pytest.raises(SecretRefError) as refused:
            resolve_ref(ref, environ)
        assert ref in str(refused.value)
    with pytest.raises(SecretRefError) as pasted:
        resolve_ref("EAAGm0PX4ZCpsBAKZA")
    assert "EAAGm0PX4ZCpsBAKZA" not in str(pasted.value)


def _wa_agent(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=service_env(settings),
        timeout=120,
    )


async def _all_answered(service: RunningService) -> bool:
    rows = await service.fetch(
        "SELECT count(*) AS n FROM inbound_messages WHERE processed_at IS NULL"
    )
    return rows[0]["n"] == 0


@pytest.mark.usefixtures("support_line")
async def test_a_line_that_differs_has_its_own_flags_and_agents(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = _settings(
        db_url,
        graph_api,
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
        router_llm=False,
        memory_enabled=False,
    )
    buyer, caller, booker = _customer(), _customer(), _customer()
    async with running_service(settings) as service:
        # The support line answers with the rule-based menu only: no model for it.
        await _add_support_line(service, flags={"ai_agent": False})
        openai_server.script("A city helmet costs 15,000 RWF.")
        await _say(service, text_message(buyer, "How much is a helmet?"))
        await _say(service, text_message(caller, "How much is a helmet?", phone_number_id=SUPPORT))
        model_calls = len(openai_server.requests)
        # Then only customer service answers there: nobody books on the support line.
        await _add_support_line(service, agents=["customer_service"])
        openai_server.script("Let me see how I can help.")
        booking = text_message(
            booker, "I want to book a bike for Saturday", phone_number_id=SUPPORT
        )
        await _say(service, booking)
        state = await thread_state(service, booker)
    assert graph_api.texts_to(buyer) == ["A city helmet costs 15,000 RWF."]
    # The rule-based menu's buttons, not the model's words.
    assert [message["type"] for message in graph_api.sent_to(caller)] == ["interactive"]
    assert model_calls == 1
    assert state["route"]["intent"] in ("customer_service", "human")
    assert state["active_agent"] != "booking"


async def _say(service: RunningService, value: dict[str, Any]) -> None:
    """One message, signed by its number's app, answered before the next."""
    number = value["metadata"]["phone_number_id"]
    secret = SUPPORT_SECRET if number == SUPPORT else APP_SECRET
    before = await _runs_done(service)
    assert (await service.post_webhook(envelope(value), secret=secret)).status_code == 200

    async def answered() -> bool:
        return await _runs_done(service) > before

    await eventually(answered, within=20, what="the turn to finish")


async def _runs_done(service: RunningService) -> int:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    return int(rows[0]["n"])
