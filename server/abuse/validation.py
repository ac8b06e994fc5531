"""Strict checks at the edges: the webhook body, and customer numbers typed by people.

The WhatsApp models stay lenient about what Meta may add (new fields, new kinds); this
module is strict about what would otherwise reach the database or a customer's record
malformed: text Postgres cannot store (NUL, lone surrogates, NaN), identifiers of absurd
shape or length, timestamps no calendar holds, texts longer than any WhatsApp message.
A body failing here is answered 400 and nothing of it is stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

import phonenumbers
from pydantic import ValidationError

from server.whatsapp.models import WebhookPayload

# Meta's wamids are base64-ish and about 60 characters; bound them generously.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")
_WA_ID = re.compile(r"\d{5,20}")
_USER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NUMBER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A business-scoped user id, the key of a customer whose username hides the number.
_BUSINESS_USER_ID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{5,128}")
# JSON refuses raw control characters, so a NUL can only arrive as a \u escape; a
# surrogate as an escape or as UTF-8 bytes (json.loads decodes with "surrogatepass").
_ESCAPES_TO_CHECK = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_MAX_NAME_CHARS = 512
_MAX_REPLY_ID_CHARS = 1024


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


def parse_webhook(body: bytes, *, max_text_chars: int) -> WebhookPayload:
    """The typed payload, or `InvalidWebhook` for anything the service must not store."""
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidWebhook("body is not valid JSON") from exc
    if _ESCAPES_TO_CHECK.search(body):  # the only ways in for NUL or a lone surrogate
        _check_strings(document)
    try:
        payload = WebhookPayload.model_validate(document)
    except (ValidationError, ValueError, RecursionError) as exc:
        raise InvalidWebhook(f"payload does not match the webhook schema: {exc}"[:300]) from exc
    _check_events(payload, max_text_chars)
    return payload


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise InvalidWebhook(reason)


def _check_events(payload: WebhookPayload, max_text_chars: int) -> None:
    for event in payload.iter_messages():
        message = event.message
        _check(bool(_MESSAGE_ID.fullmatch(message.id)), "message id of an unknown shape")
        _check(bool(_KIND.fullmatch(message.type)), "message type of an unknown shape")
        _check(bool(_NUMBER_ID.fullmatch(event.phone_number_id)), "phone_number_id malformed")
        _check(event.wa_id is None or bool(_WA_ID.fullmatch(event.wa_id)), "wa_id malformed")
        _check(
            event.user_id is None or bool(_USER_ID.fullmatch(event.user_id)), "user_id malformed"
        )
        _check(len(event.profile_name or "") <= _MAX_NAME_CHARS, "profile name too long")
        reply_id = getattr(message, "reply_id", None)
        _check(len(str(reply_id or "")) <= _MAX_REPLY_ID_CHARS, "reply id too long")
        try:
            message.occurred_at  # noqa: B018 - the conversion is the check
        except (OverflowError, ValueError, OSError) as exc:
            raise InvalidWebhook("timestamp out of range") from exc
        _check(len(message.as_text()) <= max_text_chars, "message text too long")
    for _, status in payload.iter_statuses():
        _check(bool(_MESSAGE_ID.fullmatch(status.id)), "status id of an unknown shape")


def normalize_customer_id(raw: str, region: str | None = None) -> str:
    """A customer key as the service stores it: a phone number as WhatsApp's wa_id
    (E.164 digits, no "+"), or a business-scoped user id as it is.

    `+250 788 123 456`, `00250788123456` and `250788123456` all give `250788123456`;
    `0788 123 456` does too with region `RW`. Anything phonenumbers does not consider a
    valid number raises ValueError.
    """
    text = raw.strip()
    if _BUSINESS_USER_ID.fullmatch(text):
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
