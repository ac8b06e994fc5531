"""The intent router: rules, the local classifier (real MiniLM model, real examples),
the LLM step against the local OpenAI-compatible server, stickiness, disabled intents,
and the evaluation on the labelled set (tests/data/router_eval.jsonl).

The router is built once per session (embedding the examples takes seconds); routers
with a chat model reuse its fitted classifier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_openai import ChatOpenAI

from graph.infra.embeddings import shared_local_minilm
from nodes.routing import INTENTS, IntentRouter, RouterConfig
from server.operations.router_eval import (
    Report,
    evaluate,
    format_report,
    percentile,
    read_labelled,
    typed_path,
)
from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent
EVAL_SET = REPO / "tests" / "data" / "router_eval.jsonl"
HOLDOUT = REPO / "tests" / "data" / "router_holdout.jsonl"

# Measured on tests/data/router_eval.jsonl with the thresholds tuned on the examples
# (0.49 / 0.69): 255/353 = 0.722 routed without LLM, 0.976 right on that share, 0.790
# overall when the undecided share goes to the fallback. Set a little below, so that
# a regression fails while a change of library version does not.
MIN_COVERAGE = 0.69
MIN_LOCAL_ACCURACY = 0.96
MIN_ACCURACY_WITH_FALLBACK = 0.76
# A vague message the classifier cannot place (checked below to stay undecided).
VAGUE = "I have a question about something that happened last week with my friend"


@pytest.fixture(scope="session")
def vectors_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("router-cache")


@pytest.fixture(scope="session")
def router(vectors_cache: Path) -> IntentRouter:
    return IntentRouter.create(shared_local_minilm(), vectors_cache=vectors_cache)


def with_llm(
    router: IntentRouter, server: FakeOpenAIServer, **config: float | bool
) -> IntentRouter:
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url + "/v1",
        api_key="sk-test",
        max_retries=0,
        timeout=5,
    )
    return IntentRouter(
        embeddings=router.embeddings,
        examples=router.examples,
        classifier=router.classifier,
        model=model,
        config=RouterConfig(**config),  # type: ignore[arg-type]
    )


# -- rules ------------------------------------------------------------------------------


async def test_menu_replies_route_by_rule(router: IntentRouter) -> None:
    for intent in INTENTS:
        decision = await router.route("whatever the title", reply_id=f"menu:{intent}")
        assert (decision["intent"], decision["method"]) == (intent, "rule")
    # A tap beats the agent in charge: the customer chose.
    tapped = await router.route("Payments", reply_id="menu:payment", active_agent="booking")
    assert (tapped["intent"], tapped["method"]) == ("payment", "rule")


async def test_a_tap_on_an_agents_own_buttons_stays_with_it(router: IntentRouter) -> None:
    decision = await router.route("Confirm", reply_id="confirm:abc", active_agent="payment")
    assert (decision["intent"], decision["method"]) == ("payment", "sticky")


async def test_explicit_requests_for_a_person_route_by_rule(router: IntentRouter) -> None:
    for text in [
        "I want to speak to a real person",
        "je voudrais parler à un conseiller",
        "¿puedo hablar con un agente?",
        "preciso falar com um atendente",
        "nataka kuongea na mhudumu wenu",
    ]:
        decision = await router.route(text, active_agent="sales")
        assert (decision["intent"], decision["method"]) == ("human", "rule"), text


# -- local classifier -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Je voudrais réserver deux vélos pour dimanche matin", "booking"),
        ("¿Cuánto cuesta alquilar una bicicleta eléctrica todo el día?", "sales"),
        ("Nimelipa kwa M-Pesa lakini sijapata risiti", "payment"),
        ("My password reset link does not work", "tech_support"),
        ("I'd like to settle my invoice by card today", "payment"),
    ],
)
async def test_clear_messages_route_locally(router: IntentRouter, text: str, intent: str) -> None:
    decision = await router.route(text)
    assert (decision["intent"], decision["method"]) == (intent, "embedding")
    assert decision["confidence"] >= router.config.threshold
    assert decision.get("reason")


async def test_vague_message_without_llm_goes_to_customer_service(router: IntentRouter) -> None:
    decision = await router.route(VAGUE)
    assert (decision["intent"], decision["method"]) == ("customer_service", "default")


# -- LLM step ---------------------------------------------------------------------------


async def test_unsure_classifier_asks_the_llm(
    router: IntentRouter, openai_server: FakeOpenAIServer
) -> None:
    llm_router = with_llm(router, openai_server)
    openai_server.script('{"intent": "payment", "confidence": 0.8, "reason": "refund question"}')
    decision = await llm_router.route(VAGUE, enabled=set(INTENTS) - {"sales"})
    assert decision == {
        "intent": "payment",
        "confidence": 0.8,
        "method": "llm",
        "reason": "refund question",
    }
    request = openai_server.requests[-1]
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["intent"]["enum"] == [i for i in INTENTS if i != "sales"]
    system = request["messages"][0]["content"]
    assert "booking:" in system and "sales:" not in system
    assert request["messages"][-1]["content"] == VAGUE


async def test_confident_messages_never_reach_the_llm(
    router: IntentRouter, openai_server: FakeOpenAIServer
) -> None:
    llm_router = with_llm(router, openai_server)
    await llm_router.route("Je voudrais réserver deux vélos pour dimanche matin")
    await llm_router.route("ok", active_agent="booking")
    assert openai_server.requests == []


async def test_llm_failure_falls_back_to_the_active_agent_or_customer_service(
    router: IntentRouter, openai_server: FakeOpenAIServer
) -> None:
    llm_router = with_llm(router, openai_server)
    openai_server.fail_next(2, status=500)
    alone = await llm_router.route(VAGUE)
    assert (alone["intent"], alone["method"]) == ("customer_service", "default")
    in_charge = await llm_router.route(VAGUE, active_agent="booking")
    assert (in_charge["intent"], in_charge["method"]) == ("booking", "default")
    assert len(openai_server.requests) == 2


async def test_llm_timeout_falls_back(
    router: IntentRouter, openai_server: FakeOpenAIServer
) -> None:
    llm_router = with_llm(router, openai_server, llm_timeout_seconds=0.3)
    openai_server.delay = 2.0
    decision = await llm_router.route(VAGUE, active_agent="sales")
    assert (decision["intent"], decision["method"]) == ("sales", "default")


async def test_llm_answer_outside_the_enabled_intents_is_refused(
    router: IntentRouter, openai_server: FakeOpenAIServer
) -> None:
    llm_router = with_llm(router, openai_server)
    openai_server.script('{"intent": "sales", "confidence": 0.9, "reason": "wants to buy"}')
    decision = await llm_router.route(VAGUE, enabled={"customer_service", "booking", "human"})
    assert (decision["intent"], decision["method"]) == ("customer_service", "default")


async def test_llm_can_be_switched_off(
    router: IntentRouter, openai_server: FakeOpenAIServer
) -> None:
    llm_router = with_llm(router, openai_server, use_llm=False)
    decision = await llm_router.route(VAGUE)
    assert decision["method"] == "default" and openai_server.requests == []


# -- stickiness -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "text"),
    [
        ("booking", "ok"),
        ("booking", "how much is it?"),
        ("booking", "and for sunday?"),
        ("payment", "yes"),
        ("sales", "thanks a lot"),
        ("sales", "d'accord, merci"),
        ("booking", "sawa"),
        ("tech_support", "still not working"),
    ],
)
async def test_follow_ups_stay_with_the_active_agent(
    router: IntentRouter, active: str, text: str
) -> None:
    decision = await router.route(text, active_agent=active)
    assert decision["intent"] == active, decision


@pytest.mark.parametrize(
    ("active", "text", "intent"),
    [
        ("booking", "my app keeps crashing when I try to log in", "tech_support"),
        ("booking", "I'd like to settle the bill with my card now", "payment"),
        ("sales", "Quiero reservar dos bicis para el sábado", "booking"),
    ],
)
async def test_a_clear_change_of_topic_switches_agent(
    router: IntentRouter, active: str, text: str, intent: str
) -> None:
    decision = await router.route(text, active_agent=active)
    assert (decision["intent"], decision["method"]) == (intent, "embedding"), decision
    assert decision["confidence"] >= router.config.switch_threshold


async def test_a_disabled_active_agent_is_not_kept(router: IntentRouter) -> None:
    decision = await router.route("ok", active_agent="sales", enabled={"customer_service"})
    assert decision["intent"] == "customer_service"


# -- disabled intents -------------------------------------------------------------------


async def test_disabled_intents_are_never_returned(router: IntentRouter) -> None:
    enabled = {"customer_service", "booking", "tech_support", "human"}
    items = read_labelled(EVAL_SET)
    for item in items[::3]:
        for active in (None, "sales", "booking"):
            decision = await router.route(item.text, active_agent=active, enabled=enabled)
            assert decision["intent"] in enabled, (item.text, active, decision)
    tapped = await router.route("Payments", reply_id="menu:payment", enabled=enabled)
    assert tapped["intent"] == "customer_service"
    fallback = await router.route("ok", enabled={"booking", "human"})
    assert fallback["intent"] == "booking"


# -- the labelled evaluation set ----------------------------------------------------------


@pytest.fixture(scope="session")
async def evaluation(router: IntentRouter) -> Report:
    return await evaluate(router, read_labelled(EVAL_SET), use_llm=False)


def test_evaluation_meets_the_measured_figures(evaluation: Report) -> None:
    outcomes = evaluation.outcomes
    local = [o for o in outcomes if o.local is not None]
    assert len(outcomes) >= 300
    coverage = len(local) / len(outcomes)
    local_accuracy = sum(o.local["intent"] == o.item.intent for o in local if o.local) / len(local)
    accuracy = sum(o.final["intent"] == o.item.intent for o in outcomes) / len(outcomes)
    summary = "\n".join(format_report(evaluation))
    assert coverage >= MIN_COVERAGE, summary
    assert local_accuracy >= MIN_LOCAL_ACCURACY, summary
    assert accuracy >= MIN_ACCURACY_WITH_FALLBACK, summary
    assert f"accuracy: {accuracy:.3f}" in summary


async def test_the_held_out_set_meets_the_goals(router: IntentRouter) -> None:
    """The frozen held-out set (router_holdout.md), measured 0.768 of messages routed
    confidently at 0.983, best guess 0.900: the goals are ≥ 0.70 at ≥ 0.97 and a best
    guess near 0.90; the bounds sit a little below the measured figures."""
    report = await evaluate(router, read_labelled(HOLDOUT), use_llm=False)
    outcomes = report.outcomes
    local = [o for o in outcomes if o.local is not None]
    right = sum(o.local["intent"] == o.item.intent for o in local if o.local)
    best = right + sum(o.guess == o.item.intent for o in outcomes if o.local is None)
    summary = "\n".join(format_report(report))
    assert len(local) / len(outcomes) >= 0.72, summary
    assert right / len(local) >= 0.97, summary
    assert best / len(outcomes) >= 0.88, summary


def test_routing_without_the_embedding_decides_as_the_classifier_would(
    router: IntentRouter,
) -> None:
    """Where the lexical half alone is sure, the router skips the embedding. On the
    labelled set it does so for a good share of messages, and what it decides there is
    what the whole classifier decides — and an agent in charge is never switched away
    on the shortcut."""
    always_embed = IntentRouter(
        embeddings=router.embeddings,
        examples=router.examples,
        classifier=router.classifier,
        config=RouterConfig(lexical_threshold=1.01),
    )
    items = read_labelled(EVAL_SET)
    allowed = router.allowed_intents(None)
    shortcut = different = 0
    for item in items:
        for active in (None, "booking"):
            lexical = router.classifier.lexical_proba([item.text])[0]
            shortcut += lexical.max() >= router.config.lexical_threshold
            fast = router.route_locally(item.text, None, active, allowed).decision
            full = always_embed.route_locally(item.text, None, active, allowed).decision
            fast_intent = fast["intent"] if fast else None
            full_intent = full["intent"] if full else None
            different += fast_intent != full_intent
            if active and fast_intent not in (active, full_intent):
                pytest.fail(f"switched away from {active} on the shortcut: {item.text}")
    assert shortcut >= 0.25 * 2 * len(items)
    assert different <= 0.01 * 2 * len(items)


def test_typed_turns_of_scripted_conversations_reach_their_action(router: IntentRouter) -> None:
    """The menu's typed path on the 25 scripted conversations (BENCHMARKS.md): measured
    23 of 38 turns where the scripted agent acted reach that action with no model, 12 of
    91 typed turns get another action; bounds a little looser."""
    counts, wrong = typed_path(router, REPO / "tests" / "data" / "cost_conversations")
    assert counts["actionable"] >= 30
    assert counts["actionable right"] / counts["actionable"] >= 0.55, "\n".join(wrong)
    assert counts["wrong action"] <= 14, "\n".join(wrong)


def test_local_path_is_fast(evaluation: Report) -> None:
    """The goal is p50 < 15 ms on a quiet machine; the bound here is looser because CI
    runs other suites beside it. It catches a model reloaded per call, not noise."""
    latencies = [o.local_seconds for o in evaluation.outcomes]
    assert percentile(latencies, 50) < 0.05


def test_eval_router_command(tmp_path: Path, router: IntentRouter, vectors_cache: Path) -> None:
    """`wa-agent eval-router` end to end, reusing the session's cached example vectors."""
    data = tmp_path / "eval.jsonl"
    lines = [
        {"text": "Quiero reservar dos bicis para el sábado", "intent": "booking"},
        {"text": "the ebike battery drains in ten minutes", "intent": "tech_support"},
        {"text": VAGUE, "intent": "customer_service"},
    ]
    data.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    (tmp_path / "cache").symlink_to(vectors_cache, target_is_directory=True)
    env = {**os.environ, "WA_AGENT_DATA_DIR": str(tmp_path), "LANGSMITH_TRACING": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "eval-router", str(data), "--no-llm"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "routed without LLM: 2/3" in out
    assert "confusion matrix" in out and "p50" in out
    assert out.rstrip().splitlines()[-1] == "accuracy: 1.000"


def test_bad_evaluation_lines_are_named(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "hi", "intent": "customer_service"}\n{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_labelled(data)
    data.write_text('{"text": "hi", "intent": "greeting"}\n')
    with pytest.raises(ValueError, match="unknown intent"):
        read_labelled(data)
