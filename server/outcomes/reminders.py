"""Booking reminders: the approved reminder template, once, before each booking.

A sweep (every minute, in the workers) looks for confirmed bookings that start within
the reminder lead time and were not reminded for that start time yet, rather than one
job scheduled per booking: a booking cancelled is simply no longer found, one moved is
found again for its new time, and a reminder whose job could not be queued (the
database was away) is found by the next sweep. Each reminder is reserved
(`booking_reminders`, keyed by booking and start time) before it is staged in the outbox
under a run id derived from the same key, so it is sent at most once whatever runs
twice. Never to a customer who opted out, nor to one whose flag `booking_reminders` is
off; a template that Meta would refuse (unknown, not approved, needing more than the
customer's name, what is booked and when) sends nothing and says so in the log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import procrastinate
import structlog

from graph.composition.feature_flags import FeatureFlags
from graph.infra.database import Pool
from graph.state import TemplateReply
from server.outcomes.consent import may_message_first
from server.outcomes.templates import find_template
from server.runner.outbox import deliver_parts, stage_parts
from server.runner.transport import NOT_WHATSAPP, Transport
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.templates import MessageTemplate, render_body

log = structlog.get_logger(__name__)

REMIND_TASK = "remind_bookings"
_NAMESPACE = uuid.UUID("6f0d8a4e-2c1b-4f7e-9a53-0b8e7c1d2f46")
# The values a reminder can fill, in this order.
_VALUES = ("name", "booking", "when")


@dataclass(frozen=True)
class ReminderOptions:
    template: tuple[str, str] | None  # (name, language); None: no reminders
    lead: timedelta
    timezone: str

    @classmethod
    def parse(cls, template: str | None, lead_hours: float, timezone: str) -> ReminderOptions:
        """From the settings' `name:language` (validated there) and hours."""
        named = None
        if template:
            name, language = template.split(":", 1)
            named = (name, language)
        return cls(named, timedelta(hours=lead_hours), timezone)


def reminder_run_id(booking_id: int, starts_at: datetime) -> str:
    """The outbox key of one reminder: staging it twice sends it once."""
    return str(uuid.uuid5(_NAMESPACE, f"{booking_id}:{starts_at.astimezone(UTC).isoformat()}"))


class BookingReminders:
    def __init__(
        self,
        pool: Pool,
        whatsapp: Transport | None,
        flags: FeatureFlags,
        options: ReminderOptions,
    ) -> None:
        self.pool = pool
        self.whatsapp = whatsapp
        self.flags = flags
        self.options = options

    async def send_due(self, now: datetime | None = None) -> int:
        """Remind every booking due at `now` (the clock, by default); how many were sent."""
        template = await self._usable_template()
        if template is None:
            return 0
        now = now or datetime.now(UTC)
        sent = 0
        for booking in await self._due(now):
            if await self._remind(template, booking):
                sent += 1
        return sent

    async def _usable_template(self) -> MessageTemplate | None:
        if self.options.template is None or self.whatsapp is None:
            return None
        template = await find_template(self.pool, *self.options.template)
        problem = None
        if template is None:
            problem = "unknown: sync or declare it"
        elif not template.sendable:
            problem = template.unsupported or f"its status is {template.status}"
        elif len(template.variables) > len(_VALUES):
            problem = f"it has {len(template.variables)} variables; a reminder fills 3"
        if problem:
            log.error("reminders.template_unusable", template=self.options.template, why=problem)
            return None
        return template

    async def _due(self, now: datetime) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _DUE, {"now": now, "lead": self.options.lead, "elsewhere": list(NOT_WHATSAPP)}
            )
            return list(await cur.fetchall())

    async def _remind(self, template: MessageTemplate, booking: dict[str, Any]) -> bool:
        wa_id = booking["wa_id"]
        if not (await self.flags.for_customer(wa_id)).get("booking_reminders"):
            return False
        if not await may_message_first(self.pool, wa_id):
            return False
        if not await self._reserve(booking):
            return False
        run_id = reminder_run_id(booking["id"], booking["starts_at"])
        await stage_parts(
            self.pool,
            conversation_id=booking["conversation_id"],
            run_id=run_id,
            wa_id=wa_id,
            parts=[self._reply(template, booking)],
            agent="reminder",
        )
        try:
            await deliver_parts(self.pool, self.whatsapp, run_id)
        except WhatsAppError as exc:  # refused again after the client's retries
            log.warning("reminders.not_delivered", booking_id=booking["id"], title=exc.title)
        log.info("reminders.sent", booking_id=booking["id"])
        return True

    async def _reserve(self, booking: dict[str, Any]) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO booking_reminders (booking_id, starts_at) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING booking_id",
                (booking["id"], booking["starts_at"]),
            )
            return await cur.fetchone() is not None

    def _reply(self, template: MessageTemplate, booking: dict[str, Any]) -> TemplateReply:
        local = booking["starts_at"].astimezone(ZoneInfo(self.options.timezone))
        known = {
            "name": (booking["profile_name"] or "").split(" ")[0] or "there",
            "booking": booking["resource_name"],
            "when": f"{local:%a %d %b}, {local:%H:%M}",
        }
        values = [known[key] for key in _VALUES[: len(template.variables)]]
        return {
            "kind": "template",
            "name": template.name,
            "language": template.language,
            "values": dict(zip(template.variables, values, strict=True)),
            "named": template.named,
            "body": render_body(template, values),
        }


def register_reminder_task(queue: procrastinate.App, reminders: BookingReminders) -> None:
    @queue.periodic(cron="* * * * *", periodic_id="booking_reminders")
    @queue.task(name=REMIND_TASK, queueing_lock=REMIND_TASK)
    async def remind_bookings(timestamp: int) -> None:
        await reminders.send_due()


# Confirmed bookings starting within the lead time, not reminded for that start, with
# the customer's latest WhatsApp conversation (a reminder is sent where they write).
_DUE = """
SELECT b.id, b.wa_id, s.starts_at, r.name AS resource_name, k.profile_name,
       c.id::text AS conversation_id
FROM bookings b
JOIN booking_slots s ON s.id = b.slot_id
JOIN booking_resources r ON r.id = s.resource_id
JOIN contacts k ON k.wa_id = b.wa_id
JOIN LATERAL (
    SELECT id FROM agent_conversations c
    WHERE c.wa_id = b.wa_id AND c.phone_number_id <> ALL(%(elsewhere)s)
    ORDER BY c.updated_at DESC LIMIT 1
) c ON true
WHERE b.status = 'confirmed'
  AND s.starts_at > %(now)s AND s.starts_at <= %(now)s + %(lead)s
  AND NOT EXISTS (
      SELECT 1 FROM booking_reminders m WHERE m.booking_id = b.id AND m.starts_at = s.starts_at)
ORDER BY s.starts_at
LIMIT 500
"""
