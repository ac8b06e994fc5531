"""Kinds that reached the agent wrongly: flow replies (their submitted fields), opening
the chat (a request to be greeted), edits and deletions (kept, never answered)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.whatsapp.models import (
    EditMessage,
    FlowReplyMessage,
    InboundEvent,
    InteractiveMessage,
    RevokeMessage,
    UnsupportedMessage,
    WebhookPayload,
    WelcomeRequestMessage,
)
from tests.fakes.meta_payloads import envelope, message_value

WA_ID = "15551234567"


def only_event(body: dict[str, Any]) -> InboundEvent:
    events = list(WebhookPayload.model_validate(body).iter_messages())
    assert len(events) == 1
    return events[0]


def test_a_flow_reply_reads_as_the_fields_the_customer_submitted() -> None:
    submitted = {"flow_token": "AQAAAAACS5FpgQ_cAAAAAD0QI3s.", "name": "Ada", "guests": 4}
    flow = {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent"}}
    flow["nfm_reply"]["response_json"] = json.dumps(submitted)
    message = only_event(envelope(message_value(WA_ID, "interactive", flow))).message
    assert isinstance(message, FlowReplyMessage)
    assert message.as_text() == "[form reply]\nname: Ada\nguests: 4"
    assert (message.kind, message.is_supported, message.expects_reply) == ("flow_reply", True, True)


def test_a_flow_reply_without_readable_fields_falls_back_to_its_body() -> None:
    flow = {"type": "nfm_reply", "nfm_reply": {"body": "Sent", "response_json": "not json"}}
    message = only_event(envelope(message_value(WA_ID, "interactive", flow))).message
    assert message.as_text() == "[form reply] Sent"


def test_opening_the_chat_is_a_request_to_be_greeted() -> None:
    message = only_event(envelope(message_value(WA_ID, "request_welcome", None))).message
    assert isinstance(message, WelcomeRequestMessage)
    assert message.as_text() == "[the customer opened the chat]"
    assert message.is_supported and message.expects_reply


def test_edits_and_deletions_are_kept_but_never_answered() -> None:
    edit = {
        "original_message_id": "wamid.EARLIER",
        "message": {"type": "text", "text": {"body": "Saturday, not Sunday"}},
    }
    edited = only_event(envelope(message_value(WA_ID, "edit", edit))).message
    revoke = {"original_message_id": "wamid.EARLIER"}
    revoked = only_event(envelope(message_value(WA_ID, "revoke", revoke))).message
    assert isinstance(edited, EditMessage) and isinstance(revoked, RevokeMessage)
    assert edited.as_text() == "[edited] Saturday, not Sunday"
    assert revoked.as_text() == "[deleted a message]"
    assert not edited.expects_reply and not revoked.expects_reply
    assert not edited.is_supported and not revoked.is_supported


@pytest.mark.parametrize(
    ("detail", "answered"), [("edit", False), ("revoke", False), ("poll_creation", True)]
)
def test_unsupported_edits_are_silent_and_other_unsupported_kinds_answered(
    detail: str, answered: bool
) -> None:
    value = message_value(WA_ID, "unsupported", {"type": detail})
    message = only_event(envelope(value)).message
    assert isinstance(message, UnsupportedMessage)
    assert message.expects_reply is answered


def test_a_tap_of_an_interactive_subtype_we_do_not_know_is_unsupported() -> None:
    value = message_value(WA_ID, "interactive", {"type": "call_permission_reply"})
    message = only_event(envelope(value)).message
    assert isinstance(message, InteractiveMessage)
    assert not message.is_supported
