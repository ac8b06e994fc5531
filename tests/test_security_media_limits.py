"""Media cost at most what the limits say: a download stops at its byte cap whatever the
headers claim, and one burst of media reads only a few, a few at a time.

The Graph API fake counts the body bytes it managed to write before the client hung
up, which tells "refused early" apart from "read it all, then refused".
"""

from __future__ import annotations

from typing import Any

import pytest

from server.whatsapp.client import MediaTooLarge, WhatsAppClient
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import running_service
from tests.support_media import (
    JPEG,
    media_message,
    media_rows,
    media_settings,
    new_customer,
    reply_to,
    send,
)

MB = 1024 * 1024


def make_client(graph: FakeGraphAPI) -> WhatsAppClient:
    return WhatsAppClient(
        base_url=graph.base_url,
        access_token=graph.access_token,
        phone_number_id="PNID",
        timeout=5.0,
        max_attempts=2,
        backoff_base=0.001,
    )


async def test_a_content_length_over_the_cap_is_refused_before_reading(
    graph_api: FakeGraphAPI,
) -> None:
    """Meta declared no size; the download's header says 64 MB: no body is read."""
    graph_api.add_streamed_media("big", "image/jpeg", total_bytes=64 * MB, content_length=64 * MB)
    async with make_client(graph_api) as client:
        with pytest.raises(MediaTooLarge) as caught:
            await client.download_media("big", max_bytes=1 * MB)
    assert (caught.value.size, caught.value.limit) == (64 * MB, 1 * MB)
    assert graph_api.media.bytes_sent("big") < 16 * MB  # what socket buffers took, at most


async def test_a_body_without_content_length_is_cut_at_the_cap(graph_api: FakeGraphAPI) -> None:
    """No size anywhere and a body that goes on for 128 MB: reading stops past 1 MB."""
    graph_api.add_streamed_media("endless", "image/jpeg", total_bytes=128 * MB)
    async with make_client(graph_api) as client:
        with pytest.raises(MediaTooLarge) as caught:
            await client.download_media("endless", max_bytes=1 * MB)
    assert 1 * MB < caught.value.size < 2 * MB
    assert graph_api.media.bytes_sent("endless") < 32 * MB


async def test_a_content_length_under_the_truth_ends_the_body(graph_api: FakeGraphAPI) -> None:
    """A header claiming less than is sent: the client reads what it announced, no more."""
    graph_api.add_streamed_media(
        "liar", "image/jpeg", total_bytes=64 * MB, content_length=1000, file_size=1000
    )
    async with make_client(graph_api) as client:
        media = await client.download_media("liar", max_bytes=1 * MB)
    assert len(media.content) == 1000
    assert graph_api.media.bytes_sent("liar") < 32 * MB


async def test_a_burst_of_photos_reads_a_few_a_few_at_a_time_and_says_so(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    photos: list[dict[str, Any]] = []
    for n in range(6):
        graph_api.add_media(f"burst-{n}", JPEG, "image/jpeg", delay=0.3)
        photos.append(media_message(customer, "image", f"burst-{n}", JPEG, "image/jpeg"))
    settings = media_settings(
        db_url,
        graph_api,
        openai_server,
        media_max_per_run=3,
        media_concurrency=2,
        coalesce_window_ms=500,  # the six photos of one delivery make one turn
    )
    async with running_service(settings) as service:
        await send(service, *photos)
        rows = await media_rows(service)
        runs = await service.fetch("SELECT count(*) AS n FROM conversation_runs")
    assert runs[0]["n"] == 1  # one delivery, one turn
    downloads = [r["path"] for r in graph_api.requests if r["path"].startswith("/media-download/")]
    assert sorted(downloads) == [f"/media-download/burst-{n}" for n in range(3)]
    assert graph_api.media.peak_downloads == 2
    vision = [r for r in openai_server.requests if "image_url" in str(r["messages"])]
    assert len(vision) == 3
    reply = reply_to(graph_api, customer)
    assert reply.count("at most 3 photos, files or voice notes sent together are read") == 3
    assert sorted(r["status"] for r in rows) == ["refused"] * 3 + ["understood"] * 3
