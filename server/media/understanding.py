"""Documents, photos and voice notes of a run become text before the graph sees them.

Runs in the worker, after the run claimed its messages and before the graph: the
webhook stays free of slow work. Each media message's outcome is stored in
`inbound_media`, so a retried run reads it back instead of downloading and calling the
models again. Nothing here fails a run: a refusal or a failure becomes a note the agent
reads in the message's place, and the agent answers the customer politely.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from langchain_core.messages import HumanMessage
from pydantic import TypeAdapter, ValidationError

from graph.composition.feature_flags import FeatureFlags
from graph.context import FLAG_DEFAULTS
from graph.infra.database import Pool
from graph.state import whatsapp_meta
from server.media.readers import (
    DocumentReader,
    ImageReader,
    MediaOutcome,
    Refused,
    VoiceReader,
    failure_text,
    over_limit_text,
    refusal_text,
    too_large_text,
)
from server.whatsapp.client import MediaTooLarge, WhatsAppClient
from server.whatsapp.models import AudioMessage, DocumentMessage, ImageMessage, InboundMessage

log = structlog.get_logger(__name__)

FLAG_OF_KIND = {"document": "media_documents", "image": "media_images", "audio": "media_voice"}
_MESSAGE = TypeAdapter[Any](InboundMessage)


class MediaUnderstanding:
    def __init__(
        self,
        pool: Pool,
        flags: FeatureFlags | None,
        *,
        documents: DocumentReader,
        images: ImageReader,
        voice: VoiceReader,
        deadline_seconds: float,
        max_per_run: int = 5,
        concurrency: int = 3,
    ) -> None:
        self.pool = pool
        self.flags = flags
        self.documents = documents
        self.images = images
        self.voice = voice
        # Per media message, over download and model calls with all their retries; the
        # wait for a free slot comes before it and does not count.
        self.deadline_seconds = deadline_seconds
        self.max_per_run = max_per_run
        # One instance per process: the slots bound media read at once over all runs.
        self._slots = asyncio.Semaphore(concurrency)

    async def understand(
        self, run_id: str, wa_id: str, messages: Sequence[HumanMessage], whatsapp: WhatsAppClient
    ) -> list[HumanMessage]:
        """The run's messages, media ones carrying what was understood of them.
        `whatsapp`: the client of the business number they were sent to."""
        kinds = {str(m.id): str(whatsapp_meta(m).get("kind")) for m in messages}
        if not any(kind in FLAG_OF_KIND for kind in kinds.values()):
            return list(messages)  # the common case costs nothing
        enabled = await self._enabled_kinds(wa_id, whatsapp.phone_number_id)
        if not enabled or not any(kinds[str(m.id)] in enabled for m in messages):
            return list(messages)
        rows = await self._media_rows(run_id, sorted(enabled))
        if len(rows) > self.max_per_run:
            log.warning("media.over_run_limit", media=len(rows), limit=self.max_per_run)
        outcomes = await asyncio.gather(
            *(self._outcome(row, whatsapp, read=n < self.max_per_run) for n, row in enumerate(rows))
        )
        texts = {row["wamid"]: outcome.text for row, outcome in zip(rows, outcomes, strict=True)}
        return [_with_text(m, texts[str(m.id)]) if str(m.id) in texts else m for m in messages]

    async def _enabled_kinds(self, wa_id: str, phone_number_id: str) -> set[str]:
        flags: Mapping[str, bool] = (
            await self.flags.for_customer(wa_id, phone_number_id) if self.flags else {}
        )
        if not flags.get("ai_agent", FLAG_DEFAULTS["ai_agent"]):
            return set()  # the rule-based menu answers: nothing would read the text
        return {
            kind
            for kind, flag in FLAG_OF_KIND.items()
            if flags.get(flag, FLAG_DEFAULTS.get(flag, False))
        }

    async def _media_rows(self, run_id: str, kinds: list[str]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT m.id, m.wamid, m.kind, m.payload, i.status, i.text"
                " FROM inbound_messages m LEFT JOIN inbound_media i ON i.inbound_id = m.id"
                " WHERE m.run_id = %s AND m.kind = ANY(%s) ORDER BY m.id",
                (run_id, kinds),
            )
            return list(await cur.fetchall())

    async def _outcome(
        self, row: dict[str, Any], whatsapp: WhatsAppClient, *, read: bool
    ) -> MediaOutcome:
        """`read=False` (past the run's limit): nothing is downloaded, the agent is told."""
        if row["status"] is not None:  # a retried run: understood (or not) already
            return MediaOutcome(row["status"], row["text"])
        if not read:
            limit = self.max_per_run
            detail = f"over the limit of {limit} media read per turn"
            outcome = MediaOutcome("refused", over_limit_text(row["kind"], limit), detail)
            await self._store(row["id"], row["kind"], outcome, 0.0)
            return outcome
        async with self._slots:
            started = time.perf_counter()
            outcome = await self._convert(row["kind"], row["payload"], whatsapp)
            seconds = time.perf_counter() - started
        log.info(
            "media.understood" if outcome.status == "understood" else "media.not_understood",
            kind=row["kind"],
            status=outcome.status,
            detail=outcome.detail,
            size_bytes=outcome.size_bytes,
            seconds=round(seconds, 3),
        )
        await self._store(row["id"], row["kind"], outcome, seconds)
        return outcome

    async def _convert(self, kind: str, payload: Any, whatsapp: WhatsAppClient) -> MediaOutcome:
        """Never raises: every way of not understanding becomes a note for the agent."""
        try:
            message = _MESSAGE.validate_python(payload)
            async with asyncio.timeout(self.deadline_seconds):
                return await self._read(message, whatsapp)
        except MediaTooLarge as exc:
            return MediaOutcome(
                "refused", too_large_text(kind, exc.limit), str(exc), None, exc.size
            )
        except Refused as exc:
            return MediaOutcome("refused", refusal_text(kind, exc.reason), str(exc))
        except (ValidationError, Exception) as exc:  # a timeout, a model or network error
            detail = f"{type(exc).__name__}: {str(exc)[:200]}"
            return MediaOutcome("failed", failure_text(kind), detail)

    async def _read(self, message: Any, whatsapp: WhatsAppClient) -> MediaOutcome:
        if isinstance(message, DocumentMessage):
            return await self.documents.read(message, whatsapp)
        if isinstance(message, ImageMessage):
            return await self.images.read(message, whatsapp)
        if isinstance(message, AudioMessage):
            return await self.voice.read(message, whatsapp)
        raise TypeError(f"not a media message: {type(message).__name__}")

    async def _store(
        self, inbound_id: int, kind: str, outcome: MediaOutcome, seconds: float
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO inbound_media"
                " (inbound_id, kind, status, mime_type, size_bytes, text, detail, seconds)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (inbound_id) DO NOTHING",
                (
                    inbound_id,
                    kind,
                    outcome.status,
                    outcome.mime_type,
                    outcome.size_bytes,
                    outcome.text,
                    outcome.detail,
                    seconds,
                ),
            )


def _with_text(message: HumanMessage, text: str) -> HumanMessage:
    """Same id (the wamid) and metadata, so a retried run merges instead of duplicating."""
    return message.model_copy(update={"content": text})
