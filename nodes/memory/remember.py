"""Remember: after a turn was answered, extract durable facts about the customer from
the new part of the transcript and keep them as long-term memories.

It runs in a queued job (server/runner/memory_jobs.py), after the replies were sent, so the
customer never waits for it. The transcript (`agent_messages`) is read from where the
last run of this job stopped (`agent_conversations.remembered_message_id`): a job that
runs after several turns reads them all, and a retried job reads nothing twice.
A memory that says what another already says (cosine similarity above the policy's
threshold) updates that one instead of adding a second.

What it costs: one small model call per burst of turns, and none when the customer's
new lines are only acknowledgements or greetings ("ok thanks!", "murakoze"), which
cannot state a durable fact. Anything else is the model's call to make: no rule in six
languages can tell "I'm vegan" or "for my sister" from a one-off question, and a
missed diet or name costs more than the extraction (about $0.0001). The request is
kept small: short instructions, the customer's lines whole and the assistant's cut
(enough to show what a "yes" agreed to), and a schema without titles.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field

from graph.privacy import mask_text
from nodes.memory.counters import MEMORIES_WRITTEN
from nodes.memory.store import LongTermMemory, NewMemory
from tools.common import Pool

log = structlog.get_logger(__name__)

CONTEXT_LINES = 4  # read before the new lines, so "yes" has its question
LINE_CHARS = 600  # a customer's line
ASSISTANT_CHARS = 200  # an assistant's line: what was offered or asked, not all of it

EXTRACTION_PROMPT = """\
List durable facts about the customer of {business_name} that the CUSTOMER stated or \
confirmed in the new messages, for serving them months later: who they are (name, \
city, language), preferences (diet, sizes, contact), circumstances (their bike, \
business), events (bought, booked, complained, refunded). Not greetings, one-off \
questions, what the assistant said, guesses, passwords, cards or codes. Each one short \
English sentence about "the customer". importance 0-1: 0.9+ essential (diet, allergy, \
name, accessibility), 0.5 useful, 0.2 trivia. Empty list if nothing durable."""

# Words that state nothing about the customer: acknowledgements, thanks and greetings in
# the shop's languages (en, fr, sw, rw, es, pt). Matched whole, lower-cased.
SMALL_TALK = frozenset(
    """ok okay k kk yes yeah yep yup no nope sure fine alright great cool nice good perfect
    awesome thanks thank thx ty you u pls please hi hello hey bye morning evening night
    welcome lol haha
    oui non merci beaucoup bonjour bonsoir salut daccord super parfait bien
    ndiyo hapana asante sana habari jambo sawa karibu poa
    yego oya murakoze cyane muraho mwaramutse mwiriwe ni byiza
    si sí gracias muchas hola vale bueno perfecto adios adiós buenas
    sim não nao obrigado obrigada olá ola oi tchau beleza""".split()
)


def _drop_titles(schema: dict[str, Any]) -> None:
    """Pydantic's titles repeat the field names: tokens the model reads for nothing."""
    schema.pop("title", None)
    for field in (schema.get("properties") or {}).values():
        field.pop("title", None)


def says_something(text: str) -> bool:
    """Whether a customer's line may hold a fact: any word (or number) beyond small talk."""
    return any(word not in SMALL_TALK for word in re.findall(r"\w+", text.lower()))


class ExtractedMemory(BaseModel):
    model_config = ConfigDict(json_schema_extra=_drop_titles)

    content: str = Field(description="One standalone sentence about the customer.")
    kind: Literal["fact", "preference", "event"]
    importance: float = Field(ge=0.0, le=1.0)


class Extraction(BaseModel):
    """Durable facts about the customer."""

    model_config = ConfigDict(json_schema_extra=_drop_titles)

    memories: list[ExtractedMemory]


@dataclass(frozen=True)
class TranscriptLine:
    id: int
    role: str  # customer | agent | operator | system
    content: str


@dataclass(frozen=True)
class RememberReport:
    read: int = 0
    extracted: int = 0
    added: int = 0
    merged: int = 0


def render_lines(lines: Sequence[TranscriptLine]) -> str:
    speakers = {"customer": "Customer", "agent": "Assistant", "operator": "Staff"}
    return "\n".join(
        f"{speakers.get(line.role, line.role.capitalize())}: {_cut(line)}" for line in lines
    )


def _cut(line: TranscriptLine) -> str:
    limit = LINE_CHARS if line.role == "customer" else ASSISTANT_CHARS
    text = " ".join(line.content.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Rememberer:
    def __init__(
        self,
        pool: Pool,
        model: BaseChatModel,
        memory: LongTermMemory,
        *,
        business_name: str = "the business",
        max_lines: int = 40,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.pool = pool
        self.model = model
        self.memory = memory
        self.business_name = business_name
        self.max_lines = max_lines
        self.timeout_seconds = timeout_seconds

    async def extract(
        self, context: Sequence[TranscriptLine], lines: Sequence[TranscriptLine]
    ) -> list[ExtractedMemory]:
        structured = self.model.with_structured_output(Extraction)
        request = f"New messages:\n{render_lines(lines)}"
        if context:
            request = f"Earlier, for context only:\n{render_lines(context)}\n\n{request}"
        prompt = EXTRACTION_PROMPT.format(business_name=self.business_name)
        async with asyncio.timeout(self.timeout_seconds):
            raw: Any = await structured.ainvoke(
                [SystemMessage(content=prompt), HumanMessage(content=request)]
            )
        extraction = raw if isinstance(raw, Extraction) else Extraction.model_validate(raw)
        return extraction.memories

    async def remember(self, conversation_id: str) -> RememberReport:
        """Read what is new in the conversation, extract, store; None of it twice."""
        found = await self._conversation(conversation_id)
        if found is None:
            return RememberReport()  # erased since the job was queued
        customer, watermark = found
        context, lines = await self._transcript(conversation_id, watermark)
        if not lines:
            return RememberReport()
        if not any(line.role == "customer" and says_something(line.content) for line in lines):
            await self._advance(conversation_id, lines[-1].id)
            return RememberReport(read=len(lines))
        extracted = await self.extract(context, lines)
        kept = [
            NewMemory(mask_text(m.content.strip())[:500], m.kind, round(m.importance, 3))
            for m in extracted
            if m.importance >= self.memory.policy.min_importance and m.content.strip()
        ]
        added = merged = 0
        if kept:
            vectors = await self.memory.cache.embed([m.content for m in kept], scope=customer)
            async with self.memory.user_lock(customer):
                for memory, vector in zip(kept, vectors, strict=True):
                    outcome = await self.memory.add_or_merge(
                        customer, conversation_id, memory, vector
                    )
                    MEMORIES_WRITTEN.labels(outcome=outcome).inc()
                    added, merged = added + (outcome == "added"), merged + (outcome == "merged")
                await self.memory.enforce_cap(customer)
        await self._advance(conversation_id, lines[-1].id)
        report = RememberReport(len(lines), len(extracted), added, merged)
        log.info("memory.remembered", conversation_id=conversation_id, **report.__dict__)
        return report

    async def _conversation(self, conversation_id: str) -> tuple[str, int] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT wa_id, remembered_message_id FROM agent_conversations WHERE id = %s",
                (conversation_id,),
            )
            row = await cur.fetchone()
        return (str(row["wa_id"]), int(row["remembered_message_id"])) if row else None

    async def _transcript(
        self, conversation_id: str, watermark: int
    ) -> tuple[list[TranscriptLine], list[TranscriptLine]]:
        """(context before the watermark, the newest unread lines in order)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, role, content FROM agent_messages"
                " WHERE conversation_id = %s AND id > %s ORDER BY id DESC LIMIT %s",
                (conversation_id, watermark, self.max_lines),
            )
            new = [TranscriptLine(**row) for row in reversed(await cur.fetchall())]
            cur = await conn.execute(
                "SELECT id, role, content FROM agent_messages"
                " WHERE conversation_id = %s AND id <= %s ORDER BY id DESC LIMIT %s",
                (conversation_id, watermark, CONTEXT_LINES),
            )
            context = [TranscriptLine(**row) for row in reversed(await cur.fetchall())]
        return context, new

    async def _advance(self, conversation_id: str, last_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE agent_conversations SET remembered_message_id ="
                " greatest(remembered_message_id, %s) WHERE id = %s",
                (last_id, conversation_id),
            )
