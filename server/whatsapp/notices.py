"""Inbound kinds that are not a customer's request: notices about other messages
(reactions, edits, deletions), identity changes, and what nobody can read.

Each is stored, so the conversation's record is whole. Reactions, edits, deletions and
identity changes are not answered (``expects_reply`` is False); a message nobody can
read is, with the polite "can't read this" answer, because the customer did ask
something — we just cannot see what.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, model_serializer

from server.whatsapp.message_base import (
    IdString,
    LenientModel,
    MessageBase,
    kind_label,
    to_datetime,
    usable_message_id,
)

__all__ = [
    "EditMessage",
    "MalformedMessage",
    "ReactionMessage",
    "RevokeMessage",
    "SystemMessage",
    "UnknownMessage",
    "UnsupportedMessage",
]


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
    def expects_reply(self) -> bool:
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

    @property
    def expects_reply(self) -> bool:
        return False

    def as_text(self) -> str:
        return self.system.body


class EditedContent(LenientModel):
    """The message as it reads after the edit: Meta repeats its kind and content."""

    type: str | None = None
    text: dict[str, Any] | None = None

    def readable(self) -> str:
        body = self.text.get("body") if self.text else None
        if isinstance(body, str):
            return body
        media = getattr(self, self.type, None) if self.type else None
        caption = media.get("caption") if isinstance(media, dict) else None
        return caption if isinstance(caption, str) else ""


class EditPayload(LenientModel):
    original_message_id: str | None = None
    message: EditedContent | None = None


class EditMessage(MessageBase):
    """The customer edited a message they sent earlier (text, or a caption).

    Stored with the new wording and not answered. The earlier wording was usually
    answered already; answering every typo fix would double the conversation, and the
    customer who wants a different answer writes again, as in any chat. The operator
    sees the edit in the conversation's record.
    https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/edit
    """

    type: Literal["edit"]
    edit: EditPayload

    @property
    def is_supported(self) -> bool:
        return False

    @property
    def expects_reply(self) -> bool:
        return False

    def as_text(self) -> str:
        wording = self.edit.message.readable() if self.edit.message else ""
        return f"[edited] {wording}" if wording else "[edited]"


class RevokePayload(LenientModel):
    original_message_id: str | None = None


class RevokeMessage(MessageBase):
    """The customer deleted a message they sent: stored, not answered.
    https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/revoke
    """

    type: Literal["revoke"]
    revoke: RevokePayload

    @property
    def is_supported(self) -> bool:
        return False

    @property
    def expects_reply(self) -> bool:
        return False

    def as_text(self) -> str:
        return "[deleted a message]"


class UnsupportedDetail(LenientModel):
    type: str | None = None


# What Meta reports as `unsupported.type` for actions on messages already in the chat,
# not new requests: edits, deletions, pins, "keep in chat", undeliverable reactions.
_ACTIONS_ON_EARLIER_MESSAGES = frozenset({"edit", "revoke", "pin", "keep_in_chat", "reaction"})


class UnsupportedMessage(MessageBase):
    """What Meta sends for kinds it cannot deliver through the API (polls, GIFs, and on
    numbers outside the WhatsApp Business app, edits: ``unsupported.type == "edit"``)."""

    type: Literal["unsupported"]
    unsupported: UnsupportedDetail | None = None

    @property
    def is_supported(self) -> bool:
        return False

    @property
    def expects_reply(self) -> bool:
        detail = self.unsupported.type if self.unsupported else None
        return detail not in _ACTIONS_ON_EARLIER_MESSAGES


class UnknownMessage(MessageBase):
    """A ``type`` this code does not know yet; kept whole so nothing is lost."""

    @property
    def is_supported(self) -> bool:
        return False


class MalformedMessage(MessageBase):
    """A message its kind's model refused (a text without ``text``, a tap without
    ``interactive``...) or whose content the webhook's checks refused (a text longer
    than WhatsApp allows). Kept exactly as received, under the declared kind, and
    answered with the polite "can't read this": the customer sent something, and one
    odd message must not cost the rest of the delivery (Meta would retry it for days).
    """

    received: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def is_supported(self) -> bool:
        return False

    @model_serializer(mode="plain")
    def _as_received(self) -> dict[str, Any]:
        return self.received

    @classmethod
    def from_raw(
        cls, raw: object, *, received_at: datetime | None = None
    ) -> MalformedMessage | None:
        """The unreadable message, or None when it has no usable id or sender: such a
        message can be neither deduplicated nor answered."""
        if not isinstance(raw, dict) or not usable_message_id(raw.get("id")):
            return None
        sender = _as_id(raw.get("from"))
        user_id = raw.get("from_user_id") if isinstance(raw.get("from_user_id"), str) else None
        if not sender and not user_id:
            return None
        try:
            return cls(
                id=raw["id"],
                from_=sender,
                from_user_id=user_id,
                timestamp=_timestamp_or(raw.get("timestamp"), received_at),
                type=kind_label(raw.get("type")),
                received=raw,
            )
        except ValidationError:
            return None

    @classmethod
    def from_message(
        cls, message: MessageBase, *, received_at: datetime | None = None
    ) -> MalformedMessage:
        """A readable message the webhook's checks refused, as an unreadable one; with
        ``received_at``, its timestamp is replaced (it was the part refused)."""
        stamp = _timestamp_or(None, received_at) if received_at else message.timestamp
        return cls(
            id=message.id,
            from_=message.from_,
            from_user_id=message.from_user_id,
            timestamp=stamp,
            type=kind_label(message.kind),
            received=message.model_dump(mode="json", by_alias=True),
        )


def _as_id(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def _timestamp_or(value: object, received_at: datetime | None) -> str:
    """The sender's timestamp when it is a real moment, else when it reached us."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        text = str(value).strip()
        if text.isascii() and text.isdigit():
            try:
                to_datetime(text)
                return text
            except (OverflowError, ValueError, OSError):
                pass
    moment = received_at or datetime.now(UTC)
    return str(int(moment.timestamp()))
