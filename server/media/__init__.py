"""Media understanding: documents, photos and voice notes become text for the agents.

`build_media_understanding` wires the readers from settings; the conversation runner
calls `MediaUnderstanding.understand` once per run, before the graph.
"""

from __future__ import annotations

import structlog

from graph.composition.feature_flags import FeatureFlags
from graph.infra.chat_models import build_chat_model
from graph.infra.database import Pool
from graph.settings import Settings
from server.media.readers import DocumentReader, ImageReader, MediaOutcome, VoiceReader
from server.media.understanding import MediaUnderstanding
from server.media.vision import ImageDescriber
from server.media.voice import VoiceTranscriber

__all__ = ["MediaOutcome", "MediaUnderstanding", "build_media_understanding"]

log = structlog.get_logger(__name__)


def build_media_understanding(
    settings: Settings, pool: Pool, flags: FeatureFlags | None
) -> MediaUnderstanding | None:
    """None without a model (the rule-based menu answers every turn, so nothing would
    read the text)."""
    if not settings.model_configured:
        return None
    attempts = settings.media_max_retries + 1
    vision_settings = settings.model_copy(
        update={
            "model": settings.media_vision_model or settings.model,
            "model_timeout_seconds": settings.media_timeout_seconds,
            "model_max_retries": settings.media_max_retries,
        }
    )
    vision_model = build_chat_model(vision_settings)
    if vision_model is None:
        return None
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
    transcriber = VoiceTranscriber(
        api_key=key,
        base_url=settings.media_transcription_base_url or settings.openai_base_url,
        model=settings.media_transcription_model,
        timeout_seconds=settings.media_timeout_seconds,
        max_retries=settings.media_max_retries,
    )
    model_deadline = settings.media_timeout_seconds * attempts
    deadline = model_deadline + 2 * settings.whatsapp_timeout_seconds
    return MediaUnderstanding(
        pool,
        flags,
        documents=DocumentReader(
            max_bytes=settings.media_max_document_bytes,
            max_chars=settings.media_document_chars,
            max_pages=settings.media_document_pages,
        ),
        images=ImageReader(
            ImageDescriber(
                vision_model, deadline_seconds=settings.media_timeout_seconds * attempts
            ),
            max_bytes=settings.media_max_image_bytes,
        ),
        voice=VoiceReader(transcriber, max_bytes=settings.media_max_audio_bytes),
        deadline_seconds=deadline,
        max_per_run=settings.media_max_per_run,
        concurrency=settings.media_concurrency,
    )
