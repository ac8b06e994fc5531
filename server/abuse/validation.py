"""Checks at the edges: the webhook body, and customer numbers typed by people.

The webhook is strict per signature and lenient per message. A body that is not a JSON
object, holds text Postgres cannot store (NUL, lone surrogates, NaN) or breaks the
envelope (``entry``/``changes`` not lists) is refused whole with a 400, since nothing in
it can be told apart. Inside a signed delivery each message is judged alone: one odd
message is stored as unsupported (the customer hears "can't read this") or, when it
cannot be stored or answered at all, left out with a warning — and the rest of the
delivery is processed. :func:`screen_events` says which check leads to which.

Refusals and warnings name the field path and the error type, never an input value:
the input may be a customer's words or card number, and the 400 body goes back to
whoever sent it while the log goes to whoever reads logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import structlog
from pydantic import ValidationError

from server.whatsapp.identity import is_business_scoped_user_id
from server.whatsapp.message_base import describe_errors, kind_label, usable_message_id
from server.whatsapp.models import (
    InboundEvent,
    MalformedMessage,
    MessageStatus,
    WebhookPayload,
)

log = structlog.get_logger(__name__)

DEFAULT_MAX_AGE_DAYS = 7.0
"""Meta redelivers a message for up to 7 days while the webhook fails; older cannot be
a delivery of Meta's. See `webhook_max_age_days` in graph/settings/__init__.py."""

_NUMBER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# JSON refuses raw control characters, so a NUL can only arrive as a \u escape; a
# surrogate as an escape or as UTF-8 bytes (json.loads decodes with "surrogatepass").
_ESCAPES_TO_CHECK = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_MAX_NAME_CHARS = 512
_MAX_REPLY_ID_CHARS = 1024
# Meta stamps each message itself; a stamp this far ahead of our clock is not a skew.
_MAX_CLOCK_SKEW = timedelta(days=1)


class InvalidWebhook(ValueError):
    """The reason goes back in the 400 body and the log; never a customer's data."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_strings(document: Any) -> None:
    """Every key and string must be storable: Postgres text refuses NUL, UTF-8 refuses
    lone surrogates. Iterative, so no body can exhaust the stack here."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidWebhook("NUL character in a string")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidWebhook("lone surrogate in a string") from exc


def parse_webhook(
    body: bytes,
    *,
    max_text_chars: int,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    now: datetime | None = None,
) -> WebhookPayload:
    """The payload with only what may be stored, or `InvalidWebhook` for a body that
    must be refused whole. ``max_age_days=0`` keeps messages of any age."""
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidWebhook("body is not valid JSON") from exc
    if _ESCAPES_TO_CHECK.search(body):  # the only ways in for NUL or a lone surrogate
        _check_strings(document)
    if not isinstance(document, dict):
        raise InvalidWebhook("body is not a JSON object")
    try:
        payload = WebhookPayload.model_validate(document)
    except ValidationError as exc:
        detail = describe_errors(exc)
        raise InvalidWebhook(f"payload does not match the webhook schema: {detail}") from exc
    except RecursionError as exc:
        raise InvalidWebhook("payload is nested too deeply") from exc
    moment = now or datetime.now(UTC)
    max_age = timedelta(days=max_age_days) if max_age_days > 0 else None
    events = list(screen_events(payload, max_text_chars, max_age, moment))
    payload.keep_only(events, _screen_statuses(payload))
    return payload


def screen_events(
    payload: WebhookPayload, max_text_chars: int, max_age: timedelta | None, now: datetime
) -> Iterator[InboundEvent]:
    """Each message as it may be stored; left out when it cannot be.

    Left out (logged, not stored, not answered):
    - a message id of no known shape: it is what deduplicates Meta's retries, and a
      key that is not Meta's would store every retry again;
    - a business number (``phone_number_id``) of no known shape, or no usable sender
      (neither a phone number nor a business-scoped user id of a known shape): there
      is nobody to answer, from no number we know;
    - a message older than ``max_age``: no retry of Meta's is that old, so it is a
      replay, and answering it days late would confuse the customer.

    Stored as unsupported (the customer hears "can't read this", the agent reads nothing):
    - a timestamp no calendar holds, or more than a day ahead of our clock: Meta stamps
      messages itself, so the content is not taken as the customer's words; the time of
      arrival stands in for the stamp;
    - a ``type`` of no known shape, a reply id longer than any we send, or a text longer
      than ``max_text_chars``: something was sent, but not something we can read.

    A profile name longer than any WhatsApp allows is dropped; the message stays.
    """
    for event in payload.iter_messages():
        message = event.message
        kind = kind_label(message.kind)
        if not usable_message_id(message.id):
            _skipped("message id of no known shape", kind)
        elif not _NUMBER_ID.fullmatch(event.phone_number_id):
            _skipped("business phone_number_id of no known shape", kind)
        elif not event.sender_id:
            _skipped("no usable sender", kind)
        elif (occurred := _moment(message.timestamp)) is None or occurred > now + _MAX_CLOCK_SKEW:
            yield _as_unreadable(event, "timestamp out of range", now)
        elif max_age is not None and occurred < now - max_age:
            age_days = round((now - occurred).total_seconds() / 86400, 1)
            log.warning("webhook.message_stale", kind=kind, age_days=age_days)
        else:
            yield _checked_content(event, max_text_chars)


def _checked_content(event: InboundEvent, max_text_chars: int) -> InboundEvent:
    message = event.message
    if len(event.profile_name or "") > _MAX_NAME_CHARS:
        event = replace(event, profile_name=None)
    reply_id = getattr(message, "reply_id", None)
    if kind_label(message.kind) != message.kind:
        return _as_unreadable(event, "message type of no known shape")
    if len(str(reply_id or "")) > _MAX_REPLY_ID_CHARS:
        return _as_unreadable(event, "reply id too long")
    if len(message.as_text()) > max_text_chars:
        return _as_unreadable(event, "message text too long")
    return event


def _as_unreadable(event: InboundEvent, reason: str, now: datetime | None = None) -> InboundEvent:
    """The event with its message kept as received but stored as unsupported; with
    ``now``, the time of arrival stands in for the message's own timestamp."""
    message = MalformedMessage.from_message(event.message, received_at=now)
    log.warning("webhook.message_unreadable", reason=reason, kind=message.kind)
    return replace(event, message=message)


def _moment(timestamp: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(timestamp), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _skipped(reason: str, kind: str) -> None:
    log.warning("webhook.message_skipped", reason=reason, kind=kind)


def _screen_statuses(payload: WebhookPayload) -> Iterator[tuple[str, MessageStatus]]:
    """A status whose message id is of no known shape matches none of ours: left out."""
    for phone_number_id, status in payload.iter_statuses():
        if usable_message_id(status.id):
            yield phone_number_id, status
        else:
            log.warning("webhook.status_skipped", problems="id: no known shape")


def normalize_customer_id(raw: str, region: str | None = None) -> str:
    """A customer key as the service stores it: a phone number as WhatsApp's wa_id
    (E.164 digits, no "+"), or a business-scoped user id as it is.

    `+250 788 123 456`, `00250788123456` and `250788123456` all give `250788123456`;
    `0788 123 456` does too with region `RW`. Anything phonenumbers does not consider a
    valid number raises ValueError.
    """
    text = raw.strip()
    if is_business_scoped_user_id(text):
        return text
    if not re.fullmatch(r"[+\d\s().-]{5,32}", text):
        raise ValueError("not a phone number or business-scoped user id")
    digits = re.sub(r"\D", "", text)
    candidates: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        candidates.append((text, None))
    elif digits.startswith("00"):
        candidates.append(("+" + digits[2:], None))
    else:
        candidates.append(("+" + digits, None))
        if region:
            candidates.append((text, region.upper()))
    for number_text, number_region in candidates:
        try:
            number = phonenumbers.parse(number_text, number_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    raise ValueError("not a valid phone number (international format, e.g. +250788123456)")
