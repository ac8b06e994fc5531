"""Real webhook bodies written by other people (tests/data/payloads, sources in SOURCES.md)
posted signed to the real service, each to a fresh database: every one is accepted, and
handled as a business expects.

- answered: the customer's words, taps, forms, media, places and orders get one reply
  (with no model configured, the rule-based menu's);
- polite: what nobody can read gets the "can't read this" answer, once;
- silent: reactions, edits, deletions and identity changes are stored, not answered;
- left out: a message with no usable sender or business number (placeholders in
  documentation samples) is not stored, and the delivery still gets its 200;
- nothing: statuses, template and account news and other Meta objects store no message.

The samples are years old, so the service runs with the freshness window off
(`webhook_max_age_days=0`); the window itself is tested in test_security_webhook.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graph.settings import Settings
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, eventually, running_service, service_settings

PAYLOADS = Path(__file__).parent / "data" / "payloads"
UNREADABLE = "can't read this kind of message"

ANSWERED, POLITE, SILENT, LEFT_OUT, NOTHING = "answered", "polite", "silent", "left out", "nothing"

# file → (outcome, kinds stored in arrival order)
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "pywa/message-text.json": (ANSWERED, ["text"]),
    "pywa/message-reply.json": (ANSWERED, ["text"]),
    "pywa/message-forwarded.json": (ANSWERED, ["text"]),
    "pywa/message-forwarded_many_times.json": (ANSWERED, ["text"]),
    "pywa/message-referral.json": (ANSWERED, ["text"]),
    "pywa/message-image.json": (ANSWERED, ["image"]),
    "pywa/message-media_with_url.json": (ANSWERED, ["image"]),
    "pywa/message-video.json": (ANSWERED, ["video"]),
    "pywa/message-document.json": (ANSWERED, ["document"]),
    "pywa/message-audio.json": (ANSWERED, ["audio"]),
    "pywa/message-voice.json": (ANSWERED, ["audio"]),
    "pywa/message-static_sticker.json": (ANSWERED, ["sticker"]),
    "pywa/message-animated_sticker.json": (ANSWERED, ["sticker"]),
    "pywa/message-current_location.json": (ANSWERED, ["location"]),
    "pywa/message-chosen_location.json": (ANSWERED, ["location"]),
    "pywa/message-contacts.json": (ANSWERED, ["contacts"]),
    "pywa/message-order.json": (ANSWERED, ["order"]),
    "pywa/callback_button-button.json": (ANSWERED, ["interactive"]),
    "pywa/callback_button-quick_reply.json": (ANSWERED, ["button"]),
    "pywa/callback_button-quick_reply_without_context.json": (ANSWERED, ["button"]),
    "pywa/callback_selection-callback.json": (ANSWERED, ["interactive"]),
    "pywa/callback_selection-description.json": (ANSWERED, ["interactive"]),
    "pywa/flow_completion-completion.json": (ANSWERED, ["flow_reply"]),
    "pywa/flow_completion-without_flow_token.json": (ANSWERED, ["flow_reply"]),
    "pywa/message-interactive_message_with_err.json": (POLITE, ["interactive"]),
    "pywa/message-unsupported.json": (POLITE, ["unsupported"]),
    "pywa/message-unsupported_with_type.json": (POLITE, ["unsupported"]),
    "pywa/message-reaction.json": (SILENT, ["reaction"]),
    "pywa/message-unreaction_empty.json": (SILENT, ["reaction"]),
    "pywa/message-unreaction_no_emoji.json": (SILENT, ["reaction"]),
    "pywa/edited_message-image.json": (SILENT, ["edit"]),
    "pywa/system-phone_number_change.json": (SILENT, ["system"]),
    "pywa/system-identity_change.json": (SILENT, ["system"]),
    "pywa/deleted_message-revoke.json": (LEFT_OUT, []),
    "pywa/message_status-sent.json": (NOTHING, []),
    "pywa/message_status-delivered.json": (NOTHING, []),
    "pywa/message_status-read.json": (NOTHING, []),
    "pywa/message_status-played.json": (NOTHING, []),
    "pywa/message_status-failed.json": (NOTHING, []),
    "pywa/message_status-with_tracker.json": (NOTHING, []),
    "pywa/message_status-group.json": (NOTHING, []),
    "pywa/template_status_update-approved.json": (NOTHING, []),
    "pywa/template_status_update-rejected.json": (NOTHING, []),
    "pywa/template_quality_update-yellow.json": (NOTHING, []),
    "pywa/template_category_update-marketing.json": (NOTHING, []),
    "pywa/account_update-account_violation.json": (NOTHING, []),
    "pywa/account_update-partner_added.json": (NOTHING, []),
    "pywa/user_marketing_preferences-resume.json": (NOTHING, []),
    "pywa/call_connect-user_initiated.json": (NOTHING, []),
    "whatsapp-cloud-api-rs/text.json": (ANSWERED, ["text"]),
    "whatsapp-cloud-api-rs/shared-contacts.json": (ANSWERED, ["contacts"]),
    "whatsapp-cloud-api-rs/request-welcome.json": (ANSWERED, ["request_welcome"]),
    "whatsapp-cloud-api-rs/unmodelled-type.json": (POLITE, ["some_future_type"]),
    "whatsapp-cloud-api-rs/removed-reaction.json": (SILENT, ["reaction"]),
    "whatsapp-cloud-api-rs/system-user-changed-number.json": (SILENT, ["system"]),
    "whatsapp-cloud-api-rs/status-without-optional-fields.json": (NOTHING, []),
    "whatsapp-cloud-api-rs/status-failed-re-engagement.json": (NOTHING, []),
    "kapso/mixed-order-sticker-flow.json": (ANSWERED, ["order", "sticker", "flow_reply"]),
    "kapso/every-field.json": (LEFT_OUT, []),
    "meta-docs/bsuid-username-text.json": (ANSWERED, ["text"]),
    "netflie/button-with-referral.json": (ANSWERED, ["button"]),
    "netflie/unknown.json": (LEFT_OUT, []),
    "netflie/status-integer-expiration.json": (NOTHING, []),
    "netflie/status-pricing.json": (NOTHING, []),
    "netflie/status-failed.json": (NOTHING, []),
    "restfb/issue-1239-unknown-type.json": (POLITE, ["unknown"]),
    "fbmessenger-api/wsTextMessageRequest.json": (NOTHING, []),
}


def test_every_stored_payload_has_an_expectation_and_a_source() -> None:
    files = {path.relative_to(PAYLOADS).as_posix() for path in PAYLOADS.rglob("*.json")}
    sources = (PAYLOADS / "SOURCES.md").read_text()
    assert files == set(EXPECTED)
    assert [name for name in sorted(files) if f"`{name}`" not in sources] == []


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_a_real_payload_is_accepted_and_handled_as_a_business_expects(
    name: str, db_url: str, graph_api: FakeGraphAPI
) -> None:
    outcome, kinds = EXPECTED[name]
    settings = _settings(db_url, graph_api, whatsapp_phone_number_id=_number_of(name))
    async with running_service(settings, with_worker=outcome in (ANSWERED, POLITE)) as service:
        response = await service.post_webhook(_payload(name))
        assert response.status_code == 200, response.text
        rows = await service.fetch(
            "SELECT wa_id, kind, supported, text FROM inbound_messages ORDER BY id"
        )
        assert [row["kind"] for row in rows] == kinds
        if outcome == ANSWERED:  # the agent has words to read for every one of them
            assert all(row["supported"] and row["text"] for row in rows), rows
        if outcome in (ANSWERED, POLITE):
            replies = await _the_one_reply(service, graph_api, rows[0]["wa_id"])
            assert (UNREADABLE in _words(replies[0])) is (outcome == POLITE)
        else:
            # Nothing will answer: no job was queued with the stored rows.
            assert await _count(service, "procrastinate_jobs") == 0
            assert graph_api.sent == []
        if outcome in (LEFT_OUT, NOTHING):
            assert await _count(service, "contacts") == 0


async def test_opening_the_chat_is_answered_with_the_menu_which_greets(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    name = "whatsapp-cloud-api-rs/request-welcome.json"
    settings = _settings(db_url, graph_api, whatsapp_phone_number_id=_number_of(name))
    async with running_service(settings) as service:
        await service.post_webhook(_payload(name))
        [menu] = await _the_one_reply(service, graph_api, "16505551234")
    assert menu["interactive"]["type"] == "list"
    assert menu["interactive"]["body"]["text"].startswith("Hello!")


async def test_a_customer_known_only_by_user_id_is_answered_through_recipient(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    bsuid = "US.13491208655302741918"
    name = "meta-docs/bsuid-username-text.json"
    settings = _settings(db_url, graph_api, whatsapp_phone_number_id=_number_of(name))
    async with running_service(settings) as service:
        await service.post_webhook(_payload(name))
        [reply] = await _the_one_reply(service, graph_api, bsuid)
        contact = await service.fetch("SELECT wa_id, user_id, profile_name FROM contacts")
    assert reply["recipient"] == bsuid  # the fake refuses a user id in `to`
    assert contact == [{"wa_id": bsuid, "user_id": bsuid, "profile_name": "Sheena Nelson"}]


async def test_a_completed_flow_reaches_the_agent_as_its_fields(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = _settings(
        db_url,
        graph_api,
        whatsapp_phone_number_id=_number_of("pywa/flow_completion-completion.json"),
        openai_api_key="sk-test",
        openai_base_url=openai_server.base_url + "/v1",
    )
    async with running_service(settings) as service:
        await service.post_webhook(_payload("pywa/flow_completion-completion.json"))
        [reply] = await _the_one_reply(service, graph_api, "972987654321")
    fields = (
        "[form reply]\ncomment_text: Comment Text\ndelivery_rating: 4\npurchase_rating: 2"
        "\nrecommend_radio: 0\ncs_rating: 0"
    )
    assert reply["text"]["body"].endswith(fields)  # the model echoes what it read
    assert "AQAAAAACS5FpgQ" not in json.dumps(openai_server.requests)  # the flow token


def _settings(db_url: str, graph_api: FakeGraphAPI, **overrides: Any) -> Settings:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        webhook_max_age_days=0,
        coalesce_window_ms=300,  # a delivery of several messages is one turn
        **overrides,
    )


def _number_of(name: str) -> str:
    """The business number the payload was written for: the service answers it (a
    delivery for a number it does not answer is refused, test_business_numbers.py)."""
    numbers = {
        change["value"]["metadata"]["phone_number_id"]
        for entry in _payload(name).get("entry") or []
        for change in entry.get("changes") or []
        if isinstance(change.get("value"), dict)
        and isinstance(change["value"].get("metadata"), dict)
        and isinstance(change["value"]["metadata"].get("phone_number_id"), str)
    }
    assert len(numbers) <= 1, numbers
    return numbers.pop() if numbers else "PNID"


def _payload(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return document


async def _the_one_reply(
    service: RunningService, graph_api: FakeGraphAPI, customer: str
) -> list[dict[str, Any]]:
    await graph_api.wait_for_async(lambda: bool(graph_api.sent_to(customer)), 15)
    await eventually(lambda: _all_answered(service), what="every message answered")
    replies = graph_api.sent_to(customer)
    assert len(replies) == 1, replies
    return replies


async def _all_answered(service: RunningService) -> bool:
    rows = await service.fetch(
        "SELECT count(*) AS n FROM inbound_messages WHERE processed_at IS NULL"
    )
    return rows[0]["n"] == 0


async def _count(service: RunningService, table: str) -> int:
    rows = await service.fetch(f"SELECT count(*) AS n FROM {table}")
    return int(rows[0]["n"])


def _words(reply: dict[str, Any]) -> str:
    if reply["type"] == "text":
        return str(reply["text"]["body"])
    return str(reply.get("interactive", {}).get("body", {}).get("text", ""))
