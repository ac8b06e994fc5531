"""Builders for the webhook bodies Meta POSTs, shaped like the Cloud API reference.

Each ``*_message`` / ``status_update`` builder returns one change ``value`` object (what a
business number received); :func:`envelope` wraps any number of them into the full body,
and :func:`sign` gives the ``X-Hub-Signature-256`` header for it. Unique wamids are made
up when none is given, because the service deduplicates on them::

    body = json.dumps(envelope(text_message("15550001", "hi"))).encode()
    headers = {"X-Hub-Signature-256": sign(body, app_secret)}
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

__all__ = [
    "DISPLAY_PHONE_NUMBER",
    "envelope",
    "image_message",
    "interactive_reply",
    "message_value",
    "new_wamid",
    "sign",
    "status_update",
    "text_message",
    "unknown_message",
]

JSON = dict[str, Any]

DISPLAY_PHONE_NUMBER = "15550783881"
WABA_ID = "102290129340398"


def new_wamid() -> str:
    return f"wamid.{uuid.uuid4().hex}"


def _now() -> str:
    return str(int(time.time()))


def _metadata(phone_number_id: str) -> JSON:
    return {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": phone_number_id}


def message_value(
    wa_id: str | None,
    message_type: str,
    content: Any,
    *,
    wamid: str | None = None,
    phone_number_id: str = "PNID",
    name: str | None = "Ada",
    user_id: str | None = None,
    timestamp: str | None = None,
    context: JSON | None = None,
) -> JSON:
    """One inbound message of any kind: ``content`` goes under the key named by its type.

    ``wa_id=None`` with a ``user_id`` models a customer whose username hides the number:
    Meta then leaves out ``from`` and ``wa_id`` and sends ``from_user_id`` / ``user_id``.
    """
    message: JSON = {"id": wamid or new_wamid(), "timestamp": timestamp or _now()}
    if wa_id is not None:
        message["from"] = wa_id
    if user_id is not None:
        message["from_user_id"] = user_id
    message["type"] = message_type
    if content is not None:
        message[message_type] = content
    if context is not None:
        message["context"] = context
    contact: JSON = {"profile": {"name": name} if name else {}}
    if wa_id is not None:
        contact["wa_id"] = wa_id
    if user_id is not None:
        contact["user_id"] = user_id
    return {
        "messaging_product": "whatsapp",
        "metadata": _metadata(phone_number_id),
        "contacts": [contact],
        "messages": [message],
    }


def text_message(
    wa_id: str,
    text: str,
    *,
    wamid: str | None = None,
    phone_number_id: str = "PNID",
    name: str = "Ada",
    user_id: str | None = None,
    reply_to: str | None = None,
) -> JSON:
    context = {"from": DISPLAY_PHONE_NUMBER, "id": reply_to} if reply_to else None
    return message_value(
        wa_id,
        "text",
        {"body": text},
        wamid=wamid,
        phone_number_id=phone_number_id,
        name=name,
        user_id=user_id,
        context=context,
    )


def interactive_reply(
    wa_id: str,
    reply_id: str,
    title: str,
    *,
    description: str | None = None,
    list_reply: bool = False,
    wamid: str | None = None,
    phone_number_id: str = "PNID",
    name: str = "Ada",
    user_id: str | None = None,
    replied_to: str | None = None,
) -> JSON:
    """A tap on a reply button (default) or a list row (``list_reply=True``)."""
    kind = "list_reply" if list_reply else "button_reply"
    reply: JSON = {"id": reply_id, "title": title}
    if description is not None:
        reply["description"] = description
    return message_value(
        wa_id,
        "interactive",
        {"type": kind, kind: reply},
        wamid=wamid,
        phone_number_id=phone_number_id,
        name=name,
        user_id=user_id,
        context={"from": DISPLAY_PHONE_NUMBER, "id": replied_to or new_wamid()},
    )


def image_message(
    wa_id: str,
    media_id: str,
    *,
    caption: str | None = None,
    mime_type: str = "image/jpeg",
    sha256: str = "a3f1c2d4e5",
    wamid: str | None = None,
    phone_number_id: str = "PNID",
    name: str = "Ada",
    user_id: str | None = None,
) -> JSON:
    image: JSON = {"id": media_id, "mime_type": mime_type, "sha256": sha256}
    if caption is not None:
        image["caption"] = caption
    return message_value(
        wa_id,
        "image",
        image,
        wamid=wamid,
        phone_number_id=phone_number_id,
        name=name,
        user_id=user_id,
    )


def unknown_message(
    wa_id: str,
    *,
    message_type: str = "hologram",
    content: Any = None,
    wamid: str | None = None,
    phone_number_id: str = "PNID",
    name: str = "Ada",
) -> JSON:
    """A message of a kind Meta may invent tomorrow."""
    return message_value(
        wa_id,
        message_type,
        content if content is not None else {"shape": "unknown"},
        wamid=wamid,
        phone_number_id=phone_number_id,
        name=name,
    )


def status_update(
    wamid: str,
    status: str,
    *,
    recipient_id: str = "15550001111",
    errors: list[JSON] | None = None,
    phone_number_id: str = "PNID",
    user_id: str | None = None,
    timestamp: str | None = None,
) -> JSON:
    """Delivery news for a message we sent (``sent``/``delivered``/``read``/``failed``)."""
    entry: JSON = {
        "id": wamid,
        "status": status,
        "timestamp": timestamp or _now(),
        "recipient_id": recipient_id,
    }
    if user_id is not None:
        entry["recipient_user_id"] = user_id
    if status != "failed":
        entry["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": "service"}}
        entry["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
    if errors is not None:
        entry["errors"] = errors
    return {
        "messaging_product": "whatsapp",
        "metadata": _metadata(phone_number_id),
        "statuses": [entry],
    }


def envelope(*values: JSON, waba_id: str = WABA_ID) -> JSON:
    """The full webhook body: one entry whose changes are the given ``messages`` values."""
    changes = [{"value": value, "field": "messages"} for value in values]
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": changes}]}


def sign(body: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256`` value: HMAC-SHA256 of the raw body with the app secret."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
