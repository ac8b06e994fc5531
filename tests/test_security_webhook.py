"""The webhook under hostile input: property-based fuzzing of signed bodies (never a 500,
never a stored row from a refused request), the edge cases that used to reach the
database, and signature failures in the audit log."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, sign, status_update, text_message
from tests.support import APP_SECRET, running_service, service_settings

TABLES = ("inbound_messages", "contacts", "agent_conversations", "procrastinate_jobs")
COUNT_ALL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in TABLES)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(["", "\x00", "text", "whatsapp_business_account", "messages", "9" * 30]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

# Paths into a valid delivery whose value the fuzzer replaces or deletes.
MESSAGE = ("entry", 0, "changes", 0, "value", "messages", 0)
PATHS = [
    ("object",),
    ("entry",),
    ("entry", 0, "id"),
    ("entry", 0, "changes"),
    ("entry", 0, "changes", 0, "field"),
    ("entry", 0, "changes", 0, "value"),
    ("entry", 0, "changes", 0, "value", "metadata"),
    ("entry", 0, "changes", 0, "value", "metadata", "phone_number_id"),
    ("entry", 0, "changes", 0, "value", "contacts"),
    ("entry", 0, "changes", 0, "value", "contacts", 0, "wa_id"),
    ("entry", 0, "changes", 0, "value", "messages"),
    (*MESSAGE, "id"),
    (*MESSAGE, "from"),
    (*MESSAGE, "timestamp"),
    (*MESSAGE, "type"),
    (*MESSAGE, "text"),
    (*MESSAGE, "text", "body"),
    ("entry", 0, "changes", 0, "value", "statuses"),
    ("entry", 0, "changes", 0, "value", "statuses", 0, "id"),
]


def _mutate(document: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    mutated = copy.deepcopy(document)
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return mutated


# Strings Postgres or UTF-8 cannot hold, and sizes and numbers no message has.
nasty_strings = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x" * 70_000, "9" * 25, "", " ", "NaN"]),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=20),  # NUL, surrogates
)
nasty_values = st.one_of(nasty_strings, st.sampled_from([10**40, -1, 0.5]), json_values)
LEAVES = [
    (*MESSAGE, "id"),
    (*MESSAGE, "from"),
    (*MESSAGE, "timestamp"),
    (*MESSAGE, "type"),
    (*MESSAGE, "text", "body"),
    ("entry", 0, "changes", 0, "value", "metadata", "phone_number_id"),
    ("entry", 0, "changes", 0, "value", "contacts", 0, "profile", "name"),
    ("entry", 0, "changes", 0, "value", "statuses", 0, "id"),
]


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """Mostly valid deliveries with nasty strings in their fields (the shape passes, the
    content must not reach the database), else broken shapes, any JSON, or bytes."""
    kind = draw(st.sampled_from(["leaves"] * 5 + ["shape"] * 3 + ["any-json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "any-json":
        return json.dumps(draw(json_values)).encode()
    sender = "250788" + draw(st.from_regex(r"\d{6}", fullmatch=True))
    document = envelope(text_message(sender, "hi"))
    document["entry"][0]["changes"][0]["value"]["statuses"] = [
        status_update("wamid.x", "read")["statuses"][0]
    ]
    if kind == "leaves":
        for path in draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=2, unique=True)):
            document = _mutate(document, path, draw(nasty_strings), delete=False)
    else:
        for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True)):
            try:
                document = _mutate(document, path, draw(nasty_values), draw(st.booleans()))
            except (KeyError, IndexError, TypeError):
                pass  # an earlier mutation removed the way there
    text = json.dumps(document)  # ensure_ascii: a lone surrogate travels as \ud800
    return text.replace('"NaN"', "NaN").encode()  # Python's JSON extension, not JSON


async def test_fuzzed_signed_bodies_never_500_and_refusals_store_nothing(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    service_config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    outcomes: dict[int, int] = {}
    async with running_service(service_config, with_worker=False) as service:
        url = service.base_url + "/webhook"

        @settings(
            max_examples=200,
            derandomize=True,  # the same 200 bodies on every run: CI stays reproducible
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(body=hostile_bodies())
        def post_one(body: bytes) -> None:
            with psycopg.connect(db_url) as conn:
                before = conn.execute(COUNT_ALL).fetchone()
                headers = {"X-Hub-Signature-256": sign(body, APP_SECRET)}
                status = httpx.post(url, content=body, headers=headers, timeout=10).status_code
                after = conn.execute(COUNT_ALL).fetchone()
            outcomes[status] = outcomes.get(status, 0) + 1
            assert status in (200, 400), status
            if status != 200:
                assert after == before, "a refused request stored something"

        await asyncio.to_thread(post_one)
    assert outcomes.get(400, 0) > 50 and outcomes.get(200, 0) > 5  # both paths were exercised


def _message(**changes: Any) -> dict[str, Any]:
    document = envelope(text_message("250788123456", "hello"))
    document["entry"][0]["changes"][0]["value"]["messages"][0].update(changes)
    return document


async def test_bodies_the_database_cannot_hold_are_refused(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    cases = {
        "nul in text": json.dumps(_message(text={"body": "a\x00b"})).encode(),
        "lone surrogate": json.dumps(_message(text={"body": "\ud83d"})).encode(),
        "surrogate as raw bytes": json.dumps(_message(text={"body": "a-b"}))
        .encode()
        .replace(b"a-b", b"a\xed\xa0\x80b"),
        "NaN": json.dumps(_message(extra=1.5)).replace("1.5", "NaN").encode(),
        "year 10^12": json.dumps(_message(timestamp="99999999999999999999")).encode(),
        "text too long": json.dumps(_message(text={"body": "x" * 4097})).encode(),
        "wa_id not a number": json.dumps(_message(**{"from": "drop table"})).encode(),
        "deep nesting": b'{"object": "whatsapp_business_account", "x": ' + b"[" * 100_000,
        "type of any length": json.dumps(_message(type="t" * 500)).encode(),
    }
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            codes = {}
            for name, body in cases.items():
                headers = {"X-Hub-Signature-256": sign(body, APP_SECRET)}
                codes[name] = (
                    await client.post("/webhook", content=body, headers=headers)
                ).status_code
        stored = await service.fetch("SELECT count(*) AS n FROM inbound_messages")
    assert codes == dict.fromkeys(cases, 400)
    assert stored[0]["n"] == 0


async def test_a_text_as_long_as_whatsapp_allows_is_taken_and_a_longer_one_refused(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """WhatsApp's own limit is 4,096 characters, and it is the default: a longer text
    was not typed in WhatsApp, and nothing of it is stored."""
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        full = await service.post_webhook(envelope(text_message("250788123456", "x" * 4096)))
        longer = await service.post_webhook(envelope(text_message("250788123457", "y" * 4097)))
        stored = await service.fetch("SELECT wa_id, length(text) AS n FROM inbound_messages")
        contacts = await service.fetch("SELECT wa_id FROM contacts")
    assert (full.status_code, longer.status_code) == (200, 400)
    assert [(row["wa_id"], row["n"]) for row in stored] == [("250788123456", 4096)]
    assert [row["wa_id"] for row in contacts] == ["250788123456"]


async def test_signature_failures_are_audited_once_per_address_and_interval(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    body = json.dumps(envelope(text_message("250788123456", "hi"))).encode()
    config = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url) as client:
            for _ in range(5):
                wrong = {"X-Hub-Signature-256": sign(body, "guessed-secret")}
                assert (
                    await client.post("/webhook", content=body, headers=wrong)
                ).status_code == 403
            assert (await client.post("/webhook", content=body)).status_code == 401
        audit = await service.fetch("SELECT actor, action, details, remote_addr FROM audit_log")
    assert audit == [
        {
            "actor": "anonymous",
            "action": "webhook.signature_invalid",
            "details": {"reason": "invalid", "folded": 0},
            "remote_addr": "127.0.0.1",
        }
    ]  # the other four wrong ones and the missing one fold into the next row
