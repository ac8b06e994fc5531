"""Rule-based answers: the customer always hears back, even with no model at all."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from graph.context import ConversationContext
from graph.state import (
    ConversationState,
    MenuReply,
    Reply,
    latest_customer_messages,
    reply_text,
    whatsapp_meta,
)
from nodes.node_types import ContextNode


@dataclass(frozen=True)
class FallbackTexts:
    """The canned answers (prompts/fallback_menu.yaml), loaded by graph/composition/prompts.py."""

    menu: MenuReply
    topic_acknowledgement: str
    unsupported: str
    # The rule-based menu's sentences and button titles (nodes/menu.py), by key.
    actions: Mapping[str, str] = field(default_factory=dict)
    # These texts in other languages (fallback_menu.yaml `languages:`), by code.
    translations: Mapping[str, FallbackTexts] = field(default_factory=dict)

    def in_language(self, language: str | None) -> FallbackTexts:
        """The texts in `language` where the file has them, else these (English)."""
        return self.translations.get(language or "", self)

    def topic_title(self, row_id: str) -> str | None:
        for section in self.menu["sections"]:
            for row in section["rows"]:
                if row["id"] == row_id:
                    return row["title"]
        return None


def fallback_reply(texts: FallbackTexts, state: ConversationState) -> Reply:
    """Acknowledge a tapped topic, else offer the topic menu."""
    for message in reversed(latest_customer_messages(state["messages"])):
        reply_id = whatsapp_meta(message).get("reply_id")
        topic = texts.topic_title(reply_id) if isinstance(reply_id, str) else None
        if topic is not None:
            return {"kind": "text", "text": texts.topic_acknowledgement.format(topic=topic)}
    return texts.menu


def as_history(reply: Reply, speaker: str = "fallback") -> AIMessage:
    """A canned reply as the history keeps it, so the next turn starts after it."""
    return AIMessage(content=reply_text(reply), name=speaker)


def fallback_update(texts: FallbackTexts, state: ConversationState) -> dict[str, Any]:
    """The state update of a rule-based turn; the reply is kept in the history too."""
    reply = fallback_reply(texts, state)
    return {"messages": [as_history(reply)], "replies": [reply]}


def make_unsupported_node(texts: FallbackTexts) -> ContextNode:
    """A sticker or a poll carries no words: the language kept on the contact."""

    async def ask_for_text(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        language = runtime.context.language if runtime.context is not None else None
        reply: Reply = {"kind": "text", "text": texts.in_language(language).unsupported}
        return {"messages": [as_history(reply)], "replies": [reply]}

    return ask_for_text
