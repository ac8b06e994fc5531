"""How money is asked for: a provider turns a confirmed payment into a link or instructions.

Two providers behind one small interface:

- `ManualBankTransferProvider` needs no account anywhere: it returns bank-transfer (and
  optionally mobile-money) instructions carrying our payment reference; staff mark the
  payment paid when the money arrives.
- `HttpPaymentLinkProvider` speaks a plain payment-link API, the shape most hosted
  checkout services share:

      POST {base}/v1/payment_links            Idempotency-Key: <ours>
           {"amount", "currency", "reference", "description", "customer": {"phone"}}
           → {"id", "url", "status", "expires_at"}
      GET  {base}/v1/payment_links/{id}        → {"id", "status", "receipt_url"?, ...}
      POST {base}/v1/payment_links/{id}/cancel → {"id", "status": "cancelled"}

  Bearer-key auth, a timeout per request, bounded retries with exponential backoff on
  transport errors, 429 and 5xx. The Idempotency-Key makes a retried or re-run create
  return the link made the first time, so a crash between the provider's answer and our
  database update never creates a second link.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from tools.common import format_money

PaymentStatus = Literal["pending", "paid", "failed", "cancelled", "expired"]

_STATUS_ALIASES: dict[str, PaymentStatus] = {
    "created": "pending",
    "open": "pending",
    "pending": "pending",
    "processing": "pending",
    "paid": "paid",
    "succeeded": "paid",
    "completed": "paid",
    "failed": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "expired": "expired",
}


class PaymentProviderError(Exception):
    """The provider refused or could not be reached after its retries."""


@dataclass(frozen=True)
class PaymentLinkRequest:
    reference: str  # ours, shown to the customer and sent to the provider
    idempotency_key: str
    amount_minor: int
    currency: str
    description: str
    customer_wa_id: str


@dataclass(frozen=True)
class PaymentLink:
    provider_reference: str
    status: PaymentStatus
    url: str | None = None
    instructions: str | None = None
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class ProviderView:
    """What the provider says of a payment now; a paid one may come with its receipt
    (a PDF at an https address)."""

    status: PaymentStatus
    receipt_url: str | None = None


class PaymentProvider(Protocol):
    name: str

    async def create_link(self, request: PaymentLinkRequest) -> PaymentLink: ...

    async def get_status(self, provider_reference: str) -> ProviderView | None:
        """The provider's view, or None when only our table knows (manual payments)."""

    async def cancel(self, provider_reference: str) -> None: ...


class ManualBankTransferProvider:
    """Bank transfer (and mobile money, when a merchant code is given) with a reference."""

    name = "manual_bank_transfer"

    def __init__(
        self,
        *,
        bank_name: str,
        account_name: str,
        account_number: str,
        mobile_money_code: str | None = None,
        validity_hours: int = 48,
    ) -> None:
        self.bank_name = bank_name
        self.account_name = account_name
        self.account_number = account_number
        self.mobile_money_code = mobile_money_code
        self.validity = dt.timedelta(hours=validity_hours)

    async def create_link(self, request: PaymentLinkRequest) -> PaymentLink:
        amount = format_money(request.amount_minor, request.currency)
        lines = [
            f"Pay {amount} by bank transfer to {self.bank_name}, account "
            f"{self.account_number} ({self.account_name}), with the reference "
            f"{request.reference}."
        ]
        if self.mobile_money_code:
            lines.append(
                f"Or by mobile money to merchant code {self.mobile_money_code}, "
                f"reference {request.reference}."
            )
        lines.append("We confirm the payment on WhatsApp once it arrives.")
        return PaymentLink(
            provider_reference=request.reference,
            status="pending",
            instructions=" ".join(lines),
            expires_at=dt.datetime.now(dt.UTC) + self.validity,
        )

    async def get_status(self, provider_reference: str) -> ProviderView | None:
        return None

    async def cancel(self, provider_reference: str) -> None:
        return None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and (
        exc.response.status_code == 429 or exc.response.status_code >= 500
    )


class HttpPaymentLinkProvider:
    """A hosted payment-link service over HTTP (see the module docstring for the API)."""

    name = "http"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_seconds: float = 10.0,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout_seconds,
            transport=transport,
        )
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create_link(self, request: PaymentLinkRequest) -> PaymentLink:
        body = {
            "amount": request.amount_minor,
            "currency": request.currency,
            "reference": request.reference,
            "description": request.description,
            "customer": {"phone": request.customer_wa_id},
        }
        data = await self._call(
            "POST",
            "/v1/payment_links",
            json=body,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        link_id, url = data.get("id"), data.get("url")
        if not isinstance(link_id, str) or not isinstance(url, str):
            raise PaymentProviderError("the provider's answer has no link id or url")
        return PaymentLink(
            provider_reference=link_id,
            status=_status(data.get("status")),
            url=url,
            expires_at=_timestamp(data.get("expires_at")),
        )

    async def get_status(self, provider_reference: str) -> ProviderView | None:
        data = await self._call("GET", f"/v1/payment_links/{provider_reference}")
        receipt = data.get("receipt_url")
        usable = (
            isinstance(receipt, str) and receipt.startswith("https://") and len(receipt) <= 2000
        )
        return ProviderView(_status(data.get("status")), receipt if usable else None)

    async def cancel(self, provider_reference: str) -> None:
        await self._call("POST", f"/v1/payment_links/{provider_reference}/cancel")

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_exponential(multiplier=self._backoff_base, max=5.0),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    response = await self._client.request(method, path, **kwargs)
                    response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            detail = exc.response.text[:200]
            raise PaymentProviderError(
                f"provider answered {exc.response.status_code}: {detail}"
            ) from exc
        except httpx.TransportError as exc:
            raise PaymentProviderError(f"provider unreachable: {type(exc).__name__}") from exc
        data = response.json()
        if not isinstance(data, dict):
            raise PaymentProviderError("the provider's answer is not a JSON object")
        return data


def _status(raw: object) -> PaymentStatus:
    status = _STATUS_ALIASES.get(str(raw).lower())
    if status is None:
        raise PaymentProviderError(f"unknown payment status from the provider: {raw!r}")
    return status


def _timestamp(raw: object) -> dt.datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def create_payment_provider(
    kind: Literal["manual", "http"],
    *,
    api_base_url: str | None = None,
    api_key: str | None = None,
    timeout_seconds: float = 10.0,
    max_attempts: int = 3,
    bank_name: str = "",
    account_name: str = "",
    account_number: str = "",
    mobile_money_code: str | None = None,
) -> PaymentProvider:
    """The configured provider; the caller passes settings' values (tools read none)."""
    if kind == "http":
        if not api_base_url or not api_key:
            raise ValueError("the http payment provider needs a base URL and an API key")
        return HttpPaymentLinkProvider(
            base_url=api_base_url,
            api_key=api_key,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
        )
    return ManualBankTransferProvider(
        bank_name=bank_name,
        account_name=account_name,
        account_number=account_number,
        mobile_money_code=mobile_money_code,
    )
