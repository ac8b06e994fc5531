"""The last resort of the router: one structured-output call to the chat model.

Used only when the rules and the local classifier are unsure, so its cost is paid on
a minority of turns. The answer is constrained to the enabled intents by the JSON
schema itself, and checked again here: a model that still answers outside it, times
out or fails is treated as no answer, and the router falls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from nodes.routing.intents import INTENTS

log = structlog.get_logger(__name__)

# Longer messages are cut: the intent is in the first lines, and tokens cost money.
MAX_MESSAGE_CHARS = 1500


@dataclass(frozen=True)
class LLMVerdict:
    intent: str
    confidence: float
    reason: str


def intent_schema(enabled: Collection[str]) -> dict[str, Any]:
    """A JSON schema whose `intent` enum holds only the enabled intents (strict-mode
    compatible: every property required, no extra ones)."""
    choices = [intent for intent in INTENTS if intent in enabled]
    return {
        "title": "route_intent",
        "description": "The team that should answer the customer's message.",
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": choices},
            "confidence": {"type": "number", "description": "0 to 1"},
            "reason": {"type": "string", "description": "a few words, in English"},
        },
        "required": ["intent", "confidence", "reason"],
        "additionalProperties": False,
    }


class LLMIntentJudge:
    def __init__(
        self,
        model: BaseChatModel,
        prompt_template: str,
        descriptions: Mapping[str, str],
        *,
        timeout_seconds: float,
    ) -> None:
        self.model = model
        self.prompt_template = prompt_template
        self.descriptions = dict(descriptions)
        self.timeout_seconds = timeout_seconds

    def system_prompt(self, enabled: Collection[str], active_agent: str | None) -> str:
        teams = "\n".join(
            f"- {intent}: {self.descriptions.get(intent, '')}"
            for intent in INTENTS
            if intent in enabled
        )
        if active_agent:
            current = (
                f"The conversation is currently with {active_agent}. Keep it there unless"
                " the message clearly changes topic; short follow-ups stay with it."
            )
        else:
            current = "No team is in charge of the conversation yet."
        return self.prompt_template.format(intents=teams, active_agent=current)

    async def judge(
        self, text: str, *, enabled: Collection[str], active_agent: str | None
    ) -> LLMVerdict | None:
        """The model's choice, or None when it failed or answered outside the schema."""
        structured = self.model.with_structured_output(intent_schema(enabled))
        messages = [
            SystemMessage(content=self.system_prompt(enabled, active_agent)),
            HumanMessage(content=text[:MAX_MESSAGE_CHARS]),
        ]
        try:
            async with asyncio.timeout(self.timeout_seconds):
                raw = await structured.ainvoke(messages)
        except Exception as exc:  # the model client already retried with backoff
            log.warning("router.llm_failed", error_type=type(exc).__name__, error=str(exc)[:200])
            return None
        return _verdict(raw, enabled)


def _verdict(raw: object, enabled: Collection[str]) -> LLMVerdict | None:
    if not isinstance(raw, dict):
        log.warning("router.llm_invalid", answer=str(raw)[:200])
        return None
    intent = raw.get("intent")
    if not isinstance(intent, str) or intent not in enabled or intent not in INTENTS:
        log.warning("router.llm_invalid", intent=str(intent)[:50])
        return None
    try:
        confidence = min(1.0, max(0.0, float(raw.get("confidence", 0.5))))
    except (TypeError, ValueError):
        confidence = 0.5
    return LLMVerdict(intent=intent, confidence=confidence, reason=str(raw.get("reason", ""))[:200])
