"""The WhatsApp access token goes to Meta's media hosts and the configured API only.

Meta's media lookup names the URL to download, and the download carries the bearer
token. A lookup answer naming another host, or a download redirecting to one, must
never get the token, nor any request at all: a second local HTTP server stands for that
host and records everything it receives. Same address, other port: another origin.
"""

from __future__ import annotations

import httpx
import pytest

from server.whatsapp.client import UntrustedMediaHost
from server.whatsapp.media_fetch import trusted_media_url
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service
from tests.support_media import (
    JPEG,
    ForeignHost,
    media_message,
    media_rows,
    media_settings,
    new_customer,
    reply_to,
    send,
)
from tests.support_whatsapp_client import make_client


def token_seen_by(host: ForeignHost, token: str) -> bool:
    return any(token in value for headers in host.seen_headers() for value in headers.values())


async def test_a_media_url_on_a_foreign_host_is_never_contacted(graph_api: FakeGraphAPI) -> None:
    with ForeignHost() as foreign:
        graph_api.add_media("m-1", JPEG, "image/jpeg", url=f"{foreign.base_url}/photo.jpg")
        async with make_client(graph_api, max_attempts=2) as client:
            with pytest.raises(Exception) as caught:
                await client.download_media("m-1", max_bytes=1_000_000)
        assert not token_seen_by(foreign, graph_api.access_token)
        assert foreign.requests == []
    assert isinstance(caught.value, UntrustedMediaHost) and "127.0.0.1" in str(caught.value)
    assert [r["path"] for r in graph_api.requests] == ["/v23.0/m-1"]  # looked up only


async def test_a_redirect_to_a_foreign_host_is_not_followed(graph_api: FakeGraphAPI) -> None:
    with ForeignHost() as foreign:
        graph_api.add_media(
            "m-2", JPEG, "image/jpeg", redirect_to=f"{foreign.base_url}/elsewhere.jpg"
        )
        async with make_client(graph_api, max_attempts=2) as client:
            with pytest.raises(Exception) as caught:
                await client.download_media("m-2", max_bytes=1_000_000)
        assert not token_seen_by(foreign, graph_api.access_token)
        assert foreign.requests == []  # not even without the token
    assert isinstance(caught.value, UntrustedMediaHost)


async def test_a_redirect_within_the_api_origin_is_followed(graph_api: FakeGraphAPI) -> None:
    graph_api.add_media("real", JPEG, "image/jpeg")
    graph_api.add_media(
        "hop", JPEG, "image/jpeg", redirect_to=f"{graph_api.base_url}/media-download/real"
    )
    async with make_client(graph_api, max_attempts=2) as client:
        media = await client.download_media("hop", max_bytes=1_000_000)
    assert media.content == JPEG
    assert [r["path"] for r in graph_api.requests][-2:] == [
        "/media-download/hop",
        "/media-download/real",
    ]


def test_which_urls_may_receive_the_token() -> None:
    api = httpx.URL("https://graph.facebook.com")
    trusted = [
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=AT",
        "https://scontent.xx.fbcdn.net/v/t1.0/photo.jpg",
        "https://mmg.whatsapp.net/v/t62/voice.enc",
        "https://LOOKASIDE.FBSBX.COM:443/x",
        "https://graph.facebook.com/v23.0/123/download",
    ]
    refused = [
        "http://lookaside.fbsbx.com/x",  # the token in clear text
        "https://lookaside.fbsbx.com:8443/x",
        "https://notfbsbx.com/x",
        "https://lookaside.fbsbx.com.evil.example/x",
        "https://lookaside.fbsbx.com@evil.example/x",
        "https://user:pw@lookaside.fbsbx.com/x",
        "https://graph.facebook.com:444/x",
        "http://graph.facebook.com/x",
        "https://169.254.169.254/latest/meta-data/",
        "/media-download/relative",
        "file:///etc/passwd",
        "ftp://lookaside.fbsbx.com/x",
        "not a url",
    ]
    for url in trusted:
        assert trusted_media_url(url, api).host, url
    for url in refused:
        with pytest.raises(UntrustedMediaHost):
            trusted_media_url(url, api)


async def test_the_customer_is_answered_politely_and_the_token_stays_home(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    with ForeignHost() as foreign:
        graph_api.add_media("img-f", JPEG, "image/jpeg", url=f"{foreign.base_url}/x.jpg")
        message = media_message(customer, "image", "img-f", JPEG, "image/jpeg", caption="ok?")
        async with running_service(media_settings(db_url, graph_api, openai_server)) as service:
            await send(service, message)
            [row] = await media_rows(service)
        assert not token_seen_by(foreign, graph_api.access_token)
        assert foreign.requests == []
    assert "photo, but it could not be looked at just now" in reply_to(graph_api, customer)
    assert row["status"] == "failed"
    assert "UntrustedMediaHost" in row["detail"] and "127.0.0.1" in row["detail"]
    assert not any("image_url" in str(r["messages"]) for r in openai_server.requests)
