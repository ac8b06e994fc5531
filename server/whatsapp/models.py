"""Typed view of the WhatsApp Cloud API webhook body.

Meta keeps adding fields and message kinds, and retries a webhook for days when we answer
with an error, so these models are lenient about what they do not know (extra fields are
kept, an unknown message ``type`` becomes :class:`UnknownMessage`, changes other than
``messages`` stay raw) and strict only about the shape we rely on (``entry`` is a list, a
message has an ``id`` and a sender). A body that fails that strict part raises
:class:`pydantic.ValidationError`, which the webhook turns into a 400.

The message kinds live in :mod:`server.whatsapp.messages` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from server.whatsapp.messages import (
    AudioMessage,
    ButtonMessage,
    ContactsMessage,
    DocumentMessage,
    ErrorDetail,
    IdString,
    ImageMessage,
    InboundMessage,
    InteractiveMessage,
    LenientModel,
    LocationMessage,
    MediaObject,
    MessageBase,
    MessageContext,
    OrderMessage,
    ReactionMessage,
    StickerMessage,
    SystemMessage,
    TextMessage,
    UnixSeconds,
    UnknownMessage,
    UnsupportedMessage,
    VideoMessage,
    to_datetime,
)

__all__ = [
    "WHATSAPP_OBJECT",
    "AudioMessage",
    "ButtonMessage",
    "Change",
    "Contact",
    "ContactProfile",
    "ContactsMessage",
    "DocumentMessage",
    "Entry",
    "ErrorDetail",
    "ImageMessage",
    "InboundEvent",
    "InboundMessage",
    "InteractiveMessage",
    "LocationMessage",
    "MediaObject",
    "MessageBase",
    "MessageContext",
    "MessageStatus",
    "MessagesValue",
    "Metadata",
    "OrderMessage",
    "ReactionMessage",
    "StatusValue",
    "StickerMessage",
    "SystemMessage",
    "TextMessage",
    "UnknownMessage",
    "UnsupportedMessage",
    "VideoMessage",
    "WebhookPayload",
]

WHATSAPP_OBJECT = "whatsapp_business_account"
"""The only webhook ``object`` we act on; bodies for other objects parse to nothing."""

StatusValue = Literal["sent", "delivered", "read", "failed"]


class StatusConversation(LenientModel):
    id: str | None = None
    expiration_timestamp: str | None = None
    origin: dict[str, Any] | None = None


class StatusPricing(LenientModel):
    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    type: str | None = None


class MessageStatus(LenientModel):
    """Delivery news about a message WE sent; arrives out of order, ~3 per message."""

    id: str
    status: StatusValue | str
    timestamp: UnixSeconds
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    conversation: StatusConversation | None = None
    pricing: StatusPricing | None = None
    errors: list[ErrorDetail] = Field(default_factory=list)

    @property
    def occurred_at(self) -> datetime:
        return to_datetime(self.timestamp)

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"


class ContactProfile(LenientModel):
    name: str | None = None
    username: str | None = None


class Contact(LenientModel):
    profile: ContactProfile | None = None
    wa_id: str | None = None
    user_id: str | None = None


class Metadata(LenientModel):
    display_phone_number: str
    phone_number_id: str


class MessagesValue(LenientModel):
    """The ``value`` of a ``messages`` change: what one business number received."""

    messaging_product: str = "whatsapp"
    metadata: Metadata
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[InboundMessage] = Field(default_factory=list)
    statuses: list[MessageStatus] = Field(default_factory=list)
    errors: list[ErrorDetail] = Field(default_factory=list)

    def contact_for(self, message: MessageBase) -> Contact | None:
        """The sender's contact entry; matched by phone number, else by business user id."""
        for contact in self.contacts:
            if message.from_ and contact.wa_id == message.from_:
                return contact
        for contact in self.contacts:
            if message.from_user_id and contact.user_id == message.from_user_id:
                return contact
        return None


class Change(LenientModel):
    """One change; only ``messages`` changes are typed, other fields are kept raw."""

    field: str
    value: MessagesValue | None = None
    raw_value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _keep_foreign_fields_raw(cls, data: Any) -> Any:
        # Template, account and quality updates share this envelope with other shapes; they
        # must not fail validation just because we do not model them.
        if isinstance(data, dict) and data.get("field") != "messages":
            data = dict(data)
            data["raw_value"] = data.pop("value", None)
        return data


class Entry(LenientModel):
    id: IdString
    changes: list[Change] = Field(default_factory=list)


@dataclass(frozen=True)
class InboundEvent:
    """One customer message with the business number and sender identity resolved."""

    phone_number_id: str
    display_phone_number: str
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    username: str | None
    message: InboundMessage

    @property
    def sender_id(self) -> str:
        """A stable key for the sender: the phone number, or the business-scoped user id
        when a username hides the number."""
        return self.wa_id or self.user_id or ""


class WebhookPayload(LenientModel):
    """The whole POST body Meta sends to the webhook."""

    object: str
    entry: list[Entry] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _ignore_foreign_objects(cls, data: Any) -> Any:
        # Pages, Instagram and others use the same endpoint style with unrelated entries.
        if isinstance(data, dict) and data.get("object") != WHATSAPP_OBJECT:
            data = {key: value for key, value in data.items() if key != "entry"}
        return data

    def _values(self) -> Iterator[MessagesValue]:
        if self.object != WHATSAPP_OBJECT:
            return
        for entry in self.entry:
            for change in entry.changes:
                if change.value is not None:
                    yield change.value

    def iter_messages(self) -> Iterator[InboundEvent]:
        for value in self._values():
            for message in value.messages:
                contact = value.contact_for(message)
                profile = contact.profile if contact else None
                yield InboundEvent(
                    phone_number_id=value.metadata.phone_number_id,
                    display_phone_number=value.metadata.display_phone_number,
                    wa_id=message.from_ or (contact.wa_id if contact else None),
                    user_id=message.from_user_id or (contact.user_id if contact else None),
                    profile_name=profile.name if profile else None,
                    username=profile.username if profile else None,
                    message=message,
                )

    def iter_statuses(self) -> Iterator[tuple[str, MessageStatus]]:
        for value in self._values():
            for status in value.statuses:
                yield value.metadata.phone_number_id, status
