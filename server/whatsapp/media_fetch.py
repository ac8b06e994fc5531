"""The bytes of a received media file: fetched only from Meta's media hosts (or the
configured API's own origin), with the bearer token, and never more than a cap.

Why so strict: Meta's media lookup answers with the URL to download, and that download
carries the business's access token, which can send messages as the business. A URL on
any other host (an impersonated or compromised API answer, a misconfigured proxy, a
redirect) would hand the token to whoever runs that host, so such a URL is refused
before any connection is made, and redirects are followed by hand, hop by hop, under the
same rule. The body is streamed and counted: a file larger than the caller accepts (a
Content-Length that says so, or a body that keeps coming whatever the headers said)
costs at most the cap in memory and bandwidth.

Meta's media URLs name lookaside.fbsbx.com (`/whatsapp_business/attachments/?mid=…`);
Meta serves media from its CDNs under fbcdn.net and whatsapp.net as well, so those
domains are accepted too, over HTTPS only. The configured WHATSAPP_API_BASE_URL's own
origin (scheme, host and port) is trusted like Meta: it already receives the token with
every call, and it is how tests and self-hosted proxies (which rewrite media URLs to
themselves) keep working.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import httpx
import structlog

__all__ = [
    "MEDIA_HARD_CAP",
    "META_MEDIA_DOMAINS",
    "FetchedBody",
    "MediaAccess",
    "MediaFile",
    "MediaHTTPError",
    "MediaTooLarge",
    "UntrustedMediaHost",
    "fetch_capped",
    "file_size",
    "sha256_matches",
    "trusted_media_url",
]

META_MEDIA_DOMAINS = ("fbsbx.com", "fbcdn.net", "whatsapp.net")
MEDIA_HARD_CAP = 100 * 1024 * 1024  # the largest file the Cloud API carries, when no cap is given
MAX_REDIRECTS = 3
ERROR_BODY_BYTES = 64 * 1024  # enough for any Graph error; a bigger error body is cut
_DEFAULT_PORTS = {"http": 80, "https": 443}

log = structlog.get_logger(__name__)


class MediaTooLarge(Exception):
    """A media file over the caller's size limit; nothing of it is kept. `size` is what
    was declared, or what had arrived when reading stopped (the file is at least that)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"media file of {size} bytes is over the limit of {limit} bytes")


class UntrustedMediaHost(Exception):
    """A media URL (or a redirect) pointing where the access token must not go."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"media URL on host {host or '(none)'!r} refused: {reason}")


class MediaHTTPError(Exception):
    """The media host answered with an error; `response` has at most ERROR_BODY_BYTES."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"media download answered HTTP {response.status_code}")


@dataclass(frozen=True)
class MediaFile:
    content: bytes
    mime_type: str
    sha256: str | None
    filename: str | None = None


@dataclass(frozen=True)
class MediaAccess:
    """What a download needs of the client: its connection pool, token and API origin."""

    http: httpx.AsyncClient
    token: str = field(repr=False)
    api_origin: httpx.URL
    timeout_s: float


@dataclass(frozen=True)
class FetchedBody:
    content: bytes
    content_type: str
    status_code: int


def trusted_media_url(raw: str | httpx.URL, api_origin: httpx.URL) -> httpx.URL:
    """`raw` parsed, if the token may go there; else `UntrustedMediaHost`, logged (an
    operator should learn that the API answered with a foreign URL). The URL is parsed
    once, by the same parser that will connect, so what is checked is what is fetched."""
    try:
        return _trusted(raw, api_origin)
    except UntrustedMediaHost as exc:
        log.error("whatsapp.media_host_refused", host=exc.host, reason=exc.reason)
        raise


def _trusted(raw: str | httpx.URL, api_origin: httpx.URL) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL:
        raise UntrustedMediaHost("", "not a valid URL") from None
    host = url.host
    if not url.is_absolute_url or url.scheme not in _DEFAULT_PORTS:
        raise UntrustedMediaHost(host, "not an absolute http(s) URL")
    if url.userinfo:
        raise UntrustedMediaHost(host, "the URL carries credentials")
    if _origin(url) == _origin(api_origin):
        return url
    if not any(host == domain or host.endswith("." + domain) for domain in META_MEDIA_DOMAINS):
        raise UntrustedMediaHost(host, "neither one of Meta's media hosts nor the API's own")
    if url.scheme != "https" or url.port not in (None, 443):
        raise UntrustedMediaHost(host, "Meta's media hosts are used over HTTPS on port 443 only")
    return url


async def fetch_capped(access: MediaAccess, url: httpx.URL, max_bytes: int) -> FetchedBody:
    """One attempt at the body of `url` (already checked by `trusted_media_url`).

    Raises `MediaTooLarge` (from Content-Length before reading, or once the body passes
    `max_bytes`), `UntrustedMediaHost` (a redirect elsewhere), `MediaHTTPError`, or
    httpx's own errors (transport, too many redirects) for the caller to classify."""
    headers = {"Authorization": f"Bearer {access.token}", "Accept-Encoding": "identity"}
    http = access.http
    for _ in range(MAX_REDIRECTS + 1):
        request = http.build_request("GET", url, headers=headers, timeout=access.timeout_s)
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect:
                location = url.join(response.headers["location"])
                url = trusted_media_url(location, access.api_origin)
                continue
            if not response.is_success:
                raise MediaHTTPError(await _error_copy(response))
            content = await _read_capped(response, max_bytes)
            return FetchedBody(
                content, response.headers.get("content-type", ""), response.status_code
            )
        finally:
            await response.aclose()  # an unread rest is dropped with its connection
    raise httpx.TooManyRedirects("media download redirected too many times", request=request)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = _content_length(response)
    if declared is not None and declared > max_bytes:
        raise MediaTooLarge(declared, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise MediaTooLarge(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _error_copy(response: httpx.Response) -> httpx.Response:
    """The error response with its body cut to ERROR_BODY_BYTES, for error parsing."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_BYTES:
            break
    dropped = {"content-length", "content-encoding", "transfer-encoding"}
    headers = {k: v for k, v in response.headers.items() if k.lower() not in dropped}
    return httpx.Response(response.status_code, headers=headers, content=body[:ERROR_BODY_BYTES])


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def file_size(value: object) -> int | None:
    """Meta's `file_size`: a number, though some proxies send it as a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def sha256_matches(content: bytes, expected: str) -> bool:
    """Meta's docs do not pin the digest encoding; accept hex or base64."""
    digest = hashlib.sha256(content).digest()
    return expected.lower() == digest.hex() or expected == base64.b64encode(digest).decode()
