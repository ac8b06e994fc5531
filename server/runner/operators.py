"""What a human operator does to a conversation: reply (words, a photo, a document, a
place) and hand back (one the bot escalated), send an approved template (any, once its
window has closed).

Each runs as a queue job under the conversation's lock, like the bot's own turns: an
operator's reply can never interleave with a graph run on the same thread (concurrent
writes to one thread silently lose updates). Each action has an id chosen when it is
requested, so a retried job neither sends twice nor adds the message twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import structlog
from langchain_core.messages import AIMessage
from langgraph.types import Command

from graph.composition.graph_pool import GraphPool
from graph.composition.turns import thread_config
from graph.infra.database import Pool
from graph.state import ConversationState, Reply, TemplateReply, text_reply
from nodes.handoffs import HUMAN
from server.runner.conversations import find_conversation, mark_handed_back
from server.runner.outbox import deliver_parts, reply_parts, reply_transcript, stage_parts
from server.runner.transport import Channels

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OperatorDesk:
    pool: Pool
    graphs: GraphPool
    channels: Channels

    async def send_reply(
        self, conversation_id: str, action_id: str, text: str, operator: str
    ) -> None:
        await self._say(conversation_id, action_id, reply_parts([text_reply(text)]), operator)

    async def send_media(
        self, conversation_id: str, action_id: str, media: str, operator: str
    ) -> None:
        """A photo, a document or a place (a `MediaReply` or `LocationReply` as JSON,
        checked by whoever asked), said like a reply: in the thread and the outbox."""
        await self._say(conversation_id, action_id, [cast(Reply, json.loads(media))], operator)

    async def _say(
        self, conversation_id: str, action_id: str, parts: list[Reply], operator: str
    ) -> None:
        """The operator's parts into the thread (the bot reads them later) and out through
        the outbox, each at most once however often the job runs."""
        wa_id, channel = await self._customer(conversation_id)
        config = thread_config(conversation_id, run_id=action_id, wa_id=wa_id)
        message = AIMessage(
            content=reply_transcript(parts), name="operator", id=f"operator-{action_id}"
        )
        async with self.graphs.borrow() as graph:
            snapshot = await graph.aget_state(config)
            if snapshot.values.get("mode") != "human":
                # Released between the request and this job: the reply would talk over
                # the bot. Dropped loudly rather than retried forever.
                log.warning("operator.reply_dropped", conversation_id=conversation_id)
                return
            update: ConversationState = {"messages": [message], "replies": []}
            await graph.aupdate_state(config, update, as_node="escalate")
        await stage_parts(
            self.pool,
            conversation_id=conversation_id,
            run_id=action_id,
            wa_id=wa_id,
            parts=parts,
            agent=f"operator:{operator}",
        )
        await deliver_parts(self.pool, self.channels.for_number(channel), action_id)

    async def send_template(
        self, conversation_id: str, action_id: str, template: str, operator: str
    ) -> None:
        """An approved template (a `TemplateReply` as JSON, checked by whoever asked)
        through the outbox: sent at most once however often the job runs. It stays out
        of the graph's thread: the conversation may be idle, with no node to answer as."""
        reply = cast(TemplateReply, json.loads(template))
        wa_id, channel = await self._customer(conversation_id)
        await stage_parts(
            self.pool,
            conversation_id=conversation_id,
            run_id=action_id,
            wa_id=wa_id,
            parts=[reply],
            agent=f"operator:{operator}",
        )
        await deliver_parts(self.pool, self.channels.for_number(channel), action_id)

    async def take_over(self, conversation_id: str, action_id: str, operator: str) -> None:
        """The thread into human mode, as if the bot had escalated: from the next message
        on it stays silent, and the operator's replies go into the thread. (The bot's
        replies were withheld from the moment of the request: `deliver_parts`.)"""
        wa_id, _ = await self._customer(conversation_id)
        config = thread_config(conversation_id, run_id=action_id, wa_id=wa_id)
        async with self.graphs.borrow() as graph:
            snapshot = await graph.aget_state(config)
            if snapshot.values.get("mode") == "human":
                return
            handoffs = list(snapshot.values.get("handoffs", []))
            taken = {"source": "bot", "target": HUMAN, "reason": f"taken over by {operator}"}
            update = {
                "mode": "human",
                "active_agent": HUMAN,
                "replies": [],
                "handoffs": [*handoffs, taken],
            }
            await graph.aupdate_state(config, update, as_node="escalate")
        log.info("conversation.taken_over", conversation_id=conversation_id)

    async def release(self, conversation_id: str, action_id: str, operator: str) -> None:
        """Resume the paused run: the bot answers the next message again."""
        wa_id, _ = await self._customer(conversation_id)
        config = thread_config(conversation_id, run_id=action_id, wa_id=wa_id)
        async with self.graphs.borrow() as graph:
            snapshot = await graph.aget_state(config)
            if snapshot.values.get("mode") == "human" and snapshot.next:
                resume: Command[str] = Command(resume={"by": operator})
                await graph.ainvoke(resume, config)
        await mark_handed_back(self.pool, conversation_id)
        log.info("conversation.handed_back", conversation_id=conversation_id)

    async def _customer(self, conversation_id: str) -> tuple[str, str]:
        """The customer's key and the conversation's channel (its business number)."""
        found = await find_conversation(self.pool, conversation_id)
        if found is None:
            raise LookupError(f"conversation {conversation_id} does not exist")
        return found.wa_id, found.phone_number_id
