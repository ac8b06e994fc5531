"""The OpenAI transcription endpoint (`POST /v1/audio/transcriptions`) for the fake
OpenAI server: multipart upload in, `{"text": ...}` out.

Vision needs nothing here: a photo description is an ordinary chat completion whose
user message carries an `image_url` content block, answered from the chat script.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from tests.fakes.openai_stream import JSON, Error, error_body


@dataclass(frozen=True)
class TranscriptionRequest:
    model: str
    filename: str
    content_type: str
    audio: bytes


class FakeTranscriptions:
    """Scripted transcripts (or errors), one per request, and every request recorded.
    Without a script the transcript says how many bytes of audio arrived."""

    def __init__(self) -> None:
        self.requests: list[TranscriptionRequest] = []
        self._script: collections.deque[str | Error] = collections.deque()
        self._lock = threading.Lock()

    def script(self, *responses: str | Error) -> None:
        with self._lock:
            self._script.extend(responses)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def answer(self, content_type: str, raw: bytes) -> tuple[int, JSON]:
        """(status, body) for one request, as the handler sends it."""
        fields = _multipart_fields(content_type, raw)
        upload = fields.get("file")
        model = fields.get("model")
        if upload is None or model is None:
            return 400, error_body(Error(400, "Missing 'file' or 'model' in the form."))
        audio = upload.get_payload(decode=True)
        if not isinstance(audio, bytes) or not audio:
            return 400, error_body(Error(400, "The uploaded file is empty."))
        request = TranscriptionRequest(
            model=_text(model),
            filename=upload.get_filename() or "",
            content_type=upload.get_content_type(),
            audio=audio,
        )
        with self._lock:
            self.requests.append(request)
            scripted = self._script.popleft() if self._script else None
        if isinstance(scripted, Error):
            return scripted.status, error_body(scripted)
        return 200, {"text": scripted if scripted is not None else f"{len(audio)} bytes of audio"}


def _multipart_fields(content_type: str, raw: bytes) -> dict[str, Message]:
    """multipart/form-data parts by field name, parsed with the standard library."""
    if not content_type.lower().startswith("multipart/form-data"):
        return {}
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    fields: dict[str, Message] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = part
    return fields


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(payload)
