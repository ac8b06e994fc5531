"""A leaked log, trace or tool record shows none of a table of personal data: the same
masking function everywhere, checked where each of them is written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import langsmith
import pytest
from psycopg.types.json import Jsonb

from graph.privacy import mask_record, mask_text, set_extra_patterns
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.langsmith_server import FakeLangSmith
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import REPO, eventually, running_service
from tests.support_abuse import abuse_settings, all_processed

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


def test_logs_never_show_the_samples() -> None:
    script = textwrap.dedent(
        f"""
        import structlog
        from graph.settings import Settings
        from server.logging import configure_logging
        from server.tracing import configure_tracing
        settings = Settings(_env_file=None, log_format="json", pii_patterns={PASSPORT!r})
        configure_tracing(settings)
        configure_logging(settings)
        log = structlog.get_logger()
        log.warning("reply.failed", wa_id={CUSTOMER!r}, error={SENTENCE!r})
        log.info("tool.called", arguments={{"note": {SENTENCE!r}, "phone": {CUSTOMER!r}}})
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


async def test_tool_records_keep_no_samples(db_url: str, passport_pattern: object) -> None:
    """What a tool recorder stores through `mask_record`."""
    import psycopg

    arguments = {"customer_phone": CUSTOMER, "note": SENTENCE, "items": [{"memo": PII["IBAN"]}]}
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO agent_tool_executions (tool, arguments, success) VALUES (%s, %s, true)",
            ("create_booking", Jsonb(mask_record(arguments))),
        )
        cur = await conn.execute("SELECT arguments::text FROM agent_tool_executions")
        row = await cur.fetchone()
    assert row is not None
    assert leaked(row[0]) == []
    assert "[iban]" in row[0] and "********0011" in row[0]
