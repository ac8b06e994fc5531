"""WhatsApp Cloud API client: sends replies, marks messages read, downloads media.

Everything WhatsApp would reject is checked first (lengths, counts; see
:mod:`server.whatsapp.outbound`) so a bad reply fails fast with a ValueError instead of a
round trip and an opaque Graph error, and nothing is sent. Calls that
fail for reasons that pass with time (429, 5xx, network, Meta's rate-limit codes) are
retried with bounded exponential backoff; everything else surfaces as a WhatsAppError
that carries Meta's code so the caller can decide (e.g. 131047: send a template instead).
The access token never appears in an exception message or a log line.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from graph.state import Reply
from server.whatsapp.aiohttp_transport import graph_api_client
from server.whatsapp.graph_errors import WhatsAppError, dict_at, error_from, json_object
from server.whatsapp.media_fetch import (
    MEDIA_HARD_CAP,
    FetchedBody,
    MediaAccess,
    MediaFile,
    MediaHTTPError,
    MediaTooLarge,
    UntrustedMediaHost,
    fetch_capped,
    file_size,
    sha256_matches,
    trusted_media_url,
)
from server.whatsapp.outbound import (
    addressed,
    buttons_payload,
    list_payload,
    reply_payload,
    split_text,
    text_payload,
)

__all__ = [
    "MediaFile",
    "MediaTooLarge",
    "SendResult",
    "UntrustedMediaHost",
    "WhatsAppClient",
    "split_text",
]

log = structlog.get_logger(__name__)

# Pages of templates read at most (100 each): a listing that never ends is cut here.
_TEMPLATE_PAGES = 20


@dataclass(frozen=True)
class SendResult:
    wamid: str


@dataclass(frozen=True)
class Form:
    """A multipart form: its fields and its files as (name, content, type)."""

    fields: Mapping[str, str]
    files: Mapping[str, tuple[str, bytes, str]]


class WhatsAppClient:
    """One business phone number's view of the Cloud API."""

    def __init__(
        self,
        *,
        base_url: str,
        access_token: str,
        phone_number_id: str,
        api_version: str = "v23.0",
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        max_wait: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._token = access_token
        self.phone_number_id = phone_number_id
        self.api_version = api_version
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._max_wait = max_wait
        self._owns_http = http is None
        self._http = http if http is not None else graph_api_client(timeout)
        # Media URLs may name this API's origin too (tests, self-hosted proxies).
        self._media = MediaAccess(self._http, access_token, httpx.URL(self._base_url), timeout)

    def __repr__(self) -> str:
        return f"WhatsAppClient({self._base_url!r}, phone_number_id={self.phone_number_id!r})"

    async def __aenter__(self) -> WhatsAppClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless the caller lent us theirs."""
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ sending

    async def send_text(
        self, to: str, text: str, *, reply_to: str | None = None, preview_url: bool = False
    ) -> SendResult:
        payload = text_payload(to, text, reply_to=reply_to, preview_url=preview_url)
        return await self.send_message(payload)

    async def send_buttons(
        self,
        to: str,
        body: str,
        buttons: Sequence[tuple[str, str]],
        *,
        header: str | None = None,
        footer: str | None = None,
    ) -> SendResult:
        """Reply buttons, given as (id, title) pairs; the id comes back in the reply."""
        payload = buttons_payload(to, body, buttons, header=header, footer=footer)
        return await self.send_message(payload)

    async def send_list(
        self,
        to: str,
        body: str,
        button: str,
        sections: Sequence[tuple[str, Sequence[tuple[str, str, str | None]]]],
        *,
        header: str | None = None,
        footer: str | None = None,
    ) -> SendResult:
        """A list menu: sections of (id, title, description) rows behind one button."""
        payload = list_payload(to, body, button, sections, header=header, footer=footer)
        return await self.send_message(payload)

    async def send_reply(self, to: str, reply: Reply) -> str:
        """One reply part (text, buttons, list, template, photo, document, place) as its
        message kind; the wamid."""
        return (await self.send_message(reply_payload(to, reply))).wamid

    async def send_message(self, payload: Mapping[str, Any]) -> SendResult:
        """Send any message object (template, media, ...); ``messaging_product`` is added.

        The customer goes in ``to`` as the caller's key; a business-scoped user id there
        is moved to ``recipient``, where Meta expects it (see ``recipient_fields``)."""
        if not payload.get("to") and not payload.get("recipient"):
            raise ValueError("message payload needs a recipient ('to')")
        if not payload.get("type"):
            raise ValueError("message payload needs a 'type'")
        body = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        body.update(addressed(payload))
        data = await self._post_messages(body, idempotent=False)
        try:
            wamid = data["messages"][0]["id"]
        except (KeyError, IndexError, TypeError):
            wamid = None
        if not isinstance(wamid, str) or not wamid:
            raise WhatsAppError(title="send response has no message id", status_code=200)
        return SendResult(wamid=wamid)

    async def mark_read(self, message_id: str, *, typing: bool = True) -> None:
        """Blue ticks for the customer, plus "typing…" for up to 25 s while we think.
        Addressed by the message alone, so it is the same for a customer known only by a
        business-scoped user id."""
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        await self._post_messages(body)

    async def list_templates(self, business_account_id: str) -> list[dict[str, Any]]:
        """The account's message templates as Meta lists them, page after page (at most
        `_TEMPLATE_PAGES`). A next page elsewhere than this API is not followed: the
        access token goes with every request."""
        fields = "name,language,status,category,parameter_format,components"
        url = f"{self._version_url()}/{business_account_id}/message_templates"
        query: dict[str, str] | None = {"fields": fields, "limit": "100"}
        listed: list[dict[str, Any]] = []
        for _ in range(_TEMPLATE_PAGES):
            page = json_object(await self._request("GET", url, params=query))
            listed += [entry for entry in page.get("data") or [] if isinstance(entry, dict)]
            following = dict_at(page, "paging").get("next")
            if not isinstance(following, str) or not self._is_own_url(following):
                break
            url, query = following, None
        return listed

    def _is_own_url(self, url: str) -> bool:
        own, other = httpx.URL(self._base_url), httpx.URL(url)
        return (other.scheme, other.host, other.port) == (own.scheme, own.host, own.port)

    # ------------------------------------------------------------------ media

    async def download_media(self, media_id: str, *, max_bytes: int | None = None) -> MediaFile:
        """Resolve a media id to its short-lived URL (it expires after five minutes, so it
        is never stored), then fetch the bytes; both need the bearer token, which goes only
        to Meta's media hosts or this API's origin (else `UntrustedMediaHost`). Over
        `max_bytes` (Meta's 100 MB by default) is `MediaTooLarge`: from the declared size
        or Content-Length before reading, or once the body passes the cap."""
        info = json_object(await self._request("GET", f"{self._version_url()}/{media_id}"))
        url = info.get("url")
        if not isinstance(url, str) or not url:
            raise WhatsAppError(title="media lookup returned no url", status_code=200)
        cap = max_bytes if max_bytes is not None else MEDIA_HARD_CAP
        declared = file_size(info.get("file_size"))
        if declared is not None and declared > cap:
            raise MediaTooLarge(declared, cap)
        body = await self._fetch_media(trusted_media_url(url, self._media.api_origin), cap)
        expected_sha = info.get("sha256") if isinstance(info.get("sha256"), str) else None
        if expected_sha and not sha256_matches(body.content, expected_sha):
            raise WhatsAppError(title="media checksum mismatch", status_code=body.status_code)
        mime_type = info.get("mime_type") or body.content_type
        filename = info.get("filename") if isinstance(info.get("filename"), str) else None
        return MediaFile(
            content=body.content, mime_type=str(mime_type), sha256=expected_sha, filename=filename
        )

    async def upload_media(self, content: bytes, mime_type: str, filename: str) -> str:
        """A file for a photo or document message, stored by Meta (30 days); its media
        id. Retried like a read: a second upload only leaves an unused file."""
        if not content:
            raise ValueError("an upload needs a file with content")
        url = f"{self._version_url()}/{self.phone_number_id}/media"
        form = Form(
            fields={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        data = json_object(await self._request("POST", url, form=form))
        media_id = data.get("id")
        if not isinstance(media_id, str) or not media_id:
            raise WhatsAppError(title="upload response has no media id", status_code=200)
        return media_id

    async def _fetch_media(self, url: httpx.URL, cap: int) -> FetchedBody:
        """The download, with the same bounded retries as every other call."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait_before_retry,
            retry=retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await fetch_capped(self._media, url, cap)
                except MediaHTTPError as exc:
                    raise error_from(exc.response, self._redact) from None
                except httpx.HTTPError as exc:  # idempotent: a transport error is retried
                    raise WhatsAppError(
                        title=f"media download error: {type(exc).__name__}",
                        status_code=0,
                        details=self._redact(str(exc)),
                        retryable=isinstance(exc, httpx.TransportError),
                    ) from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    # ------------------------------------------------------------------ transport

    def _version_url(self) -> str:
        return f"{self._base_url}/{self.api_version}"

    async def _post_messages(
        self, body: Mapping[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        url = f"{self._version_url()}/{self.phone_number_id}/messages"
        return json_object(await self._request("POST", url, json=body, idempotent=idempotent))

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        form: Form | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait_before_retry,
            retry=retry_if_exception(_is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._request_once(method, url, json, params, form, idempotent)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def _request_once(
        self,
        method: str,
        url: str,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        form: Form | None,
        idempotent: bool,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            response = await self._http.request(
                method,
                url,
                json=json,
                params=params,
                data=form.fields if form else None,
                files=form.files if form else None,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=True,
            )
        except httpx.TransportError as exc:
            # Connecting failed: nothing reached Meta. Anything later (a read timeout, a
            # dropped connection) may have been delivered, so only idempotent calls retry.
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            raise WhatsAppError(
                title=f"transport error: {type(exc).__name__}",
                status_code=0,
                details=self._redact(str(exc)),
                retryable=unsent or idempotent,
                maybe_delivered=not unsent,
            ) from None
        if response.is_success:
            return response
        raise error_from(response, self._redact)

    def _wait_before_retry(self, state: RetryCallState) -> float:
        """Meta's Retry-After when given, else exponential backoff with jitter; capped."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, WhatsAppError) and error.retry_after is not None:
            return min(error.retry_after, self._max_wait)
        backoff = self._backoff_base * 2.0 ** (state.attempt_number - 1)
        return min(backoff + random.uniform(0, self._backoff_base), self._max_wait)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


# ---------------------------------------------------------------------- helpers


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, WhatsAppError) and error.retryable


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "whatsapp.retry",
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        status=getattr(error, "status_code", None),
        code=getattr(error, "code", None),
    )
