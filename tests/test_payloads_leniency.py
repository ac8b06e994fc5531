"""Strict per signature, lenient per message: what `parse_webhook` keeps, turns into an
unsupported message, leaves out, or refuses whole — and that no refusal or warning
repeats what the sender put in the body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from server.abuse.validation import InvalidWebhook, parse_webhook
from server.whatsapp.models import InboundEvent, MalformedMessage, TextMessage
from tests.fakes.meta_payloads import envelope, message_value, status_update, text_message

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "250788123456"
SECRET = "card 4111 1111 1111 1111"  # what no refusal or warning may repeat


def _stamp(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def _text(body: str = "hello", **fields: Any) -> dict[str, Any]:
    value = text_message(CUSTOMER, body, wamid=fields.pop("wamid", None))
    value["messages"][0]["timestamp"] = _stamp(NOW)
    value["messages"][0].update(fields)
    return value


def _events(*values: dict[str, Any], max_age_days: float = 7.0) -> list[InboundEvent]:
    body = json.dumps(envelope(*values)).encode()
    payload = parse_webhook(body, max_text_chars=4096, max_age_days=max_age_days, now=NOW)
    return list(payload.iter_messages())


def test_a_message_its_model_refuses_is_kept_as_unsupported_beside_the_others() -> None:
    broken = _text(wamid="wamid.BROKEN", type="interactive")  # a tap without `interactive`
    events = _events(_text("first", wamid="wamid.OK"), broken)
    ok, unreadable = (event.message for event in events)
    assert isinstance(ok, TextMessage) and ok.as_text() == "first"
    assert isinstance(unreadable, MalformedMessage)
    assert (unreadable.id, unreadable.kind, unreadable.is_supported) == (
        "wamid.BROKEN",
        "interactive",
        False,
    )
    assert unreadable.expects_reply  # the polite "can't read this"
    assert unreadable.model_dump(mode="json", by_alias=True) == broken["messages"][0]
    assert events[1].sender_id == CUSTOMER


@pytest.mark.parametrize(
    "damage",
    [{"id": None}, {"id": "x" * 300}, {"from": None}, {"from": "drop table"}],
    ids=["no-id", "id-too-long", "no-sender", "sender-not-a-number"],
)
def test_a_message_without_usable_id_or_sender_is_left_out_with_a_warning(
    damage: dict[str, Any],
) -> None:
    broken = _text(SECRET, wamid="wamid.BROKEN")
    for key, value in damage.items():
        if value is None:
            del broken["messages"][0][key]
        else:
            broken["messages"][0][key] = value
    with capture_logs() as logs:
        events = _events(broken, _text("still here", wamid="wamid.OK"))
    assert [event.message.as_text() for event in events] == ["still here"]
    warnings = [log for log in logs if log["event"] == "webhook.message_skipped"]
    assert len(warnings) == 1
    assert "4111" not in repr(logs) and "drop table" not in repr(logs)


def test_a_text_without_body_keeps_id_sender_timestamp_and_payload() -> None:
    broken = _text(wamid="wamid.NOBODY", text={"format": "markdown"})
    [event] = _events(broken)
    assert isinstance(event.message, MalformedMessage)
    assert event.message.kind == "text"
    assert event.message.occurred_at == NOW
    assert event.wa_id == CUSTOMER and event.profile_name == "Ada"


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"text": {"body": "x" * 4097}}, "text"),
        ({"timestamp": "99999999999999999999"}, "text"),
        ({"timestamp": _stamp(NOW + timedelta(days=2))}, "text"),
        ({"type": "t" * 500}, "unknown"),
    ],
    ids=["text-too-long", "year-10^12", "two-days-ahead", "type-of-any-length"],
)
def test_content_the_checks_refuse_is_stored_as_unsupported(
    change: dict[str, Any], kind: str
) -> None:
    [event] = _events(_text(**change))
    assert isinstance(event.message, MalformedMessage)
    assert (event.message.kind, event.message.is_supported) == (kind, False)
    assert event.message.occurred_at <= NOW  # an absurd stamp gives way to the arrival


def test_a_reply_id_longer_than_any_we_send_is_unsupported() -> None:
    tap = message_value(
        CUSTOMER, "button", {"payload": "p" * 2000, "text": "Yes"}, timestamp=_stamp(NOW)
    )
    [event] = _events(tap)
    assert isinstance(event.message, MalformedMessage)
    assert event.message.kind == "button"


def test_a_profile_name_longer_than_whatsapp_allows_is_dropped_not_the_message() -> None:
    value = _text("hi")
    value["contacts"][0]["profile"]["name"] = "n" * 600
    [event] = _events(value)
    assert event.profile_name is None
    assert event.message.as_text() == "hi"


@pytest.mark.parametrize(
    ("age", "max_age_days", "kept"),
    [
        (timedelta(days=6, hours=23), 7.0, True),
        (timedelta(days=7, hours=1), 7.0, False),
        (timedelta(days=2200), 7.0, False),
        (timedelta(days=2200), 0.0, True),
    ],
    ids=["within-window", "just-past-window", "from-2020", "window-off"],
)
def test_messages_older_than_the_window_are_ignored(
    age: timedelta, max_age_days: float, kept: bool
) -> None:
    value = _text("old news", timestamp=_stamp(NOW - age))
    with capture_logs() as logs:
        events = _events(value, max_age_days=max_age_days)
    assert bool(events) is kept
    assert any(log["event"] == "webhook.message_stale" for log in logs) is not kept


def test_statuses_read_only_what_they_need_and_bad_ones_are_left_out() -> None:
    value = status_update("wamid.OUT1", "sent")
    first = value["statuses"][0]
    first["conversation"]["expiration_timestamp"] = 1669233778  # an integer, as sometimes
    first["pricing"] = {"billable": "yes", "category": 7}  # never read: never refused
    value["statuses"] += [{"status": "read"}, {**first, "id": "x" * 300}]
    body = json.dumps(envelope(value)).encode()
    statuses = list(parse_webhook(body, max_text_chars=4096, now=NOW).iter_statuses())
    assert [status.id for _, status in statuses] == ["wamid.OUT1"]


def test_a_change_without_a_business_number_is_left_out_and_the_rest_stands() -> None:
    orphan = _text("lost", wamid="wamid.ORPHAN")
    del orphan["metadata"]
    events = _events(orphan, _text("found", wamid="wamid.FOUND"))
    assert [event.message.id for event in events] == ["wamid.FOUND"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"object": "whatsapp_business_account", "entry": [',
        json.dumps(envelope(_text("a\x00b"))).encode(),
        json.dumps(envelope(_text("\ud83d"))).encode(),
        b'[{"object": "whatsapp_business_account"}]',
        json.dumps({"object": "whatsapp_business_account", "entry": SECRET}).encode(),
        json.dumps({"object": ["whatsapp_business_account"], "entry": []}).encode(),
    ],
    ids=["not-json", "nul", "lone-surrogate", "not-an-object", "entry-not-a-list", "object-list"],
)
def test_a_body_that_breaks_the_envelope_is_refused_whole(body: bytes) -> None:
    with pytest.raises(InvalidWebhook) as refused:
        parse_webhook(body, max_text_chars=4096, now=NOW)
    assert "4111" not in str(refused.value)


def test_a_schema_refusal_names_where_and_what_but_not_the_value() -> None:
    body = json.dumps({"object": "whatsapp_business_account", "entry": SECRET}).encode()
    with pytest.raises(InvalidWebhook) as refused:
        parse_webhook(body, max_text_chars=4096, now=NOW)
    assert str(refused.value) == "payload does not match the webhook schema: entry: list_type"
