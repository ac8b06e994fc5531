"""The real WhatsApp client against the local Graph API fake (real HTTP, no mocks): what
each call puts on the wire — texts, buttons, lists, templates, read receipts — and what it
reads back (media); and WhatsApp's limits, checked before anything is sent, with long
texts split to fit, so a message Meta would refuse fails here instead."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from server.whatsapp.client import WhatsAppClient, split_text
from server.whatsapp.graph_errors import WhatsAppError
from tests.fakes.graph_api import FakeGraphAPI
from tests.support_whatsapp_client import CUSTOMER, client, graph, graph_server, make_client

__all__ = ["client", "graph", "graph_server"]  # the fixtures, used by name below


async def test_send_text_reaches_graph_and_returns_its_wamid(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    result = await client.send_text(CUSTOMER, "Hola 👋", reply_to="wamid.IN1")
    [sent] = graph.sent
    assert result.wamid == sent["wamid"]
    assert sent["messaging_product"] == "whatsapp"
    assert sent["recipient_type"] == "individual"
    assert sent["to"] == CUSTOMER
    assert sent["text"] == {"body": "Hola 👋", "preview_url": False}
    assert sent["context"] == {"message_id": "wamid.IN1"}
    assert sent["phone_number_id"] == "PNID"
    assert graph.texts_to(CUSTOMER) == ["Hola 👋"]


async def test_buttons_and_list_are_sent_as_interactive_messages(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    await client.send_buttons(
        CUSTOMER, "What next?", [("menu:booking", "Book"), ("menu:human", "Talk to us")]
    )
    rows = [("slot:1", "Mon 10:00", "Morning"), ("slot:2", "Mon 15:00", None)]
    await client.send_list(CUSTOMER, "Pick a slot", "Slots", [("Monday", rows)], footer="UTC")
    buttons_message, list_message = graph.sent_to(CUSTOMER)
    interactive = buttons_message["interactive"]
    assert interactive["type"] == "button"
    assert [button["reply"] for button in interactive["action"]["buttons"]] == [
        {"id": "menu:booking", "title": "Book"},
        {"id": "menu:human", "title": "Talk to us"},
    ]
    action = list_message["interactive"]["action"]
    assert action["button"] == "Slots"
    assert action["sections"][0]["rows"][0] == {
        "id": "slot:1",
        "title": "Mon 10:00",
        "description": "Morning",
    }
    assert "description" not in action["sections"][0]["rows"][1]
    assert list_message["interactive"]["footer"] == {"text": "UTC"}
    assert graph.texts_to(CUSTOMER) == ["What next?", "Pick a slot"]


async def test_a_customer_known_only_by_business_scoped_user_id_is_sent_to_as_recipient(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    """Meta reads `to` as a phone number; a BSUID goes in `recipient` (the fake refuses a
    BSUID in `to`, as that send would not reach the customer)."""
    bsuid, parent = "US.13491208655302741918", "US.ENT.11815799212886844830"
    await client.send_text(bsuid, "Hello")
    await client.send_buttons(bsuid, "What next?", [("menu:main", "Menu")])
    await client.send_list(bsuid, "Pick", "Slots", [("", [("slot:1", "Mon 10:00", None)])])
    template = {"to": parent, "type": "template", "template": {"name": "hello_world"}}
    await client.send_message(template)
    await client.send_text(CUSTOMER, "Hello")
    sent = graph.sent
    assert [message.get("recipient") for message in sent] == [bsuid] * 3 + [parent, None]
    kinds = ["text", "interactive", "interactive", "template", "text"]
    assert [message["type"] for message in sent] == kinds
    assert sent[-1]["to"] == CUSTOMER
    assert graph.texts_to(bsuid) == ["Hello", "What next?", "Pick"]


async def test_a_read_receipt_names_the_message_not_the_customer(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    await client.mark_read("wamid.FROM_A_USERNAME_CUSTOMER")
    [receipt] = graph.read_receipts
    assert receipt["message_id"] == "wamid.FROM_A_USERNAME_CUSTOMER"
    assert "to" not in receipt and "recipient" not in receipt


async def test_mark_read_with_typing_sends_the_documented_body(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    await client.mark_read("wamid.IN1")
    await client.mark_read("wamid.IN2", typing=False)
    first, second = graph.read_receipts
    assert {key: first[key] for key in ("messaging_product", "status", "message_id")} == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }
    assert first["typing_indicator"] == {"type": "text"}
    assert "typing_indicator" not in second
    assert graph.sent == []


async def test_download_media_returns_bytes(graph: FakeGraphAPI, client: WhatsAppClient) -> None:
    content = b"%PDF-1.7 fake invoice"
    graph.add_media("MEDIA1", content, "application/pdf", filename="invoice.pdf")
    media = await client.download_media("MEDIA1")
    assert media.content == content
    assert media.mime_type == "application/pdf"
    assert media.filename == "invoice.pdf"
    assert media.sha256 is not None


async def test_download_media_with_wrong_token_fails_clearly(graph: FakeGraphAPI) -> None:
    graph.add_media("MEDIA1", b"bytes", "image/jpeg")
    secret = "EAAG-wrong-secret-token"
    async with make_client(graph, access_token=secret) as client:
        with pytest.raises(WhatsAppError) as caught:
            await client.download_media("MEDIA1")
    error = caught.value
    assert (error.status_code, error.code, error.retryable) == (401, 190, False)
    assert "access token" in str(error).lower()
    assert secret not in str(error) and secret not in repr(client)


async def test_download_unknown_media_is_not_retried(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    with pytest.raises(WhatsAppError) as caught:
        await client.download_media("NOPE")
    assert caught.value.code == 100 and not caught.value.retryable
    assert len(graph.requests) == 1


LIMIT_VIOLATIONS: list[tuple[str, dict[str, Any]]] = [
    ("text", {"text": "x" * 4097}),
    ("text", {"text": "   "}),
    ("buttons", {"buttons": [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]}),
    ("buttons", {"buttons": []}),
    ("buttons", {"buttons": [("a", "A title that is too long")]}),
    ("buttons", {"buttons": [("a", "A"), ("a", "B")]}),
    ("buttons", {"body": "b" * 1025}),
    ("list", {"rows": [(f"r{i}", f"Row {i}", None) for i in range(11)]}),
    ("list", {"rows": [("r1", "A row title beyond 24 chars", None)]}),
    ("list", {"rows": [("r1", "Row", "d" * 73)]}),
    ("list", {"button": "A list button label too long"}),
]


@pytest.mark.parametrize(("kind", "override"), LIMIT_VIOLATIONS)
async def test_limits_are_validated_before_anything_is_sent(
    graph: FakeGraphAPI, client: WhatsAppClient, kind: str, override: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        if kind == "text":
            await client.send_text(CUSTOMER, override["text"])
        elif kind == "buttons":
            await client.send_buttons(
                CUSTOMER, override.get("body", "Body"), override.get("buttons", [("a", "A")])
            )
        else:
            rows = override.get("rows", [("r1", "Row", None)])
            await client.send_list(CUSTOMER, "Body", override.get("button", "Open"), [("S", rows)])
    assert graph.requests == []


async def test_limit_error_names_the_field(client: WhatsAppClient) -> None:
    with pytest.raises(ValueError, match=r"button title is 25 characters, WhatsApp allows 20"):
        await client.send_buttons(CUSTOMER, "Body", [("a", "A title that is too long!")])


def test_split_text_prefers_paragraph_boundaries() -> None:
    first, second, third = ("A" * 1500 + ". ") * 2, "B" * 3000, "C" * 1500
    text = f"{first.strip()}\n\n{second}\n\n{third}"
    parts = split_text(text)
    assert parts == [first.strip(), second, third]


def test_split_text_falls_back_to_sentences_then_words_then_hard_cut() -> None:
    sentences = " ".join(f"Sentence number {i} is here." for i in range(400))
    for part in split_text(sentences, limit=500):
        assert len(part) <= 500 and part.endswith(".")
    words = " ".join(["word"] * 300)
    assert all(len(part) <= 100 and not part.endswith(" ") for part in split_text(words, 100))
    assert split_text("x" * 250, limit=100) == ["x" * 100, "x" * 100, "x" * 50]


def test_split_text_respects_4096_and_loses_no_words() -> None:
    paragraphs = [
        " ".join(f"w{p}-{i}{'.' if i % 9 == 8 else ''}" for i in range(120 + p * 37))
        for p in range(30)
    ]
    text = "\n\n".join(paragraphs)
    parts = split_text(text)
    assert len(parts) > 1
    assert all(0 < len(part) <= 4096 for part in parts)
    assert re.findall(r"\S+", " ".join(parts)) == re.findall(r"\S+", text)


def test_split_text_edge_cases() -> None:
    assert split_text("") == []
    assert split_text(" \n\n ") == []
    assert split_text("  short  ") == ["short"]


async def test_send_message_passes_raw_payloads_through(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    template = {"name": "appointment_reminder", "language": {"code": "es"}}
    result = await client.send_message({"to": CUSTOMER, "type": "template", "template": template})
    [sent] = graph.sent_to(CUSTOMER)
    assert sent["template"] == template and sent["wamid"] == result.wamid
    assert graph.texts_to(CUSTOMER) == []
    with pytest.raises(ValueError, match="recipient"):
        await client.send_message({"type": "text", "text": {"body": "to nobody"}})


async def test_fake_wait_for_wakes_on_arrival_and_times_out_clearly(
    graph: FakeGraphAPI, client: WhatsAppClient
) -> None:
    waiter = asyncio.create_task(
        asyncio.to_thread(graph.wait_for, lambda: graph.texts_to(CUSTOMER) == ["ping"], 2.0)
    )
    await client.send_text(CUSTOMER, "ping")
    assert await waiter is True
    with pytest.raises(AssertionError, match=r"reply to 999 not met within 0.05s; 1 message"):
        graph.wait_for(lambda: bool(graph.sent_to("999")), 0.05, what="reply to 999")
