"""A recorded conversation is listed, replayed and forked from its checkpoints — by the
admin API and by `wa-agent replay` — without messaging the customer unless asked, and
without disturbing the live thread: the next real turn continues from the real history.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import subprocess
import sys
import uuid
from typing import Any

import httpx

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import REPO, RunningService, running_service, service_env
from tests.test_agent_flows import agent_settings, next_saturday_rental_slot, say
from tools.demo import seed_demo

ADMIN = {"Authorization": "Bearer admin-secret-of-the-agent-tests"}


async def _record_two_turns(
    service: RunningService, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, customer: str
) -> str:
    openai.script("Sure. What time on Saturday?")
    await say(service, graph_api, customer, text_message(customer, "I want to book a bike"))
    openai.script("Booked for 10am.")
    await say(service, graph_api, customer, text_message(customer, "10am please"))
    rows = await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", customer)
    return str(rows[0]["id"])


async def _head(service: RunningService, conversation_id: str) -> str:
    async with service.services.runner.graphs.borrow() as graph:
        config: Any = {"configurable": {"thread_id": conversation_id}}
        snapshot = await graph.aget_state(config)
    return str(snapshot.config["configurable"]["checkpoint_id"])


async def _replays_counted(client: httpx.AsyncClient) -> float:
    """`wa_agent_replays_total{kind="replay",sent="no"}` from /metrics."""
    metrics = (await client.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith('wa_agent_replays_total{kind="replay",sent="no"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _last_request_text(openai: FakeOpenAIServer) -> str:
    return str(openai.requests[-1]["messages"])


async def test_list_replay_and_fork_send_nothing_and_leave_the_live_thread_alone(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """With `step_checkpoints` on (an operator debugging a customer), every step is a
    checkpoint to list and replay from."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = agent_settings(db_url, graph_api, openai_server).model_copy(
        update={"flags": ("step_checkpoints",)}
    )
    async with (
        running_service(settings) as service,
        httpx.AsyncClient(base_url=service.base_url, headers=ADMIN, timeout=30) as admin,
    ):
        conversation = await _record_two_turns(service, graph_api, openai_server, customer)
        received = graph_api.texts_to(customer)
        head = await _head(service, conversation)

        listed = (await admin.get(f"/admin/api/conversations/{conversation}/checkpoints")).json()
        turns = [c for c in listed if c["source"] == "input"]
        assert [t["customer_text"] for t in turns] == ["10am please", "I want to book a bike"]
        assert {"router"} <= {node for c in listed for node in c["ran"]}
        assert any(node.startswith("agent_") for c in listed for node in c["ran"])
        assert all(c["created_at"] for c in listed) and listed[0]["checkpoint_id"] == head

        # Replay the last turn from its start, with today's (scripted) model.
        openai_server.script("Booked for 10am (replayed).")
        replays_before = await _replays_counted(admin)
        answer = await admin.post(f"/admin/api/conversations/{conversation}/replay", json={})
        assert await _replays_counted(admin) == replays_before + 1
        assert answer.status_code == 200, answer.text
        assert answer.json()["texts"] == ["Booked for 10am (replayed)."]
        ran = answer.json()["ran"]
        assert "router" in ran and ran[-1].startswith("agent_") and answer.json()["sent"] == 0
        assert "10am please" in _last_request_text(openai_server)

        # Replay from after the router with another agent put in charge: re-routed.
        after_router = next(c for c in listed if "router" in c["ran"])  # with recall, summarize
        openai_server.script("Sales here: a city bike is 10000 RWF.")
        edit = {"checkpoint_id": after_router["checkpoint_id"], "state": {"active_agent": "sales"}}
        rerouted = await admin.post(f"/admin/api/conversations/{conversation}/replay", json=edit)
        assert rerouted.status_code == 200, rerouted.text
        ran = rerouted.json()["ran"]
        assert ran[-1] == "agent_sales" and "router" not in ran
        assert rerouted.json()["texts"] == ["Sales here: a city bike is 10000 RWF."]

        # Fork the last turn with another message, from the command line.
        openai_server.script("Booked for 11am instead.")
        fork = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server.cli", "replay", conversation, "--fork", "11am"],
            cwd=REPO,
            env=service_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert fork.returncode == 0, fork.stderr
        assert "bot> Booked for 11am instead." in fork.stdout
        assert "not sent" in fork.stdout
        seen = _last_request_text(openai_server)
        assert "I want to book a bike" in seen and "11am" in seen and "10am please" not in seen

        # Nothing reached the customer, and the live thread's head did not move.
        assert graph_api.texts_to(customer) == received
        assert await _head(service, conversation) == head
        copies = await service.fetch(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id LIKE 'replay-%%'"
        )
        assert copies[0]["n"] == 0

        # The next real turn continues from the real history, not a replayed one.
        openai_server.script("Yes, your friend is welcome too!")
        await say(service, graph_api, customer, text_message(customer, "can my friend come?"))
        assert graph_api.texts_to(customer) == [*received, "Yes, your friend is welcome too!"]
        seen = _last_request_text(openai_server)
        assert "Booked for 10am." in seen and "10am please" in seen
        assert "replayed" not in seen and "11am" not in seen


async def test_send_delivers_the_replayed_answer_and_bad_requests_change_nothing(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = agent_settings(db_url, graph_api, openai_server)
    async with (
        running_service(settings) as service,
        httpx.AsyncClient(base_url=service.base_url, headers=ADMIN, timeout=30) as admin,
    ):
        conversation = await _record_two_turns(service, graph_api, openai_server, customer)
        received = graph_api.texts_to(customer)
        url = f"/admin/api/conversations/{conversation}/replay"
        listed = (await admin.get(f"/admin/api/conversations/{conversation}/checkpoints")).json()
        end_of_turn = listed[0]["checkpoint_id"]

        refused = [
            await admin.post(url, json={"checkpoint_id": str(uuid.uuid4())}),
            await admin.post(url, json={"checkpoint_id": end_of_turn}),
            await admin.post(url, json={"unknown": 1}),
            await admin.post(url, json={"state": {"no_such_field": 1}}),
            await admin.post(url, json={"state": {"mode": "bot"}, "fork_text": "hi"}),
            await admin.post(f"/admin/api/conversations/{uuid.uuid4()}/replay", json={}),
            await admin.post(url, json={}, headers={"Authorization": "Bearer wrong"}),
        ]
        assert [r.status_code for r in refused] == [404, 422, 422, 422, 422, 404, 401]
        assert graph_api.texts_to(customer) == received and openai_server.pending == 0

        # A replayed turn that would book stops before the booking: nothing is booked.
        await seed_demo(service.services.pool)
        _, slot_id = await next_saturday_rental_slot(service)
        booking = ToolCall("create_booking", {"slot_id": slot_id, "notes": "replayed"})
        openai_server.script(ToolCall("search_catalog", {"query": "city bike"}), booking)
        held = await admin.post(url, json={"fork_text": "book it"})
        assert held.status_code == 200, held.text
        assert [c["name"] for c in held.json()["held_tools"]] == ["create_booking"]
        assert held.json()["texts"] == [] and held.json()["ran"][-1].startswith("agent_")
        assert "tools" in held.json()["ran"]  # the catalog search, which only reads, ran
        assert await service.fetch("SELECT id FROM bookings") == []

        openai_server.script("A better answer, sent on purpose.")
        sent = await admin.post(url, json={"fork_text": "10am please", "send": True})
        assert sent.status_code == 200, sent.text
        assert sent.json()["sent"] == 1
        received = [*received, "A better answer, sent on purpose."]
        assert graph_api.texts_to(customer) == received

        await _send_while_the_audit_log_refuses(service, admin, url, openai_server)
        assert graph_api.texts_to(customer) == received  # no record, so no send

        openai_server.script("Sent from the terminal.")
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server.cli", "replay", conversation, "--fork", "hi", "--send"],
            cwd=REPO,
            env=service_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert "sent to the customer: 1" in cli.stdout
        assert graph_api.texts_to(customer) == [*received, "Sent from the terminal."]
        audit = await service.fetch(
            "SELECT actor, action, details FROM audit_log WHERE target = %s ORDER BY id",
            conversation,
        )
        run_ids = [a["details"]["run_id"] for a in audit if a["details"]["send"]]
        delivered = await service.fetch(
            "SELECT run_id::text AS run_id, status FROM outbound_messages"
            " WHERE run_id::text = ANY(%s) ORDER BY id",
            run_ids,
        )
    cli_actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("admin", "conversation.fork"),  # held before the booking: nothing to send
        ("admin", "conversation.fork"),
        (cli_actor, "conversation.fork"),
    ]
    assert [(a["details"]["send"], a["details"]["parts"]) for a in audit] == [
        (False, 0),
        (True, 1),
        (True, 1),
    ]
    # Each send's record names the outbox run that carried it.
    assert [(r["run_id"], r["status"]) for r in delivered] == [(i, "sent") for i in run_ids]


async def _send_while_the_audit_log_refuses(
    service: RunningService, admin: httpx.AsyncClient, url: str, openai: FakeOpenAIServer
) -> None:
    """A replay asked to send while its audit row cannot be written (a trigger makes the
    insert fail, as a full disk or a lost connection would): refused, nothing staged."""
    await service.execute(
        "CREATE FUNCTION refuse_replay_audit() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$"
    )
    await service.execute(
        "CREATE TRIGGER refuse_replay_audit BEFORE INSERT ON audit_log FOR EACH ROW"
        " WHEN (NEW.action LIKE 'conversation.%%') EXECUTE FUNCTION refuse_replay_audit()"
    )
    outbound_before = await service.fetch("SELECT count(*) AS n FROM outbound_messages")
    try:
        openai.script("This must never reach the customer.")
        refused = await admin.post(url, json={"fork_text": "10am please", "send": True})
    finally:
        await service.execute("DROP TRIGGER refuse_replay_audit ON audit_log")
    assert refused.status_code == 500 and openai.pending == 0  # the model did run
    assert await service.fetch("SELECT count(*) AS n FROM outbound_messages") == outbound_before


async def test_by_default_a_turn_is_one_checkpoint_and_its_last_turn_still_replays(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Without `step_checkpoints`, a plain turn writes one checkpoint (not one per step);
    a turn that calls a tool is saved before the tool too. The last turn replays from
    the state before it with the same message."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = agent_settings(db_url, graph_api, openai_server)
    async with (
        running_service(settings) as service,
        httpx.AsyncClient(base_url=service.base_url, headers=ADMIN, timeout=30) as admin,
    ):
        conversation = await _record_two_turns(service, graph_api, openai_server, customer)
        plain = await service.fetch(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", conversation
        )
        openai_server.script(ToolCall("search_catalog", {"query": "city bike"}), "We have two.")
        await say(service, graph_api, customer, text_message(customer, "which bikes?"))
        with_tool = await service.fetch(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", conversation
        )
        openai_server.script("We have two (replayed).")
        answer = await admin.post(f"/admin/api/conversations/{conversation}/replay", json={})
    assert plain[0]["n"] == 2  # two plain turns, one checkpoint each
    assert with_tool[0]["n"] == 2 + 3  # saved before the tool, after it, and at the end
    assert answer.status_code == 200, answer.text
    assert "which bikes?" in _last_request_text(openai_server)
    assert answer.json()["texts"] == ["We have two (replayed)."]
    assert "router" in answer.json()["ran"] and answer.json()["sent"] == 0
