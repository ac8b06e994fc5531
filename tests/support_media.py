"""Sample media for the media tests and benchmarks: real PDF and DOCX files written with
fpdf2 and python-docx, and the webhook payloads that announce them."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import docx
from fpdf import FPDF

from tests.fakes.meta_payloads import message_value


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
