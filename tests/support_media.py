"""Sample media for the media tests and benchmarks: real PDF and DOCX files written with
fpdf2 and python-docx, the webhook payloads that announce them, and a "foreign host": a
second local HTTP server standing for any host that is not Meta's, which records every
request it gets (headers included) so a test can show the access token never reached it."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import docx
from fpdf import FPDF

from graph.settings import Settings
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, message_value
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, eventually, service_settings

JPEG = b"\xff\xd8\xff\xe0" + b"fake jpeg body " * 40


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per string (core font, so latin-1 text only)."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def media_message(
    wa_id: str,
    kind: str,
    media_id: str,
    content: bytes,
    mime_type: str,
    **fields: Any,
) -> dict[str, Any]:
    """A document / image / audio message as Meta announces it (no bytes: an id)."""
    media = {"id": media_id, "mime_type": mime_type, "sha256": hashlib.sha256(content).hexdigest()}
    media.update({key: value for key, value in fields.items() if value is not None})
    return message_value(wa_id, kind, media)


def media_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "whatsapp_api_base_url": graph_api.base_url,
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url + "/v1",
        "media_timeout_seconds": 5.0,
        "media_max_retries": 1,
    }
    return service_settings(db_url, **{**values, **overrides})


def new_customer() -> str:
    return "2507" + str(uuid.uuid4().int)[:8]


async def send(service: RunningService, *messages: dict[str, Any]) -> None:
    """Post one signed webhook (all `messages` in one delivery, so one turn answers
    them) and wait until its run is done."""
    before = await _runs_done(service)
    assert (await service.post_webhook(envelope(*messages))).status_code == 200

    async def answered() -> bool:
        return await _runs_done(service) > before

    await eventually(answered, within=30, what="the turn to finish")


async def _runs_done(service: RunningService) -> int:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    return int(rows[0]["n"])


def reply_to(graph_api: FakeGraphAPI, customer: str) -> str:
    return "\n".join(graph_api.texts_to(customer))


async def media_rows(service: RunningService) -> list[dict[str, Any]]:
    return await service.fetch("SELECT kind, status, text, detail FROM inbound_media")


class ForeignHost:
    """127.0.0.1:<another port>, answering every GET with `content` and keeping each
    request's path and headers."""

    def __init__(self, content: bytes = b"\xff\xd8\xff\xe0 not meta's photo") -> None:
        self.content = content
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def seen_headers(self) -> list[dict[str, str]]:
        with self._lock:
            return [headers for _, headers in self.requests]

    def __enter__(self) -> Self:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                with host._lock:
                    host.requests.append((self.path, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(host.content)))
                self.end_headers()
                self.wfile.write(host.content)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
