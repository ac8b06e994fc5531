"""Documents a customer sends (PDF, DOCX, TXT, CSV) turned into text a model can read.

Pure parsing of bytes already in memory: no download, no settings. The plain libraries
(pypdf, python-docx, the csv module) are used rather than langchain-community's loaders,
which wrap the same libraries but want file paths and bring a large dependency tree
(aiohttp, dataclasses-json, requests, ...) for no gain here.

The text is cut to a character budget, and PDFs to a page budget, because the result goes
into the model's context; callers say so to the model.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import docx
from pypdf import PdfReader
from pypdf.errors import PdfReadError

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

FORMATS_BY_MIME = {
    "application/pdf": "pdf",
    DOCX_MIME: "docx",
    "text/plain": "txt",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/comma-separated-values": "csv",
}
FORMATS_BY_SUFFIX = {".pdf": "pdf", ".docx": "docx", ".txt": "txt", ".csv": "csv"}
FORMAT_NAMES = {"pdf": "PDF", "docx": "Word (DOCX)", "txt": "text", "csv": "CSV"}
ACCEPTED = "PDF, Word (DOCX), TXT or CSV"

CSV_ROWS = 200  # rows shown at most; the row count says how many there were
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024  # a DOCX's parts, unpacked


class DocumentUnreadable(Exception):
    """The bytes are not a readable document of the announced format."""


@dataclass(frozen=True)
class DocumentText:
    text: str
    format: str
    truncated: bool
    pages: int | None = None  # PDFs: pages in the file
    pages_read: int | None = None
    rows: int | None = None  # CSVs: data rows in the file


def document_format(mime_type: str | None, filename: str | None) -> str | None:
    """'pdf' | 'docx' | 'txt' | 'csv', from the MIME type, else the file name; None when
    this is nothing we read (the caller refuses before downloading)."""
    mime = (mime_type or "").split(";", 1)[0].strip().lower()
    if mime in FORMATS_BY_MIME:
        return FORMATS_BY_MIME[mime]
    suffix = PurePosixPath(filename or "").suffix.lower()
    if mime in ("", "application/octet-stream") or mime.startswith("text/"):
        return FORMATS_BY_SUFFIX.get(suffix)
    return None


def extract_text(content: bytes, fmt: str, *, max_chars: int, max_pages: int) -> DocumentText:
    """The document's text, at most `max_chars` characters; raises DocumentUnreadable."""
    if fmt == "pdf":
        return _pdf_text(content, max_chars, max_pages)
    if fmt == "docx":
        return _cut(_docx_text(content), "docx", max_chars)
    if fmt == "txt":
        return _cut(decode_text(content), "txt", max_chars)
    if fmt == "csv":
        return _csv_text(content, max_chars)
    raise DocumentUnreadable(f"unknown document format {fmt!r}")


def decode_text(content: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252 as phones send."""
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16", errors="replace")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252", errors="replace")


def _cut(
    text: str,
    fmt: str,
    max_chars: int,
    *,
    more: bool = False,
    pages: int | None = None,
    pages_read: int | None = None,
    rows: int | None = None,
) -> DocumentText:
    """`more`: the text was already left unread past some point (pages, rows)."""
    text = text.strip()
    truncated = more or len(text) > max_chars
    return DocumentText(text[:max_chars], fmt, truncated, pages, pages_read, rows)


def _pdf_text(content: bytes, max_chars: int, max_pages: int) -> DocumentText:
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentUnreadable("the PDF is protected by a password")
        total = len(reader.pages)
        parts: list[str] = []
        read = 0
        for page in reader.pages[:max_pages]:
            parts.append(page.extract_text() or "")
            read += 1
            if sum(map(len, parts)) > max_chars:
                break
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentUnreadable(f"not a readable PDF ({type(exc).__name__})") from exc
    text = "\n\n".join(part.strip() for part in parts if part.strip())
    return _cut(text, "pdf", max_chars, more=read < total, pages=total, pages_read=read)


def _docx_text(content: bytes) -> str:
    _refuse_zip_bomb(content)
    try:
        document = docx.Document(io.BytesIO(content))
    except Exception as exc:  # PackageNotFoundError, BadZipFile, lxml errors: a broken upload
        raise DocumentUnreadable(f"not a readable Word document ({type(exc).__name__})") from exc
    lines = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n".join(line for line in lines if line.strip())


def _refuse_zip_bomb(content: bytes) -> None:
    """A DOCX is a zip: a few MB can unpack to gigabytes of XML. zipfile never reads
    past a member's declared size, so the declared sizes are a safe bound."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DocumentUnreadable("not a readable Word document (not a zip file)") from exc
    if unpacked > MAX_UNZIPPED_BYTES:
        raise DocumentUnreadable(f"the Word file unpacks to {unpacked} bytes")


def _csv_text(content: bytes, max_chars: int) -> DocumentText:
    """Rows as `a | b | c` lines: compact, and unambiguous for a model."""
    text = decode_text(content)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise DocumentUnreadable(f"not a readable CSV file ({exc})") from exc
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    shown = "\n".join(" | ".join(cell.strip() for cell in row) for row in rows[: CSV_ROWS + 1])
    data_rows = max(len(rows) - 1, 0)  # the first row is taken for the header
    return _cut(shown, "csv", max_chars, more=len(rows) > CSV_ROWS + 1, rows=data_rows)
