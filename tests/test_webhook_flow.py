"""A signed webhook reaches the graph and the reply reaches the (fake) Graph API: the
whole service on real Postgres, real HTTP, the real OpenAI and WhatsApp clients."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import (
    envelope,
    interactive_reply,
    new_wamid,
    sign,
    status_update,
    text_message,
    unknown_message,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.openai_stream import SERVICE_NOTE
from tests.support import (
    APP_SECRET,
    VERIFY_TOKEN,
    RunningService,
    eventually,
    running_service,
    service_settings,
)


def new_customer() -> str:
    return "2507" + str(uuid.uuid4().int)[:8]


def with_model(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **extra: Any):  # type: ignore[no-untyped-def]
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        **extra,
    )


async def count(service: RunningService, table: str) -> int:
    rows = await service.fetch(f"SELECT count(*) AS n FROM {table}")
    return int(rows[0]["n"])


async def test_verification_handshake(db_url: str, graph_api: FakeGraphAPI) -> None:
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
            ok = await client.get("/webhook", params={**query, "hub.verify_token": VERIFY_TOKEN})
            bad = await client.get("/webhook", params={**query, "hub.verify_token": "guess"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert bad.status_code == 403


async def test_signed_text_is_answered_by_the_model(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    wamid = new_wamid()
    async with running_service(with_model(db_url, graph_api, openai_server)) as service:
        response = await service.post_webhook(
            envelope(text_message(customer, "hello", wamid=wamid))
        )
        assert response.status_code == 200
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
        await eventually(lambda: _run_finished(service), what="the run to finish")
        outbound = await service.fetch("SELECT status, wamid, part FROM outbound_messages")
    assert graph_api.texts_to(customer) == ["echo: hello"]
    assert [r["message_id"] for r in graph_api.read_receipts] == [wamid]
    assert graph_api.read_receipts[0]["typing_indicator"] == {"type": "text"}
    assert outbound == [{"status": "sent", "wamid": graph_api.sent[0]["wamid"], "part": 0}]


async def test_redelivered_message_is_answered_once(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    payload = envelope(text_message(customer, "are you open today?"))
    async with running_service(with_model(db_url, graph_api, openai_server)) as service:
        statuses = [(await service.post_webhook(payload)).status_code for _ in range(3)]
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
        await eventually(lambda: _run_finished(service), what="the run to finish")
        inbound = await count(service, "inbound_messages")
    assert statuses == [200, 200, 200]
    assert inbound == 1
    assert len(graph_api.sent_to(customer)) == 1
    assert len(openai_server.requests) == 1


async def _run_finished(service: RunningService) -> bool:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    return bool(rows[0]["n"])


async def test_missing_or_wrong_signature_stores_nothing(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    body = json.dumps(envelope(text_message(new_customer(), "hi"))).encode()
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            missing = await client.post("/webhook", content=body)
            wrong = await client.post(
                "/webhook", content=body, headers={"X-Hub-Signature-256": sign(body, "not-it")}
            )
            tampered = await client.post(
                "/webhook",
                content=body.replace(b"hi", b"yo"),
                headers={"X-Hub-Signature-256": sign(body, APP_SECRET)},
            )
        stored = await count(service, "inbound_messages")
        jobs = await count(service, "procrastinate_jobs")
    assert (missing.status_code, wrong.status_code, tampered.status_code) == (401, 403, 403)
    assert (stored, jobs) == (0, 0)


async def test_malformed_and_oversized_bodies_are_refused(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """A body that is not a webhook at all is refused; a message without an id is left
    out of an otherwise valid delivery (it cannot be deduplicated), which is accepted."""
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    not_json = b'{"object": "whatsapp_business_account", "entry": ['
    wrong_shape = json.dumps({"object": "whatsapp_business_account", "entry": "nope"}).encode()
    no_sender = envelope(text_message(new_customer(), "hi"))
    del no_sender["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    huge = json.dumps(envelope(text_message(new_customer(), "x" * 1_100_000))).encode()
    async with running_service(settings, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            answers = []
            for body in (not_json, wrong_shape, json.dumps(no_sender).encode(), huge):
                headers = {"X-Hub-Signature-256": sign(body, APP_SECRET)}
                answers.append(await client.post("/webhook", content=body, headers=headers))
        stored = await count(service, "inbound_messages")
    assert [answer.status_code for answer in answers] == [400, 400, 200, 413]
    # The sender learns what was wrong with its body (it is the sender's own data).
    assert "not valid JSON" in answers[0].json()["error"]
    assert "schema" in answers[1].json()["error"]
    assert stored == 0


async def test_three_quick_texts_make_one_run_in_order(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = with_model(db_url, graph_api, openai_server, coalesce_window_ms=400)
    async with running_service(settings) as service:
        for text in ("hi", "I want to book a bike", "for Saturday"):
            assert (
                await service.post_webhook(envelope(text_message(customer, text)))
            ).status_code == 200
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) >= 1, 10)
        await eventually(lambda: _run_finished(service), what="the run to finish")
        runs = await count(service, "conversation_runs")
    assert graph_api.texts_to(customer) == ["echo: hi | I want to book a bike | for Saturday"]
    assert runs == 1
    assert len(openai_server.requests) == 1


async def test_without_a_model_key_the_customer_gets_the_menu(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    customer = new_customer()
    settings = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings) as service:
        await service.post_webhook(envelope(text_message(customer, "hello?")))
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
        await service.post_webhook(
            envelope(interactive_reply(customer, "menu:booking", "Bookings", list_reply=True))
        )
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 2, 10)
    menu, booking_choices = graph_api.sent_to(customer)
    assert menu["type"] == "interactive" and menu["interactive"]["type"] == "list"
    row_ids = [r["id"] for s in menu["interactive"]["action"]["sections"] for r in s["rows"]]
    assert "menu:booking" in row_ids and "menu:human" in row_ids
    buttons = booking_choices["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["book:days", "bookings:mine", "menu:main"]


async def test_model_failing_after_retries_falls_back_to_the_menu(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    openai_server.fail_next(10, status=500)
    settings = with_model(db_url, graph_api, openai_server, model_max_retries=1)
    async with running_service(settings) as service:
        await service.post_webhook(envelope(text_message(customer, "hello")))
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
    assert graph_api.sent_to(customer)[0]["type"] == "interactive"
    assert len(openai_server.requests) == 2  # first call + one retry, then the menu


async def test_unreadable_kinds_get_a_polite_answer_and_reactions_none(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    reaction = text_message(customer, "")
    message = reaction["messages"][0]
    message.pop("text")
    message.update(type="reaction", reaction={"message_id": new_wamid(), "emoji": "👍"})
    async with running_service(with_model(db_url, graph_api, openai_server)) as service:
        await service.post_webhook(envelope(reaction))
        await service.post_webhook(envelope(unknown_message(customer)))
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
        await eventually(lambda: _run_finished(service), what="the run to finish")
        stored = await service.fetch("SELECT kind FROM inbound_messages ORDER BY id")
    assert "can't read this kind of message" in graph_api.texts_to(customer)[0]
    assert [r["kind"] for r in stored] == ["reaction", "hologram"]
    assert openai_server.requests == []  # neither reached the model


async def test_status_webhooks_move_the_outbox_forward(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(with_model(db_url, graph_api, openai_server)) as service:
        await service.post_webhook(envelope(text_message(customer, "hello")))
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
        await eventually(lambda: _run_finished(service), what="the run to finish")
        wamid = graph_api.sent_to(customer)[0]["wamid"]
        for status in ("read", "delivered", "sent"):  # out of order, as Meta sends them
            await service.post_webhook(
                envelope(status_update(wamid, status, recipient_id=customer))
            )
        row = (await service.fetch("SELECT status FROM outbound_messages"))[0]
    assert row["status"] == "read"


async def test_outside_the_24_hour_window_the_error_is_recorded(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    # Both the read receipt and the reply are refused, as Meta does once the window closed.
    graph_api.fail_next(2, status=400, code=131047, title="Re-engagement message")
    async with running_service(with_model(db_url, graph_api, openai_server)) as service:
        await service.post_webhook(envelope(text_message(customer, "hello")))
        await eventually(lambda: _run_finished(service), what="the run to finish")
        row = (await service.fetch("SELECT status, error_code FROM outbound_messages"))[0]
    assert row == {"status": "failed", "error_code": 131047}
    assert graph_api.sent_to(customer) == []


async def test_business_scoped_user_id_is_kept(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    payload = envelope(text_message(customer, "hi", user_id="US.13491208655302741918"))
    async with running_service(with_model(db_url, graph_api, openai_server)) as service:
        await service.post_webhook(payload)
        contact = (await service.fetch("SELECT wa_id, user_id FROM contacts"))[0]
    assert contact == {"wa_id": customer, "user_id": "US.13491208655302741918"}


async def test_a_restart_loses_no_history(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    settings = with_model(db_url, graph_api, openai_server)
    async with running_service(settings) as service:
        await service.post_webhook(envelope(text_message(customer, "my name is Ada")))
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 1, 10)
    async with running_service(settings) as service:
        await service.post_webhook(envelope(text_message(customer, "what is my name?")))
        await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) == 2, 10)
    seen = [
        m["content"]
        for m in openai_server.requests[-1]["messages"]
        if m["role"] != "system" and not str(m["content"]).startswith(SERVICE_NOTE)
    ]
    assert seen == ["my name is Ada", "echo: my name is Ada", "what is my name?"]
