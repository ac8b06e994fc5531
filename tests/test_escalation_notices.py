"""The team hears of a conversation that starts waiting for a person: one JSON POST to
the configured receiver (a local one here, failing its first try), naming the
conversation and the customer's masked number, never what they wrote; none for the
customer's next messages while they wait."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.fakes.alert_receiver import AlertReceiver
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_outcomes import new_customer, outcome_settings, say


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as server:
        yield server


async def test_one_notice_per_escalation_reaches_the_team(
    db_url: str,
    graph_api: FakeGraphAPI,
    openai_server: FakeOpenAIServer,
    receiver: AlertReceiver,
) -> None:
    customer = new_customer()
    receiver.fail_next(1, 500)
    settings = outcome_settings(
        db_url, graph_api, openai_server, escalation_webhook_url=receiver.url
    )
    async with running_service(settings) as service:
        await say(service, text_message(customer, "I want to talk to a human please"))

        async def noticed() -> bool:
            return len(receiver.received) == 1

        await eventually(noticed, what="the escalation notice")
        [conversation] = await service.fetch(
            "SELECT id::text AS id FROM agent_conversations WHERE wa_id = %s", customer
        )
        [notice] = receiver.received
        assert notice["event"] == "conversation.escalated"
        assert notice["conversation_id"] == conversation["id"]
        assert notice["customer"] == "*" * (len(customer) - 4) + customer[-4:]
        assert notice["inbox"] == f"/admin/conversations/{conversation['id']}"
        assert "human" not in str(notice)  # what they wrote stays out
        assert receiver.attempts == 2  # the first try was refused, then retried

        await say(service, text_message(customer, "hello? anyone there?"))
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 1
