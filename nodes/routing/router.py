"""`IntentRouter`: which specialist answers this turn, deterministic first, cheap by design.

In order, the first that decides wins:

1. an interactive reply `menu:<intent>` (a tapped list row or button) → that intent;
2. a precise keyword rule from prompts/router/rules.yaml ("talk to a human");
3. the local classifier (nodes/routing/classifier.py), when confident enough;
4. an LLM call with structured output, when configured;
5. the fallback: the active agent, else customer service.

Stickiness: an agent in charge stays in charge across turns until the router sees a
clear change of topic — another intent above the *switch* threshold (higher than the
plain one), a rule, or a tapped menu row. Follow-ups ("ok", "how much is it?"), short
messages without a confident topic, and messages the classifier gives to the active
agent anyway stay without any LLM call. Disabled intents are never returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from prometheus_client import Histogram

from graph.state import RouteDecision
from nodes.routing.classifier import LocalIntentClassifier, Matrix
from nodes.routing.examples import RouterExamples, load_router_examples
from nodes.routing.intents import (
    FOLLOWUP,
    INTENTS,
    RouteMethod,
    fallback_intent,
    make_decision,
    menu_intent,
)
from nodes.routing.llm import LLMIntentJudge

log = structlog.get_logger(__name__)

ROUTE_SECONDS = Histogram(
    "wa_agent_route_seconds",
    "Time to decide who answers a turn, by method",
    ["method"],
    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# The classifier reads this much of a turn: the topic is at the start, and n-grams of a
# long text cost time.
MAX_CLASSIFIED_CHARS = 600


@dataclass(frozen=True)
class RouterConfig:
    """Thresholds tuned by cross-validation on the examples (`wa-agent eval-router --tune`)."""

    threshold: float = 0.49
    switch_threshold: float = 0.69
    # At or above this confidence of the lexical half alone, the classifier would have
    # decided the same on 99.5 % of the examples (`tune_lexical_threshold` at the plain
    # threshold): the message is routed without embedding it, about a third of typed
    # messages and most of a worker's router CPU on them.
    lexical_threshold: float = 0.86
    use_llm: bool = True
    llm_timeout_seconds: float = 8.0
    # With an agent in charge, a message of at most this many words that names no
    # confident topic is a follow-up to that agent.
    short_message_words: int = 3


@dataclass(frozen=True)
class LocalScores:
    """The classifier's probabilities for one message, over intents and FOLLOWUP."""

    probabilities: dict[str, float]

    def best(self, allowed: Collection[str]) -> tuple[str, float]:
        candidates = [(p, label) for label, p in self.probabilities.items() if label in allowed]
        if not candidates:
            return FOLLOWUP, 0.0
        probability, label = max(candidates)
        return label, probability

    def describe(self, allowed: Collection[str]) -> str:
        ranked = sorted(
            ((p, label) for label, p in self.probabilities.items() if label in allowed),
            reverse=True,
        )[:3]
        return ", ".join(f"{label} {p:.2f}" for p, label in ranked)


@dataclass(frozen=True)
class LocalRoute:
    """What the router decides without an LLM: a decision, or None with a best guess."""

    decision: RouteDecision | None
    guess: str
    guess_confidence: float


class IntentRouter:
    """Built once at start (`IntentRouter.create`), then shared by every conversation."""

    def __init__(
        self,
        *,
        embeddings: Embeddings,
        examples: RouterExamples,
        classifier: LocalIntentClassifier,
        model: BaseChatModel | None = None,
        config: RouterConfig | None = None,
        enabled_intents: Collection[str] = INTENTS,
    ) -> None:
        self.embeddings = embeddings
        self.examples = examples
        self.classifier = classifier
        self.config = config or RouterConfig()
        self.enabled_intents = frozenset(enabled_intents) & set(INTENTS)
        self.judge: LLMIntentJudge | None = None
        if model is not None and self.config.use_llm:
            self.judge = LLMIntentJudge(
                model,
                examples.llm_prompt,
                examples.descriptions,
                timeout_seconds=self.config.llm_timeout_seconds,
            )

    @classmethod
    def create(
        cls,
        embeddings: Embeddings,
        *,
        model: BaseChatModel | None = None,
        config: RouterConfig | None = None,
        examples: RouterExamples | None = None,
        enabled_intents: Collection[str] = INTENTS,
        vectors_cache: Path | None = None,
    ) -> IntentRouter:
        """Read the examples, embed them (seconds with the local model: call it at
        start, or through `acreate`), and fit the classifier."""
        examples = examples or load_router_examples()
        texts, labels = examples.training_set()
        vectors = embed_texts(embeddings, texts, cache=vectors_cache)
        classifier = LocalIntentClassifier().fit(texts, labels, vectors)
        log.info("router.ready", examples=len(texts), llm=model is not None)
        return cls(
            embeddings=embeddings,
            examples=examples,
            classifier=classifier,
            model=model,
            config=config,
            enabled_intents=enabled_intents,
        )

    @classmethod
    async def acreate(
        cls,
        embeddings: Embeddings,
        *,
        model: BaseChatModel | None = None,
        config: RouterConfig | None = None,
        examples: RouterExamples | None = None,
        enabled_intents: Collection[str] = INTENTS,
        vectors_cache: Path | None = None,
    ) -> IntentRouter:
        """`create` in a worker thread, so that a running event loop is not blocked."""
        return await asyncio.to_thread(
            lambda: cls.create(
                embeddings,
                model=model,
                config=config,
                examples=examples,
                enabled_intents=enabled_intents,
                vectors_cache=vectors_cache,
            )
        )

    # -- the decision -----------------------------------------------------------------

    async def route(
        self,
        text: str,
        *,
        reply_id: str | None = None,
        active_agent: str | None = None,
        enabled: Collection[str] | None = None,
    ) -> RouteDecision:
        """Who answers `text` (this turn's messages, joined). `enabled` overrides the
        intents enabled at construction (agents switched off at run time)."""
        started = time.perf_counter()
        allowed = self.allowed_intents(enabled)
        active = active_agent if active_agent in allowed else None
        local = await asyncio.to_thread(self.route_locally, text, reply_id, active, allowed)
        decision = local.decision
        if decision is None:
            decision = await self.resolve_with_llm(text, local, active, allowed)
        ROUTE_SECONDS.labels(method=decision["method"]).observe(time.perf_counter() - started)
        log.debug("router.decision", **decision)
        return decision

    def route_locally(
        self,
        text: str,
        reply_id: str | None,
        active_agent: str | None,
        allowed: frozenset[str],
    ) -> LocalRoute:
        """Steps 1-3, synchronous (CPU only): the part measured as the local path."""
        tapped = self._route_tap(reply_id, active_agent, allowed)
        if tapped is not None:
            return LocalRoute(tapped, tapped["intent"], 1.0)
        if not text.strip():
            fallback = active_agent or fallback_intent(allowed)
            method: RouteMethod = "sticky" if active_agent else "default"
            return LocalRoute(make_decision(fallback, 1.0, method, "no text"), fallback, 1.0)
        for intent, patterns in self.examples.rules.items():
            if intent in allowed and any(pattern.search(text) for pattern in patterns):
                return LocalRoute(make_decision(intent, 1.0, "rule", "keyword rule"), intent, 1.0)
        decisive = {FOLLOWUP, active_agent} if active_agent else allowed | {FOLLOWUP}
        scores = self.local_scores(text, decisive=decisive)
        if active_agent is not None:
            return self._with_active_agent(text, scores, active_agent, allowed)
        return self._without_active_agent(scores, allowed)

    def local_scores(self, text: str, *, decisive: Collection[str] = ()) -> LocalScores:
        """The classifier's scores. When the lexical half alone names one of the
        `decisive` labels above `lexical_threshold`, its scores are returned as they
        are: the embedding would not have changed the decision (a switch of topic away
        from an agent in charge is never taken on that shortcut: pass only labels that
        keep it)."""
        clipped = " ".join(text.split())[:MAX_CLASSIFIED_CHARS]
        lexical = self.classifier.lexical_proba([clipped])
        best = int(lexical[0].argmax())
        if (
            lexical[0, best] >= self.config.lexical_threshold
            and self.classifier.labels[best] in decisive
        ):
            row = lexical[0]
        else:
            vectors = embed_texts(self.embeddings, [clipped])
            row = self.classifier.predict_proba([clipped], vectors, lexical=lexical)[0]
        return LocalScores(dict(zip(self.classifier.labels, row.tolist(), strict=True)))

    def allowed_intents(self, enabled: Collection[str] | None) -> frozenset[str]:
        if enabled is None:
            return self.enabled_intents
        return frozenset(enabled) & set(INTENTS)

    def _route_tap(
        self, reply_id: str | None, active_agent: str | None, allowed: frozenset[str]
    ) -> RouteDecision | None:
        tapped = menu_intent(reply_id)
        if tapped is not None:
            if tapped in allowed:
                return make_decision(tapped, 1.0, "rule", f"tapped {reply_id}")
            fallback = fallback_intent(allowed)
            return make_decision(fallback, 1.0, "rule", f"tapped {reply_id}, {tapped} disabled")
        if reply_id is not None and active_agent is not None:
            return make_decision(active_agent, 1.0, "sticky", f"answer to {reply_id}")
        return None

    def _with_active_agent(
        self, text: str, scores: LocalScores, active: str, allowed: frozenset[str]
    ) -> LocalRoute:
        label, probability = scores.best(allowed | {FOLLOWUP})
        intent, confidence = scores.best(allowed)
        summary = scores.describe(allowed | {FOLLOWUP})
        if label == FOLLOWUP:
            return LocalRoute(make_decision(active, probability, "sticky", summary), active, 1.0)
        if intent == active:
            kept_by: RouteMethod = "embedding" if confidence >= self.config.threshold else "sticky"
            return LocalRoute(make_decision(active, confidence, kept_by, summary), active, 1.0)
        if confidence >= self.config.switch_threshold:
            decision = make_decision(intent, confidence, "embedding", f"new topic: {summary}")
            return LocalRoute(decision, intent, confidence)
        if len(text.split()) <= self.config.short_message_words:
            reason = f"short, no clear new topic: {summary}"
            kept = scores.probabilities.get(active, 0.0)
            return LocalRoute(make_decision(active, kept, "sticky", reason), active, 1.0)
        return LocalRoute(None, intent, confidence)

    def _without_active_agent(self, scores: LocalScores, allowed: frozenset[str]) -> LocalRoute:
        label, probability = scores.best(allowed | {FOLLOWUP})
        intent, confidence = scores.best(allowed)
        summary = scores.describe(allowed | {FOLLOWUP})
        if label == FOLLOWUP and probability >= self.config.threshold:
            fallback = fallback_intent(allowed)
            reason = f"no topic yet: {summary}"
            return LocalRoute(
                make_decision(fallback, probability, "default", reason), fallback, 1.0
            )
        if confidence >= self.config.threshold:
            return LocalRoute(make_decision(intent, confidence, "embedding", summary), intent, 1.0)
        return LocalRoute(None, intent, confidence)

    async def resolve_with_llm(
        self, text: str, local: LocalRoute, active: str | None, allowed: frozenset[str]
    ) -> RouteDecision:
        """Steps 4-5 for a message `route_locally` left undecided."""
        if self.judge is not None:
            verdict = await self.judge.judge(text, enabled=allowed, active_agent=active)
            if verdict is not None:
                return make_decision(verdict.intent, verdict.confidence, "llm", verdict.reason)
        return self.fallback_decision(local, active, allowed)

    def fallback_decision(
        self, local: LocalRoute, active: str | None, allowed: frozenset[str]
    ) -> RouteDecision:
        """Unsure and no LLM answer: the agent in charge keeps the conversation, else
        customer service takes it (it can hand over). Confidence 0: nobody was sure."""
        fallback = active or fallback_intent(allowed)
        why = "no LLM answer" if self.judge is not None else "LLM off"
        reason = f"unsure (classifier: {local.guess} {local.guess_confidence:.2f}), {why}"
        return make_decision(fallback, 0.0, "default", reason)


def embed_texts(
    embeddings: Embeddings, texts: Sequence[str], *, cache: Path | None = None
) -> Matrix:
    """Vectors as a float32 matrix. With `cache`, the examples' vectors are kept in an
    .npy file named by a hash of the model and the texts, so a restart with unchanged
    examples skips the seconds of embedding them."""
    path = _cache_path(embeddings, texts, cache) if cache is not None else None
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return np.asarray(cached, dtype=np.float32)
    embed_matrix = getattr(embeddings, "embed_matrix", None)  # the local model's fast path
    if callable(embed_matrix):
        vectors = np.asarray(embed_matrix(texts), dtype=np.float32)
    else:
        vectors = np.asarray(embeddings.embed_documents(list(texts)), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def _cache_path(embeddings: Embeddings, texts: Sequence[str], directory: Path) -> Path:
    identity = getattr(embeddings, "model_id", None) or getattr(embeddings, "model", None)
    identity = identity or type(embeddings).__name__
    digest = hashlib.sha256(str(identity).encode())
    for text in texts:
        digest.update(b"\x00" + text.encode())
    return directory / f"router-vectors-{digest.hexdigest()[:24]}.npy"
