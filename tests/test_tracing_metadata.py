"""A production turn is one LangSmith trace, grouped by conversation: every run carries
the conversation as `thread_id`, the release, and the tags; the turn and the model call
carry the agent and intent; nothing personal leaves the process unmasked.

The real `langsmith` client uploads to a local endpoint that records what was posted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import httpx
import langsmith

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.langsmith_server import FakeLangSmith
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import REPO, eventually, running_service
from tests.support_abuse import abuse_settings, all_processed

EMAIL = "ada.lovelace@example.org"
PHONE = "+250 788 123 456"
CARD = "4111 1111 1111 1111"


def _trace_of(runs: dict[str, dict[str, Any]], root: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run in runs.values() if run.get("trace_id") == root["id"]]


async def test_a_turn_is_one_trace_with_conversation_agent_intent_and_version(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    text = f"I want to book a bike for Saturday. Mail {EMAIL}, call {PHONE}, card {CARD}"
    openai_server.script(f"Booked! We will write to {EMAIL}.")
    with FakeLangSmith() as fake:
        settings = abuse_settings(
            db_url,
            graph_api,
            openai_server,
            langsmith_tracing=True,
            langsmith_api_key="lsv2-test",
            langsmith_endpoint=fake.url,
            langsmith_project="wa-agent-tests",
            app_version="2026.11-test",
            admin_token="admin-secret-0123456789a",
        )
        try:
            async with running_service(settings) as service:
                await service.post_webhook(envelope(text_message(customer, text)))
                await eventually(lambda: all_processed(service, customer), what="the turn")
                rows = await service.fetch(
                    "SELECT id FROM agent_conversations WHERE wa_id = %s", customer
                )
                openai_server.script("Booked again, in a replay.")
                async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as admin:
                    replayed = await admin.post(
                        f"/admin/api/conversations/{rows[0]['id']}/replay",
                        json={},
                        headers={"Authorization": "Bearer admin-secret-0123456789a"},
                    )
                assert replayed.status_code == 200, replayed.text
        finally:
            langsmith.configure(enabled=False, client=None)
        runs = fake.runs()
        uploaded = fake.uploaded_text()

    conversation_id = str(rows[0]["id"])
    roots = [run for run in runs.values() if run.get("name") == "whatsapp_turn"]
    assert replayed.json()["texts"] == ["Booked again, in a replay."]
    assert len(roots) == 1, [run.get("name") for run in runs.values()]
    root = roots[0]
    metadata = root["extra"]["metadata"]
    assert metadata["thread_id"] == conversation_id
    assert (metadata["agent"], metadata["intent"]) == ("booking", "booking")
    assert metadata["app_version"] == "2026.11-test" and metadata["replay"] is False
    assert {"whatsapp", "agent:booking", "intent:booking"} <= set(root["tags"])

    trace = _trace_of(runs, root)
    assert len(trace) > 3  # the graph's nodes and the model call sit below the turn
    for run in trace:
        run_metadata = run["extra"]["metadata"]
        assert run_metadata["thread_id"] == conversation_id, run.get("name")
        assert run_metadata["app_version"] == "2026.11-test", run.get("name")
        assert "whatsapp" in run["tags"], run.get("name")
    model_calls = [run for run in trace if run.get("run_type") == "llm"]
    assert model_calls and all(
        (run["extra"]["metadata"]["agent"], run["extra"]["metadata"]["intent"])
        == ("booking", "booking")
        for run in model_calls
    )

    assert "[email]" in uploaded and "[card]" in uploaded
    for secret in (EMAIL, PHONE, CARD, customer, "788 123 456", "4111111111111111"):
        assert secret not in uploaded
    # The replay is its own trace, marked as one, grouped under the same conversation.
    replays = [run for run in runs.values() if run.get("name") == "replay_turn"]
    assert len(replays) == 1
    replay_metadata = replays[0]["extra"]["metadata"]
    assert replay_metadata["replay"] is True and "replay" in replays[0]["tags"]
    assert replay_metadata["thread_id"] == conversation_id
    assert all(
        run["extra"]["metadata"]["replay"] is True and "replay" in run["tags"]
        for run in _trace_of(runs, replays[0])
    )

    # Masking is for what leaves towards LangSmith: the customer reads the real answer.
    assert graph_api.texts_to(customer) == [f"Booked! We will write to {EMAIL}."]


def test_studio_traces_are_masked_like_the_service(db_url: str) -> None:
    """`langgraph dev` imports graph/composition/studio.py and runs its graph in its own server: the
    runs it traces go through the same masked client (no model: the rule-based menu
    answers)."""
    text = f"Mail {EMAIL}, call {PHONE}, card {CARD}"
    script = textwrap.dedent(
        f"""
        import asyncio
        from langchain_core.messages import HumanMessage
        from graph.composition import studio

        async def main():
            graph = await studio.graph()
            try:
                return await graph.ainvoke({{"messages": [HumanMessage({text!r})]}})
            finally:
                await studio.studio_graph.aclose()

        result = asyncio.run(main())
        print(result["replies"][-1])
        studio.tracing_client.flush()
        """
    )
    with FakeLangSmith() as fake:
        env = {
            **os.environ,
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_API_KEY": "lsv2-test",
            "LANGSMITH_ENDPOINT": fake.url,
            "LANGSMITH_PROJECT": "wa-agent-studio-tests",
            "OPENAI_API_KEY": "",
            "OPENAI_BASE_URL": "",
            "DATABASE_URL": db_url,
            "LOG_LEVEL": "WARNING",
        }
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
        )
        uploaded = fake.uploaded_text()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # the graph answered (the fallback menu)
    assert fake.run_uploads, "the Studio graph's runs were not traced"
    assert "[email]" in uploaded and "[card]" in uploaded and "********3456" in uploaded
    for secret in (EMAIL, PHONE, CARD, "788 123 456", "4111 1111"):
        assert secret not in uploaded
