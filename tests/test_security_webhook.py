"""The webhook under hostile input: property-based fuzzing of signed bodies (never a 500,
never a stored row from a refused request), the edge cases that used to reach the
database, replays (stale messages, erased customers' messages delivered again), refusals
that must not echo their input, and signature failures in the audit log."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.operations.erasure import forget_customer
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, sign, status_update, text_message
from tests.support import APP_SECRET, RunningService, running_service, service_settings

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
            # 403: a mutated business number is one this service does not answer.
            assert status in (200, 400, 403), status
            if status != 200:
                assert after == before, "a refused request stored something"

        await asyncio.to_thread(post_one)
        stored = await service.fetch("SELECT wamid, wa_id, supported, text FROM inbound_messages")
    assert outcomes.get(400, 0) > 50 and outcomes.get(200, 0) > 40  # both paths were exercised
    # What a 200 let in is storable and addressable, and no odd text reached the agent.
    assert all(re.fullmatch(r"[\x21-\x7e]{1,256}", row["wamid"]) for row in stored)
    assert all(re.fullmatch(r"\d{5,20}", row["wa_id"]) for row in stored)
    assert all(len(row["text"]) <= 4096 for row in stored if row["supported"])


def _message(**changes: Any) -> dict[str, Any]:
    document = envelope(text_message("250788123456", "hello"))
    document["entry"][0]["changes"][0]["value"]["messages"][0].update(changes)
    return document


async def test_bodies_the_database_cannot_hold_are_refused_whole(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    cases = {
        "nul in text": json.dumps(_message(text={"body": "a\x00b"})).encode(),
        "lone surrogate": json.dumps(_message(text={"body": "\ud83d"})).encode(),
        "surrogate as raw bytes": json.dumps(_message(text={"body": "a-b"}))
        .encode()
        .replace(b"a-b", b"a\xed\xa0\x80b"),
        "NaN": json.dumps(_message(extra=1.5)).replace("1.5", "NaN").encode(),
        "deep nesting": b'{"object": "whatsapp_business_account", "x": ' + b"[" * 100_000,
        "not an object": b'["whatsapp_business_account"]',
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


async def test_one_odd_message_never_refuses_the_delivery(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """Each odd message is judged alone (server/abuse/validation.py): stored as
    unsupported, or left out when nobody could be answered; the good one beside it in
    the same signed delivery is stored either way."""
    odd = {
        "year 10^12": {"timestamp": "99999999999999999999"},
        "text too long": {"text": {"body": "x" * 4097}},
        "tap without interactive": {"type": "interactive"},
        "type of any length": {"type": "t" * 500},
        "wa_id not a number": {"from": "drop table"},
        "no id": {"id": None},
    }
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        codes = {}
        for index, (name, changes) in enumerate(odd.items()):
            good = text_message(f"25078810000{index}", "good", wamid=f"wamid.GOOD{index}")
            bad = text_message(f"25078820000{index}", "bad", wamid=f"wamid.BAD{index}")
            bad["messages"][0].update({k: v for k, v in changes.items() if v is not None})
            for key in (k for k, v in changes.items() if v is None):
                del bad["messages"][0][key]
            codes[name] = (await service.post_webhook(envelope(bad, good))).status_code
        rows = await service.fetch(
            "SELECT wamid, kind, supported, text FROM inbound_messages ORDER BY wamid"
        )
    assert codes == dict.fromkeys(odd, 200)
    assert [row["wamid"] for row in rows if row["wamid"].startswith("wamid.GOOD")] == [
        f"wamid.GOOD{index}" for index in range(len(odd))
    ]
    bad = {r["wamid"]: (r["kind"], r["supported"], r["text"]) for r in rows if "BAD" in r["wamid"]}
    assert bad == {  # the last two had nobody to answer, so they are not stored
        "wamid.BAD0": ("text", False, ""),
        "wamid.BAD1": ("text", False, ""),
        "wamid.BAD2": ("interactive", False, ""),
        "wamid.BAD3": ("unknown", False, ""),
    }


async def test_a_text_as_long_as_whatsapp_allows_is_read_and_a_longer_one_is_not(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """WhatsApp's own limit for business texts is 4,096 characters, and it is the
    default: a longer text is kept for the record as unsupported, never read."""
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        full = await service.post_webhook(envelope(text_message("250788123456", "x" * 4096)))
        longer = await service.post_webhook(envelope(text_message("250788123457", "y" * 4097)))
        stored = await service.fetch(
            "SELECT wa_id, length(text) AS n, supported FROM inbound_messages ORDER BY wa_id"
        )
    assert (full.status_code, longer.status_code) == (200, 200)
    assert [(row["wa_id"], row["n"], row["supported"]) for row in stored] == [
        ("250788123456", 4096, True),
        ("250788123457", 0, False),
    ]


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


async def _counts(service: RunningService) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        counts[table] = (await service.fetch(f"SELECT count(*) AS n FROM {table}"))[0]["n"]
    return counts


async def test_a_message_from_2020_is_ignored_but_the_delivery_accepted(
    db_url: str, graph_api: FakeGraphAPI, capfd: pytest.CaptureFixture[str]
) -> None:
    """No retry of Meta's is older than 7 days: an old message is a replay. It is not
    stored, so nobody answers it, and the log says so."""
    old = text_message("250788123456", "book me for 2020", wamid="wamid.OLD")
    old["messages"][0]["timestamp"] = str(int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()))
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        response = await service.post_webhook(envelope(old))
        counts = await _counts(service)
    assert response.status_code == 200
    assert counts == dict.fromkeys(TABLES, 0)
    assert "webhook.message_stale" in "".join(capfd.readouterr())


async def test_an_erased_customers_message_delivered_again_does_not_bring_them_back(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    customer = "250788123456"
    first = envelope(text_message(customer, "my address is 12 Hill Rd", wamid="wamid.ERASED"))
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        await service.post_webhook(first)
        await forget_customer(service.services.pool, customer, actor="test")
        again = await service.post_webhook(first)  # Meta retrying an old delivery
        after_redelivery = await _counts(service)
        tombstones = await service.fetch("SELECT wamid_sha256 FROM erased_wamids")
        fresh = await service.post_webhook(envelope(text_message(customer, "hi again")))
        stored = await service.fetch("SELECT wamid FROM inbound_messages")
    assert (again.status_code, again.json()["duplicates"]) == (200, 1)
    assert after_redelivery == dict.fromkeys(TABLES, 0)
    assert tombstones == [{"wamid_sha256": hashlib.sha256(b"wamid.ERASED").hexdigest()}]
    assert fresh.status_code == 200 and len(stored) == 1  # writing again is a new start


async def test_a_refusal_says_what_was_wrong_without_repeating_the_input(
    db_url: str, graph_api: FakeGraphAPI, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = "INPUT-7f3a-never-echoed"
    bodies = [
        {"object": "whatsapp_business_account", "entry": marker},
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": marker}]},
        {"object": {"nested": marker}, "entry": []},
    ]
    settings_ = service_settings(db_url, whatsapp_api_base_url=graph_api.base_url)
    async with running_service(settings_, with_worker=False) as service:
        answers = [await service.post_webhook(body) for body in bodies]
    logged = "".join(capfd.readouterr())  # wherever the log handler writes
    assert [answer.status_code for answer in answers] == [400, 400, 400]
    assert [answer.json()["error"] for answer in answers] == [
        "malformed payload: payload does not match the webhook schema: entry: list_type",
        "malformed payload: payload does not match the webhook schema: entry.0.changes: list_type",
        "malformed payload: payload does not match the webhook schema: object: string_type",
    ]
    assert logged.count("webhook.malformed") == 3
    assert marker not in logged and "input_value" not in logged
