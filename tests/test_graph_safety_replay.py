"""A replay changes nothing, whichever node calls the tool.

Developers replay and fork recorded conversations to see what the bot would say. The
rule-based menu reaches the business tools through its own tool node; a replay through
it must hold every side effect as the agents' path does: no second ticket, no booking
made again after the customer cancelled it.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.fakes.graph_api import FakeGraphAPI
from tests.support import RunningService, eventually, running_service, service_settings
from tests.test_graph_safety_confirmations import Chat, body, book_first_free_slot
from tools.demo import seed_demo

ADMIN = {"Authorization": "Bearer admin-secret-of-the-agent-tests"}


async def conversation_of(service: RunningService, chat: Chat) -> str:
    rows = await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", chat.wa_id)
    return str(rows[0]["id"])


async def replay(admin: httpx.AsyncClient, conversation: str, **request: Any) -> dict[str, Any]:
    answer = await admin.post(f"/admin/api/conversations/{conversation}/replay", json=request)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_menu_replays_open_no_ticket_and_book_nothing_again(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    settings = service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        admin_token="admin-secret-of-the-agent-tests",
        flags=("step_checkpoints",),  # replays from a turn's start, as an operator debugging
    )
    async with (
        running_service(settings) as service,
        httpx.AsyncClient(base_url=service.base_url, headers=ADMIN, timeout=60) as admin,
    ):
        await seed_demo(service.services.pool)
        ada = Chat(service, graph_api)
        [menu] = await ada.write("hi")
        await ada.tap(menu, "Technical help")
        [opened] = await ada.write("The rear brake of my rental bike squeaks and barely stops")
        assert "Ticket #" in body(opened)
        conversation = await conversation_of(service, ada)
        received = graph_api.sent_to(ada.wa_id)

        for _ in range(2):  # the last turn, twice, as an operator debugging it would
            held = await replay(admin, conversation, send=False)
            assert [call["name"] for call in held["held_tools"]] == ["create_support_ticket"]
            assert held["sent"] == 0
        assert len(await service.fetch("SELECT id FROM support_tickets")) == 1

        async def both_held_calls_recorded() -> bool:
            rows = await service.fetch(
                "SELECT success, error FROM agent_tool_executions"
                " WHERE tool = 'create_support_ticket' ORDER BY id"
            )
            held_rows = [r for r in rows if "not executed in a replay" in (r["error"] or "")]
            return len(held_rows) == 2 and not any(r["success"] for r in held_rows)

        await eventually(both_held_calls_recorded, what="the held calls' records")

        booked = await book_first_free_slot(ada)
        [main] = await ada.tap(booked[-1], "Main menu")
        [bookings] = await ada.tap(main, "Bookings")
        [mine] = await ada.tap(bookings, "My bookings")
        [choice] = await ada.tap(mine, prefix="booking:")
        [confirm] = await ada.tap(choice, "Cancel booking")
        [cancelled] = await ada.tap(confirm, prefix="confirm:yes")
        assert "is cancelled" in body(cancelled)

        checkpoints = (
            await admin.get(f"/admin/api/conversations/{conversation}/checkpoints?limit=200")
        ).json()
        slot_tap = next(
            c for c in checkpoints if c["source"] == "input" and "–" in (c["customer_text"] or "")
        )
        again = await replay(admin, conversation, checkpoint_id=slot_tap["checkpoint_id"])
        assert [call["name"] for call in again["held_tools"]] == ["create_booking"]
        rows = await service.fetch("SELECT status FROM bookings")
        assert [r["status"] for r in rows] == ["cancelled"]  # not booked a second time
        assert graph_api.sent_to(ada.wa_id)[: len(received)] == received
