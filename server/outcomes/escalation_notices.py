"""A notice to the team when a conversation starts waiting for a person.

The dashboard lists waiting conversations; a team that is not looking at it learns of
a new one from `WA_AGENT_ESCALATION_WEBHOOK_URL` (a Slack or Teams incoming webhook, a
helpdesk): one JSON POST per escalation, sent by a queue job so the conversation's own
job never waits on the receiver. The body names the conversation and the customer's
masked number, never what they wrote. A receiver that stays down past the bounded
retries costs that notice (logged as `escalation.notify_failed`), never the turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import procrastinate
import structlog

from graph.privacy import mask_phone
from server.outcomes.alerts import post_json

log = structlog.get_logger(__name__)

NOTIFY_TASK = "notify_escalation"


@dataclass(frozen=True)
class EscalationNotices:
    queue: procrastinate.App
    url: str | None

    async def escalated(self, conversation_id: str, wa_id: str) -> None:
        """Queue the notice of a conversation that just started waiting for a person."""
        if not self.url:
            return
        await self.queue.configure_task(NOTIFY_TASK).defer_async(
            conversation_id=conversation_id,
            customer=mask_phone(wa_id),
            at=datetime.now(UTC).isoformat(),
        )


def register_notice_task(queue: procrastinate.App, url: str | None) -> None:
    @queue.task(name=NOTIFY_TASK)
    async def notify_escalation(conversation_id: str, customer: str, at: str) -> None:
        if not url:
            return
        body = {
            "event": "conversation.escalated",
            "conversation_id": conversation_id,
            "customer": customer,
            "at": at,
            "inbox": f"/admin/conversations/{conversation_id}",
        }
        try:
            await post_json(url, body, max_attempts=4)
        except Exception as exc:
            log.error(
                "escalation.notify_failed", conversation_id=conversation_id, error=str(exc)[:200]
            )
            return
        log.info("escalation.notified", conversation_id=conversation_id)
