"""Inbound WhatsApp message kinds, one class per ``type`` (pywa style).

Each kind knows how to say itself as text for the conversation graph (``as_text``) and
whether the bot should treat it as customer input at all (``is_supported``). A ``type``
this code has never seen parses into :class:`UnknownMessage` instead of failing, because
Meta adds kinds without notice and a 400 would make it retry the webhook for days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)


class LenientModel(BaseModel):
    """Base for every payload model: Meta's new fields are kept, never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _unix_seconds_to_str(value: Any) -> Any:
    """Meta documents timestamps as strings but some samples carry integers; accept both,
    and reject anything that is not a whole number of seconds so a bad body fails early."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    raise ValueError("timestamp must be unix seconds")


def _number_to_str(value: Any) -> Any:
    """Ids are strings in Meta's docs, but a few older fields arrive as JSON numbers."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


UnixSeconds = Annotated[str, BeforeValidator(_unix_seconds_to_str)]
IdString = Annotated[str, BeforeValidator(_number_to_str)]


def to_datetime(unix_seconds: str) -> datetime:
    return datetime.fromtimestamp(int(unix_seconds), tz=UTC)


class ErrorDetail(LenientModel):
    """An error as Meta embeds it in messages, statuses and change values."""

    code: int
    title: str = ""
    message: str | None = None
    details: str | None = None
    error_data: dict[str, Any] | None = None
    href: str | None = None

    @property
    def detail_text(self) -> str:
        """Meta puts the human explanation in different places depending on the event."""
        if self.error_data and isinstance(self.error_data.get("details"), str):
            return str(self.error_data["details"])
        return self.details or self.message or self.title


class MessageContext(LenientModel):
    """Present when the customer replied to, or forwarded, a message."""

    id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    forwarded: bool = False
    frequently_forwarded: bool = False


class MediaObject(LenientModel):
    """One shape for every media kind; fields that do not apply to a kind stay None."""

    id: str
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False
    animated: bool = False


class MessageBase(LenientModel):
    """What every inbound message carries, whatever its kind; ``id`` is the wamid we
    deduplicate on, so a message without one is rejected."""

    id: str
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    timestamp: UnixSeconds
    type: str
    context: MessageContext | None = None
    errors: list[ErrorDetail] | None = None

    @model_validator(mode="after")
    def _require_sender(self) -> Self:
        # With WhatsApp usernames Meta may omit the phone number (`from`) and send only the
        # business-scoped user id; a message with neither cannot be answered.
        if not self.from_ and not self.from_user_id:
            raise ValueError("message has neither 'from' nor 'from_user_id'")
        return self

    @property
    def kind(self) -> str:
        return self.type

    @property
    def occurred_at(self) -> datetime:
        return to_datetime(self.timestamp)

    @property
    def is_supported(self) -> bool:
        """Whether the conversation graph should read this message as customer input."""
        return True

    def as_text(self) -> str:
        return ""


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
    """A tap on one of our reply buttons or list rows; flow replies land here too."""

    type: Literal["interactive"]
    interactive: InteractivePayload

    @property
    def reply_id(self) -> str | None:
        """Our own id for the tapped option (e.g. ``menu:booking``), for deterministic routing."""
        reply = self.interactive.reply
        return reply.id if reply else None

    def as_text(self) -> str:
        reply = self.interactive.reply
        return reply.title if reply else ""


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


class ReactionPayload(LenientModel):
    message_id: str
    emoji: str | None = None


class ReactionMessage(MessageBase):
    type: Literal["reaction"]
    reaction: ReactionPayload

    @property
    def is_supported(self) -> bool:
        return False

    @property
    def removed(self) -> bool:
        """Meta signals an un-reaction by leaving out the emoji."""
        return not self.reaction.emoji

    def as_text(self) -> str:
        return "[reaction removed]" if self.removed else f"[reaction {self.reaction.emoji}]"


class SystemPayload(LenientModel):
    body: str = ""
    type: str | None = None
    wa_id: IdString | None = None
    new_wa_id: IdString | None = None
    user_id: str | None = None


class SystemMessage(MessageBase):
    """Identity changes (number or user id); bookkeeping for us, never customer words."""

    type: Literal["system"]
    system: SystemPayload

    @property
    def is_supported(self) -> bool:
        return False

    def as_text(self) -> str:
        return self.system.body


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


class UnsupportedMessage(MessageBase):
    """What Meta sends for kinds it cannot deliver through the API (e.g. polls, edits)."""

    type: Literal["unsupported"]

    @property
    def is_supported(self) -> bool:
        return False


class UnknownMessage(MessageBase):
    """A ``type`` this code does not know yet; kept whole so nothing is lost."""

    @property
    def is_supported(self) -> bool:
        return False


_KNOWN_KINDS: dict[str, type[MessageBase]] = {
    "text": TextMessage,
    "interactive": InteractiveMessage,
    "button": ButtonMessage,
    "image": ImageMessage,
    "audio": AudioMessage,
    "video": VideoMessage,
    "document": DocumentMessage,
    "sticker": StickerMessage,
    "location": LocationMessage,
    "contacts": ContactsMessage,
    "reaction": ReactionMessage,
    "system": SystemMessage,
    "order": OrderMessage,
    "unsupported": UnsupportedMessage,
}
_UNKNOWN_TAG = "unknown"


def _message_tag(raw: Any) -> str:
    """Route each message to its class by ``type``; anything else goes to UnknownMessage."""
    kind = raw.get("type") if isinstance(raw, dict) else getattr(raw, "type", None)
    return kind if isinstance(kind, str) and kind in _KNOWN_KINDS else _UNKNOWN_TAG


InboundMessage = Annotated[
    Annotated[TextMessage, Tag("text")]
    | Annotated[InteractiveMessage, Tag("interactive")]
    | Annotated[ButtonMessage, Tag("button")]
    | Annotated[ImageMessage, Tag("image")]
    | Annotated[AudioMessage, Tag("audio")]
    | Annotated[VideoMessage, Tag("video")]
    | Annotated[DocumentMessage, Tag("document")]
    | Annotated[StickerMessage, Tag("sticker")]
    | Annotated[LocationMessage, Tag("location")]
    | Annotated[ContactsMessage, Tag("contacts")]
    | Annotated[ReactionMessage, Tag("reaction")]
    | Annotated[SystemMessage, Tag("system")]
    | Annotated[OrderMessage, Tag("order")]
    | Annotated[UnsupportedMessage, Tag("unsupported")]
    | Annotated[UnknownMessage, Tag(_UNKNOWN_TAG)],
    Discriminator(_message_tag),
]
