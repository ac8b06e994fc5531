"""The operator's inbox beside a conversation, through the admin API and the real
worker: internal notes stay with the team (the customer receives nothing), a
conversation is assigned and found by its assignee, a canned reply is sent to the
customer by name like any operator reply, and an operator takes over a conversation the
bot is answering: the bot's reply in flight is withheld, it stays silent while the
operator talks, and answers again once handed back."""

from __future__ import annotations

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import eventually, running_service
from tests.support_outcomes import (
    admin_call,
    escalated_conversation,
    new_customer,
    outcome_settings,
    runs_done,
    say,
)


async def test_notes_stay_with_the_team_and_assignment_finds_the_conversation(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        conversation = await escalated_conversation(service, customer)
        base = f"/admin/api/conversations/{conversation}"
        sent_before = len(graph_api.sent_to(customer))
        note = "Called them back, wants a refund for the flat tyre."
        written = await admin_call(service, "POST", f"{base}/notes", json={"text": note})
        assert written.status_code == 201, written.text
        notes = (await admin_call(service, "GET", f"{base}/notes")).json()
        assert [(n["author"], n["text"]) for n in notes] == [("admin", note)]
        assert len(graph_api.sent_to(customer)) == sent_before
        transcript = (await admin_call(service, "GET", f"{base}/messages")).json()
        assert all(note not in line["content"] for line in transcript)

        assigned = await admin_call(service, "PUT", f"{base}/assignee", json={"operator": "grace"})
        assert assigned.status_code == 200
        mine = await admin_call(service, "GET", "/admin/api/conversations?assigned_to=grace")
        assert [c["id"] for c in mine.json()] == [conversation]
        other = await admin_call(service, "GET", "/admin/api/conversations?assigned_to=alan")
        assert other.json() == []
        audited = await service.fetch(
            "SELECT action FROM audit_log WHERE target = %s ORDER BY id", conversation
        )
        assert [row["action"] for row in audited][-2:] == [
            "conversation.note",
            "conversation.assign",
        ]

        empty = await admin_call(service, "POST", f"{base}/notes", json={"text": ""})
        assert empty.status_code == 422
        nowhere = "/admin/api/conversations/00000000-0000-0000-0000-000000000000/notes"
        assert (await admin_call(service, "POST", nowhere, json={"text": "x"})).status_code == 404


async def test_a_canned_reply_is_sent_by_name(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    refund = "Your refund is on its way: 3 to 5 working days. Anything else?"
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        saved = await admin_call(
            service, "PUT", "/admin/api/canned-replies/refund-sent", json={"text": refund}
        )
        assert saved.status_code == 204
        listed = (await admin_call(service, "GET", "/admin/api/canned-replies")).json()
        assert [(c["name"], c["text"]) for c in listed] == [("refund-sent", refund)]
        bad_name = await admin_call(
            service, "PUT", "/admin/api/canned-replies/Refund Sent!", json={"text": "x"}
        )
        assert bad_name.status_code == 422

        conversation = await escalated_conversation(service, customer)
        url = f"/admin/api/conversations/{conversation}/messages"
        unknown = await admin_call(service, "POST", url, json={"canned": "nope"})
        assert unknown.status_code == 404
        both = await admin_call(service, "POST", url, json={"canned": "refund-sent", "text": "x"})
        assert both.status_code == 422
        accepted = await admin_call(service, "POST", url, json={"canned": "refund-sent"})
        assert accepted.status_code == 202, accepted.text
        await graph_api.wait_for_async(lambda: refund in graph_api.texts_to(customer))

        gone = await admin_call(service, "DELETE", "/admin/api/canned-replies/refund-sent")
        assert gone.status_code == 204
        assert (await admin_call(service, "GET", "/admin/api/canned-replies")).json() == []


async def test_an_operator_takes_over_mid_turn_and_the_bot_stays_silent_until_handed_back(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = new_customer()
    async with running_service(outcome_settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Hello! How can I help?")
        await say(service, text_message(customer, "hi"))
        [row] = await service.fetch(
            "SELECT id::text AS id FROM agent_conversations WHERE wa_id = %s", customer
        )
        base = f"/admin/api/conversations/{row['id']}"

        openai_server.hold()
        openai_server.script("Our e-bikes cost 10,000 RWF a day.")
        runs = await runs_done(service)
        await service.post_webhook(envelope(text_message(customer, "how much is an e-bike?")))

        async def thinking() -> bool:
            return openai_server.waiting > 0

        await eventually(thinking, what="the bot's turn to be at the model")
        taken = await admin_call(service, "POST", f"{base}/takeover")
        assert taken.status_code == 202, taken.text
        openai_server.release()

        async def turn_ended() -> bool:
            return await runs_done(service) > runs

        await eventually(turn_ended, what="the bot's turn to end")
        assert "Our e-bikes cost 10,000 RWF a day." not in graph_api.texts_to(customer)
        parts = await service.fetch(
            "SELECT o.status FROM outbound_messages o JOIN conversation_runs r ON r.id = o.run_id"
            " WHERE o.wa_id = %s ORDER BY o.id DESC LIMIT 1",
            customer,
        )
        assert [p["status"] for p in parts] == ["withheld"]
        again = await admin_call(service, "POST", f"{base}/takeover")
        assert again.status_code == 409

        hello = "Hi, this is Grace from the shop: 10,000 RWF a day, helmet included."
        reply = await admin_call(service, "POST", f"{base}/messages", json={"text": hello})
        assert reply.status_code == 202, reply.text
        await graph_api.wait_for_async(lambda: hello in graph_api.texts_to(customer))
        sent = len(graph_api.sent_to(customer))
        asked = len(openai_server.requests)
        await say(service, text_message(customer, "great, thanks Grace"))
        assert len(graph_api.sent_to(customer)) == sent  # the bot stays silent
        assert len(openai_server.requests) == asked

        released = await admin_call(service, "POST", f"{base}/release")
        assert released.status_code == 202

        async def handed_back() -> bool:
            rows = await service.fetch(
                "SELECT status, taken_over_at FROM agent_conversations WHERE id = %s", row["id"]
            )
            return rows[0]["status"] == "active" and rows[0]["taken_over_at"] is None

        await eventually(handed_back, what="the conversation back with the bot")
        openai_server.script("Anything else I can help with?")
        await say(service, text_message(customer, "one more question"))
        assert "Anything else I can help with?" in graph_api.texts_to(customer)
