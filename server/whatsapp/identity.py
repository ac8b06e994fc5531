"""What a WhatsApp customer's key looks like: a phone number, or a business-scoped user id.

Meta identifies a customer by their phone number (``wa_id``, digits only) and, since
usernames can hide the number, by a business-scoped user id (BSUID) such as
``US.13491208655302741918``: an ISO country code, a dot, then letters and digits; a
parent BSUID shared by several businesses of one portfolio carries a second segment
(``US.ENT.11815799212886844830``). The service keys a customer by one of them, so both
the webhook (which keys it) and the client (which addresses it) must tell them apart
from the key's shape alone.

https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/
"""

from __future__ import annotations

import re

__all__ = [
    "is_business_scoped_user_id",
    "is_phone_number",
    "usable_user_id",
    "usable_wa_id",
]

# A wa_id is the number in international format without "+": E.164 allows 15 digits,
# and a few legacy ids are longer; fewer than 5 digits is no number anywhere.
_WA_ID = re.compile(r"\d{5,20}")
# Meta documents "up to 128 alphanumeric characters" after the country code.
_BSUID = re.compile(r"[A-Z]{2}(?:\.[A-Z]{2,10})?\.[A-Za-z0-9]{1,128}")


def is_phone_number(key: str) -> bool:
    """A wa_id: digits only, optionally written with a leading "+"."""
    return bool(_WA_ID.fullmatch(key.removeprefix("+")))


def is_business_scoped_user_id(key: str) -> bool:
    """A BSUID or a parent BSUID, e.g. ``US.13491208655302741918``."""
    return bool(_BSUID.fullmatch(key))


def usable_wa_id(value: str | None) -> str | None:
    """The phone number a webhook gave, or None when it is absent or of no known shape
    (a key of another shape would be stored and then addressed as a phone number)."""
    return value if value is not None and bool(_WA_ID.fullmatch(value)) else None


def usable_user_id(value: str | None) -> str | None:
    """The BSUID a webhook gave, or None when it is absent or of no known shape."""
    return value if value is not None and is_business_scoped_user_id(value) else None
