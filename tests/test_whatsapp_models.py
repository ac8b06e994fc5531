"""The webhook models against payloads shaped like Meta's Cloud API reference."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from server.whatsapp.models import (
    AudioMessage,
    ButtonMessage,
    ContactsMessage,
    DocumentMessage,
    ImageMessage,
    InboundEvent,
    InteractiveMessage,
    LocationMessage,
    MessageStatus,
    OrderMessage,
    ReactionMessage,
    StickerMessage,
    SystemMessage,
    TextMessage,
    UnknownMessage,
    UnsupportedMessage,
    VideoMessage,
    WebhookPayload,
)
from tests.fakes.meta_payloads import (
    envelope,
    image_message,
    interactive_reply,
    message_value,
    sign,
    status_update,
    text_message,
    unknown_message,
)

WA_ID = "15551234567"


def only_event(body: dict[str, Any]) -> InboundEvent:
    events = list(WebhookPayload.model_validate(body).iter_messages())
    assert len(events) == 1
    return events[0]


def test_text_message_event_carries_business_number_and_sender() -> None:
    body = envelope(text_message(WA_ID, "Hola, quiero reservar", wamid="wamid.ABC"))
    event = only_event(body)
    assert isinstance(event.message, TextMessage)
    assert event.phone_number_id == "PNID"
    assert event.display_phone_number == "15550783881"
    assert (event.wa_id, event.profile_name, event.sender_id) == (WA_ID, "Ada", WA_ID)
    assert event.message.id == "wamid.ABC"
    assert event.message.from_ == WA_ID
    assert event.message.as_text() == "Hola, quiero reservar"
    assert event.message.kind == "text"
    assert event.message.is_supported


def test_timestamp_becomes_utc_datetime_and_accepts_integers() -> None:
    value = message_value(WA_ID, "text", {"body": "hi"}, timestamp="1700000000")
    value["messages"][0]["timestamp"] = 1700000000
    event = only_event(envelope(value))
    assert event.message.occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_reply_context_is_exposed() -> None:
    event = only_event(envelope(text_message(WA_ID, "yes", reply_to="wamid.OURS")))
    assert event.message.context is not None
    assert event.message.context.id == "wamid.OURS"


@pytest.mark.parametrize("list_reply", [False, True])
def test_interactive_replies_expose_id_and_title(list_reply: bool) -> None:
    value = interactive_reply(
        WA_ID, "menu:booking", "Book a table", description="Tonight", list_reply=list_reply
    )
    message = only_event(envelope(value)).message
    assert isinstance(message, InteractiveMessage)
    assert message.reply_id == "menu:booking"
    assert message.as_text() == "Book a table"
    reply = message.interactive.list_reply if list_reply else message.interactive.button_reply
    assert reply is not None and reply.description == "Tonight"


def test_image_message_keeps_media_fields() -> None:
    value = image_message(WA_ID, "MEDIA1", caption="my receipt", mime_type="image/png")
    message = only_event(envelope(value)).message
    assert isinstance(message, ImageMessage)
    assert (message.media.id, message.media.mime_type) == ("MEDIA1", "image/png")
    assert message.as_text() == "[image] my receipt"


MEDIA_AND_OTHER_KINDS: list[tuple[str, Any, type, str, bool]] = [
    ("button", {"payload": "yes-confirm", "text": "Yes"}, ButtonMessage, "Yes", True),
    (
        "audio",
        {"id": "A1", "mime_type": "audio/ogg; codecs=opus", "sha256": "x", "voice": True},
        AudioMessage,
        "[voice note]",
        True,
    ),
    ("audio", {"id": "A2", "mime_type": "audio/mpeg"}, AudioMessage, "[audio]", True),
    ("video", {"id": "V1", "mime_type": "video/mp4"}, VideoMessage, "[video]", True),
    (
        "document",
        {"id": "D1", "mime_type": "application/pdf", "filename": "invoice.pdf", "caption": "March"},
        DocumentMessage,
        "[document: invoice.pdf] March",
        True,
    ),
    (
        "sticker",
        {"id": "S1", "mime_type": "image/webp", "animated": True},
        StickerMessage,
        "[animated sticker]",
        True,
    ),
    (
        "location",
        {
            "latitude": 40.4168,
            "longitude": -3.7038,
            "name": "Sol",
            "address": "Puerta del Sol, Madrid",
            "url": "https://example.com",
        },
        LocationMessage,
        "[location] Sol, Puerta del Sol, Madrid (40.4168, -3.7038)",
        True,
    ),
    (
        "contacts",
        [
            {
                "name": {"formatted_name": "Grace Hopper", "first_name": "Grace"},
                "phones": [{"phone": "+1 555 0100", "wa_id": "15550100", "type": "CELL"}],
            },
            {"name": {"first_name": "Alan", "last_name": "Turing"}, "phones": []},
        ],
        ContactsMessage,
        "[shared contact] Grace Hopper, Alan Turing",
        True,
    ),
    (
        "reaction",
        {"message_id": "wamid.OURS", "emoji": "👍"},
        ReactionMessage,
        "[reaction 👍]",
        False,
    ),
    (
        "order",
        {
            "catalog_id": "CAT1",
            "text": "for pickup",
            "product_items": [
                {"product_retailer_id": "SKU1", "quantity": 2, "item_price": 9.5, "currency": "EUR"}
            ],
        },
        OrderMessage,
        "[order: 2 items] for pickup",
        True,
    ),
]


@pytest.mark.parametrize(
    ("message_type", "content", "expected_class", "expected_text", "supported"),
    MEDIA_AND_OTHER_KINDS,
    ids=[f"{row[0]}-{index}" for index, row in enumerate(MEDIA_AND_OTHER_KINDS)],
)
def test_every_message_kind_parses(
    message_type: str, content: Any, expected_class: type, expected_text: str, supported: bool
) -> None:
    message = only_event(envelope(message_value(WA_ID, message_type, content))).message
    assert type(message) is expected_class
    assert message.kind == message_type
    assert message.as_text() == expected_text
    assert message.is_supported is supported


def test_button_message_reply_id_is_the_template_payload() -> None:
    value = message_value(WA_ID, "button", {"payload": "stop-promos", "text": "Stop"})
    message = only_event(envelope(value)).message
    assert isinstance(message, ButtonMessage)
    assert message.reply_id == "stop-promos"


def test_reaction_without_emoji_means_removed() -> None:
    value = message_value(WA_ID, "reaction", {"message_id": "wamid.OURS"})
    message = only_event(envelope(value)).message
    assert isinstance(message, ReactionMessage)
    assert message.removed
    assert message.as_text() == "[reaction removed]"


def test_system_message_reports_new_number_and_is_not_customer_input() -> None:
    value = message_value(
        WA_ID,
        "system",
        {
            "body": "User Ada changed from 15551234567 to 15557654321",
            "wa_id": 15557654321,
            "type": "user_changed_number",
        },
    )
    del value["contacts"]  # Meta sends no contacts array with system messages
    event = only_event(envelope(value))
    assert isinstance(event.message, SystemMessage)
    assert event.message.system.wa_id == "15557654321"
    assert not event.message.is_supported
    assert event.profile_name is None


def test_unsupported_message_keeps_its_errors() -> None:
    value = message_value(WA_ID, "unsupported", {"type": "edit"})
    value["messages"][0]["errors"] = [
        {
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ]
    message = only_event(envelope(value)).message
    assert isinstance(message, UnsupportedMessage)
    assert message.as_text() == ""
    assert not message.is_supported
    assert message.errors is not None
    assert message.errors[0].code == 131051
    assert message.errors[0].detail_text == "Message type is currently not supported."


def test_unknown_type_parses_into_unknown_message() -> None:
    value = unknown_message(WA_ID, message_type="hologram", content={"depth": 3})
    message = only_event(envelope(value)).message
    assert isinstance(message, UnknownMessage)
    assert message.kind == "hologram"
    assert message.as_text() == ""
    assert not message.is_supported
    assert message.model_extra == {"hologram": {"depth": 3}}


def test_unknown_fields_are_tolerated_at_every_level() -> None:
    value = text_message(WA_ID, "hi")
    value["brand_new_value_field"] = {"x": 1}
    value["metadata"]["new_meta"] = True
    value["contacts"][0]["profile"]["avatar"] = "url"
    value["messages"][0]["referral"] = {"source_type": "ad"}
    value["messages"][0]["text"]["format"] = "markdown"
    body = envelope(value)
    body["new_top_level"] = 1
    body["entry"][0]["time"] = 1700000000
    event = only_event(body)
    assert event.message.as_text() == "hi"


def test_contacts_are_matched_to_messages_by_wa_id() -> None:
    first = text_message("15550000111", "from one", user_id="US.111", name="One")
    second = text_message("15550000222", "from two", user_id="US.222", name="Two")
    first["contacts"] = second["contacts"] + first["contacts"]  # order must not matter
    first["messages"] += second["messages"]
    events = list(WebhookPayload.model_validate(envelope(first)).iter_messages())
    found = {event.wa_id: (event.user_id, event.profile_name) for event in events}
    assert found == {"15550000111": ("US.111", "One"), "15550000222": ("US.222", "Two")}


def test_username_customer_without_phone_number_is_keyed_by_user_id() -> None:
    value = message_value(None, "text", {"body": "hi"}, user_id="BR.1502576394655843")
    value["contacts"][0]["profile"]["username"] = "@ada"
    event = only_event(envelope(value))
    assert event.wa_id is None
    assert event.user_id == "BR.1502576394655843"
    assert event.sender_id == "BR.1502576394655843"
    assert event.username == "@ada"


def test_statuses_with_errors() -> None:
    errors = [
        {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": "More than 24 hours have passed since the last reply."},
        }
    ]
    body = envelope(
        status_update("wamid.OUT1", "delivered", user_id="US.1"),
        status_update("wamid.OUT2", "failed", errors=errors),
        status_update("wamid.OUT3", "deleted"),
    )
    statuses = list(WebhookPayload.model_validate(body).iter_statuses())
    assert [pnid for pnid, _ in statuses] == ["PNID"] * 3
    delivered, failed, deleted = (status for _, status in statuses)
    assert isinstance(delivered, MessageStatus)
    assert delivered.recipient_user_id == "US.1"
    assert delivered.pricing == {"billable": False, "pricing_model": "PMP", "category": "service"}
    assert failed.is_failed and failed.errors[0].code == 131047
    assert "24 hours" in failed.errors[0].detail_text
    assert deleted.status == "deleted" and not deleted.is_failed
    assert list(WebhookPayload.model_validate(body).iter_messages()) == []


@pytest.mark.parametrize(
    "body",
    [
        {"object": "page", "entry": [{"id": "1", "messaging": [{"anything": True}]}]},
        {"object": "whatsapp_business_account", "entry": []},
        {"object": "whatsapp_business_account"},
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "message_template_status_update",
                            "value": {"event": "APPROVED", "message_template_id": 12},
                        }
                    ],
                }
            ],
        },
    ],
    ids=["other-object", "no-entries", "entry-missing", "other-field"],
)
def test_payloads_without_whatsapp_messages_parse_to_nothing(body: dict[str, Any]) -> None:
    payload = WebhookPayload.model_validate(body)
    assert list(payload.iter_messages()) == []
    assert list(payload.iter_statuses()) == []


@pytest.mark.parametrize(
    "body",
    [
        {"object": "whatsapp_business_account", "entry": {"id": "1"}},
        {"entry": []},
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": "x"}]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {}}]}]},
    ],
    ids=["entry-not-list", "object-missing", "changes-not-list", "change-without-field"],
)
def test_a_broken_envelope_raises_validation_error(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WebhookPayload.model_validate(body)


def test_payload_parses_from_raw_json_bytes() -> None:
    raw = json.dumps(envelope(text_message(WA_ID, "¿Abren el domingo? 🙂"))).encode()
    event = only_event(WebhookPayload.model_validate_json(raw).model_dump(by_alias=True))
    assert event.message.as_text() == "¿Abren el domingo? 🙂"


def test_sign_is_hmac_sha256_of_raw_body() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    expected = hmac.new(b"shh", body, hashlib.sha256).hexdigest()
    assert sign(body, "shh") == f"sha256={expected}"
