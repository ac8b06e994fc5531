"""Documents, photos and voice notes end to end: signed webhook → worker → media
download from the fake Graph API → parsing / fake vision / fake transcription → agent
turn on the fake OpenAI server → reply sent.

Unscripted, the fake model answers "echo: <what the customer said this turn>", so the
reply the customer receives shows what the agent read in place of the media.
"""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest

from graph.state import customer_message
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.openai_stream import Error, content_text
from tests.support import PHONE_NUMBER_ID, RunningService, running_service
from tests.support_media import (
    JPEG,
    make_docx,
    make_pdf,
    media_message,
    media_rows,
    media_settings,
    new_customer,
    reply_to,
    send,
)
from tools.documents import DocumentUnreadable, document_format, extract_text

VOICE = b"OggS" + b"\x00opus voice frames" * 30


async def understand_again(service: RunningService, message: dict[str, Any]) -> str:
    """What a retried run of this message's turn reads (the runner's own media step)."""
    [row] = await service.fetch(
        "SELECT wamid, run_id, wa_id, kind, text FROM inbound_messages WHERE wamid = %s",
        message["messages"][0]["id"],
    )
    media = service.services.runner.media
    assert media is not None
    again = customer_message(row["text"], wamid=row["wamid"], kind=row["kind"])
    whatsapp = await service.services.numbers.client_for(PHONE_NUMBER_ID)
    assert whatsapp is not None
    [understood] = await media.understand(str(row["run_id"]), row["wa_id"], [again], whatsapp)
    return str(understood.content)


def media_requests(graph_api: FakeGraphAPI, media_id: str) -> list[str]:
    """Graph API paths touched for this media id (lookup and download)."""
    return [r["path"] for r in graph_api.requests if media_id in r["path"]]


async def test_a_pdf_invoice_is_read_and_the_agent_answers_from_its_text(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    pdf = make_pdf(["INVOICE INV-2041\nCity bike rental, 2 days", "Total due: 129,000 RWF"])
    graph_api.add_media("doc-1", pdf, "application/pdf", filename="invoice.pdf")
    message = media_message(
        customer,
        "document",
        "doc-1",
        pdf,
        "application/pdf",
        filename="invoice.pdf",
        caption="is this total right?",
    )
    async with running_service(media_settings(db_url, graph_api, openai_server)) as service:
        await send(service, message)
        reply = reply_to(graph_api, customer)
        rows = await media_rows(service)
    assert reply.startswith("echo: ")
    assert 'Document "invoice.pdf"' in reply and "PDF, 2 pages" in reply
    assert "INV-2041" in reply and "Total due: 129,000 RWF" in reply
    assert "is this total right?" in reply
    assert [(r["kind"], r["status"]) for r in rows] == [("document", "understood")]


async def test_a_photo_is_described_by_the_vision_model_and_the_agent_reads_it(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    graph_api.add_media("img-1", JPEG, "image/jpeg")
    openai_server.script("A phone screen with the error 'SIM not supported (E42)'.")
    message = media_message(
        customer, "image", "img-1", JPEG, "image/jpeg", caption="what does this mean?"
    )
    async with running_service(media_settings(db_url, graph_api, openai_server)) as service:
        await send(service, message)
        reply = reply_to(graph_api, customer)
    vision = openai_server.requests[0]
    image_parts = [
        part
        for m in vision["messages"]
        if isinstance(m["content"], list)
        for part in m["content"]
        if part.get("type") == "image_url"
    ]
    expected_url = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert [part["image_url"]["url"] for part in image_parts] == [expected_url]
    assert "what does this mean?" in content_text(vision["messages"][-1]["content"])
    assert "[photo] what does this mean?" in reply
    assert "SIM not supported (E42)" in reply


async def test_a_voice_note_is_transcribed_and_handled_like_typed_text(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    graph_api.add_media("voice-1", VOICE, "audio/ogg")
    openai_server.transcriptions.script("Does the fast charger work with my Tecno Spark phone?")
    message = media_message(customer, "audio", "voice-1", VOICE, "audio/ogg", voice=True)
    settings = media_settings(
        db_url, graph_api, openai_server, media_transcription_model="whisper-1"
    )
    async with running_service(settings) as service:
        await send(service, message)
        reply = reply_to(graph_api, customer)
        retried = await understand_again(service, message)
    [request] = openai_server.transcriptions.requests  # the retry read the stored transcript
    assert (request.model, request.filename) == ("whisper-1", "voice-note.ogg")
    assert request.audio == VOICE
    transcript = "[voice note, transcribed] Does the fast charger work with my Tecno Spark phone?"
    assert transcript in reply
    assert retried == transcript


async def test_media_the_bot_cannot_handle_gets_a_clear_answer(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    zipped, big, voice = new_customer(), new_customer(), new_customer()
    graph_api.add_media("zip-1", b"PK\x03\x04 zipped", "application/zip", filename="photos.zip")
    graph_api.add_media("big-1", b"%PDF-1.4 " + b"x" * 5000, "application/pdf")
    graph_api.add_media("voice-2", VOICE, "audio/ogg")
    openai_server.transcriptions.script(Error(500), Error(500))  # both attempts fail
    settings = media_settings(db_url, graph_api, openai_server, media_max_document_bytes=4000)
    async with running_service(settings) as service:
        zip_file = b"PK\x03\x04 zipped"
        await send(
            service,
            media_message(
                zipped, "document", "zip-1", zip_file, "application/zip", filename="photos.zip"
            ),
        )
        await send(
            service,
            media_message(big, "document", "big-1", b"", "application/pdf", filename="big.pdf"),
        )
        await send(
            service, media_message(voice, "audio", "voice-2", VOICE, "audio/ogg", voice=True)
        )
        rows = await media_rows(service)

    assert '"photos.zip" is not a PDF, Word (DOCX), TXT or CSV file' in reply_to(graph_api, zipped)
    assert media_requests(graph_api, "zip-1") == []  # refused before any download
    assert "larger than the 4 KB we accept" in reply_to(graph_api, big)
    assert media_requests(graph_api, "big-1") == ["/v23.0/big-1"]  # looked up, never fetched
    assert "could not be listened to just now" in reply_to(graph_api, voice)
    assert len(openai_server.transcriptions.requests) == 2  # one retry, then a polite note
    assert sorted((r["kind"], r["status"]) for r in rows) == [
        ("audio", "failed"),
        ("document", "refused"),
        ("document", "refused"),
    ]


async def test_with_its_flag_off_a_photo_reaches_the_agent_as_before(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    graph_api.add_media("img-2", JPEG, "image/jpeg")
    settings = media_settings(db_url, graph_api, openai_server, flags=frozenset({"-media_images"}))
    async with running_service(settings) as service:
        await send(service, media_message(customer, "image", "img-2", JPEG, "image/jpeg"))
        rows = await media_rows(service)
    assert reply_to(graph_api, customer) == "echo: [image]"
    assert media_requests(graph_api, "img-2") == []
    assert rows == []
    assert not any(
        "image_url" in str(m.get("content")) for r in openai_server.requests for m in r["messages"]
    )


# ---------------------------------------------------------------- parsing, per format


def test_each_document_format_becomes_readable_text() -> None:
    docx_file = make_docx(["Booking request", "Two city bikes"], [["size", "qty"], ["M", "2"]])
    csv_file = b"sku;name;price\nBK-1;City bike;45000\nBK-2;Tandem;70000\n"
    txt_file = "Merci pour la réparation – à samedi".encode("cp1252")
    assert extract_text(docx_file, "docx", max_chars=1000, max_pages=5).text == (
        "Booking request\nTwo city bikes\nsize | qty\nM | 2"
    )
    table = extract_text(csv_file, "csv", max_chars=1000, max_pages=5)
    assert table.text.splitlines() == [
        "sku | name | price",
        "BK-1 | City bike | 45000",
        "BK-2 | Tandem | 70000",
    ]
    assert table.rows == 2
    # Phones send Windows-1252 text files too; decoded, not mangled.
    assert extract_text(txt_file, "txt", max_chars=1000, max_pages=5).text == (
        "Merci pour la réparation – à samedi"
    )


def test_long_documents_are_cut_to_the_budget_and_say_so() -> None:
    pdf = make_pdf([f"Page {n}: " + "terms and conditions " * 30 for n in range(1, 21)])
    whole = extract_text(pdf, "pdf", max_chars=100_000, max_pages=50)
    assert (whole.pages, whole.pages_read, whole.truncated) == (20, 20, False)
    assert "Page 20:" in whole.text
    by_chars = extract_text(pdf, "pdf", max_chars=1500, max_pages=50)
    assert by_chars.truncated and len(by_chars.text) == 1500
    assert by_chars.pages_read is not None and by_chars.pages_read < 20
    by_pages = extract_text(pdf, "pdf", max_chars=100_000, max_pages=3)
    assert by_pages.truncated and by_pages.pages_read == 3
    assert "Page 3:" in by_pages.text and "Page 4:" not in by_pages.text


def test_broken_files_and_unknown_types_are_refused() -> None:
    for fmt in ("pdf", "docx"):
        with pytest.raises(DocumentUnreadable):
            extract_text(b"this is not a real file", fmt, max_chars=1000, max_pages=5)
    bomb = io.BytesIO()  # 100 KB that would unpack to 80 MB of XML
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<w:t>" + b" " * 80_000_000)
    with pytest.raises(DocumentUnreadable, match="unpacks to"):
        extract_text(bomb.getvalue(), "docx", max_chars=1000, max_pages=5)
    assert document_format("application/pdf", None) == "pdf"
    assert document_format("application/octet-stream", "Quote.DOCX") == "docx"
    assert document_format("text/plain; charset=utf-8", "notes") == "txt"
    assert document_format("application/zip", "invoice.pdf") is None  # the type decides
    assert document_format("image/jpeg", "scan.jpg") is None
