"""What the real WhatsApp client retries when the Graph API fake answers with an error or
not at all: rate limits and server errors are retried (Retry-After heeded, within a cap),
a refusal such as the closed 24-hour window is not, and a send that timed out is never
repeated — Meta may have delivered it, and a second one would reach the customer twice."""

from __future__ import annotations

import time

import pytest

from server.whatsapp.client import WhatsAppClient
from server.whatsapp.graph_errors import WhatsAppError
from tests.fakes.graph_api import FakeGraphAPI
from tests.support_whatsapp_client import CUSTOMER, client, graph, graph_server, make_client

__all__ = ["client", "graph", "graph_server"]  # the fixtures, used by name below

RE_ENGAGEMENT_DETAILS = (
    "Message failed to send because more than 24 hours have passed since the customer last "
    "replied to this number."
)


async def test_429_with_retry_after_is_retried_once(graph: FakeGraphAPI) -> None:
    graph.fail_next(1, status=429, retry_after=0, title="Rate limit hit")
    # A long backoff proves Retry-After (0 s) is what decides the wait.
    async with make_client(graph, backoff_base=5.0) as client:
        started = time.perf_counter()
        result = await client.send_text(CUSTOMER, "after the rate limit")
    assert time.perf_counter() - started < 1.0
    assert graph.message_attempts == 2
    assert [message["wamid"] for message in graph.sent] == [result.wamid]


async def test_retry_after_is_capped(graph: FakeGraphAPI) -> None:
    graph.fail_next(1, status=503, retry_after=120)
    async with make_client(graph, max_wait=0.01) as client:
        started = time.perf_counter()
        await client.send_text(CUSTOMER, "eventually")
    assert time.perf_counter() - started < 1.0
    assert graph.message_attempts == 2


async def test_server_errors_exhaust_attempts_and_raise_retryable(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    graph.fail_next(4, status=500, title="Internal server error")
    with pytest.raises(WhatsAppError) as caught:
        await client.send_text(CUSTOMER, "never arrives")
    assert caught.value.retryable
    assert caught.value.status_code == 500
    assert graph.message_attempts == 4
    assert graph.sent == []


async def test_pair_rate_limit_131056_is_retried(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    graph.fail_next(1, status=400, code=131056, title="(Business Account, Consumer Account) pair")
    await client.send_text(CUSTOMER, "second part")
    assert graph.message_attempts == 2
    assert graph.texts_to(CUSTOMER) == ["second part"]


async def test_outside_24h_window_raises_131047_without_retry(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    graph.fail_next(
        1, status=400, code=131047, title="Re-engagement message", details=RE_ENGAGEMENT_DETAILS
    )
    with pytest.raises(WhatsAppError) as caught:
        await client.send_text(CUSTOMER, "too late")
    error = caught.value
    assert (error.code, error.status_code, error.retryable) == (131047, 400, False)
    assert error.title == "Re-engagement message"
    assert error.details == RE_ENGAGEMENT_DETAILS
    assert error.fbtrace_id
    assert "131047" in str(error)
    assert graph.message_attempts == 1


async def test_timeouts_are_retried_then_raised(graph: FakeGraphAPI) -> None:
    graph.delay = 0.3
    async with make_client(graph, timeout=0.05, max_attempts=2) as client:
        with pytest.raises(WhatsAppError) as caught:
            await client.mark_read("wamid.SLOW", typing=False)
    assert caught.value.retryable
    assert caught.value.status_code == 0
    assert "Timeout" in caught.value.title
    # The server still finishes both abandoned requests: let them land in this test.
    await graph.wait_for_async(lambda: len(graph.read_receipts) == 2, what="late receipts")


async def test_a_send_that_timed_out_is_not_repeated(graph: FakeGraphAPI) -> None:
    """Meta may have delivered it: sending again would give the customer a duplicate."""
    graph.delay = 0.3
    async with make_client(graph, timeout=0.05, max_attempts=3) as client:
        with pytest.raises(WhatsAppError) as caught:
            await client.send_text(CUSTOMER, "your booking is confirmed")
    assert caught.value.maybe_delivered and not caught.value.retryable
    await graph.wait_for_async(lambda: graph.message_attempts >= 1, what="the late send")
    assert graph.message_attempts == 1
