"""The conversation's state: what every checkpoint holds.

Kept to JSON-shaped values (messages aside) so checkpoints stay readable in Studio and
replayable after any code change that does not rename a field.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph.message import add_messages


class TextReply(TypedDict):
    kind: Literal["text"]
    text: str


class MenuRow(TypedDict):
    id: str
    title: str
    description: NotRequired[str]


class MenuSection(TypedDict):
    title: str
    rows: list[MenuRow]


class MenuReply(TypedDict):
    """An interactive list: how the bot offers choices without free text."""

    kind: Literal["menu"]
    body: str
    button: str
    sections: list[MenuSection]


class ReplyButton(TypedDict):
    id: str
    title: str


class ButtonsReply(TypedDict):
    """Up to three reply buttons: confirmations and quick choices."""

    kind: Literal["buttons"]
    body: str
    buttons: list[ReplyButton]


class TemplateReply(TypedDict):
    """An approved template, the only message WhatsApp delivers once the customer-service
    window has closed. `body` is its text as the customer reads it (the transcript's)."""

    kind: Literal["template"]
    name: str
    language: str
    values: dict[str, str]  # body variable -> value, in order
    named: bool
    body: str


class MediaReply(TypedDict):
    """A photo or a document: a public https link WhatsApp fetches, or the id of a file
    uploaded to the Cloud API (one of the two)."""

    kind: Literal["image", "document"]
    link: NotRequired[str]
    media_id: NotRequired[str]
    caption: NotRequired[str]
    filename: NotRequired[str]  # a document's name as the customer sees it


class LocationReply(TypedDict):
    """A pin on the map: the shop, the pick-up point."""

    kind: Literal["location"]
    latitude: float
    longitude: float
    name: NotRequired[str]
    address: NotRequired[str]


Reply = TextReply | MenuReply | ButtonsReply | TemplateReply | MediaReply | LocationReply


class RouteDecision(TypedDict):
    """Who answers this turn and why; kept in the state for Studio, replay and metrics."""

    intent: str
    confidence: float
    method: str  # rule | embedding | llm | sticky | default
    reason: NotRequired[str]


class Handoff(TypedDict):
    source: str
    target: str
    reason: str


class RecalledMemory(TypedDict):
    """A long-term memory of this customer recalled for this turn (nodes/memory)."""

    content: str
    kind: str  # fact | preference | event
    score: float


class ConversationState(TypedDict):
    """One WhatsApp conversation; `thread_id` is the conversation's id."""

    messages: Annotated[list[AnyMessage], add_messages]
    # The specialist in charge; it stays in charge across turns until the router sees
    # a clear change of topic or an agent hands the conversation over.
    active_agent: NotRequired[str | None]
    route: NotRequired[RouteDecision]
    # This turn's handoffs (reset by the router): more than MAX_HANDOFFS escalates.
    handoffs: NotRequired[list[Handoff]]
    # "human" while an operator has the conversation; the bot stays silent.
    mode: NotRequired[Literal["bot", "human"]]
    # What this turn sends back. Replaced, not appended, by each turn: the outbox
    # turns it into WhatsApp messages once the run is complete.
    replies: NotRequired[list[Reply]]
    # The run that produced the latest checkpoint; a retried job compares it with its
    # own to know whether to resume, or only to deliver what was already decided.
    run_id: NotRequired[str]
    # Short-term memory: the older messages folded away (RemoveMessage) to keep the
    # model's history under its token budget, as a running summary.
    summary: NotRequired[str]
    # Long-term memory recalled for this turn's system prompt; replaced every turn.
    memories: NotRequired[list[RecalledMemory]]
    # The answer cache's stamp read when this turn looked its question up (None: the
    # turn may not be cached); the answer is stored under it (nodes/answer_cache).
    answer_cache_stamp: NotRequired[str | None]
    # What the rule-based menu asked for in free text ("ticket": a problem description).
    menu_awaiting: NotRequired[str | None]


def text_reply(text: str) -> TextReply:
    return {"kind": "text", "text": text}


def customer_message(
    text: str, *, wamid: str, kind: str, supported: bool = True, reply_id: str | None = None
) -> HumanMessage:
    """A customer's WhatsApp message as the graph sees it.

    The message id is the wamid, so a message fed twice (a retried run) is merged by
    `add_messages` instead of appearing twice in the history.
    """
    meta: dict[str, object] = {"kind": kind, "supported": supported}
    if reply_id is not None:
        meta["reply_id"] = reply_id
    return HumanMessage(content=text, id=wamid, additional_kwargs={"whatsapp": meta})


def whatsapp_meta(message: AnyMessage) -> dict[str, object]:
    meta = message.additional_kwargs.get("whatsapp")
    return meta if isinstance(meta, dict) else {}


def latest_customer_messages(messages: list[AnyMessage]) -> list[HumanMessage]:
    """The customer's messages since the bot last spoke: this turn's request."""
    turn: list[HumanMessage] = []
    for message in reversed(messages):
        if not isinstance(message, HumanMessage):
            break
        turn.append(message)
    return list(reversed(turn))


def reply_text(reply: Reply) -> str:
    """What the customer reads first: the text, the body above buttons or a menu, a
    photo's or a document's caption (else what it is), a place's name."""
    if reply["kind"] == "text":
        return reply["text"]
    if reply["kind"] == "image" or reply["kind"] == "document":
        label = (
            "[photo]"
            if reply["kind"] == "image"
            else f"[document: {reply.get('filename') or 'file'}]"
        )
        caption = reply.get("caption")
        return f"{label} {caption}" if caption else label
    if reply["kind"] == "location":
        place = ", ".join(part for part in (reply.get("name"), reply.get("address")) if part)
        return f"[location] {place}" if place else "[location]"
    return reply["body"]
