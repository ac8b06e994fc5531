"""Every business number this deployment answers, each with its own Cloud API client.

The numbers are the rows of `business_numbers` (:mod:`server.whatsapp.number_book`)
and, when `WHATSAPP_PHONE_NUMBER_ID` is set, the environment's number, so a `.env` with
one number works with an empty table; a row with the same id wins. Each process reads
the rows at start, again every `refresh_seconds`, and at once (at most every
`_MISS_PAUSE_S`) when a delivery names a number it does not know: a number added by
the CLI is answered within seconds, and a flood for a stranger does not read the table
for every request.

A delivery is trusted for a number only when that number's app secret signed it; a
reply goes out through the client of the number the conversation belongs to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
import structlog
from psycopg_pool import PoolTimeout

from graph.infra.database import Pool
from graph.state import Reply
from server.whatsapp.aiohttp_transport import graph_api_client
from server.whatsapp.client import WhatsAppClient
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.number_book import BusinessNumber, NumberBook
from server.whatsapp.secret_refs import SecretRefError, resolve_ref

__all__ = ["ApiOptions", "NumberSecrets", "WhatsAppNumbers", "signature_is_valid"]

log = structlog.get_logger(__name__)

_MISS_PAUSE_S = 2.0
# A database that does not answer in this time keeps the numbers read before.
_READ_TIMEOUT_S = 2.0


def signature_is_valid(body: bytes, header: str | None, app_secret: str) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, compared in
    constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


@dataclass(frozen=True)
class ApiOptions:
    """What every number's client shares: where the Graph API is and how long to wait."""

    base_url: str
    api_version: str = "v23.0"
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class NumberSecrets:
    """A number with its secrets read: None where a secret is missing (a number without
    an app secret takes no delivery; one without a token sends nothing)."""

    phone_number_id: str
    access_token: str | None
    app_secret: str | None
    display_number: str = ""
    default_language: str | None = None
    # Only these agents answer the number's customers (None: every enabled agent).
    agents: frozenset[str] | None = None
    flags: Mapping[str, bool] = field(default_factory=dict)


@dataclass
class _Snapshot:
    numbers: dict[str, NumberSecrets] = field(default_factory=dict)
    read_at: float = float("-inf")


class WhatsAppNumbers:
    def __init__(
        self,
        pool: Pool | None,
        api: ApiOptions,
        *,
        from_environment: NumberSecrets | None = None,
        refresh_seconds: float = 30.0,
    ) -> None:
        self._book = NumberBook(pool) if pool is not None else None
        self._api = api
        self._from_environment = from_environment
        self._refresh_seconds = refresh_seconds
        self._snapshot = _Snapshot()
        if from_environment is not None:
            self._snapshot.numbers[from_environment.phone_number_id] = from_environment
        self._clients: dict[str, tuple[str, WhatsAppClient]] = {}
        self._http = graph_api_client(api.timeout_seconds)
        self._reading = asyncio.Lock()

    async def refresh(self, *, unless_read_since: float | None = None) -> None:
        """Read the rows again and resolve their secrets. A database that does not
        answer leaves the numbers known so far in place (deliveries are still checked
        against them) and is asked again soon."""
        async with self._reading:
            if unless_read_since is not None and self._snapshot.read_at > unless_read_since:
                return  # another caller read them while this one waited
            try:
                async with asyncio.timeout(_READ_TIMEOUT_S):  # the webhook waits on it
                    rows = await self._book.all() if self._book is not None else []
            except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
                log.warning("numbers.unreadable", error=type(exc).__name__)
                self._snapshot.read_at = time.monotonic() - self._refresh_seconds + _MISS_PAUSE_S
                return
            numbers: dict[str, NumberSecrets] = {}
            if self._from_environment is not None:
                numbers[self._from_environment.phone_number_id] = self._from_environment
            for row in rows:
                numbers.pop(row.phone_number_id, None)
                if row.enabled:
                    numbers[row.phone_number_id] = _resolved(row)
            self._snapshot = _Snapshot(numbers, time.monotonic())

    async def find(self, phone_number_id: str) -> NumberSecrets | None:
        """The number, read again first when it is unknown or the rows are stale."""
        snapshot = await self._fresh(missing=phone_number_id)
        return snapshot.numbers.get(phone_number_id)

    def default_language(self, phone_number_id: str) -> str | None:
        """The number's language for customers not recognised yet (no database read)."""
        number = self._snapshot.numbers.get(phone_number_id)
        return number.default_language if number is not None else None

    def flags_of(self, phone_number_id: str) -> Mapping[str, bool]:
        """Flags set for this number's customers (no database read)."""
        number = self._snapshot.numbers.get(phone_number_id)
        return number.flags if number is not None else {}

    def agents_of(self, phone_number_id: str) -> frozenset[str] | None:
        """The agents that answer this number (None: every enabled one)."""
        number = self._snapshot.numbers.get(phone_number_id)
        return number.agents if number is not None else None

    async def signers(self, body: bytes, signature: str | None) -> frozenset[str]:
        """The numbers whose app secret signed `body`: the ones it may speak for."""
        snapshot = await self._fresh()
        signed = _signed_by(snapshot.numbers.values(), body, signature)
        if not signed and signature and self._may_read_again(snapshot):
            snapshot = await self._fresh(force=True)  # a number added a moment ago
            signed = _signed_by(snapshot.numbers.values(), body, signature)
        return signed

    async def has_app_secret(self) -> bool:
        """Whether any delivery can be checked at all (else every one is refused)."""
        snapshot = await self._fresh()
        return any(number.app_secret for number in snapshot.numbers.values())

    async def refusal(
        self, phone_number_id: str, body: bytes, signature: str, signed: frozenset[str]
    ) -> str | None:
        """Why this delivery may not speak for the number; None when it may."""
        if phone_number_id in signed:
            return None
        number = await self.find(phone_number_id)  # read again: added a moment ago?
        if number is None:
            return "unknown number (add it with `wa-agent numbers add`)"
        if number.app_secret and signature_is_valid(body, signature, number.app_secret):
            return None
        return "signed with another app's secret than this number's"

    async def client_for(self, phone_number_id: str) -> WhatsAppClient | None:
        """The client that speaks as this number; None when it is unknown or has no token."""
        number = await self.find(phone_number_id)
        if number is None or number.access_token is None:
            return None
        held = self._clients.get(phone_number_id)
        if held is not None and held[0] == number.access_token:
            return held[1]
        client = WhatsAppClient(
            base_url=self._api.base_url,
            access_token=number.access_token,
            phone_number_id=phone_number_id,
            api_version=self._api.api_version,
            timeout=self._api.timeout_seconds,
            http=self._http,  # one connection pool to graph.facebook.com for every number
        )
        self._clients[phone_number_id] = (number.access_token, client)
        return client

    def transport(self, phone_number_id: str) -> NumberTransport:
        return NumberTransport(self, phone_number_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _fresh(self, *, missing: str | None = None, force: bool = False) -> _Snapshot:
        snapshot = self._snapshot
        stale = time.monotonic() - snapshot.read_at > self._refresh_seconds
        unknown = missing is not None and missing not in snapshot.numbers
        if self._book is not None and (
            stale or force or (unknown and self._may_read_again(snapshot))
        ):
            await self.refresh(unless_read_since=snapshot.read_at)
        return self._snapshot

    @staticmethod
    def _may_read_again(snapshot: _Snapshot) -> bool:
        return time.monotonic() - snapshot.read_at > _MISS_PAUSE_S


class NumberTransport:
    """One number as a transport (server/runner/transport.py): its client is looked up at
    each send, so a token rotated in the rows is used from the next reply on."""

    def __init__(self, numbers: WhatsAppNumbers, phone_number_id: str) -> None:
        self._numbers = numbers
        self.phone_number_id = phone_number_id

    async def send_reply(self, to: str, reply: Reply) -> str:
        return await (await self._client()).send_reply(to, reply)

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        await (await self._client()).mark_read(message_id, typing=typing)

    async def _client(self) -> WhatsAppClient:
        client = await self._numbers.client_for(self.phone_number_id)
        if client is None:
            raise WhatsAppError(
                title=f"business number {self.phone_number_id} is not configured here"
                " (unknown, disabled, or its access token is missing)",
                status_code=0,
            )
        return client


def _signed_by(
    numbers: Iterable[NumberSecrets], body: bytes, signature: str | None
) -> frozenset[str]:
    """One HMAC per distinct app secret: an agency's numbers mostly share one app."""
    verdicts: dict[str, bool] = {}
    signed = set()
    for number in numbers:
        if number.app_secret is None:
            continue
        if number.app_secret not in verdicts:
            verdicts[number.app_secret] = signature_is_valid(body, signature, number.app_secret)
        if verdicts[number.app_secret]:
            signed.add(number.phone_number_id)
    return frozenset(signed)


def _resolved(row: BusinessNumber) -> NumberSecrets:
    """The row with its secrets read; one that cannot be read is logged (by reference,
    never by value) and left None."""
    secrets: dict[str, str | None] = {}
    for name, ref in (("access_token", row.access_token_ref), ("app_secret", row.app_secret_ref)):
        try:
            secrets[name] = resolve_ref(ref)
        except SecretRefError as exc:
            log.error("numbers.secret_unreadable", number=row.phone_number_id, problem=str(exc))
            secrets[name] = None
    return NumberSecrets(
        phone_number_id=row.phone_number_id,
        access_token=secrets["access_token"],
        app_secret=secrets["app_secret"],
        display_number=row.display_number,
        default_language=row.default_language,
        agents=frozenset(row.agents) if row.agents is not None else None,
        flags=dict(row.flags),
    )
