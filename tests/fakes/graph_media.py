"""Media for the Graph API fake: what the media lookup answers and how a download is served.

Kept apart from `graph_api.py` so the messaging fake stays one concern. Besides ordinary
files, a medium can misbehave the ways a hostile or broken server does: a lookup URL on
another host, a download that redirects elsewhere, a Content-Length that lies, a body
that never ends, a slow answer. The store counts the bytes each download actually wrote
and how many downloads were in flight at once, so tests can tell "refused early" from
"read it all, then refused", and see a concurrency limit hold.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from typing import Any, Protocol

JSON = dict[str, Any]
CHUNK = 64 * 1024


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Stream:
    """A generated body of `total_bytes` instead of a file's content."""

    total_bytes: int
    content_length: int | None  # the header sent (it may lie); None: no header, close ends it
    file_size: int | None  # what the lookup declares; None: not declared


@dataclass(frozen=True)
class Media:
    content: bytes
    mime_type: str
    filename: str | None = None
    url: str | None = None  # the lookup answers with this URL instead of the fake's own
    redirect_to: str | None = None  # the download answers 302 to this URL
    delay: float = 0.0  # seconds the download waits before answering
    stream: Stream | None = None


class MediaStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._media: dict[str, Media] = {}
        self._sent: dict[str, int] = {}
        self._in_flight = 0
        self._peak = 0

    def add(self, media_id: str, media: Media) -> None:
        with self._lock:
            self._media[media_id] = media

    def get(self, media_id: str) -> Media | None:
        with self._lock:
            return self._media.get(media_id)

    def clear(self) -> None:
        with self._lock:
            self._media.clear()
            self._sent.clear()
            self._peak = self._in_flight

    def bytes_sent(self, media_id: str) -> int:
        """Body bytes a download of this medium wrote before it ended or was hung up on."""
        with self._lock:
            return self._sent.get(media_id, 0)

    @property
    def peak_downloads(self) -> int:
        """The most downloads served at the same time since the last reset."""
        with self._lock:
            return self._peak

    @contextlib.contextmanager
    def downloading(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def count_sent(self, media_id: str, size: int) -> None:
        with self._lock:
            self._sent[media_id] = self._sent.get(media_id, 0) + size

    def info(self, media_id: str, media: Media, base_url: str) -> JSON:
        """The lookup's answer, as Meta's `GET /<MEDIA_ID>`."""
        info: JSON = {
            "messaging_product": "whatsapp",
            "url": media.url or f"{base_url}/media-download/{media_id}",
            "mime_type": media.mime_type,
            "id": media_id,
        }
        if media.stream is None:
            info["sha256"] = hashlib.sha256(media.content).hexdigest()
            info["file_size"] = len(media.content)
        elif media.stream.file_size is not None:
            info["file_size"] = media.stream.file_size
        if media.filename:
            info["filename"] = media.filename
        return info

    def write_stream(self, media_id: str, stream: Stream, wfile: Writer) -> None:
        """Write the generated body until done or the client hangs up."""
        zeros = bytes(CHUNK)
        left = stream.total_bytes
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while left > 0:
                piece = zeros[: min(CHUNK, left)]
                wfile.write(piece)
                left -= len(piece)
                self.count_sent(media_id, len(piece))


def parse_upload(content_type: str, body: bytes) -> tuple[Media | None, str | None]:
    """A `POST /{phone-number-id}/media` form (`messaging_product`, `type`, `file`) as
    the Cloud API reads it; the file, or Meta's (#100) problem."""
    if not content_type.startswith("multipart/form-data"):
        return None, "(#100) The parameter file is required (multipart/form-data)"
    document = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    for part in document.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    if fields.get("messaging_product", (None, None, b""))[2] != b"whatsapp":
        return None, "(#100) The parameter messaging_product is required and must be whatsapp"
    if "file" not in fields or not fields["file"][2]:
        return None, "(#100) The parameter file is required"
    filename, mime_type, content = fields["file"]
    declared = fields.get("type", (None, None, b""))[2].decode() or mime_type
    return Media(content, declared, filename), None


def outbound_media_problem(kind: str, media: JSON, store: MediaStore) -> str | None:
    """What Meta refuses in a photo, document or location message; None when it is sound."""
    if kind == "location":
        coordinates = (media.get("latitude"), media.get("longitude"))
        if not all(isinstance(value, int | float) for value in coordinates):
            return "(#100) Param location['latitude'] and ['longitude'] must be numbers"
        return None
    link, media_id = media.get("link"), media.get("id")
    if (link is None) == (media_id is None):
        return f"(#100) Param {kind} must have exactly one of 'link' and 'id'"
    if link is not None and not str(link).startswith(("https://", "http://")):
        return f"(#100) Param {kind}['link'] must be a URL"
    if media_id is not None and store.get(str(media_id)) is None:
        return "(#131053) Media upload error: unknown media id"
    return None
