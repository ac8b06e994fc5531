"""Outbound message objects, checked against WhatsApp's limits before they leave.

Meta rejects an oversized button title or a twelfth list row with a generic error after a
network round trip; checking here turns that into a ValueError that names the field, and
nothing is sent. The builders return the message object without ``messaging_product``,
which :meth:`WhatsAppClient.send_message` adds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from graph.state import Reply
from server.whatsapp.identity import is_business_scoped_user_id
from server.whatsapp.templates import template_payload

TEXT_LIMIT = 4096
INTERACTIVE_BODY_LIMIT = 1024
HEADER_FOOTER_LIMIT = 60
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
LIST_BUTTON_LIMIT = 20
MAX_LIST_ROWS = 10
MAX_LIST_SECTIONS = 10
SECTION_TITLE_LIMIT = 24
ROW_ID_LIMIT = 200
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
MEDIA_CAPTION_LIMIT = 1024
DOCUMENT_FILENAME_LIMIT = 240
LOCATION_TEXT_LIMIT = 1000
MEDIA_ID = re.compile(r"[0-9A-Za-z_.-]{1,256}")

Button = tuple[str, str]
"""(id, title): the id comes back in the customer's reply, the title is what they see."""
ListRow = tuple[str, str, str | None]
"""(id, title, description)."""
ListSection = tuple[str, Sequence[ListRow]]
"""(section title, rows)."""


def recipient_fields(to: str) -> dict[str, str]:
    """How a message names its customer, chosen from the key's shape so callers pass
    one string: a phone number goes in ``to``, a business-scoped user id (a customer
    whose username hides the number) in ``recipient``. Meta reads ``to`` as a phone
    number and gives it precedence when both are present, so a BSUID never goes there.
    https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/
    """
    return {"recipient": to} if is_business_scoped_user_id(to) else {"to": to}


def addressed(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A hand-built message object (template, media...) whose ``to`` holds a BSUID,
    readdressed through ``recipient``; anything else unchanged."""
    message = dict(payload)
    to = message.get("to")
    if isinstance(to, str) and "recipient" not in message and is_business_scoped_user_id(to):
        del message["to"]
        message.update(recipient_fields(to))
    return message


def text_payload(
    to: str, text: str, *, reply_to: str | None = None, preview_url: bool = False
) -> dict[str, Any]:
    check_text("text", text, TEXT_LIMIT, hint="split it with split_text() first")
    payload: dict[str, Any] = {
        **recipient_fields(to),
        "type": "text",
        "text": {"body": text, "preview_url": preview_url},
    }
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    return payload


def buttons_payload(
    to: str,
    body: str,
    buttons: Sequence[Button],
    *,
    header: str | None = None,
    footer: str | None = None,
) -> dict[str, Any]:
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise ValueError(f"reply buttons: need 1 to {MAX_BUTTONS}, got {len(buttons)}")
    _check_unique_ids("button", [button_id for button_id, _ in buttons])
    for button_id, title in buttons:
        check_text("button id", button_id, BUTTON_ID_LIMIT)
        check_text("button title", title, BUTTON_TITLE_LIMIT)
    action = {
        "buttons": [
            {"type": "reply", "reply": {"id": button_id, "title": title}}
            for button_id, title in buttons
        ]
    }
    interactive = _interactive("button", body, action, header=header, footer=footer)
    return {**recipient_fields(to), "type": "interactive", "interactive": interactive}


def list_payload(
    to: str,
    body: str,
    button: str,
    sections: Sequence[ListSection],
    *,
    header: str | None = None,
    footer: str | None = None,
) -> dict[str, Any]:
    check_text("list button", button, LIST_BUTTON_LIMIT)
    _check_list_sections(sections)
    action = {
        "button": button,
        "sections": [
            {
                "title": section_title,
                "rows": [_list_row(row_id, title, desc) for row_id, title, desc in rows],
            }
            for section_title, rows in sections
        ],
    }
    interactive = _interactive("list", body, action, header=header, footer=footer)
    return {**recipient_fields(to), "type": "interactive", "interactive": interactive}


def media_payload(
    to: str,
    kind: str,
    *,
    link: str | None = None,
    media_id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """A photo (`image`) or a `document`, by link or by uploaded media id."""
    if kind not in ("image", "document"):
        raise ValueError(f"media kind must be image or document, got {kind!r}")
    if (link is None) == (media_id is None):
        raise ValueError(f"{kind}: give a link or a media id, exactly one")
    media: dict[str, str] = {}
    if link is not None:
        if not link.startswith(("https://", "http://")) or len(link) > 2000:
            raise ValueError(f"{kind} link must be an http(s) URL WhatsApp can fetch")
        media["link"] = link
    if media_id is not None:
        if not MEDIA_ID.fullmatch(media_id):
            raise ValueError(f"{kind}: {media_id!r} is not a media id")
        media["id"] = media_id
    _check_optional_text(f"{kind} caption", caption, MEDIA_CAPTION_LIMIT)
    if caption:
        media["caption"] = caption
    if filename is not None:
        if kind != "document":
            raise ValueError("only a document has a file name")
        check_text("document filename", filename, DOCUMENT_FILENAME_LIMIT)
        media["filename"] = filename
    return {**recipient_fields(to), "type": kind, kind: media}


def location_payload(
    to: str,
    latitude: float,
    longitude: float,
    *,
    name: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
        raise ValueError(f"location ({latitude}, {longitude}) is not on Earth")
    location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    for label, value in (("name", name), ("address", address)):
        _check_optional_text(f"location {label}", value, LOCATION_TEXT_LIMIT)
        if value:
            location[label] = value
    return {**recipient_fields(to), "type": "location", "location": location}


def reply_payload(to: str, reply: Reply) -> dict[str, Any]:
    """One reply part as the message object WhatsApp expects, checked."""
    if reply["kind"] == "text":
        return text_payload(to, reply["text"])
    if reply["kind"] == "buttons":
        buttons = [(button["id"], button["title"]) for button in reply["buttons"]]
        return buttons_payload(to, reply["body"], buttons)
    if reply["kind"] == "template":
        message = template_payload(
            reply["name"], reply["language"], reply["values"], named=reply["named"]
        )
        return {**recipient_fields(to), **message}
    if reply["kind"] == "image" or reply["kind"] == "document":
        return media_payload(
            to,
            reply["kind"],
            link=reply.get("link"),
            media_id=reply.get("media_id"),
            caption=reply.get("caption"),
            filename=reply.get("filename"),
        )
    if reply["kind"] == "location":
        return location_payload(
            to,
            reply["latitude"],
            reply["longitude"],
            name=reply.get("name"),
            address=reply.get("address"),
        )
    sections = [
        (s["title"], [(r["id"], r["title"], r.get("description")) for r in s["rows"]])
        for s in reply["sections"]
    ]
    return list_payload(to, reply["body"], reply["button"], sections)


def check_text(label: str, value: str, limit: int, *, hint: str = "") -> None:
    """Reject empty (or blank) and over-long strings, naming the field and the limit."""
    if not value or not value.strip():
        raise ValueError(f"{label} must not be empty")
    if len(value) > limit:
        extra = f"; {hint}" if hint else ""
        raise ValueError(f"{label} is {len(value)} characters, WhatsApp allows {limit}{extra}")


def _check_optional_text(label: str, value: str | None, limit: int) -> None:
    if value is not None:
        check_text(label, value, limit)


def _check_unique_ids(label: str, ids: Sequence[str]) -> None:
    # Duplicate ids would make two options indistinguishable when the reply comes back.
    if len(set(ids)) != len(ids):
        raise ValueError(f"{label} ids must be unique, got {list(ids)}")


def _check_list_sections(sections: Sequence[ListSection]) -> None:
    if not 1 <= len(sections) <= MAX_LIST_SECTIONS:
        raise ValueError(f"list sections: need 1 to {MAX_LIST_SECTIONS}, got {len(sections)}")
    if any(not rows for _, rows in sections):
        raise ValueError("list sections must each have at least one row")
    rows = [row for _, section_rows in sections for row in section_rows]
    if len(rows) > MAX_LIST_ROWS:
        raise ValueError(f"list rows: WhatsApp allows {MAX_LIST_ROWS} in total, got {len(rows)}")
    for section_title, _ in sections:
        # Meta requires section titles only when there is more than one section.
        if len(sections) > 1 or section_title:
            check_text("list section title", section_title, SECTION_TITLE_LIMIT)
    _check_unique_ids("list row", [row_id for row_id, _, _ in rows])
    for row_id, title, description in rows:
        check_text("list row id", row_id, ROW_ID_LIMIT)
        check_text("list row title", title, ROW_TITLE_LIMIT)
        _check_optional_text("list row description", description, ROW_DESCRIPTION_LIMIT)


def _list_row(row_id: str, title: str, description: str | None) -> dict[str, str]:
    row = {"id": row_id, "title": title}
    if description:
        row["description"] = description
    return row


def _interactive(
    kind: str, body: str, action: dict[str, Any], *, header: str | None, footer: str | None
) -> dict[str, Any]:
    check_text("interactive body", body, INTERACTIVE_BODY_LIMIT)
    _check_optional_text("header", header, HEADER_FOOTER_LIMIT)
    _check_optional_text("footer", footer, HEADER_FOOTER_LIMIT)
    interactive: dict[str, Any] = {"type": kind, "body": {"text": body}, "action": action}
    if header:
        interactive["header"] = {"type": "text", "text": header}
    if footer:
        interactive["footer"] = {"text": footer}
    return interactive


# ---------------------------------------------------------------------- splitting

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=\s)")
_WHITESPACE = re.compile(r"\s+")
_BOUNDARIES: tuple[tuple[re.Pattern[str], bool], ...] = (
    (_PARAGRAPH_BREAK, False),
    (_SENTENCE_END, True),  # keep the punctuation with its sentence: cut after the match
    (_WHITESPACE, False),
)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut a long reply into WhatsApp-sized parts where a person would cut it.

    Prefers a paragraph break, then a sentence end, then a space, within the second half
    of the window (so no part is needlessly short: every extra part is one more message
    against the per-user pacing limit); only an unbroken run longer than ``limit`` is
    hard-cut. Whitespace at a cut is dropped; nothing else is. Blank input gives ``[]``.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    remaining = text.strip()
    while len(remaining) > limit:
        cut = _best_cut(remaining[: limit + 1], limit)
        head, remaining = remaining[:cut].rstrip(), remaining[cut:].lstrip()
        if head:
            parts.append(head)
    if remaining:
        parts.append(remaining)
    return parts


def _best_cut(window: str, limit: int) -> int:
    """How many characters of ``window`` the next part keeps (1..limit)."""
    fallback = 0
    for pattern, cut_after_match in _BOUNDARIES:
        ends = [m.end() if cut_after_match else m.start() for m in pattern.finditer(window)]
        ends = [end for end in ends if 0 < end <= limit]
        if not ends:
            continue
        if ends[-1] >= limit // 2:
            return ends[-1]
        fallback = max(fallback, ends[-1])
    return fallback or limit
