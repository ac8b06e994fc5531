"""Message templates, as the operator and the customer see them: listed from the Cloud
API (page after page) or declared in a file, kept current by Meta's status webhooks
(pywa's recorded payloads), offered when a free-form reply is refused after the 24-hour
window, and sent through the outbox with their values — refused first when Meta would
refuse them (unknown, paused, wrong values) or when the customer opted out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.whatsapp.templates import (
    check_parameters,
    parse_listed_template,
    render_body,
    template_payload,
)
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.graph_templates import listed_template
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_outcomes import (
    admin_call,
    escalated_conversation,
    new_customer,
    outcome_settings,
    say,
)
from tests.test_opt_out import wrote_last_at

PAYLOADS = Path(__file__).parent / "data" / "payloads" / "pywa"

# The documented example of Meta's listing (Template management, "Get all templates"):
# named variables and an image header.
RESERVATION = {
    "name": "reservation_confirmation",
    "parameter_format": "NAMED",
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://x"]}},
        {
            "type": "BODY",
            "text": "*You're all set!*\n\nYour reservation for {{number_of_guests}} at Lucky"
            " Shrub Eatery on {{day}}, {{date}}, at {{time}}, is confirmed. See you then!",
        },
    ],
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "id": "546151681022936",
}

REMINDER = listed_template(
    "booking_reminder", "en", "Hi {{1}}, your {{2}} booking is tomorrow at {{3}}."
)
REMINDER_FR = listed_template(
    "booking_reminder", "fr", "Bonjour {{1}}, votre réservation {{2}} est demain à {{3}}."
)
WELCOME_BACK = listed_template("welcome_back", "en", "Hello {{first_name}}, we miss you!")
# pywa's template_status_update-rejected.json names this one.
ABANDONED_CART = listed_template("abandoned_cart", "en", "You left {{1}} in your cart.")


def test_a_template_with_an_image_header_is_listed_but_not_sendable() -> None:
    template = parse_listed_template(RESERVATION)
    assert template is not None
    assert template.variables == ("number_of_guests", "day", "date", "time")
    assert template.named and not template.sendable
    assert template.unsupported == "its header needs a image"


def test_values_fill_the_body_and_bad_ones_are_refused_first() -> None:
    template = parse_listed_template(REMINDER)
    assert template is not None and template.sendable and not template.named
    values = ["Ada", "e-bike", "10:00"]
    check_parameters(template, values)
    assert render_body(template, values) == "Hi Ada, your e-bike booking is tomorrow at 10:00."
    for wrong, said in [
        (["Ada"], "takes 3 value(s) (1, 2, 3), 1 given"),
        (["Ada", " ", "10:00"], "is empty"),
        (["Ada", "e-bike\nnow", "10:00"], "new line"),
    ]:
        with pytest.raises(ValueError, match=said.replace("(", r"\(").replace(")", r"\)")):
            check_parameters(template, wrong)


def test_named_values_are_sent_with_their_names() -> None:
    payload = template_payload("welcome_back", "en", {"first_name": "Ada"}, named=True)
    named_value = {"type": "text", "text": "Ada", "parameter_name": "first_name"}
    assert payload["template"]["components"] == [{"type": "body", "parameters": [named_value]}]
    positional = template_payload("booking_reminder", "en", {"1": "Ada"}, named=False)
    assert positional["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Ada"}
    ]


def template_settings(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer) -> Any:
    return outcome_settings(db_url, graph_api, openai, whatsapp_business_account_id="1029384756")


async def test_sync_reads_every_page_and_replaces_the_last_listing(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    graph_api.templates += [REMINDER, REMINDER_FR, WELCOME_BACK, RESERVATION]
    graph_api.templates_per_page = 3
    async with running_service(template_settings(db_url, graph_api, openai_server)) as service:
        synced = await admin_call(service, "POST", "/admin/api/templates/sync")
        assert synced.status_code == 200, synced.text
        assert synced.json() == {"templates": 4}
        listed = (await admin_call(service, "GET", "/admin/api/templates")).json()
        assert [(t["name"], t["language"], t["sendable"]) for t in listed] == [
            ("booking_reminder", "en", True),
            ("booking_reminder", "fr", True),
            ("reservation_confirmation", "en_US", False),
            ("welcome_back", "en", True),
        ]
        graph_api.templates[:] = [REMINDER]
        await admin_call(service, "POST", "/admin/api/templates/sync")
        listed = (await admin_call(service, "GET", "/admin/api/templates")).json()
        assert [(t["name"], t["language"]) for t in listed] == [("booking_reminder", "en")]


async def test_sync_without_an_account_says_how_to_declare_them(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        refused = await admin_call(service, "POST", "/admin/api/templates/sync")
        assert refused.status_code == 409
        assert "WA_AGENT_TEMPLATES_FILE" in refused.json()["detail"]


async def test_declared_templates_are_sendable_without_the_cloud_api(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    declared = tmp_path / "templates.yaml"
    declared.write_text(
        "- name: booking_reminder\n  language: en\n"
        "  body: 'Hi {{1}}, your {{2}} booking is tomorrow at {{3}}.'\n"
    )
    settings = outcome_settings(db_url, graph_api, openai_server, templates_file=declared)
    async with running_service(settings) as service:
        listed = (await admin_call(service, "GET", "/admin/api/templates")).json()
        assert [(t["name"], t["variables"], t["sendable"]) for t in listed] == [
            ("booking_reminder", ["1", "2", "3"], True)
        ]


async def test_after_the_window_the_operator_is_offered_a_template_and_it_reaches_the_customer(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    graph_api.templates += [REMINDER, WELCOME_BACK]
    async with running_service(template_settings(db_url, graph_api, openai_server)) as service:
        await admin_call(service, "POST", "/admin/api/templates/sync")
        conversation = await escalated_conversation(service, customer)
        await wrote_last_at(service, conversation, datetime.now(UTC) - timedelta(hours=30))
        base = f"/admin/api/conversations/{conversation}"
        refused = await admin_call(service, "POST", f"{base}/messages", json={"text": "Hello?"})
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert f"POST {base}/template" in detail
        assert "booking_reminder (en, 3 value(s))" in detail and "welcome_back" in detail

        sent_before = len(graph_api.sent_to(customer))
        values = ["Ada", "e-bike", "10:00"]
        send = {"name": "booking_reminder", "language": "en", "values": values}
        accepted = await admin_call(service, "POST", f"{base}/template", json=send)
        assert accepted.status_code == 202, accepted.text
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) > sent_before)
        [message] = graph_api.sent_to(customer)[sent_before:]
        assert message["type"] == "template"
        assert message["template"]["name"] == "booking_reminder"
        assert message["template"]["language"] == {"code": "en"}
        parameters = message["template"]["components"][0]["parameters"]
        assert [p["text"] for p in parameters] == values
        transcript = (await admin_call(service, "GET", f"{base}/messages")).json()
        assert transcript[-1]["content"] == "Hi Ada, your e-bike booking is tomorrow at 10:00."
        assert transcript[-1]["agent"] == "operator:admin"
        parts = await service.fetch(
            "SELECT status FROM outbound_messages WHERE kind = 'template' AND wa_id = %s",
            customer,
        )
        assert [p["status"] for p in parts] == ["sent"]


async def test_a_template_meta_would_refuse_is_refused_before_it_is_queued(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    graph_api.templates += [REMINDER, WELCOME_BACK, RESERVATION]
    async with running_service(template_settings(db_url, graph_api, openai_server)) as service:
        await admin_call(service, "POST", "/admin/api/templates/sync")
        conversation = await escalated_conversation(service, customer)
        url = f"/admin/api/conversations/{conversation}/template"
        cases = [
            ({"name": "nope", "language": "en"}, 404, "no template 'nope' in 'en'"),
            ({"name": "booking_reminder", "language": "en", "values": ["Ada"]}, 422, "3 value"),
            (
                {"name": "reservation_confirmation", "language": "en_US", "values": ["2"] * 4},
                409,
                "its header needs a image",
            ),
        ]
        for body, status, said in cases:
            refused = await admin_call(service, "POST", url, json=body)
            assert refused.status_code == status, refused.text
            assert said in refused.json()["detail"]
        await say(service, text_message(customer, "STOP"), turn=False)
        welcome = {"name": "welcome_back", "language": "en", "values": ["Ada"]}
        refused = await admin_call(service, "POST", url, json=welcome)
        assert refused.status_code == 409 and "opted out" in refused.json()["detail"]
        queued = await service.fetch(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'operator_template'"
        )
        assert queued[0]["n"] == 0


async def test_meta_status_updates_change_what_can_be_sent(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """pywa's recorded `message_template_status_update` (REJECTED, abandoned_cart, en),
    and a PAUSED one in the same shape."""
    graph_api.templates += [ABANDONED_CART, REMINDER]
    rejected = json.loads((PAYLOADS / "template_status_update-rejected.json").read_text())
    paused = json.loads(json.dumps(rejected))
    change = paused["entry"][0]["changes"][0]["value"]
    change.update(event="PAUSED", message_template_name="booking_reminder", reason=None)
    async with running_service(template_settings(db_url, graph_api, openai_server)) as service:
        await admin_call(service, "POST", "/admin/api/templates/sync")
        for payload in (rejected, paused):
            assert (await service.post_webhook(payload)).status_code == 200

        async def both_changed() -> bool:
            rows = await service.fetch(
                "SELECT name, status, reason FROM message_templates ORDER BY name"
            )
            return [tuple(r.values()) for r in rows] == [
                ("abandoned_cart", "REJECTED", "INVALID_FORMAT"),
                ("booking_reminder", "PAUSED", None),
            ]

        await eventually(both_changed, what="the statuses Meta sent")
        listed = (await admin_call(service, "GET", "/admin/api/templates")).json()
        assert [t["sendable"] for t in listed] == [False, False]


async def test_a_template_meta_paused_since_the_last_sync_fails_visibly_once(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Our listing says approved, Meta has paused it since (no webhook reached us):
    the send fails with Meta's code in the outbox, is not retried, and nothing else."""
    customer = new_customer()
    graph_api.templates += [REMINDER]
    async with running_service(template_settings(db_url, graph_api, openai_server)) as service:
        await admin_call(service, "POST", "/admin/api/templates/sync")
        conversation = await escalated_conversation(service, customer)
        graph_api.templates[0] = {**REMINDER, "status": "PAUSED"}
        attempts = graph_api.message_attempts
        send = {"name": "booking_reminder", "language": "en", "values": ["Ada", "bike", "9:00"]}
        url = f"/admin/api/conversations/{conversation}/template"
        assert (await admin_call(service, "POST", url, json=send)).status_code == 202

        async def failed() -> bool:
            rows = await service.fetch(
                "SELECT status, error_code FROM outbound_messages WHERE kind = 'template'"
            )
            return [tuple(r.values()) for r in rows] == [("failed", 132015)]

        await eventually(failed, what="the refused template recorded as failed")
        assert graph_api.message_attempts == attempts + 1  # refused once, not retried
        assert templates_of(graph_api, customer) == []


def templates_of(graph_api: FakeGraphAPI, customer: str) -> list[Any]:
    return [m for m in graph_api.sent_to(customer) if m.get("type") == "template"]
