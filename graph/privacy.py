"""PII masking: one function for logs, traces and stored tool arguments.

A leaf module like state.py, so nodes and tools can use it. Masking keeps the last
digits of a phone number (enough to tell two customers apart while debugging) and
nothing that would let someone reach the customer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13-19 digits, optionally grouped by spaces or dashes: a payment card candidate.
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# 7-15 digits with an optional +, brackets, spaces, dots or dashes: a phone number.
_PHONE = re.compile(r"(?<![\w+])\+?(?:\d[\s().-]?){6,14}\d(?!\d)")

PHONE_KEYS = frozenset(
    {"wa_id", "to", "from", "from_", "recipient_id", "phone", "display_phone_number"}
)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask_phone(value: str) -> str:
    """`250788123456` → `********3456`."""
    digits = re.sub(r"\D", "", value)
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if _luhn_valid(digits) else match.group()


def mask_text(text: str) -> str:
    """Mask e-mails, Luhn-valid card numbers and phone numbers inside free text."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


def mask_value(value: Any, key: str | None = None) -> Any:
    """Mask recursively through mappings and sequences; identifiers by key name."""
    if isinstance(value, str):
        return mask_phone(value) if key in PHONE_KEYS else mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value
