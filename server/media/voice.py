"""Voice notes turned into text by the OpenAI transcription API (or any server that
speaks it: `WA_AGENT_TRANSCRIPTION_BASE_URL`)."""

from __future__ import annotations

import asyncio

from openai import AsyncOpenAI

# WhatsApp voice notes are Ogg/Opus; the API infers the codec from the file name.
SUFFIXES = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "m4a",
    "audio/amr": "amr",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/webm": "webm",
}


class VoiceTranscriber:
    """A client per call (a voice note is seconds of work; no pool to keep open). The
    SDK retries timeouts, 429 and 5xx up to `max_retries` times with backoff."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        timeout_seconds: float,
        max_retries: int,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries

    async def transcribe(self, content: bytes, mime_type: str) -> str:
        suffix = SUFFIXES.get(mime_type.split(";", 1)[0].strip().lower(), "ogg")
        deadline = self.timeout_seconds * (self.max_retries + 1) + 5
        async with (
            asyncio.timeout(deadline),
            AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout_seconds,
                max_retries=self.max_retries,
            ) as client,
        ):
            result = await client.audio.transcriptions.create(
                model=self.model, file=(f"voice-note.{suffix}", content, mime_type)
            )
        text = result.text.strip()
        if not text:
            raise ValueError("the transcription is empty")
        return text
