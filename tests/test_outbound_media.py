"""Photos, documents and places sent to customers, through the outbox like every reply:
a product's photo beside the agent's answer about it, and an operator's photo by link, a
place, and an invoice uploaded to the Cloud API from the conversation's number. What
WhatsApp would refuse is refused before anything is queued; a send whose answer was
lost is never repeated."""

from __future__ import annotations

from typing import Any

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.openai_stream import ToolCall
from tests.support import RunningService, eventually, running_service
from tests.support_outcomes import (
    admin_call,
    escalated_conversation,
    new_customer,
    outcome_settings,
    say,
)

PHOTO = "https://shop.example/photos/helmet-city.jpg"
SHOP = {"latitude": -1.9441, "longitude": 30.0619, "name": "Kigali Bikes", "address": "KN 4 Ave"}


async def test_a_products_photo_is_sent_after_the_agents_answer_about_it(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        await service.execute(
            "INSERT INTO catalog_items (sku, kind, name, category, price_minor, currency,"
            " stock, image_url) VALUES ('HLM-CITY', 'product', 'City helmet', 'helmets',"
            " 15000, 'RWF', 4, %s)",
            PHOTO,
        )
        openai_server.script(
            ToolCall("get_product", {"sku": "HLM-CITY"}),
            "The City helmet costs 15,000 RWF and we have 4 in stock.",
        )
        await say(service, text_message(customer, "How much is the city helmet? I want to buy"))
    sent = graph_api.sent_to(customer)
    assert [message["type"] for message in sent] == ["text", "image"]
    assert sent[0]["text"]["body"].startswith("The City helmet costs 15,000 RWF")
    assert sent[1]["image"] == {"link": PHOTO, "caption": "City helmet"}
    # The model read about the photo, never its address.
    assert all(PHOTO not in str(request) for request in openai_server.requests)


async def test_an_operator_sends_a_photo_the_shops_place_and_an_uploaded_invoice(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    invoice = b"%PDF-1.4 invoice 0042: 15,000 RWF"
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        conversation = await escalated_conversation(service, customer)
        before = len(graph_api.sent_to(customer))
        media = f"/admin/api/conversations/{conversation}/media"
        photo = {"kind": "image", "link": PHOTO, "caption": "This one?"}
        assert (await admin_call(service, "POST", media, json=photo)).status_code == 202
        await _sent_count(service, graph_api, customer, before + 1)
        place = {"kind": "location", **SHOP}
        assert (await admin_call(service, "POST", media, json=place)).status_code == 202
        await _sent_count(service, graph_api, customer, before + 2)
        files = {"file": ("invoice-0042.pdf", invoice, "application/pdf")}
        uploaded = await admin_call(
            service, "POST", f"{media}/upload", files=files, data={"caption": "Your invoice"}
        )
        assert uploaded.status_code == 202, uploaded.text
        await _sent_count(service, graph_api, customer, before + 3)
        transcript = await admin_call(
            service, "GET", f"/admin/api/conversations/{conversation}/messages"
        )
    image, location, document = graph_api.sent_to(customer)[before:]
    assert image["image"] == {"link": PHOTO, "caption": "This one?"}
    assert location["location"] == SHOP
    assert document["document"]["filename"] == "invoice-0042.pdf"
    assert document["document"]["caption"] == "Your invoice"
    stored = graph_api.media.get(document["document"]["id"])
    assert stored is not None and stored.content == invoice  # what Meta keeps is the file
    lines = [line["content"] for line in transcript.json()][-3:]
    assert lines == [
        "[photo] This one?",
        "[location] Kigali Bikes, KN 4 Ave",
        "[document: invoice-0042.pdf] Your invoice",
    ]


async def test_what_whatsapp_would_refuse_is_refused_before_anything_is_queued(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        conversation = await escalated_conversation(service, customer)
        before = len(graph_api.sent_to(customer))
        media = f"/admin/api/conversations/{conversation}/media"
        refused = [
            {"kind": "image", "link": "ftp://shop.example/helmet.jpg"},
            {"kind": "image"},
            {"kind": "document", "link": PHOTO, "caption": "x" * 1025},
            {"kind": "location", "latitude": 91.0, "longitude": 30.0},
            {"kind": "location", "name": "Kigali Bikes"},
            {"kind": "sticker", "link": PHOTO},
        ]
        statuses = [
            (await admin_call(service, "POST", media, json=body)).status_code for body in refused
        ]
        empty = await admin_call(
            service,
            "POST",
            f"{media}/upload",
            files={"file": ("empty.pdf", b"", "application/pdf")},
        )
        jobs = await service.fetch(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'operator_media'"
        )
    assert statuses == [422] * len(refused)
    assert empty.status_code == 422
    assert jobs[0]["n"] == 0
    assert len(graph_api.sent_to(customer)) == before


async def test_a_photo_whose_answer_was_lost_is_not_sent_again(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        conversation = await escalated_conversation(service, customer)
        attempts = graph_api.message_attempts
        graph_api.fail_next(1, status=0)  # the request left; its answer never came back
        photo = {"kind": "image", "link": PHOTO}
        url = f"/admin/api/conversations/{conversation}/media"
        assert (await admin_call(service, "POST", url, json=photo)).status_code == 202

        async def settled() -> list[dict[str, Any]]:
            return await service.fetch(
                "SELECT status FROM outbound_messages WHERE kind = 'image' AND wa_id = %s",
                customer,
            )

        await eventually(lambda: _is(settled(), [{"status": "unknown"}]), what="the part settled")
    assert graph_api.message_attempts == attempts + 1  # one try, never a duplicate photo
    assert [m for m in graph_api.sent_to(customer) if m["type"] == "image"] == []


async def _is(rows: Any, expected: list[dict[str, Any]]) -> bool:
    return await rows == expected


async def _sent_count(
    service: RunningService, graph_api: FakeGraphAPI, customer: str, count: int
) -> None:
    await graph_api.wait_for_async(lambda: len(graph_api.sent_to(customer)) >= count, 15)
