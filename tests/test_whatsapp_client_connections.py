"""The real WhatsApp client against small HTTP servers written here instead of the Graph
API fake, for what only a hand-made server does: refuse the connection, hang up before
answering, answer gzip-compressed, or stand as the proxy the environment names."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket

import pytest

from server.whatsapp.client import WhatsAppClient
from server.whatsapp.graph_errors import WhatsAppError
from tests.support_whatsapp_client import CUSTOMER


async def test_connection_refused_is_a_retryable_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with WhatsAppClient(
        base_url=f"http://127.0.0.1:{port}",
        access_token="t",
        phone_number_id="PNID",
        max_attempts=2,
        backoff_base=0.001,
    ) as client:
        with pytest.raises(WhatsAppError) as caught:
            await client.send_text(CUSTOMER, "nobody home")
    assert caught.value.retryable and caught.value.status_code == 0


async def _one_shot_server(answer: bytes | None) -> tuple[asyncio.Server, list[bytes]]:
    """A server that reads each request, then writes `answer` (None: hangs up without
    one) and closes; the requests it saw are kept."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        seen.append(head)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), seen


async def test_a_send_whose_connection_dropped_before_the_answer_is_not_repeated() -> None:
    """The request went out, the answer never came: Meta may have delivered it."""
    server, seen = await _one_shot_server(None)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        WhatsAppClient(
            base_url=f"http://127.0.0.1:{port}",
            access_token="t",
            phone_number_id="PNID",
            max_attempts=3,
            backoff_base=0.001,
        ) as client,
    ):
        with pytest.raises(WhatsAppError) as caught:
            await client.send_text(CUSTOMER, "your payment link")
    assert caught.value.maybe_delivered and not caught.value.retryable
    assert len(seen) == 1


async def test_a_compressed_answer_is_read() -> None:
    body = gzip.compress(json.dumps({"messages": [{"id": "wamid.GZ"}]}).encode())
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    server, _ = await _one_shot_server(answer)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        WhatsAppClient(
            base_url=f"http://127.0.0.1:{port}", access_token="t", phone_number_id="PNID"
        ) as client,
    ):
        assert (await client.send_text(CUSTOMER, "hello")).wamid == "wamid.GZ"


def _http_answer(body: bytes, content_type: str = "application/json") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


async def _forward_proxy(origin: str) -> tuple[asyncio.Server, list[bytes]]:
    """An HTTP proxy standing in for `origin` itself: it answers a message send, a media
    lookup and the media's bytes, and keeps each request line it was asked."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        line = head.split(b"\r\n", 1)[0]
        seen.append(line)
        if line.startswith(b"POST "):
            answer = _http_answer(json.dumps({"messages": [{"id": "wamid.PROXIED"}]}).encode())
        elif b"/photo.jpg " in line:
            answer = _http_answer(b"JPEG bytes", "image/jpeg")
        else:
            lookup = {"url": f"{origin}/photo.jpg", "mime_type": "image/jpeg"}
            answer = _http_answer(json.dumps(lookup).encode())
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), seen


async def test_a_proxy_named_by_the_environment_carries_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A business whose servers reach Meta only through a proxy (HTTP_PROXY, HTTPS_PROXY):
    replies and media downloads both go through it."""
    origin = "http://graph.example.invalid"
    server, seen = await _forward_proxy(origin)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with (
        server,
        WhatsAppClient(base_url=origin, access_token="t", phone_number_id="PNID") as client,
    ):
        assert (await client.send_text(CUSTOMER, "hello")).wamid == "wamid.PROXIED"
        media = await client.download_media("MEDIA1")
    assert media.content == b"JPEG bytes"
    asked = [line.decode().split(" ")[:2] for line in seen]
    assert [method for method, _ in asked] == ["POST", "GET", "GET"]
    assert all(url.startswith(f"{origin}/") for _, url in asked)
    assert [url.rsplit("/", 2)[-2:] for _, url in asked][::2] == [
        ["PNID", "messages"],
        ["graph.example.invalid", "photo.jpg"],
    ]
