"""Inbound WhatsApp message kinds a customer sends, one class per kind (pywa style).

Each kind knows how to say itself as text for the conversation graph (``as_text``) and
whether the bot should treat it as customer input at all (``is_supported``). A ``type``
this code has never seen, or a message its kind's model refuses, does not fail the
webhook (see :mod:`server.whatsapp.inbound`, which routes each raw message to its
class). Notices about other messages (reactions, edits...) live in
:mod:`server.whatsapp.notices`, the shared base in :mod:`server.whatsapp.message_base`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from server.whatsapp.message_base import (
    ErrorDetail,
    IdString,
    LenientModel,
    MediaObject,
    MessageBase,
    MessageContext,
    UnixSeconds,
    to_datetime,
)

__all__ = [
    "AudioMessage",
    "ButtonMessage",
    "ContactsMessage",
    "DocumentMessage",
    "ErrorDetail",
    "FlowReplyMessage",
    "IdString",
    "ImageMessage",
    "InteractiveMessage",
    "LenientModel",
    "LocationMessage",
    "MediaObject",
    "MessageBase",
    "MessageContext",
    "OrderMessage",
    "StickerMessage",
    "TextMessage",
    "UnixSeconds",
    "VideoMessage",
    "WelcomeRequestMessage",
    "to_datetime",
]


class TextBody(LenientModel):
    body: str


class TextMessage(MessageBase):
    type: Literal["text"]
    text: TextBody

    def as_text(self) -> str:
        return self.text.body


class ReplyOption(LenientModel):
    id: str
    title: str
    description: str | None = None


class InteractivePayload(LenientModel):
    type: str
    button_reply: ReplyOption | None = None
    list_reply: ReplyOption | None = None

    @property
    def reply(self) -> ReplyOption | None:
        return self.button_reply or self.list_reply


class InteractiveMessage(MessageBase):
    """A tap on one of our reply buttons or list rows."""

    type: Literal["interactive"]
    interactive: InteractivePayload

    @property
    def reply_id(self) -> str | None:
        """Our own id for the tapped option (e.g. ``menu:booking``), for deterministic routing."""
        reply = self.interactive.reply
        return reply.id if reply else None

    @property
    def is_supported(self) -> bool:
        """A tap carries a reply; an interactive subtype we do not know yet does not."""
        return self.interactive.reply is not None

    def as_text(self) -> str:
        reply = self.interactive.reply
        return reply.title if reply else ""


class FlowReply(LenientModel):
    name: str | None = None
    body: str | None = None
    response_json: str = "{}"


class FlowInteractive(LenientModel):
    type: Literal["nfm_reply"]
    nfm_reply: FlowReply


# Meta's own field in every flow reply, an opaque token we set when sending the flow:
# not something the customer filled in.
_FLOW_BOOKKEEPING = frozenset({"flow_token"})


class FlowReplyMessage(MessageBase):
    """A WhatsApp Flow the customer completed (``interactive.type == "nfm_reply"``).

    The agent reads the submitted fields, one ``name: value`` line each, under a
    ``[form reply]`` line; ``response_json`` arrives as a JSON string.
    https://developers.facebook.com/docs/whatsapp/flows/reference/responsemsgwebhook
    """

    type: Literal["interactive"]
    interactive: FlowInteractive

    @property
    def kind(self) -> str:
        return "flow_reply"

    @property
    def fields(self) -> dict[str, Any]:
        """What the customer submitted, without Meta's bookkeeping; {} if unreadable."""
        try:
            submitted = json.loads(self.interactive.nfm_reply.response_json)
        except ValueError:
            return {}
        if not isinstance(submitted, dict):
            return {}
        return {k: v for k, v in submitted.items() if k not in _FLOW_BOOKKEEPING}

    def as_text(self) -> str:
        lines = [f"{name}: {_field_text(value)}" for name, value in self.fields.items()]
        if not lines:
            fallback = (self.interactive.nfm_reply.body or "").strip()
            return f"[form reply] {fallback}" if fallback else "[form reply]"
        return "\n".join(["[form reply]", *lines])


def _field_text(value: Any) -> str:
    """A submitted value as a person would write it: text as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class TemplateButtonPayload(LenientModel):
    payload: str | None = None
    text: str = ""


class ButtonMessage(MessageBase):
    """A tap on a quick-reply button of a template we sent."""

    type: Literal["button"]
    button: TemplateButtonPayload

    @property
    def reply_id(self) -> str | None:
        return self.button.payload

    def as_text(self) -> str:
        return self.button.text


class _MediaMessage(MessageBase):
    @property
    def media(self) -> MediaObject:
        value = getattr(self, self.type)
        assert isinstance(value, MediaObject)
        return value

    def _labelled(self, label: str) -> str:
        caption = (self.media.caption or "").strip()
        return f"{label} {caption}" if caption else label

    def as_text(self) -> str:
        return self._labelled(f"[{self.type}]")


class ImageMessage(_MediaMessage):
    type: Literal["image"]
    image: MediaObject


class AudioMessage(_MediaMessage):
    type: Literal["audio"]
    audio: MediaObject

    def as_text(self) -> str:
        return "[voice note]" if self.audio.voice else "[audio]"


class VideoMessage(_MediaMessage):
    type: Literal["video"]
    video: MediaObject


class DocumentMessage(_MediaMessage):
    type: Literal["document"]
    document: MediaObject

    def as_text(self) -> str:
        name = self.document.filename
        return self._labelled(f"[document: {name}]" if name else "[document]")


class StickerMessage(_MediaMessage):
    type: Literal["sticker"]
    sticker: MediaObject

    def as_text(self) -> str:
        return "[animated sticker]" if self.sticker.animated else "[sticker]"


class LocationPayload(LenientModel):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class LocationMessage(MessageBase):
    type: Literal["location"]
    location: LocationPayload

    def as_text(self) -> str:
        place = ", ".join(part for part in (self.location.name, self.location.address) if part)
        coordinates = f"({self.location.latitude}, {self.location.longitude})"
        return f"[location] {place} {coordinates}" if place else f"[location] {coordinates}"


class SharedContactName(LenientModel):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class SharedContactPhone(LenientModel):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class SharedContact(LenientModel):
    name: SharedContactName | None = None
    phones: list[SharedContactPhone] = Field(default_factory=list)

    @property
    def display_name(self) -> str:
        if self.name is None:
            return ""
        if self.name.formatted_name:
            return self.name.formatted_name
        return " ".join(part for part in (self.name.first_name, self.name.last_name) if part)


class ContactsMessage(MessageBase):
    type: Literal["contacts"]
    contacts: list[SharedContact]

    def as_text(self) -> str:
        names = [contact.display_name for contact in self.contacts if contact.display_name]
        return f"[shared contact] {', '.join(names)}" if names else "[shared contact]"


class OrderItem(LenientModel):
    product_retailer_id: str
    quantity: int = 1
    item_price: float | None = None
    currency: str | None = None


class OrderPayload(LenientModel):
    catalog_id: str | None = None
    text: str | None = None
    product_items: list[OrderItem] = Field(default_factory=list)


class OrderMessage(MessageBase):
    type: Literal["order"]
    order: OrderPayload

    def as_text(self) -> str:
        count = sum(item.quantity for item in self.order.product_items)
        label = f"[order: {count} item{'s' if count != 1 else ''}]"
        note = (self.order.text or "").strip()
        return f"{label} {note}" if note else label


class WelcomeRequestMessage(MessageBase):
    """The customer opened the chat with the business for the first time (Meta's
    ``request_welcome``, sent when the number's welcome message is switched on).

    It carries no words, but it is a request: to be greeted. The graph reads it as the
    line below, so the rule-based menu (which greets) or the agent welcomes them.
    """

    type: Literal["request_welcome"]

    def as_text(self) -> str:
        return "[the customer opened the chat]"
