"""A leaked log, trace or tool record shows none of a table of personal data: the same
masking function everywhere, checked where each of them is written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import langsmith
import pytest
from langchain_core.messages import AIMessage, ToolCall, ToolMessage
from langchain_core.tools import StructuredTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from graph.context import ConversationContext
from graph.infra.database import open_pool
from graph.privacy import mask_record, mask_text, set_extra_patterns
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.langsmith_server import FakeLangSmith
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import REPO, eventually, running_service, service_settings
from tests.support_abuse import abuse_settings, all_processed
from tools.monitoring import ExecutionRecorder
from tools.registry import ToolDeclaration, ToolRegistry

PII = {
    "phone, international": "+250 788 123 456",
    "phone, digits only": "250788765432",
    "phone, US with brackets": "(415) 555-2671",
    "e-mail": "ada.lovelace@example.org",
    "card, Visa": "4111 1111 1111 1111",
    "card, Mastercard": "5555-5555-5555-4444",
    "card, Amex": "378282246310005",
    "national id, 3-2-4": "123-45-6789",
    "national id, 16 digits": "1199080012345012",
    "IBAN": "GB82 WEST 1234 5698 7654 32",
    "configured pattern (passport)": "PA1234567",
}
PASSPORT = {"passport": r"\bPA\d{7}\b"}
SENTENCE = "Hi, reach me: " + " / ".join(PII.values()) + " thanks"
CUSTOMER = "250788990011"
CARD_NUMBER = int(PII["card, Visa"].replace(" ", ""))  # a card sent as a JSON number


def leaked(text: str) -> list[str]:
    """Samples found in `text`, as written or as bare digits."""
    found = []
    for name, sample in PII.items():
        digits = re.sub(r"\D", "", sample)
        if sample in text or (len(digits) >= 7 and digits in re.sub(r"[^\d\n]", "", text)):
            found.append(name)
    return found


@pytest.fixture
def passport_pattern() -> object:
    set_extra_patterns(PASSPORT)
    yield
    set_extra_patterns({})


@pytest.mark.parametrize("name", list(PII))
def test_each_sample_is_masked(name: str, passport_pattern: object) -> None:
    masked = mask_text(f"note: {PII[name]} end")
    assert leaked(masked) == [], masked
    assert masked.startswith("note: ") and masked.endswith(" end")


def test_ordinary_numbers_and_dates_stay_readable() -> None:
    text = "order 1234 for 3 bikes on 2025-03-14, total 45000 RWF"
    assert mask_text(text) == text


def test_numbers_are_masked_like_their_digits() -> None:
    """A wa_id or a card sent as a JSON number is as personal as one in a string; an
    amount, a count or a short number stays a readable number."""
    numbers = {
        "phone": int(CUSTOMER),
        "callback": int(re.sub(r"\D", "", PII["phone, digits only"])),
        "card": CARD_NUMBER,
        "amount_minor": int(PII["card, Amex"]),  # a card is a card under any key
        "ids": [int(PII["national id, 16 digits"])],
    }
    masked = mask_record(numbers)
    assert leaked(json.dumps(masked)) == [] and CUSTOMER not in json.dumps(masked)
    assert masked["phone"] == "********0011" and masked["card"] == "[card]"
    ordinary = {"amount_minor": 1_500_000, "duration_ms": 2_345_678, "quantity": 3}
    ordinary |= {"order": 1234, "price": 45000, "paid": True, "rate": 0.18}
    assert mask_record(ordinary) == ordinary


def test_logs_never_show_the_samples() -> None:
    script = textwrap.dedent(
        f"""
        import structlog
        from graph.settings import Settings
        from server.logging import configure_logging
        from graph.infra.tracing import configure_tracing
        settings = Settings(_env_file=None, log_format="json", pii_patterns={PASSPORT!r})
        configure_tracing(settings)
        configure_logging(settings)
        log = structlog.get_logger()
        log.warning("reply.failed", wa_id={CUSTOMER!r}, error={SENTENCE!r})
        log.info("tool.called", arguments={{"note": {SENTENCE!r}, "phone": {CUSTOMER!r}}},
                 callback={int(CUSTOMER)!r}, card={CARD_NUMBER!r})
        try:
            raise ValueError({SENTENCE!r})
        except ValueError:
            log.exception("run.failed")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count('"event"') == 3
    assert leaked(result.stderr) == [] and CUSTOMER not in result.stderr


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_library_logs_never_show_the_samples(log_format: str) -> None:
    """Libraries log through the standard `logging` module: procrastinate's job lines
    carry the task's arguments (an operator's reply text), uvicorn's carry tracebacks.
    What reaches stderr, through the handler the service installs, holds no sample."""
    script = textwrap.dedent(
        f"""
        import logging
        from graph.settings import Settings
        from server.logging import configure_logging
        from graph.infra.tracing import configure_tracing
        settings = Settings(_env_file=None, log_format={log_format!r}, pii_patterns={PASSPORT!r})
        configure_tracing(settings)
        configure_logging(settings)
        jobs = logging.getLogger("procrastinate.worker")
        jobs.error("Job tasks.send_reply(text=%r, wa_id=%r) ended with status: Error",
                   {SENTENCE!r}, {CUSTOMER!r})
        jobs.info("Starting job tasks.send_reply(text=%r)", {SENTENCE!r})  # below WARNING
        try:
            raise ValueError({SENTENCE!r})
        except ValueError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        logging.getLogger("httpx").warning("POST /%s failed", {CUSTOMER!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    logged = result.stderr
    for logger in ("procrastinate.worker", "uvicorn.error", "httpx"):
        assert logger in logged
    assert leaked(logged) == [] and CUSTOMER not in logged
    assert logged.count("[email]") == 2 and "[passport]" in logged  # masked, not dropped
    assert "Starting job" not in logged
    if log_format == "json":
        lines = [json.loads(line) for line in logged.splitlines()]
        assert [line["level"] for line in lines] == ["error", "error", "warning"]
        assert "ValueError" in lines[1]["exception"]


async def test_traces_sent_to_langsmith_are_masked(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer
) -> None:
    """The real LangSmith client, pointed at a local endpoint: every upload of a real
    conversation turn is read, and none holds a sample."""
    with FakeLangSmith() as fake:
        settings = abuse_settings(
            db_url,
            graph_api,
            openai_server,
            langsmith_tracing=True,
            langsmith_api_key="lsv2-test",
            langsmith_endpoint=fake.url,
            langsmith_project="wa-agent-tests",
            pii_patterns=PASSPORT,
        )
        try:
            async with running_service(settings) as service:
                await service.post_webhook(envelope(text_message(CUSTOMER, SENTENCE)))
                await eventually(lambda: all_processed(service, CUSTOMER), what="the turn")
            # leaving the service flushed the client's queue
        finally:
            langsmith.configure(enabled=False, client=None)
            set_extra_patterns({})
        uploaded = fake.uploaded_text()
        hosts = {request.headers.get("host") for request in fake.requests}
    assert fake.run_uploads, "nothing was traced"
    assert "[email]" in uploaded and "[card]" in uploaded and "[passport]" in uploaded
    assert leaked(uploaded) == [] and CUSTOMER not in uploaded
    assert hosts == {fake.url.removeprefix("http://")}


async def _raise_with_arguments(note: str, callback: int) -> str:
    raise RuntimeError(f"CRM refused the complaint {note!r} for {callback}")


async def _book(slot_id: int, note: str, callback: int) -> str:
    return f"booked {slot_id}"


def _tool_node_graph(registry: ToolRegistry) -> Any:
    """The registry's wrapper on a ToolNode configured as graph/composition/builder.py configures
    the agents' one (LangGraph's own error text on, which repeats the arguments)."""
    builder = StateGraph(MessagesState, context_schema=ConversationContext)
    node = ToolNode(
        list(registry.tools.values()),
        handle_tool_errors=True,
        awrap_tool_call=registry.wrap_tool_call,
    )
    builder.add_node("tools", node)
    builder.add_edge(START, "tools")
    return builder.compile()


async def test_tool_records_keep_no_samples(db_url: str, passport_pattern: object) -> None:
    """A tool that fails with its arguments in the message, and a call with invalid
    arguments, both carrying the samples (and a customer number sent as a JSON number):
    every column of both rows in `agent_tool_executions` is free of them."""
    registry = ToolRegistry(recorder=None)
    for name, function in (("file_complaint", _raise_with_arguments), ("book_slot", _book)):
        tool = StructuredTool.from_function(coroutine=function, name=name, description=name)
        registry.declare(ToolDeclaration.of(tool))
    calls = [
        ToolCall(
            name="file_complaint", args={"note": SENTENCE, "callback": int(CUSTOMER)}, id="c1"
        ),
        ToolCall(
            name="book_slot",
            args={"slot_id": "saturday", "note": SENTENCE, "callback": int(CUSTOMER)},
            id="c2",
        ),
    ]
    context = ConversationContext(conversation_id=str(uuid.uuid4()), wa_id=CUSTOMER)
    async with open_pool(db_url, service_settings(db_url)) as pool:
        registry.recorder = ExecutionRecorder(pool, mask_record)
        result = await _tool_node_graph(registry).ainvoke(
            {"messages": [AIMessage(content="", tool_calls=calls)]}, context=context
        )
        told = [m.content for m in result["messages"] if isinstance(m, ToolMessage)]
        assert await registry.recorder.flush() == 2
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM agent_tool_executions ORDER BY tool")
            rows = await cur.fetchall()
    # The model was told what went wrong, with the arguments LangGraph repeats.
    assert "CRM refused" in told[0] and "with kwargs" in told[1] and SENTENCE in told[1]
    assert [(row["tool"], row["success"]) for row in rows] == [
        ("book_slot", False),
        ("file_complaint", False),
    ]
    for row in rows:
        for column, value in row.items():
            text = json.dumps(value, default=str)
            assert leaked(text) == [] and CUSTOMER not in text, (column, text)
    assert "[email]" in rows[0]["error"] and "[card]" in rows[1]["error"]  # masked, kept
    assert rows[0]["arguments"]["callback"] == "********0011"
