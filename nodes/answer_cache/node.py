"""The answer cache around a specialist node: no new node, no new edge.

On the agent's first step of a turn (the newest message is the customer's), a cacheable
question is looked up; a hit answers with the cached text and ends the turn with no model
call (the agent's message says so in `response_metadata`). A miss runs the agent as
usual and keeps the stamp read at lookup time in the state — unless the answer will be
made with more than trusted context in view (recalled memories, or earlier words of the
customer: trust.py), then there is no stamp and nothing is stored. When the agent's
final answer comes (perhaps after cacheable tool calls), the turn is remembered under
that stamp if it qualifies. With the `answer_cache` flag off for the customer, the
wrapped node runs untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.runtime import Runtime

from graph.context import AgentConfig, ConversationContext
from graph.state import ConversationState, text_reply
from nodes.answer_cache.cache import (
    AnswerCache,
    LookupResult,
    Question,
    cacheable_question,
    turn_tokens,
    turn_tools,
)
from nodes.answer_cache.store import agent_stamp
from nodes.answer_cache.trust import said_nothing_before, tool_results
from nodes.node_types import ContextNode
from nodes.specialists import current_agents

log = structlog.get_logger(__name__)

FLAG = "answer_cache"


def current_turn(messages: Sequence[AnyMessage]) -> tuple[list[HumanMessage], list[AnyMessage]]:
    """The customer's newest block of messages, and what the agents added after it."""
    end = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    start = end
    while start > 0 and isinstance(messages[start - 1], HumanMessage):
        start -= 1
    humans = [m for m in messages[start : end + 1] if isinstance(m, HumanMessage)]
    return humans, list(messages[end + 1 :])


def _configuration_stamp(config: AgentConfig) -> str:
    return agent_stamp((config.system_prompt, config.model, config.temperature, config.tools))


def with_answer_cache(
    node: ContextNode, name: str, cache: AnswerCache, defaults: Mapping[str, AgentConfig]
) -> ContextNode:
    async def answer(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        context = runtime.context
        if context is None or not context.flag(FLAG):
            return await node(state, runtime)
        humans, after = current_turn(state["messages"])
        question = cacheable_question(humans) if humans else None
        config = current_agents(runtime, defaults).get(name, defaults[name])
        if not after:  # the agent's first step in this turn
            if question is None:
                return {**await node(state, runtime), "answer_cache_stamp": None}
            found = await _lookup(cache, name, question, config, state, context)
            if found is None or found.served is not None:
                return await _answer_from(found, name, node, state, runtime)
            trusted = not state.get("memories") and said_nothing_before(
                state["messages"], state.get("summary")
            )
            state = {**state, "answer_cache_stamp": found.stamp if trusted else None}
        update = await node(state, runtime)
        stamp = state.get("answer_cache_stamp")
        if question is not None and stamp:
            grounding = [config.system_prompt, *(str(h.content) for h in humans)]
            try:
                await _remember(cache, name, question, stamp, [*after], update, context, grounding)
            except Exception as exc:  # a lost entry costs a future hit, never this answer
                log.warning("answer_cache.store_failed", error=type(exc).__name__)
        return {**update, "answer_cache_stamp": stamp}

    answer.__name__ = getattr(node, "__name__", f"agent_{name}")
    return answer


async def _lookup(
    cache: AnswerCache,
    name: str,
    question: Question,
    config: AgentConfig,
    state: ConversationState,
    context: ConversationContext,
) -> LookupResult | None:
    """None when the cache failed: it is a shortcut, without it the agent answers."""
    try:
        return await cache.lookup(
            question,
            agent=name,
            agent_stamp=_configuration_stamp(config),
            conversation_id=context.conversation_id,
            run_id=state.get("run_id"),
        )
    except Exception as exc:
        log.warning("answer_cache.lookup_failed", error=type(exc).__name__)
        return None


async def _answer_from(
    found: LookupResult | None,
    name: str,
    node: ContextNode,
    state: ConversationState,
    runtime: Runtime[ConversationContext],
) -> dict[str, Any]:
    """The cached answer as the agent's message (no model call), or the agent's own."""
    if found is None or found.served is None:
        return {**await node(state, runtime), "answer_cache_stamp": None}
    served = found.served
    message = AIMessage(
        content=served.answer,
        name=name,
        response_metadata={"answer_cache": {"similarity": served.similarity}},
    )
    return {
        "messages": [message],
        "replies": [text_reply(served.answer)],
        "answer_cache_stamp": None,
    }


async def _remember(
    cache: AnswerCache,
    name: str,
    question: Question,
    stamp: str,
    after: Sequence[AnyMessage],
    update: dict[str, Any],
    context: ConversationContext,
    grounding: Sequence[str],
) -> None:
    """Remember the agent's final plain-text answer of a turn without handoffs;
    `grounding`: the trusted text besides this turn's tool results (prompt, question)."""
    new: list[AnyMessage] = list(update.get("messages", []))
    replies = update.get("replies") or []
    final = new[-1] if new else None
    if not isinstance(final, AIMessage) or final.tool_calls or not replies:
        return
    if any(reply["kind"] != "text" for reply in replies) or update.get("handoffs"):
        return
    names = [context.customer_name] if context.customer_name else []
    found = tool_results([*after, *new], cache.config.cacheable_tools)
    await cache.remember(
        question,
        agent=name,
        stamp=stamp,
        answer="\n\n".join(reply["text"] for reply in replies),
        tokens=turn_tokens([*after, *new]),
        tools_used=turn_tools([*after, *new]),
        grounded_on=[*grounding, *found],
        customer_names=names,
    )
