"""Whole conversations through the multi-agent graph: router, specialists, tools on the
demo business, a handoff, confirmation taps, a human takeover and its release.

The model is the local fake OpenAI server, scripted call by call; routing is the real
router (these messages are routed locally, without an LLM call, which the test checks).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, interactive_reply, text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import RunningService, eventually, running_service, service_settings
from tools.demo import seed_demo

ADMIN = {"Authorization": "Bearer admin-secret-of-the-agent-tests"}


def agent_settings(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        admin_token="admin-secret-of-the-agent-tests",
    )


async def say(service: RunningService, graph_api: FakeGraphAPI, customer: str, value: Any) -> None:
    """Send one customer message and wait until its run is finished."""
    before = await _runs_done(service)
    assert (await service.post_webhook(envelope(value))).status_code == 200

    async def finished() -> bool:
        return await _runs_done(service) > before

    await eventually(finished, within=20, what="the turn to finish")


async def _runs_done(service: RunningService) -> int:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    return int(rows[0]["n"])


async def next_saturday_rental_slot(service: RunningService) -> tuple[dt.date, int]:
    zone = ZoneInfo("Africa/Kigali")
    today = dt.datetime.now(zone).date()
    saturday = today + dt.timedelta(days=(5 - today.weekday()) % 7 or 7)
    rows = await service.fetch(
        "SELECT s.id FROM booking_slots s JOIN booking_resources r ON r.id = s.resource_id"
        " WHERE r.kind = 'rental' AND (s.starts_at AT TIME ZONE 'Africa/Kigali')::date = %s"
        " ORDER BY s.starts_at LIMIT 1",
        saturday,
    )
    return saturday, int(rows[0]["id"])


def tap_confirm(graph_api: FakeGraphAPI, customer: str, *, answer: str = "yes") -> dict[str, Any]:
    """A tap on the Confirm (or, `answer="no"`, Cancel) button of the question the
    customer received last."""
    question = graph_api.sent_to(customer)[-1]
    position = 0 if answer == "yes" else 1
    button = question["interactive"]["action"]["buttons"][position]["reply"]
    assert button["id"].startswith(f"confirm:{answer}:")  # bound to this question
    return interactive_reply(customer, button["id"], button["title"])


async def thread_state(service: RunningService, customer: str) -> dict[str, Any]:
    conversation = await service.fetch(
        "SELECT id FROM agent_conversations WHERE wa_id = %s", customer
    )
    config = {"configurable": {"thread_id": str(conversation[0]["id"])}}
    async with service.services.runner.graphs.borrow() as graph:
        return dict((await graph.aget_state(config)).values)  # type: ignore[arg-type]


async def test_a_cancelled_confirmation_goes_back_to_the_agent(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """No receipt without a yes: the agent reads the refusal and answers it."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(agent_settings(db_url, graph_api, openai_server)) as service:
        await seed_demo(service.services.pool)
        _, slot_id = await next_saturday_rental_slot(service)
        openai_server.script(
            ToolCall("create_booking", {"slot_id": slot_id}),
            "No problem, nothing is booked. Another day?",
        )
        await say(service, graph_api, customer, text_message(customer, "book slot please"))
        no = tap_confirm(graph_api, customer, answer="no")
        await say(service, graph_api, customer, no)
        assert await service.fetch("SELECT id FROM bookings WHERE wa_id = %s", customer) == []
        assert graph_api.texts_to(customer)[-1] == "No problem, nothing is booked. Another day?"
        assert "did not confirm" in str(openai_server.requests[-1]["messages"][-1])


async def test_book_hand_over_pay_after_confirming_then_ask_for_a_person(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(agent_settings(db_url, graph_api, openai_server)) as service:
        await seed_demo(service.services.pool)
        saturday, slot_id = await next_saturday_rental_slot(service)

        openai_server.script(
            ToolCall("check_availability", {"date": saturday.isoformat(), "kind": "rental"}),
            ToolCall("create_booking", {"slot_id": slot_id, "notes": "city bike"}),
        )
        await say(
            service,
            graph_api,
            customer,
            text_message(customer, "I want to book a bike for Saturday"),
        )
        assert await service.fetch("SELECT id FROM bookings") == []  # asked first
        asked = len(openai_server.requests)
        await say(service, graph_api, customer, tap_confirm(graph_api, customer))
        booking = await service.fetch("SELECT id, status FROM bookings WHERE wa_id = %s", customer)
        assert [b["status"] for b in booking] == ["confirmed"]
        # The booking's receipt, sent as it is: no model call after the tap.
        receipt = graph_api.texts_to(customer)[-1]
        assert receipt.startswith(f"Done ✅\nBooking #{booking[0]['id']}: Sat ")
        assert "City bike" in receipt and "6,000 RWF" in receipt
        assert len(openai_server.requests) == asked
        # The booking agent saw the availability tool's answer before it booked.
        assert any(m["role"] == "tool" for m in openai_server.requests[1]["messages"])

        booking_id = booking[0]["id"]
        openai_server.script(
            ToolCall("transfer_to_payment", {"reason": f"pay booking {booking_id}"}),
            ToolCall("create_payment", {"booking_id": booking_id}),
        )
        await say(service, graph_api, customer, text_message(customer, "how much is it?"))
        buttons = graph_api.sent_to(customer)[-1]
        assert buttons["type"] == "interactive" and buttons["interactive"]["type"] == "button"
        assert await service.fetch("SELECT id FROM payments") == []  # nothing before the tap
        state = await thread_state(service, customer)
        assert state["active_agent"] == "payment"
        assert [(h["source"], h["target"]) for h in state["handoffs"]] == [("booking", "payment")]
        assert state["route"]["method"] == "sticky"

        tap = tap_confirm(graph_api, customer)
        await say(service, graph_api, customer, tap)
        await service.post_webhook(envelope(tap))  # Meta redelivers the tap: no second payment
        payments = await service.fetch("SELECT booking_id, reference, status FROM payments")
        assert [p["booking_id"] for p in payments] == [booking_id]
        receipt = graph_api.texts_to(customer)[-1]  # how to pay, from the payment itself
        assert receipt.startswith(f"Done ✅\nPayment {payments[0]['reference']} 6,000 RWF for ")

        await say(
            service, graph_api, customer, text_message(customer, "this is wrong, I want a person")
        )
        assert "member of our team" in graph_api.texts_to(customer)[-1]
        status = await service.fetch(
            "SELECT status FROM agent_conversations WHERE wa_id = %s", customer
        )
        assert status[0]["status"] == "escalated"
    # No LLM router call in the whole conversation: every request was an agent's.
    assert all("tools" in request for request in openai_server.requests)


async def test_operator_replies_and_hands_back(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(agent_settings(db_url, graph_api, openai_server)) as service:
        await say(service, graph_api, customer, text_message(customer, "I need to talk to a human"))
        sent_before = len(graph_api.sent_to(customer))
        await say(service, graph_api, customer, text_message(customer, "hello? anyone?"))
        assert len(graph_api.sent_to(customer)) == sent_before  # the bot stays silent
        assert openai_server.requests == []

        conversation = (await service.fetch("SELECT id FROM agent_conversations"))[0]["id"]
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN) as admin:
            inbox = (
                await admin.get("/admin/api/conversations", params={"status": "escalated"})
            ).json()
            assert [c["wa_id"] for c in inbox] == [customer]
            reply = await admin.post(
                f"/admin/api/conversations/{conversation}/messages",
                json={"text": "Hi, Grace here."},
            )
            assert reply.status_code == 202
            await graph_api.wait_for_async(
                lambda: graph_api.texts_to(customer)[-1:] == ["Hi, Grace here."], 10
            )
            release = await admin.post(f"/admin/api/conversations/{conversation}/release")
            assert release.status_code == 202

            async def released() -> bool:
                rows = await service.fetch("SELECT status FROM agent_conversations")
                return bool(rows[0]["status"] == "active")

            await eventually(released, what="the release job")
            again = await admin.post(f"/admin/api/conversations/{conversation}/release")
            assert again.status_code == 409
            transcript = (
                await admin.get(f"/admin/api/conversations/{conversation}/messages")
            ).json()

        await say(
            service, graph_api, customer, text_message(customer, "what are your opening hours?")
        )
    assert graph_api.texts_to(customer)[-1].startswith("echo:")  # the bot answers again
    seen = [m.get("content") for m in openai_server.requests[-1]["messages"]]
    assert "hello? anyone?" in seen and "Hi, Grace here." in seen  # the thread kept both
    assert [(m["role"], m["content"]) for m in transcript][-2:] == [
        ("customer", "hello? anyone?"),
        ("agent", "Hi, Grace here."),
    ]


async def test_disabled_agent_is_never_chosen_and_edits_apply_without_restart(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    async with running_service(agent_settings(db_url, graph_api, openai_server)) as service:
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN) as admin:
            off = await admin.patch("/admin/api/agents/sales", json={"enabled": False})
            assert off.status_code == 200 and off.json()["enabled"] is False
            prompt = "You are the customer-service agent. Always answer in one sentence, politely."
            edit = await admin.patch(
                "/admin/api/agents/customer_service", json={"system_prompt": prompt}
            )
            assert edit.status_code == 200
            refused = await admin.patch("/admin/api/agents/sales", json={"colour": "red"})
            assert refused.status_code == 422
        await say(
            service, graph_api, customer, text_message(customer, "how much does a helmet cost?")
        )
        state = await thread_state(service, customer)
    assert state["active_agent"] == "customer_service"
    system = openai_server.requests[-1]["messages"][0]["content"]
    assert prompt in system
    offered = {t["function"]["name"]: t["function"] for t in openai_server.requests[-1]["tools"]}
    colleagues = offered["hand_over"]["parameters"]["properties"]["agent"]["enum"]
    assert "sales" not in colleagues and "booking" in colleagues
