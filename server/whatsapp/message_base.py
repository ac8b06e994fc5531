"""What every inbound WhatsApp message shares, whatever its kind.

The kinds themselves live in :mod:`server.whatsapp.messages` (what customers say) and
:mod:`server.whatsapp.notices` (what happens around their messages); this module holds
the base class and the small types both use, so neither imports the other's classes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

__all__ = [
    "ErrorDetail",
    "IdString",
    "LenientModel",
    "MediaObject",
    "MessageBase",
    "MessageContext",
    "UnixSeconds",
    "describe_errors",
    "kind_label",
    "to_datetime",
    "usable_message_id",
]


class LenientModel(BaseModel):
    """Base for every payload model: Meta's new fields are kept, never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _unix_seconds_to_str(value: Any) -> Any:
    """Meta documents timestamps as strings but some samples carry integers; accept both,
    and reject anything that is not a whole number of seconds so a bad body fails early."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
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

    code: int | None = None
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
    from_: IdString | None = Field(default=None, alias="from")
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

    @property
    def expects_reply(self) -> bool:
        """Whether the business answers it at all. A reaction, an edit or a number change
        is stored for the record but not answered: a reply to one would read like a bot
        talking to itself. Unreadable kinds that are requests still get the polite
        "can't read this" answer, so this is not the same as :attr:`is_supported`."""
        return True

    def as_text(self) -> str:
        return ""


# Meta's wamids are base64-ish and about 60 characters; bound them generously.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")
_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_ERRORS_DESCRIBED = 5


def usable_message_id(value: object) -> bool:
    """Whether a wamid can key a stored message: printable, bounded, non-empty."""
    return isinstance(value, str) and bool(_MESSAGE_ID.fullmatch(value))


def kind_label(declared: object) -> str:
    """A declared message ``type`` fit to be stored and logged, else ``unknown``."""
    return declared if isinstance(declared, str) and _KIND.fullmatch(declared) else "unknown"


def describe_errors(error: ValidationError) -> str:
    """Where a payload failed and how (``entry.0.id: string_type``), never with what
    it held: the input may be a customer's words, a card number among them."""
    parts = []
    for detail in error.errors(include_url=False, include_context=False, include_input=False):
        path = ".".join(_safe_location_part(part) for part in detail["loc"])
        parts.append(f"{path or 'body'}: {detail['type']}")
    extra = len(parts) - _MAX_ERRORS_DESCRIBED
    described = "; ".join(parts[:_MAX_ERRORS_DESCRIBED])
    return described + (f"; and {extra} more" if extra > 0 else "")


def _safe_location_part(part: str | int) -> str:
    """A location step is a field name, an index or a union tag of ours; a key of the
    sender's (a free-form dict) could be anything, so odd ones are not repeated."""
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z0-9_\[\]-]{1,40}", text) else "?"
