"""Forgetting a customer: `DELETE /admin/api/users/{wa_id}` and `wa-agent forget`.

A customer chats in two conversations, is remembered, blocked, metered and has a job
queued; after the erasure no table holds anything of her — not her number, not her
conversations' ids, not her words, not in checkpoint blobs either — while another
customer's data is untouched. The erasure itself is audited under a random id.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import httpx
import psycopg

from server.audit import record_audit
from server.runner.memory_jobs import REMEMBER_TASK
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import (
    REPO,
    RunningService,
    eventually,
    running_service,
    service_env,
    service_settings,
)

ADMIN = {"Authorization": "Bearer admin-secret-for-erasure-tests"}


def settings_for(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer, **overrides: Any
) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        router_llm=False,
        memory_remember_delay_seconds=0,
        admin_token=ADMIN["Authorization"].removeprefix("Bearer "),
        **overrides,
    )


def extraction(content: str) -> str:
    memory = {"content": content, "kind": "fact", "importance": 0.9}
    return json.dumps({"memories": [memory]})


async def chat(
    service: RunningService, graph_api: FakeGraphAPI, customer: str, text: str, pnid: str = "PNID"
) -> None:
    before = len(graph_api.texts_to(customer))
    payload = envelope(text_message(customer, text, phone_number_id=pnid))
    assert (await service.post_webhook(payload)).status_code == 200
    await graph_api.wait_for_async(lambda: len(graph_api.texts_to(customer)) > before, 15)


async def remembered(service: RunningService, customer: str) -> None:
    """Until every conversation of the customer has been read by the remember job."""

    async def done() -> bool:
        rows = await service.fetch(
            "SELECT c.remembered_message_id >= max(m.id) AS read FROM agent_conversations c"
            " JOIN agent_messages m ON m.conversation_id = c.id WHERE c.wa_id = %s"
            " GROUP BY c.id",
            customer,
        )
        return bool(rows) and all(row["read"] for row in rows)

    await eventually(done, within=20, what="the remember job")


async def traces_of(service: RunningService, needles: list[str]) -> dict[str, int]:
    """Rows of any table whose text holds a needle, and checkpoint blobs holding one."""
    tables = await service.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    found: dict[str, int] = {}
    condition = " OR ".join(["strpos(lower(t::text), %s) > 0"] * len(needles))
    for table in (row["table_name"] for row in tables):
        rows = await service.fetch(
            f'SELECT count(*) AS n FROM "{table}" t WHERE {condition}',
            *[needle.lower() for needle in needles],
        )
        if rows[0]["n"]:
            found[table] = int(rows[0]["n"])
    for table in ("checkpoint_blobs", "checkpoint_writes"):
        condition = " OR ".join(["position(convert_to(%s, 'UTF8') in blob) > 0"] * len(needles))
        rows = await service.fetch(f"SELECT count(*) AS n FROM {table} WHERE {condition}", *needles)
        if rows[0]["n"]:
            found[f"{table} (blob)"] = int(rows[0]["n"])
    return found


async def test_forgetting_a_customer_leaves_nothing_of_her_anywhere(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    grace = "25078" + str(uuid.uuid4().int)[:7]  # a valid MTN Rwanda number
    bob = "25073" + str(uuid.uuid4().int)[:7]  # Airtel
    async with running_service(settings_for(db_url, graph_api, openai_server)) as service:
        openai_server.script("Noted, Grace.", extraction("The customer is allergic to peanuts."))
        await chat(service, graph_api, grace, "I'm Grace and I am allergic to peanuts.")
        await remembered(service, grace)
        await service.add_number("PNID2")  # the shop's second line
        await chat(service, graph_api, grace, "Peanut-free snacks at the cafe?", pnid="PNID2")
        await remembered(service, grace)  # its extraction must not take Bob's script
        openai_server.script("Hi Bob.", extraction("The customer rides a blue tandem."))
        await chat(service, graph_api, bob, "Bob here, I ride a blue tandem.")
        await remembered(service, bob)

        ids = [
            str(row["id"])
            for row in await service.fetch(
                "SELECT id FROM agent_conversations WHERE wa_id = %s", grace
            )
        ]
        bob_conversation = str(
            (await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", bob))[0][
                "id"
            ]
        )
        for conversation in [*ids, bob_conversation]:
            await service.execute(
                "INSERT INTO agent_metrics (conversation_id, agent, success)"
                " VALUES (%s, 'x', true)",
                conversation,
            )
            await service.execute(
                "INSERT INTO agent_tool_executions (conversation_id, tool, success)"
                " VALUES (%s, 'check_availability', true)",
                conversation,
            )
        await service.services.queue.configure_task(
            name=REMEMBER_TASK, schedule_in={"hours": 1}
        ).defer_async(conversation_id=ids[0])
        async with httpx.AsyncClient(base_url=service.base_url, headers=ADMIN) as admin:
            block = {"wa_id": f"+{grace}", "reason": "testing erasure"}
            assert (await admin.post("/admin/api/blacklist", json=block)).status_code == 201
            needles = [grace, *ids, "peanut"]
            assert set(await traces_of(service, needles)) >= {
                "contacts",
                "agent_conversations",
                "agent_embeddings",
                "agent_messages",
                "checkpoints",
                "blacklist",
                "audit_log",
                "procrastinate_jobs",
                "agent_metrics",
            }

            erased = await admin.delete(f"/admin/api/users/+{grace}")
            assert erased.status_code == 200, erased.text
            report = erased.json()
            assert report["conversations"] == 2
            deleted = report["deleted"]
            assert deleted["memories"] == 1 and deleted["checkpoints"] > 0
            assert deleted["jobs"] >= 1 and deleted["blacklist"] == 1
            # At least the rows inserted above: the accounting meters the turns too.
            assert deleted["metrics"] >= 2 and deleted["tool_executions"] == 2

            assert await traces_of(service, needles) == {}
            assert (await admin.delete(f"/admin/api/users/+{grace}")).status_code == 404
            assert (await admin.delete("/admin/api/users/not-a-number")).status_code == 422

        audit = await service.fetch(
            "SELECT actor, target, details FROM audit_log WHERE action = 'customer.erased'"
        )
        assert [(a["actor"], a["target"]) for a in audit] == [
            ("admin", f"erasure:{report['erasure_id']}")
        ]
        # Bob is untouched.
        bob_rows = await traces_of(service, [bob, bob_conversation, "tandem"])
        assert {"contacts", "agent_embeddings", "checkpoints", "agent_metrics"} <= set(bob_rows)

        # The same from a terminal.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "forget",
            f"+{bob}",
            cwd=REPO,
            env=service_env(service.settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()[-2000:]
        assert out.decode().startswith(f"forgot {bob} (erasure ")
        assert await traces_of(service, [bob, bob_conversation, "tandem"]) == {}
        cli_audit = await service.fetch(
            "SELECT actor FROM audit_log WHERE action = 'customer.erased' ORDER BY id"
        )
        assert cli_audit[-1]["actor"].startswith("cli:")


async def test_erasure_pseudonymises_the_audit_trail_and_nobody_deletes_from_it(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """Alice's block stays in the audit log after the customer is forgotten — who, what,
    when, from where — with the customer's number and conversation replaced by the
    erasure's pseudonym; the audit log refuses DELETE, TRUNCATE and any other rewrite."""
    customer = "25078" + str(uuid.uuid4().int)[:7]
    other = "25073" + str(uuid.uuid4().int)[:7]
    alice = {"Authorization": "Bearer alice-erasure-token-0123456789"}
    tokens = f"alice:{alice['Authorization'].removeprefix('Bearer ')}"
    config = settings_for(db_url, graph_api, openai_server, admin_tokens=tokens)
    async with running_service(config, with_worker=False) as service:
        conversation = await seed_conversation(service, customer)
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            for number in (customer, other):
                block = {"wa_id": f"+{number}", "reason": "abusive language"}
                assert (
                    await client.post("/admin/api/blacklist", json=block, headers=alice)
                ).status_code == 201
            async with service.services.pool.connection() as conn:
                details = {"conversation": conversation, "to": [{"wa_id": int(customer)}]}
                await record_audit(
                    conn,
                    actor="system",
                    action="test.note",
                    target=None,
                    details=details,
                    remote_addr=None,
                )
            before = await audit_rows(service)
            erased = await client.delete(f"/admin/api/users/+{customer}", headers=ADMIN)
            assert erased.status_code == 200, erased.text
            erasure = erased.json()
            by_pseudonym = (
                await client.get(
                    "/admin/api/audit",
                    params={"target": f"erasure:{erasure['erasure_id']}"},
                    headers=alice,
                )
            ).json()
        after = await audit_rows(service)
        refused = await refused_rewrites(db_url)
    pseudonym = f"erasure:{erasure['erasure_id']}"
    assert erasure["pseudonymised_audit_rows"] == 2
    assert [row["action"] for row in by_pseudonym] == ["customer.erased", "blacklist.add"]
    kept = {row["id"]: row for row in after}
    for row in before:  # every row survived; who, what, when and where are untouched
        same = kept[row["id"]]
        for column in ("actor", "action", "occurred_at", "remote_addr"):
            assert same[column] == row[column], (column, row, same)
    block_row = next(r for r in before if r["target"] == customer)
    assert kept[block_row["id"]]["actor"] == "alice"
    assert kept[block_row["id"]]["remote_addr"] == "127.0.0.1"
    assert kept[block_row["id"]]["target"] == pseudonym
    note = next(r for r in after if r["action"] == "test.note")
    assert note["details"] == {"conversation": pseudonym, "to": [{"wa_id": pseudonym}]}
    assert not [r for r in after if customer in str(r) or conversation in str(r)]
    assert [r["target"] for r in after if r["action"] == "blacklist.add"] == [pseudonym, other]
    assert refused == ["DELETE", "TRUNCATE", "UPDATE", "UPDATE with the setting"]


async def seed_conversation(service: RunningService, customer: str) -> str:
    await service.execute("INSERT INTO contacts (wa_id) VALUES (%s)", customer)
    rows = await service.fetch(
        "INSERT INTO agent_conversations (phone_number_id, wa_id) VALUES ('PNID', %s) RETURNING id",
        customer,
    )
    return str(rows[0]["id"])


async def audit_rows(service: RunningService) -> list[dict[str, Any]]:
    return await service.fetch(
        "SELECT id, occurred_at, actor, action, target, details, remote_addr FROM audit_log"
        " ORDER BY id"
    )


async def refused_rewrites(db_url: str) -> list[str]:
    """Which of the ways around the pseudonymisation the database refused."""
    attempts = {
        "DELETE": "DELETE FROM audit_log",
        "TRUNCATE": "TRUNCATE audit_log",
        "UPDATE": "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE with the setting": (
            "SELECT set_config('wa_agent.audit_pseudonym',"
            " 'erasure:00000000-0000-0000-0000-000000000000', true);"
            " UPDATE audit_log SET actor = 'mallory'"
        ),
    }
    refused: list[str] = []
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        for label, statement in attempts.items():
            try:
                async with conn.transaction():
                    await conn.execute(statement.encode())
            except psycopg.errors.RaiseException:
                refused.append(label)
        cur = await conn.execute("SELECT count(*) FROM audit_log WHERE actor = 'mallory'")
        assert await cur.fetchone() == (0,)
    return refused
