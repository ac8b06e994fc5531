"""Messages sent first about bookings: a reminder before each booking, and one nudge
when a booking's payment is still open. Both are approved templates, once each.

A sweep (every minute, in the workers) looks for what is due, rather than one job
scheduled per booking: a booking cancelled or paid is simply no longer found, one moved
is found again for its new time, and a message whose job could not be queued (the
database was away) is found by the next sweep. Each message is reserved
(`booking_reminders`, keyed by booking, kind and start time) before it is staged in the
outbox under a run id derived from the same key, so it is sent at most once whatever
runs twice. Never to a customer who opted out, nor to one whose flag is off; a template
Meta would refuse (unknown, not approved, needing more values than we fill) sends
nothing and says so in the log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import procrastinate
import structlog

from graph.composition.feature_flags import FeatureFlags
from graph.infra.database import Pool
from graph.state import TemplateReply
from server.outcomes.consent import may_message_first
from server.outcomes.template_catalog import find_template
from server.runner.outbox import deliver_parts, stage_parts
from server.runner.transport import NOT_WHATSAPP, Channels
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.templates import MessageTemplate, render_body

log = structlog.get_logger(__name__)

REMIND_TASK = "remind_bookings"
_NAMESPACE = uuid.UUID("6f0d8a4e-2c1b-4f7e-9a53-0b8e7c1d2f46")

Kind = Literal["booking", "payment"]


@dataclass(frozen=True)
class ReminderOptions:
    """One kind of message: its template as (name, language), None for none; `delay`:
    before the booking starts (a reminder) or after the payment link was made (a nudge)."""

    kind: Kind
    template: tuple[str, str] | None
    delay: timedelta
    timezone: str

    @classmethod
    def parse(
        cls, kind: Kind, template: str | None, hours: float, timezone: str
    ) -> ReminderOptions:
        """From the settings' `name:language` (validated there) and hours."""
        named = None
        if template:
            name, language = template.split(":", 1)
            named = (name, language)
        return cls(kind, named, timedelta(hours=hours), timezone)

    @property
    def flag(self) -> str:
        return "booking_reminders" if self.kind == "booking" else "payment_nudges"


def reminder_run_id(kind: Kind, booking_id: int, starts_at: datetime) -> str:
    """The outbox key of one message: staging it twice sends it once."""
    key = f"{kind}:{booking_id}:{starts_at.astimezone(UTC).isoformat()}"
    return str(uuid.uuid5(_NAMESPACE, key))


class BookingReminders:
    """The messages of one kind (`options.kind`) that are due."""

    def __init__(
        self, pool: Pool, channels: Channels, flags: FeatureFlags, options: ReminderOptions
    ) -> None:
        self.pool = pool
        self.channels = channels
        self.flags = flags
        self.options = options

    async def send_due(self, now: datetime | None = None) -> int:
        """Send every message due at `now` (the clock, by default); how many were sent."""
        template = await self._usable_template()
        if template is None:
            return 0
        sent = 0
        for booking in await self._due(now or datetime.now(UTC)):
            if await self._remind(template, booking):
                sent += 1
        return sent

    async def _usable_template(self) -> MessageTemplate | None:
        if self.options.template is None:
            return None
        template = await find_template(self.pool, *self.options.template)
        problem = None
        if template is None:
            problem = "unknown: sync or declare it"
        elif not template.sendable:
            problem = template.unsupported or f"its status is {template.status}"
        elif len(template.variables) > 3:
            problem = f"it has {len(template.variables)} variables; we fill 3"
        if problem:
            log.error("reminders.template_unusable", template=self.options.template, why=problem)
            return None
        return template

    async def _due(self, now: datetime) -> list[dict[str, Any]]:
        parameters = {"now": now, "delay": self.options.delay, "elsewhere": list(NOT_WHATSAPP)}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_DUE[self.options.kind], parameters)
            return list(await cur.fetchall())

    async def _remind(self, template: MessageTemplate, booking: dict[str, Any]) -> bool:
        wa_id = booking["wa_id"]
        flags = await self.flags.for_customer(wa_id, booking["phone_number_id"])
        if not flags.get(self.options.flag):
            return False
        if not await may_message_first(self.pool, wa_id):
            return False
        if not await self._reserve(booking):
            return False
        run_id = reminder_run_id(self.options.kind, booking["id"], booking["starts_at"])
        await stage_parts(
            self.pool,
            conversation_id=booking["conversation_id"],
            run_id=run_id,
            wa_id=wa_id,
            parts=[self._reply(template, booking)],
            agent=f"reminder:{self.options.kind}",
        )
        try:
            transport = self.channels.for_number(booking["phone_number_id"])
            await deliver_parts(self.pool, transport, run_id)
        except WhatsAppError as exc:  # refused again after the client's retries
            log.warning("reminders.not_delivered", booking_id=booking["id"], title=exc.title)
        log.info("reminders.sent", kind=self.options.kind, booking_id=booking["id"])
        return True

    async def _reserve(self, booking: dict[str, Any]) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO booking_reminders (booking_id, kind, starts_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING booking_id",
                (booking["id"], self.options.kind, booking["starts_at"]),
            )
            return await cur.fetchone() is not None

    def _reply(self, template: MessageTemplate, booking: dict[str, Any]) -> TemplateReply:
        zone = ZoneInfo(self.options.timezone)
        values = _VALUES[self.options.kind](booking, zone)[: len(template.variables)]
        return {
            "kind": "template",
            "name": template.name,
            "language": template.language,
            "values": dict(zip(template.variables, values, strict=True)),
            "named": template.named,
            "body": render_body(template, values),
        }


def _first_name(booking: dict[str, Any]) -> str:
    return (booking["profile_name"] or "").split(" ")[0] or "there"


def _when(booking: dict[str, Any], zone: ZoneInfo) -> str:
    local = booking["starts_at"].astimezone(zone)
    return f"{local:%a %d %b}, {local:%H:%M}"


# What each kind fills its template's variables with, in order.
_VALUES: dict[Kind, Callable[[dict[str, Any], ZoneInfo], list[str]]] = {
    "booking": lambda b, zone: [_first_name(b), b["resource_name"], _when(b, zone)],
    "payment": lambda b, zone: [
        _first_name(b),
        f"{b['resource_name']}, {_when(b, zone)}",
        b["payment_link"],
    ],
}


def register_reminder_task(queue: procrastinate.App, reminders: list[BookingReminders]) -> None:
    @queue.periodic(cron="* * * * *", periodic_id="booking_reminders")
    @queue.task(name=REMIND_TASK, queueing_lock=REMIND_TASK)
    async def remind_bookings(timestamp: int) -> None:
        for kind in reminders:
            await kind.send_due()


# The customer's latest WhatsApp conversation: a message goes where they write.
_BOOKING_AND_CUSTOMER = """
SELECT b.id, b.wa_id, s.starts_at, r.name AS resource_name, k.profile_name,
       c.id::text AS conversation_id, c.phone_number_id{extra}
FROM bookings b
JOIN booking_slots s ON s.id = b.slot_id
JOIN booking_resources r ON r.id = s.resource_id
JOIN contacts k ON k.wa_id = b.wa_id
JOIN LATERAL (
    SELECT id, phone_number_id FROM agent_conversations c
    WHERE c.wa_id = b.wa_id AND c.phone_number_id <> ALL(%(elsewhere)s)
    ORDER BY c.updated_at DESC LIMIT 1
) c ON true
{join}
WHERE b.status = 'confirmed' AND s.starts_at > %(now)s
  AND NOT EXISTS (
      SELECT 1 FROM booking_reminders m
      WHERE m.booking_id = b.id AND m.kind = '{kind}' AND m.starts_at = s.starts_at)
  AND {due}
ORDER BY s.starts_at
LIMIT 500
"""

_DUE: dict[Kind, str] = {
    # Starting within the lead time.
    "booking": _BOOKING_AND_CUSTOMER.format(
        extra="", join="", kind="booking", due="s.starts_at <= %(now)s + %(delay)s"
    ),
    # A payment link made that long ago and still open, and nothing paid for the booking.
    "payment": _BOOKING_AND_CUSTOMER.format(
        extra=", coalesce(p.payment_url, p.reference) AS payment_link",
        join="JOIN payments p ON p.booking_id = b.id AND p.status = 'pending'",
        kind="payment",
        due="p.created_at <= %(now)s - %(delay)s AND NOT EXISTS ("
        "SELECT 1 FROM payments q WHERE q.booking_id = b.id AND q.status = 'paid')",
    ),
}
