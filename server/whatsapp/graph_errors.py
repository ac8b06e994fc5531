"""The Cloud API's failures, and reading its JSON answers whatever their shape.

Meta's error bodies vary (an `error` object, a bare string, HTML from a proxy), so every
reader here tolerates any shape and answers with something the caller can act on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx

RETRYABLE_ERROR_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 133004})
"""Meta error codes that mean "try again later": transient failures and rate limits,
including 131056 (too many messages to one user). Others, like 131047 (outside the
24-hour window) or 100/131026 (bad request, undeliverable), will fail again unchanged."""


class WhatsAppError(Exception):
    """A call to the Cloud API failed; ``retryable`` says whether waiting could help."""

    def __init__(
        self,
        *,
        title: str,
        status_code: int,
        code: int | None = None,
        details: str = "",
        retryable: bool = False,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        self.title = title
        # The request may have reached Meta before the connection failed: a message
        # send in that state must not be repeated (Meta has no idempotency key).
        self.maybe_delivered = maybe_delivered
        self.status_code = status_code
        self.code = code
        self.details = details
        self.retryable = retryable
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.retry_after = retry_after
        where = f"HTTP {status_code}" if status_code else "no HTTP response"
        label = f"WhatsApp API error {code}" if code is not None else "WhatsApp API error"
        super().__init__(f"{label} ({where}): {title}" + (f" — {details}" if details else ""))


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def retry_after_seconds(header: str | None) -> float | None:
    """Seconds form only; an HTTP-date Retry-After falls back to our own backoff."""
    if header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def dict_at(container: Any, key: str) -> dict[str, Any]:
    """``container[key]`` if both are JSON objects, else ``{}``: error bodies vary."""
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, dict) else {}


def json_object(response: httpx.Response) -> dict[str, Any]:
    data = json_or_none(response)
    if not isinstance(data, dict):
        raise WhatsAppError(title="response is not a JSON object", status_code=response.status_code)
    return data


def error_from(response: httpx.Response, redact: Callable[[str], str]) -> WhatsAppError:
    """Graph's `{"error": {...}}` as a WhatsAppError, deciding whether waiting could help;
    `redact` hides the access token in whatever Meta echoed back."""
    error = dict_at(json_or_none(response), "error")
    code = int_or_none(error.get("code"))
    retryable = (
        response.status_code == 429 or response.status_code >= 500 or code in RETRYABLE_ERROR_CODES
    )
    return WhatsAppError(
        title=redact(str(error.get("message") or response.reason_phrase or "error")),
        status_code=response.status_code,
        code=code,
        details=redact(str(dict_at(error, "error_data").get("details") or "")),
        retryable=retryable,
        subcode=int_or_none(error.get("error_subcode")),
        fbtrace_id=str(error["fbtrace_id"]) if error.get("fbtrace_id") else None,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )
