"""The semantic answer cache: look a question up, remember an answer, decide what counts.

A hit needs all of: the same agent, language and stamp (content versions + agent
configuration), an entry younger than its TTL, cosine similarity of the normalised
questions at or above the threshold, and the same specifics (guard.py). What may be
remembered: a turn whose question stands alone and holds nothing personal, whose tool
calls were all on the cacheable allow-list (knowledge base, catalog — nothing about
this customer), whose answer is plain text with no personal data and not the
customer's name, that recalled no long-term memory of the customer, and whose links
and numbers all appear in what the answer was grounded on (trust.py: the node also
stores nothing from a turn whose customer had said more than greetings before).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from langchain_core.embeddings import Embeddings
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from graph.privacy import mask_text
from nodes.answer_cache.guard import (
    is_personal,
    language,
    mentions,
    normalise,
    same_specifics,
    stands_alone,
    substitutions,
)
from nodes.answer_cache.store import AnswerCacheStore, Candidate
from nodes.answer_cache.trust import grounded

log = structlog.get_logger(__name__)

_RECENT_VECTORS = 512
_KNOWN_PHRASES = 20_000


@dataclass(frozen=True)
class CacheConfig:
    threshold: float = 0.83
    # Words swapped between two questions must mean the same at least this much
    # (cosine of their embeddings): "bike"/"bicycle" 0.92, "helmet"/"lock" 0.31.
    synonym_similarity: float = 0.70
    ttl: timedelta = timedelta(hours=24)
    cacheable_tools: frozenset[str] = frozenset(
        {"search_knowledge_base", "search_catalog", "get_product"}
    )


@dataclass(frozen=True)
class Question:
    """A customer's turn as the cache sees it."""

    text: str  # normalised
    language: str


@dataclass(frozen=True)
class Served:
    answer: str
    similarity: float
    tokens_saved: int


@dataclass(frozen=True)
class LookupResult:
    served: Served | None
    stamp: str  # what an answer made now is stored under (read before it is made)


def cacheable_question(turn: Sequence[HumanMessage]) -> Question | None:
    """The turn's question, when it may be looked up at all: typed text only (a tap
    means "the thing on screen"), standing alone, nothing personal in it."""
    texts: list[str] = []
    for message in turn:
        meta = message.additional_kwargs.get("whatsapp")
        if isinstance(meta, dict) and (meta.get("reply_id") or meta.get("kind") != "text"):
            return None
        texts.append(str(message.content))
    raw = " ".join(texts).strip()
    if not raw or is_personal(raw):
        return None
    text = normalise(raw)
    return Question(text, language(raw)) if stands_alone(text) else None


def turn_tools(messages: Iterable[AnyMessage]) -> set[str]:
    return {call["name"] for m in messages if isinstance(m, AIMessage) for call in m.tool_calls}


def turn_tokens(messages: Iterable[AnyMessage]) -> int:
    """What the model spent on this answer: the usage every model message reports."""
    total = 0
    for message in messages:
        if isinstance(message, AIMessage) and message.usage_metadata:
            total += int(message.usage_metadata.get("total_tokens", 0))
    return total


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


class AnswerCache:
    def __init__(
        self, store: AnswerCacheStore, embeddings: Embeddings, config: CacheConfig
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.config = config
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()
        self._phrases: dict[str, list[float]] = {}

    async def _vector(self, question: Question) -> list[float]:
        """Embedded once for its lookup and its remembering (a turn apart)."""
        vector = self._vectors.pop(question.text, None)
        if vector is None:
            vector = await self.embeddings.aembed_query(question.text)
        self._vectors[question.text] = vector
        while len(self._vectors) > _RECENT_VECTORS:
            self._vectors.popitem(last=False)
        return vector

    async def lookup(
        self,
        question: Question,
        *,
        agent: str,
        agent_stamp: str,
        conversation_id: str | None = None,
        run_id: str | None = None,
    ) -> LookupResult:
        """The cached answer to `question` if any, and the stamp of this moment's
        content; every lookup is recorded."""
        started = time.perf_counter()
        vector = await self._vector(question)
        found = await self.store.nearest(
            agent=agent, language=question.language, stamp=agent_stamp, vector=vector
        )
        best = await self._best(question, found.candidates)
        top = found.candidates[0].similarity if found.candidates else None
        latency_ms = (time.perf_counter() - started) * 1000
        await self.store.record(
            conversation_id=_uuid_or_none(conversation_id),
            run_id=_uuid_or_none(run_id),
            agent=agent,
            language=question.language,
            hit=best,
            similarity=best.similarity if best else top,
            latency_ms=latency_ms,
        )
        if best is None:
            return LookupResult(None, found.stamp)
        log.info("answer_cache.hit", agent=agent, similarity=round(best.similarity, 3))
        return LookupResult(Served(best.answer, best.similarity, best.tokens), found.stamp)

    async def _best(self, question: Question, candidates: Sequence[Candidate]) -> Candidate | None:
        for candidate in candidates:  # nearest first
            if candidate.similarity < self.config.threshold:
                return None
            if not same_specifics(question.text, candidate.question):
                continue
            if await self._same_words(substitutions(question.text, candidate.question)):
                return candidate
        return None

    async def _same_words(self, swaps: Sequence[tuple[str, str]]) -> bool:
        """Every swapped phrase means the same as its counterpart (near-synonyms)."""
        for asked, cached in swaps:
            left, right = await self._phrase(asked), await self._phrase(cached)
            if (
                sum(a * b for a, b in zip(left, right, strict=True))
                < self.config.synonym_similarity
            ):
                return False
        return True

    async def _phrase(self, text: str) -> list[float]:
        """Swapped words come from a small vocabulary: each is embedded once per process."""
        vector = self._phrases.get(text)
        if vector is None:
            vector = await self.embeddings.aembed_query(text)
            if len(self._phrases) >= _KNOWN_PHRASES:
                self._phrases.clear()
            self._phrases[text] = vector
        return vector

    async def remember(
        self,
        question: Question,
        *,
        agent: str,
        stamp: str,  # the full stamp `lookup` returned before the answer was made
        answer: str,
        tokens: int,
        tools_used: set[str],
        grounded_on: Sequence[str],
        customer_names: Sequence[str] = (),
    ) -> bool:
        """Store the answer if the turn is cacheable (see the module docstring);
        `grounded_on`: the trusted text it was made from (prompt, question, tool results)."""
        if not tools_used <= self.config.cacheable_tools:
            return False
        if not answer.strip() or mask_text(answer) != answer:
            return False
        if not grounded(answer, grounded_on):
            return False
        if mentions(answer, customer_names):
            return False
        await self.store.put(
            agent=agent,
            language=question.language,
            stamp=stamp,
            question=question.text,
            vector=await self._vector(question),
            answer=answer,
            tokens=tokens,
            ttl=self.config.ttl,
        )
        return True
