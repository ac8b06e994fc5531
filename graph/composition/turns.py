"""One customer turn against the graph, whatever state the conversation is in.

A conversation can be waiting: for a confirmation tap (a tool paused on `interrupt()`),
or for an operator (human mode). A turn then resumes or feeds the thread instead of
starting a new run. Every write carries the run id, so a job retried after a crash
can tell a finished turn (deliver its replies) from an interrupted one (resume it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_RESUMING
from langgraph.types import Command, Interrupt

from graph.composition.builder import ConversationGraph
from graph.composition.confirmation_texts import ConfirmationTexts
from graph.context import ConversationContext
from graph.infra.checkpoint_reads import one_read_per_checkpoint
from graph.state import (
    ButtonsReply,
    ConversationState,
    Reply,
    ReplyButton,
    text_reply,
    whatsapp_meta,
)
from tools.registry import HELD

Waiting = Literal["confirmation", "human"]

# Each step's checkpoint is written before the next step starts: a worker killed
# mid-turn leaves exactly the steps it finished, which the retried job resumes from.
# Replays, and turns once they reach a step that acts on the world, run this way.
DURABILITY: Literal["sync"] = "sync"

# The steps that act on the world: tool calls (a booking, a payment, a ticket). A turn
# runs with its checkpoint written once, at its end ("exit": a plain turn writes one
# checkpoint, not six), and pauses before these to be saved, then goes on step by step.
# A worker killed before such a step repeats only model calls; after it, nothing is
# repeated — the same guarantee as saving every step, for a fraction of the writes.
ACTING_NODES = ("tools", "menu_tools")

# Where a conversation's first turn started: before any checkpoint.
THREAD_START = ""

# A tool's buttons carry these ids (tools/common.py); the buttons sent to the customer
# carry them bound to their question: `confirm:yes:<tag>`, the tag taken from the id
# LangGraph gives the interrupt. Every question a customer sees stays on their screen,
# so a tap answers the question it came with, or nothing.
CONFIRM_YES = "confirm:yes"
CONFIRM_NO = "confirm:no"
_ANSWERS = (CONFIRM_YES, CONFIRM_NO)
_TAG_CHARS = 12


TEXTS = ConfirmationTexts.load()


@dataclass(frozen=True)
class Tap:
    """A tap on a Confirm or Cancel button: the answer, and the question it belongs to
    ("" for buttons sent before questions were tagged: they match no question)."""

    answer: str
    tag: str


def question_tag(question: Interrupt) -> str:
    """The short id a question's buttons carry: stable while the question waits (it is
    the interrupt's own id), different for every question asked."""
    return question.id[:_TAG_CHARS]


def read_tap(reply_id: object) -> Tap | None:
    """`confirm:yes:<tag>` → Tap("confirm:yes", tag); None for any other id."""
    if not isinstance(reply_id, str):
        return None
    parts = reply_id.split(":")
    answer = ":".join(parts[:2])
    return Tap(answer, ":".join(parts[2:])) if answer in _ANSWERS else None


@dataclass(frozen=True)
class TurnOutcome:
    replies: list[Reply] = field(default_factory=list)
    waiting: Waiting | None = None
    # The thread's values after the turn, so that work after delivery (episodes) need
    # not read the checkpoint again.
    state: Mapping[str, Any] = field(default_factory=dict)
    # The checkpoint the turn started from (THREAD_START: the thread's first turn), when
    # running it again from there (with more messages) would undo nothing: no tool step
    # ran and nothing waits for an answer.
    undo_to: str | None = None


class TurnGraph(Protocol):
    """What a turn needs of the graph: the compiled graph itself, or a stand-in that
    streams it (graph/composition/event_stream.py)."""

    async def aget_state(self, config: RunnableConfig) -> Any: ...

    async def aupdate_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None
    ) -> Any: ...

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        durability: Any = None,
        interrupt_before: Any = None,
    ) -> Any: ...


class GraphStandIn:
    """Base of the stand-ins (streaming, replay): state is read and written through the
    compiled graph unchanged; a subclass changes only how a run goes (`ainvoke`)."""

    def __init__(self, graph: ConversationGraph) -> None:
        self.graph = graph

    async def aget_state(self, config: RunnableConfig) -> Any:
        return await self.graph.aget_state(config)

    async def aupdate_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None
    ) -> Any:
        return await self.graph.aupdate_state(config, values, as_node=as_node)


def thread_config(conversation_id: str, *, run_id: str, wa_id: str = "") -> RunnableConfig:
    return {
        "configurable": {"thread_id": conversation_id, "wa_id": wa_id},
        "metadata": {"run_id": run_id, "conversation_id": conversation_id},
        "tags": ["whatsapp"],
    }


@one_read_per_checkpoint
async def run_turn(
    graph: TurnGraph,
    config: RunnableConfig,
    context: ConversationContext,
    messages: Sequence[HumanMessage],
    run_id: str,
    *,
    step_by_step: bool = False,
    fork_from: str | None = None,
) -> TurnOutcome:
    """`step_by_step`: save every step (replays, which report the steps they ran).
    `fork_from`: run the turn from that checkpoint (the state before an earlier try of
    the same run that answered fewer messages) instead of the thread's latest."""
    if fork_from:
        config = _at_checkpoint(config, fork_from)
    snapshot = await graph.aget_state(config)
    values: dict[str, Any] = dict(snapshot.values)
    texts = TEXTS.in_language(context.language)
    started_from = snapshot.config.get("configurable", {}).get("checkpoint_id")
    if values.get("run_id") == run_id:  # a retried job: this turn already started
        if snapshot.interrupts or not snapshot.next or values.get("mode") == "human":
            return _outcome(values, snapshot.interrupts, texts=texts)
        result = await graph.ainvoke(None, config, context=context, durability=DURABILITY)
        return _outcome(result, result.get("__interrupt__"), texts=texts)
    if values.get("mode") == "human":
        update = {"messages": list(messages), "run_id": run_id, "replies": []}
        await graph.aupdate_state(config, update, as_node="escalate")
        return TurnOutcome(waiting="human", state={**values, **update})
    taps, typed = _split_taps(messages)
    answered: list[Reply] = []  # what the answered question's run said
    pending = _pending_interrupt(snapshot.interrupts)
    if pending is not None and pending.value.get("type") == "confirmation":
        tag = question_tag(pending)
        answers = [tap.answer for tap in taps if tap.tag == tag]
        if not answers and not typed:  # only buttons of earlier questions
            again = confirmation_buttons(pending, texts, note=texts.stale_with_question)
            return TurnOutcome(replies=[again], waiting="confirmation", state=values)
        answer = {"confirmed": bool(answers) and answers[-1] == CONFIRM_YES}
        resume: Command[str] = Command(resume=answer, update={"run_id": run_id, "replies": []})
        result = await _invoke(graph, resume, config, context, step_by_step)
        if not typed or "__interrupt__" in result:
            return _outcome(result, result.get("__interrupt__"), texts=texts)
        # The customer wrote instead of tapping: cancelled, then answered.
        answered, config = list(result.get("replies", [])), _another_run(config)
    elif taps and not typed:  # a button of a question already answered or dropped
        return TurnOutcome(replies=[text_reply(texts.stale)], state=values)
    turn: ConversationState = {"messages": list(typed), "run_id": run_id, "replies": []}
    result = await _invoke(graph, turn, config, context, step_by_step)
    outcome = _outcome(result, result.get("__interrupt__"), answered, texts=texts)
    if answered or outcome.waiting or _acted(values, result):
        return outcome
    return dataclasses.replace(outcome, undo_to=str(started_from or THREAD_START))


def _at_checkpoint(config: RunnableConfig, checkpoint_id: str) -> RunnableConfig:
    """The config of a run started from `checkpoint_id`: a new branch of the thread,
    which becomes its latest. Not a resumption of the run that checkpoint ended."""
    configurable = {
        **(config.get("configurable") or {}),
        "checkpoint_id": checkpoint_id,
        CONFIG_KEY_RESUMING: False,
    }
    return {**config, "configurable": configurable}


def _acted(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """A tool step ran in this turn (its result is among the messages it added)."""
    known = {m.id for m in before.get("messages", [])}
    return any(isinstance(m, ToolMessage) and m.id not in known for m in after.get("messages", []))


async def _invoke(
    graph: TurnGraph,
    input: Any,
    config: RunnableConfig,
    context: ConversationContext,
    step_by_step: bool = False,
) -> dict[str, Any]:
    """Run the turn saved once at its end, unless it reaches a step that acts on the
    world: then it is saved there and goes on step by step (see ACTING_NODES)."""
    if step_by_step:
        every: dict[str, Any] = await graph.ainvoke(
            input, config, context=context, durability=DURABILITY
        )
        return every
    result: dict[str, Any] = await graph.ainvoke(
        input, config, context=context, durability="exit", interrupt_before=list(ACTING_NODES)
    )
    if "__interrupt__" in result or not _calls_tools_next(result):
        return result
    snapshot = await graph.aget_state(config)
    if not set(snapshot.next) & set(ACTING_NODES):
        return result
    acted: dict[str, Any] = await graph.ainvoke(
        None, config, context=context, durability=DURABILITY
    )
    return acted


def _calls_tools_next(values: Mapping[str, Any]) -> bool:
    """The turn stopped on a model's tool calls: only a pause before the tools does that
    (the agents and the menu route every tool call to a tool node)."""
    messages = values.get("messages") or []
    last = messages[-1] if messages else None
    return isinstance(last, AIMessage) and bool(last.tool_calls)


def _another_run(config: RunnableConfig) -> RunnableConfig:
    """The config of a second graph run in one turn, after a resumed one.

    LangGraph takes new input on a thread whose latest checkpoint carries the same
    `metadata.run_id` for a re-entry into that run and drops the input; the typed
    message would go unanswered. Saying "not resuming" starts a run for it.
    """
    configurable = {**(config.get("configurable") or {}), CONFIG_KEY_RESUMING: False}
    return {**config, "configurable": configurable}


def _pending_interrupt(interrupts: Sequence[Interrupt] | None) -> Interrupt | None:
    for item in interrupts or ():
        if isinstance(item.value, dict):
            return item
    return None


def _split_taps(messages: Sequence[HumanMessage]) -> tuple[list[Tap], list[HumanMessage]]:
    """Confirm / Cancel taps apart from everything else the customer sent."""
    taps: list[Tap] = []
    typed: list[HumanMessage] = []
    for message in messages:
        tap = read_tap(whatsapp_meta(message).get("reply_id"))
        if tap is not None:
            taps.append(tap)
        else:
            typed.append(message)
    return taps, typed


def replayed_outcome(result: Mapping[str, Any], language: str | None = None) -> TurnOutcome:
    """What a replayed run (`ainvoke(None)` from a checkpoint) says and waits for, as a
    turn would: a question it stopped at comes with its buttons."""
    return _outcome(result, result.get("__interrupt__"), texts=TEXTS.in_language(language))


def _outcome(
    result: Mapping[str, Any],
    interrupts: Sequence[Interrupt] | None,
    before: Sequence[Reply] = (),
    *,
    texts: ConfirmationTexts,
) -> TurnOutcome:
    replies: list[Reply] = [*before, *result.get("replies", [])]
    pending = _pending_interrupt(interrupts)
    if pending is None:
        return TurnOutcome(replies=replies, state=result)
    kind = pending.value.get("type")
    if kind == "confirmation":
        replies.append(confirmation_buttons(pending, texts))
        return TurnOutcome(replies=replies, waiting="confirmation", state=result)
    if kind == HELD:  # a replay stopped before a side effect: nobody is waited for
        return TurnOutcome(replies=replies, state=result)
    return TurnOutcome(replies=replies, waiting="human", state=result)


def confirmation_buttons(
    question: Interrupt, texts: ConfirmationTexts, note: str = ""
) -> ButtonsReply:
    """The question a paused tool asks, as WhatsApp reply buttons bound to it, in the
    customer's language (`texts`); `note` goes above the question."""
    request: Mapping[str, Any] = question.value
    tag = question_tag(question)
    generic = [
        {"id": CONFIRM_YES, "title": texts.confirm},
        {"id": CONFIRM_NO, "title": texts.cancel},
    ]
    buttons = generic if texts.translated else request.get("buttons") or generic
    bound: list[ReplyButton] = [
        {"id": _bound(str(button["id"]), tag), "title": str(button["title"])[:20]}
        for button in list(buttons)[:3]
    ]
    asked = texts.question_body(request.get("summary"))
    body = f"{note}\n\n{asked}" if note else asked
    return {"kind": "buttons", "body": body[:1024], "buttons": bound}


def _bound(button_id: str, tag: str) -> str:
    return f"{button_id}:{tag}" if button_id in _ANSWERS else button_id
