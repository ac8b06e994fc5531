"""Booking reminders and payment nudges as the customer sees them, on a controllable
clock: the reminder template reaches them once, at the lead time before their booking,
filled with their name, what they booked and when; not before, never twice, not for a
cancelled booking, again for a booking moved to another time, never after STOP nor with
the flag off. A booking whose payment link is still open gets one nudge with the link,
none once it is paid."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from graph.composition.feature_flags import FeatureFlags
from server.outcomes.reminders import BookingReminders, ReminderOptions
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, running_service
from tests.support_outcomes import new_customer, outcome_settings, say
from tools.demo import seed_demo

KIGALI = ZoneInfo("Africa/Kigali")
TEMPLATE = "booking_reminder:en"
LEAD = timedelta(hours=24)


def reminder_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, tmp_path: Path
) -> Any:
    declared = tmp_path / "templates.yaml"
    declared.write_text(
        "- name: booking_reminder\n  language: en\n"
        "  body: 'Hi {{1}}, a reminder: {{2}} is yours on {{3}}. Reply to change it.'\n"
        "- name: payment_nudge\n  language: en\n"
        "  body: 'Hi {{1}}, your booking ({{2}}) is not paid yet: {{3}}'\n"
    )
    return outcome_settings(
        db_url, graph_api, openai, templates_file=declared, booking_reminder_template=TEMPLATE
    )


def reminders_of(service: RunningService, *flags: str) -> BookingReminders:
    services = service.services
    options = ReminderOptions.parse(
        "booking", TEMPLATE, LEAD.total_seconds() / 3600, "Africa/Kigali"
    )
    return BookingReminders(
        services.pool, services.runner.channels, FeatureFlags(services.pool, flags), options
    )


async def a_customer_with_a_booking(service: RunningService) -> tuple[str, int, datetime]:
    """A customer who wrote to us (as Ada) and a confirmed e-bike booking of theirs."""
    customer = new_customer()
    message = text_message(customer, "hello", name="Ada Lovelace")
    await say(service, message)
    [slot] = await service.fetch(
        "SELECT s.id, s.starts_at FROM booking_slots s JOIN booking_resources r"
        " ON r.id = s.resource_id WHERE r.code = 'EBIKE-1'"
        " AND s.starts_at > now() + interval '2 days'"
        " AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.slot_id = s.id)"
        " ORDER BY s.starts_at LIMIT 1"
    )
    [booking] = await service.fetch(
        "INSERT INTO bookings (wa_id, slot_id, price_minor, currency, idempotency_key)"
        " VALUES (%s, %s, 1000, 'RWF', %s) RETURNING id",
        customer,
        slot["id"],
        str(uuid.uuid4()),
    )
    return customer, int(booking["id"]), slot["starts_at"]


def templates_to(graph_api: FakeGraphAPI, customer: str) -> list[dict[str, Any]]:
    return [m["template"] for m in graph_api.sent_to(customer) if m.get("type") == "template"]


async def test_a_booking_is_reminded_once_at_its_lead_time(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    settings = reminder_settings(db_url, graph_api, openai_server, tmp_path)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        customer, _, starts_at = await a_customer_with_a_booking(service)
        reminders = reminders_of(service)

        assert await reminders.send_due(starts_at - LEAD - timedelta(hours=1)) == 0
        assert templates_to(graph_api, customer) == []

        assert await reminders.send_due(starts_at - LEAD + timedelta(minutes=1)) == 1
        [sent] = templates_to(graph_api, customer)
        local = starts_at.astimezone(KIGALI)
        when = f"{local:%a %d %b}, {local:%H:%M}"
        assert sent["name"] == "booking_reminder"
        values = [p["text"] for p in sent["components"][0]["parameters"]]
        assert values == ["Ada", "E-bike 1", when]

        assert await reminders.send_due(starts_at - timedelta(hours=2)) == 0
        assert len(templates_to(graph_api, customer)) == 1
        assert await reminders.send_due(starts_at + timedelta(minutes=5)) == 0  # over
        [transcript] = await service.fetch(
            "SELECT content FROM agent_messages WHERE agent = 'reminder:booking'"
        )
        reminder = f"Hi Ada, a reminder: E-bike 1 is yours on {when}. Reply to change it."
        assert transcript["content"] == reminder


async def test_cancelled_moved_opted_out_and_flagged_off_bookings(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    settings = reminder_settings(db_url, graph_api, openai_server, tmp_path)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        reminders = reminders_of(service)

        cancelled, booking, starts_at = await a_customer_with_a_booking(service)
        await service.execute("UPDATE bookings SET status = 'cancelled' WHERE id = %s", booking)
        assert await reminders.send_due(starts_at - LEAD / 2) == 0

        moved, booking, starts_at = await a_customer_with_a_booking(service)
        assert await reminders.send_due(starts_at - LEAD / 2) == 1
        [later] = await service.fetch(
            "SELECT id, starts_at FROM booking_slots WHERE starts_at = %s + interval '1 day'"
            " AND resource_id = (SELECT resource_id FROM booking_slots s JOIN bookings b"
            " ON b.slot_id = s.id WHERE b.id = %s)",
            starts_at,
            booking,
        )
        await service.execute(
            "UPDATE bookings SET slot_id = %s WHERE id = %s", later["id"], booking
        )
        assert await reminders.send_due(later["starts_at"] - LEAD / 2) == 1
        assert len(templates_to(graph_api, moved)) == 2

        stopped, _, starts_at = await a_customer_with_a_booking(service)
        await say(service, text_message(stopped, "STOP"), turn=False)
        assert await reminders.send_due(starts_at - LEAD / 2) == 0

        flagged_off, _, starts_at = await a_customer_with_a_booking(service)
        switched_off = reminders_of(service, "-booking_reminders")
        assert await switched_off.send_due(starts_at - LEAD / 2) == 0
        for customer in (cancelled, stopped, flagged_off):
            assert templates_to(graph_api, customer) == [], customer


async def test_an_unknown_template_sends_nothing(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    settings = outcome_settings(
        db_url, graph_api, openai_server, booking_reminder_template="nope:en"
    )
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        customer, _, starts_at = await a_customer_with_a_booking(service)
        services = service.services
        options = ReminderOptions.parse("booking", "nope:en", 24, "Africa/Kigali")
        reminders = BookingReminders(
            services.pool, services.runner.channels, services.flags, options
        )
        assert await reminders.send_due(starts_at - LEAD / 2) == 0
        assert templates_to(graph_api, customer) == []
        assert await service.fetch("SELECT 1 FROM booking_reminders") == []


async def test_an_open_payment_gets_one_nudge_and_a_paid_one_none(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    settings = reminder_settings(db_url, graph_api, openai_server, tmp_path)
    async with running_service(settings) as service:
        await seed_demo(service.services.pool)
        services = service.services
        options = ReminderOptions.parse("payment", "payment_nudge:en", 2, "Africa/Kigali")
        nudges = BookingReminders(services.pool, services.runner.channels, services.flags, options)
        unpaid, unpaid_booking, starts_at = await a_customer_with_a_booking(service)
        paid, paid_booking, _ = await a_customer_with_a_booking(service)
        made = datetime.now(UTC)
        for customer, booking, status in [
            (unpaid, unpaid_booking, "pending"),
            (paid, paid_booking, "paid"),
        ]:
            await service.execute(
                "INSERT INTO payments (reference, wa_id, booking_id, description, amount_minor,"
                " currency, provider, payment_url, status, idempotency_key, created_at)"
                " VALUES (%s, %s, %s, 'e-bike', 1000, 'RWF', 'demo', %s, %s, %s, %s)",
                f"PAY-{booking}",
                customer,
                booking,
                f"https://pay.example/{booking}",
                status,
                str(uuid.uuid4()),
                made,
            )
        assert await nudges.send_due(made + timedelta(hours=1)) == 0  # too soon
        assert await nudges.send_due(made + timedelta(hours=3)) == 1
        assert await nudges.send_due(made + timedelta(hours=9)) == 0  # once
        [sent] = templates_to(graph_api, unpaid)
        local = starts_at.astimezone(KIGALI)
        values = [p["text"] for p in sent["components"][0]["parameters"]]
        link = f"https://pay.example/{unpaid_booking}"
        assert values == ["Ada", f"E-bike 1, {local:%a %d %b}, {local:%H:%M}", link]
        assert templates_to(graph_api, paid) == []
