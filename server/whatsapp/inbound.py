"""Every inbound message kind, and how one raw message becomes its kind.

A ``type`` this code has never seen parses into ``UnknownMessage`` instead of failing,
because Meta adds kinds without notice and a 400 would make it retry the webhook for
days; a message its kind's model refuses becomes a ``MalformedMessage``, so one odd
message costs nothing but itself (:func:`parse_message`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from server.whatsapp.message_base import MessageBase
from server.whatsapp.messages import (
    AudioMessage,
    ButtonMessage,
    ContactsMessage,
    DocumentMessage,
    FlowReplyMessage,
    ImageMessage,
    InteractiveMessage,
    LocationMessage,
    OrderMessage,
    StickerMessage,
    TextMessage,
    VideoMessage,
    WelcomeRequestMessage,
)
from server.whatsapp.notices import (
    EditMessage,
    MalformedMessage,
    ReactionMessage,
    RevokeMessage,
    SystemMessage,
    UnknownMessage,
    UnsupportedMessage,
)

__all__ = ["InboundMessage", "parse_message"]

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
    "request_welcome": WelcomeRequestMessage,
    "edit": EditMessage,
    "revoke": RevokeMessage,
    "unsupported": UnsupportedMessage,
}
_UNKNOWN_TAG = "unknown"
_FLOW_TAG = "flow_reply"
_MALFORMED_TAG = "malformed"


def _message_tag(raw: Any) -> str:
    """Route each message to its class by ``type`` (and a flow reply by its interactive
    ``type``); anything else goes to UnknownMessage."""
    if isinstance(raw, MessageBase):
        return _MALFORMED_TAG if isinstance(raw, MalformedMessage) else _instance_tag(raw)
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "interactive" and isinstance(raw, dict):
        interactive = raw.get("interactive")
        if isinstance(interactive, dict) and interactive.get("type") == "nfm_reply":
            return _FLOW_TAG
    return kind if isinstance(kind, str) and kind in _KNOWN_KINDS else _UNKNOWN_TAG


def _instance_tag(message: MessageBase) -> str:
    if isinstance(message, FlowReplyMessage):
        return _FLOW_TAG
    return message.type if message.type in _KNOWN_KINDS else _UNKNOWN_TAG


InboundMessage = Annotated[
    Annotated[TextMessage, Tag("text")]
    | Annotated[InteractiveMessage, Tag("interactive")]
    | Annotated[FlowReplyMessage, Tag(_FLOW_TAG)]
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
    | Annotated[WelcomeRequestMessage, Tag("request_welcome")]
    | Annotated[EditMessage, Tag("edit")]
    | Annotated[RevokeMessage, Tag("revoke")]
    | Annotated[UnsupportedMessage, Tag("unsupported")]
    | Annotated[UnknownMessage, Tag(_UNKNOWN_TAG)]
    | Annotated[MalformedMessage, Tag(_MALFORMED_TAG)],
    Discriminator(_message_tag),
]
_INBOUND = TypeAdapter[Any](InboundMessage)


def parse_message(raw: Any) -> tuple[MessageBase | None, ValidationError | None]:
    """One message as its kind, or as a :class:`MalformedMessage` when its kind's model
    refuses it (with the refusal, for the log); ``(None, refusal)`` when it has no
    usable id or sender, so it can be neither stored nor answered."""
    try:
        message: MessageBase = _INBOUND.validate_python(raw)
        return message, None
    except ValidationError as refusal:
        return MalformedMessage.from_raw(raw), refusal
