"""PII masking: one function for logs, traces and stored tool arguments.

A leaf module like state.py, so nodes and tools can use it. Masking keeps the last
digits of a phone number (enough to tell two customers apart while debugging) and
nothing that would let someone reach the customer.

What is masked, in this order (earlier patterns win, so a card number is never
half-eaten by the phone pattern): e-mails, IBANs (mod-97 checked), payment cards
(Luhn checked), national-id-like numbers (`123-45-6789`, runs of 16-20 digits that are
not cards), the patterns a deployment adds (`WA_AGENT_PII_PATTERNS`, installed at start
with `set_extra_patterns`), then phone numbers (7-15 digits).

Whole numbers are masked by the same rules read on their decimal text, so a wa_id or a
card that arrives as a JSON number is caught as well as one in a string; the one
exception is a number under a key that names a measurement (`amount_minor`, `count`,
`duration_ms`...), which is never read as a phone number: an amount of 1500000 stays
readable there, while a card number under any key is still masked.

Callers: the structlog processor (server/logging.py), the LangSmith anonymizer
(graph/infra/tracing.py), and whoever stores tool arguments and errors (`mask_record`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Two letters, two check digits, then 11-30 letters/digits, grouped by spaces or not.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# 13-19 digits, optionally grouped by spaces or dashes: a payment card candidate.
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# US-style social security numbers and other 3-2-4 grouped identifiers.
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
# 16-20 digits that failed the card check: national ids, account numbers.
_LONG_ID = re.compile(r"(?<![\w+])(?:\d[ -]?){15,19}\d(?!\d)")
# 7-15 digits with an optional +, brackets, spaces, dots or dashes: a phone number
# (an ISO date is not one).
_PHONE = re.compile(r"(?<![\w+])(?!\d{4}-\d{2}-\d{2}(?!\d))\+?\(?(?:\d[\s().-]{0,2}){6,14}\d(?!\d)")

PHONE_KEYS = frozenset(
    {"wa_id", "to", "from", "from_", "recipient_id", "phone", "display_phone_number"}
)
# Keys whose whole numbers are measurements, not identifiers: amounts, counts, sizes,
# durations, epoch times. Matched on any `_`-separated part (`amount_minor`, `input_tokens`).
_MEASUREMENT_KEY = re.compile(
    r"(?:^|_)(?:amount|price|total|cost|minor|quantity|qty|count|stock|size|bytes|tokens"
    r"|ms|seconds|duration|timestamp|created)(?:_|$)",
    re.IGNORECASE,
)
# Below seven digits no built-in rule can match a number (phones start at seven).
_SHORTEST_MASKED_NUMBER = 1_000_000

_extra_patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()


def set_extra_patterns(patterns: Mapping[str, str]) -> None:
    """Install the deployment's own formats ({label: regex}); matches become "[label]".

    Process-wide on purpose: the log processor and the trace hook must mask the same.
    """
    global _extra_patterns
    _extra_patterns = tuple((label, re.compile(regex)) for label, regex in patterns.items())


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_valid(text: str) -> bool:
    compact = text.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def mask_phone(value: str) -> str:
    """`250788123456` → `********3456`."""
    digits = re.sub(r"\D", "", value)
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if _luhn_valid(digits) else match.group()


def _mask_iban(match: re.Match[str]) -> str:
    return "[iban]" if _iban_valid(match.group()) else match.group()


def _mask_labelled(text: str) -> str:
    """Every rule that replaces a match with its kind (`[card]`), phones aside."""
    text = _EMAIL.sub("[email]", text)
    text = _IBAN.sub(_mask_iban, text)
    text = _CARD.sub(_mask_card, text)
    text = _SSN.sub("[id]", text)
    text = _LONG_ID.sub("[id]", text)
    for label, pattern in _extra_patterns:
        text = pattern.sub(f"[{label}]", text)
    return text


def _mask_phones(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


def mask_text(text: str) -> str:
    """Mask every kind of personal data this module knows inside free text."""
    return _mask_phones(_mask_labelled(text))


def mask_number(value: int, key: str | None = None) -> int | str:
    """A whole number as the text masker would see it: the masked text when any rule
    matches its digits, else the number itself (still a number in JSON logs).

    Under a measurement key a number is not taken for a phone number: seven or more
    digits are as common in amounts and durations as in phone numbers, and the key is
    the only thing that tells them apart.
    """
    text = str(value)
    if key in PHONE_KEYS:
        return mask_phone(text)
    if not _extra_patterns and abs(value) < _SHORTEST_MASKED_NUMBER:
        return value
    labelled = _mask_labelled(text)
    if labelled != text:
        return labelled
    if key is not None and _MEASUREMENT_KEY.search(key):
        return value
    phone = _mask_phones(text)
    return value if phone == text else phone


def mask_value(value: Any, key: str | None = None) -> Any:
    """Mask recursively through mappings and sequences; identifiers by key name.

    Whole numbers go through `mask_number`; floats, booleans and None pass unchanged
    (no one writes a phone or card number with a fraction). An object of any other type
    is masked as its text, because whatever renders it later (a log renderer, a trace
    serializer) would otherwise print it raw.
    """
    if isinstance(value, str):
        return mask_phone(value) if key in PHONE_KEYS else mask_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return mask_number(value, key)
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return mask_value(dump(mode="json"), key)
    return mask_value(str(value), key)


def mask_record(value: Any) -> Any:
    """A JSON-safe, masked copy for stores that must not keep PII raw: tool arguments
    and error texts in `agent_tool_executions`, for instance::

        arguments = Jsonb(mask_record(tool_call["args"]))
    """
    return mask_value(json.loads(json.dumps(value, default=str)))
