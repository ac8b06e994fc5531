"""The conversational agent of the walking skeleton: one model call per turn.

Specialist agents, tools and handoffs arrive with the multi-agent graph; this node is
the shape they share: system prompt + history in, one reply out, and a model failure
after its retries becomes the fallback menu rather than silence.
"""

from __future__ import annotations

from typing import Any

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, SystemMessage

from graph.prompts import FallbackTexts
from graph.state import ConversationState, text_reply
from nodes.fallback import fallback_update

log = structlog.get_logger(__name__)


def make_agent_node(model: BaseChatModel, system_prompt: str, fallback: FallbackTexts) -> Any:
    async def answer(state: ConversationState) -> dict[str, Any]:
        prompt = [SystemMessage(content=system_prompt), *state["messages"]]
        try:
            response = await model.ainvoke(prompt)
        except Exception as exc:  # the model's client already retried with backoff
            log.warning("model.failed", error_type=type(exc).__name__, error=str(exc)[:200])
            return fallback_update(fallback, state)
        text = response.text.strip() if isinstance(response, AIMessage) else ""
        if not text:
            return fallback_update(fallback, state)
        return {"messages": [response], "replies": [text_reply(text)]}

    return answer
