"""Typed view of the WhatsApp Cloud API webhook body.

Meta retries a webhook for days when we answer with an error, and one signed delivery
may carry many messages, statuses and changes, so the models are strict about the
envelope only (an object with ``entry`` a list of entries whose ``changes`` are a list)
and lenient inside it, one item at a time:

- a message its kind's model refuses becomes a ``MalformedMessage`` (stored, answered
  politely); one with no usable id or sender is left out, with a warning;
- a status, a contact or a ``messages`` change value that does not parse is left out,
  with a warning, and the rest of the delivery stands;
- fields the service never reads are not checked (``Any``), so a changed type there
  (an integer ``expiration_timestamp``) costs nothing.

An envelope that fails raises :class:`pydantic.ValidationError` (the webhook's 400).
The warnings name the field path and the error type, never a value. The message kinds
live in :mod:`server.whatsapp.messages` and :mod:`server.whatsapp.notices`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import structlog
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from server.whatsapp.identity import usable_user_id, usable_wa_id
from server.whatsapp.inbound import InboundMessage, parse_message
from server.whatsapp.message_base import (
    ErrorDetail,
    IdString,
    LenientModel,
    MessageBase,
    describe_errors,
)
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
from server.whatsapp.templates import TemplateStatusUpdate

# The message kinds are re-exported: callers read the whole webhook vocabulary here.
__all__ = [
    "WHATSAPP_OBJECT",
    "AudioMessage",
    "ButtonMessage",
    "Change",
    "Contact",
    "ContactProfile",
    "ContactsMessage",
    "DocumentMessage",
    "EditMessage",
    "Entry",
    "ErrorDetail",
    "FlowReplyMessage",
    "ImageMessage",
    "InboundEvent",
    "InboundMessage",
    "InteractiveMessage",
    "LocationMessage",
    "MalformedMessage",
    "MessageBase",
    "MessageStatus",
    "MessagesValue",
    "Metadata",
    "OrderMessage",
    "ReactionMessage",
    "RevokeMessage",
    "StatusValue",
    "StickerMessage",
    "SystemMessage",
    "TextMessage",
    "UnknownMessage",
    "UnsupportedMessage",
    "VideoMessage",
    "WebhookPayload",
    "WelcomeRequestMessage",
]

log = structlog.get_logger(__name__)

WHATSAPP_OBJECT = "whatsapp_business_account"
TEMPLATE_STATUS_FIELD = "message_template_status_update"
"""The only webhook ``object`` we act on; bodies for other objects parse to nothing."""

StatusValue = Literal["sent", "delivered", "read", "failed"]

_Item = TypeVar("_Item", bound=LenientModel)


def _each(model: type[_Item], what: str) -> Callable[[Any], Any]:
    """A list validator that keeps the items that parse and logs the others."""

    def keep_readable(raw: Any) -> Any:
        if not isinstance(raw, list):
            return raw  # not a list at all: the field's own type check refuses it
        kept: list[_Item] = []
        for item in raw:
            try:
                kept.append(model.model_validate(item))
            except ValidationError as refusal:
                log.warning(f"webhook.{what}_skipped", problems=describe_errors(refusal))
        return kept

    return keep_readable


def _each_message(raw: Any) -> Any:
    """Every message as its kind or as a malformed one; see the module docstring."""
    if not isinstance(raw, list):
        return raw
    kept: list[MessageBase] = []
    for item in raw:
        message, refusal = parse_message(item)
        problems = describe_errors(refusal) if refusal is not None else ""
        if message is None:
            log.warning(
                "webhook.message_skipped", reason="no usable id or sender", problems=problems
            )
            continue
        if refusal is not None:
            log.warning("webhook.message_unreadable", kind=message.kind, problems=problems)
        kept.append(message)
    return kept


class MessageStatus(LenientModel):
    """Delivery news about a message WE sent; arrives out of order, ~3 per message.
    Only ``id``, ``status`` and ``errors`` are read; the rest is kept as sent."""

    id: str
    status: StatusValue | str
    timestamp: Any = None
    recipient_id: Any = None
    recipient_user_id: Any = None
    conversation: Any = None
    pricing: Any = None
    errors: Annotated[list[ErrorDetail], BeforeValidator(_each(ErrorDetail, "status_error"))] = (
        Field(default_factory=list)
    )

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"


class ContactProfile(LenientModel):
    name: str | None = None
    username: str | None = None


class Contact(LenientModel):
    profile: ContactProfile | None = None
    wa_id: IdString | None = None
    user_id: str | None = None


class Metadata(LenientModel):
    display_phone_number: IdString = ""
    phone_number_id: IdString


class MessagesValue(LenientModel):
    """The ``value`` of a ``messages`` change: what one business number received."""

    messaging_product: Any = "whatsapp"
    metadata: Metadata
    contacts: Annotated[list[Contact], BeforeValidator(_each(Contact, "contact"))] = Field(
        default_factory=list
    )
    messages: Annotated[list[InboundMessage], BeforeValidator(_each_message)] = Field(
        default_factory=list
    )
    statuses: Annotated[list[MessageStatus], BeforeValidator(_each(MessageStatus, "status"))] = (
        Field(default_factory=list)
    )
    errors: Any = None

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

    @field_validator("value", mode="wrap")
    @classmethod
    def _skip_unreadable_value(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A value with no usable business number (``metadata``) or with lists that are
        not lists cannot be told apart into messages; it alone is left out."""
        try:
            return handler(value)
        except ValidationError as refusal:
            log.warning("webhook.change_skipped", problems=describe_errors(refusal))
            return None


class Entry(LenientModel):
    id: Any = None
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
    message: MessageBase

    @property
    def sender_id(self) -> str:
        """A stable key for the sender: the phone number, or the business-scoped user id
        when a username hides the number."""
        return self.wa_id or self.user_id or ""


class WebhookPayload(LenientModel):
    """The whole POST body Meta sends to the webhook."""

    object: str
    entry: list[Entry] = Field(default_factory=list)
    _screened: tuple[list[InboundEvent], list[tuple[str, MessageStatus]]] | None = PrivateAttr(
        default=None
    )

    @model_validator(mode="before")
    @classmethod
    def _ignore_foreign_objects(cls, data: Any) -> Any:
        # Pages, Instagram and others use the same endpoint style with unrelated entries.
        if isinstance(data, dict) and data.get("object") != WHATSAPP_OBJECT:
            data = {key: value for key, value in data.items() if key != "entry"}
        return data

    def keep_only(
        self, events: Iterable[InboundEvent], statuses: Iterable[tuple[str, MessageStatus]]
    ) -> None:
        """What the webhook's checks let through (server/abuse/validation.py): from now
        on the only events and statuses this payload yields."""
        self._screened = (list(events), list(statuses))

    def _values(self) -> Iterator[MessagesValue]:
        if self.object != WHATSAPP_OBJECT:
            return
        for entry in self.entry:
            for change in entry.changes:
                if change.value is not None:
                    yield change.value

    def iter_messages(self) -> Iterator[InboundEvent]:
        if self._screened is not None:
            yield from self._screened[0]
            return
        for value in self._values():
            for message in value.messages:
                yield _event(value, message)

    def iter_statuses(self) -> Iterator[tuple[str, MessageStatus]]:
        if self._screened is not None:
            yield from self._screened[1]
            return
        for value in self._values():
            for status in value.statuses:
                yield value.metadata.phone_number_id, status

    def iter_template_updates(self) -> Iterator[TemplateStatusUpdate]:
        """Templates approved, paused, disabled… (`message_template_status_update`)."""
        if self.object != WHATSAPP_OBJECT:
            return
        for entry in self.entry:
            for change in entry.changes:
                if change.field == TEMPLATE_STATUS_FIELD:
                    update = TemplateStatusUpdate.from_value(change.raw_value)
                    if update is not None:
                        yield update


def _event(value: MessagesValue, message: MessageBase) -> InboundEvent:
    """The message with its sender resolved; an id of no known shape counts as absent,
    so it is never stored as a customer's key nor addressed."""
    contact = value.contact_for(message)
    profile = contact.profile if contact else None
    return InboundEvent(
        phone_number_id=value.metadata.phone_number_id,
        display_phone_number=value.metadata.display_phone_number,
        wa_id=usable_wa_id(message.from_ or (contact.wa_id if contact else None)),
        user_id=usable_user_id(message.from_user_id or (contact.user_id if contact else None)),
        profile_name=profile.name if profile else None,
        username=profile.username if profile else None,
        message=message,
    )
