"""The Graph API's HTTP client: httpx's interface over aiohttp's connections.

The WhatsApp client speaks httpx (requests, responses, redirects, streamed media), but
httpx's own connection layer (httpcore, h11, anyio) is slow: a read receipt cost
0.8–0.9 ms of CPU sent one at a time and 2.0–2.3 ms with ~30 in flight, against
0.64–0.68 and 0.96–1.04 ms over aiohttp (docs/performance.md), and a turn sends two (the
typing indicator and the reply). This transport keeps httpx above, aiohttp below.

Its one duty beyond moving bytes is naming failures the way the send-once logic reads
them (server/whatsapp/client.py): only a failure *before* anything was written — no
connection, no free slot, a connect timeout — becomes `httpx.ConnectError` /
`httpx.ConnectTimeout` ("nothing reached Meta", retried); a connection dropped or timed
out after the request went out becomes a read-side error ("maybe delivered", a send is
not repeated). Generic adapters map aiohttp's `ClientConnectionError` — which includes a
server hanging up mid-response — to a connect error, which would resend a reply.

Only POSTs (messages, read receipts, uploads: the calls of every turn) go through
aiohttp. GETs — media metadata and downloads, rare and streamed under a size cap — keep
httpx's own transport, which reads what a Content-Length announced and ignores bytes
beyond it (aiohttp refuses the whole body), the behaviour the media limits are tested on.

Behind a proxy the environment names (`HTTPS_PROXY` and its kin), httpx's own transport
carries every call, as a plain httpx client would: an httpx client given a transport
ignores those variables, and aiohttp told to read them looks the proxy and `~/.netrc` up
again on every request, in a thread (3 % of a worker's CPU under load, py-spy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.request import getproxies

import aiohttp
import httpx

# Bytes read at a time from a body.
_CHUNK = 64 * 1024
# An aiohttp error's text can quote the bytes it choked on.
_MESSAGE_CHARS = 300


def graph_api_client(timeout_s: float) -> httpx.AsyncClient:
    """An httpx client for the Graph API, `timeout_s` per phase: over aiohttp, or over
    httpx alone when the environment names a proxy."""
    if getproxies():
        return httpx.AsyncClient(timeout=timeout_s)
    return httpx.AsyncClient(timeout=timeout_s, transport=AiohttpTransport())


class AiohttpTransport(httpx.AsyncBaseTransport):
    """POSTs over one aiohttp session, opened by the first (in the loop that serves it)
    and closed with the httpx client; other methods over httpx's own transport. Neither
    reads proxies from the environment: `graph_api_client` does not use this transport
    when it names one."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._plain = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return await self._plain.handle_async_request(request)
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(trust_env=False)
        phases = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=phases.get("pool"),
            sock_connect=phases.get("connect"),
            sock_read=phases.get("read"),
        )
        body = await request.aread()
        with _as_httpx_errors(request):
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                timeout=timeout,
                allow_redirects=False,  # httpx follows them itself, if asked
                auto_decompress=False,  # httpx decodes by Content-Encoding
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": _reason(response)},
        )

    async def aclose(self) -> None:
        await self._plain.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's failures as the httpx errors that say whether the request may have
    reached the server: connect-side only when it cannot have."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS: nothing sent
        raise httpx.ConnectError(_message(exc), request=request) from exc
    except aiohttp.ConnectionTimeoutError as exc:  # no slot or no connection in time
        raise httpx.ConnectTimeout(_message(exc), request=request) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:  # sent, no answer
        raise httpx.ReadTimeout(_message(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(_message(exc), request=request) from exc
    except aiohttp.ClientError as exc:  # reset, bad payload, anything else: maybe sent
        raise httpx.ReadError(_message(exc), request=request) from exc


def _message(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:_MESSAGE_CHARS]


def _reason(response: aiohttp.ClientResponse) -> bytes:
    return (response.reason or "").encode("latin-1", "replace")
