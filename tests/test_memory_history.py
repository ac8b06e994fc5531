"""The token budget of the history: counting, where the history may be cut, what the
model is sent, and what is folded into the summary. No database, no model."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from nodes.memory.history import HistoryBudget, current_turn_start, valid_cuts
from nodes.memory.tokens import (
    EstimatedCounter,
    TiktokenCounter,
    build_token_counter,
    bundled_encoding,
)


def customer(text: str) -> HumanMessage:
    return HumanMessage(content=text)


def bot(text: str) -> AIMessage:
    return AIMessage(content=text)


def tool_call(name: str, call_id: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def tool_result(call_id: str, text: str) -> ToolMessage:
    return ToolMessage(content=text, tool_call_id=call_id)


def conversation(turns: int, words: int = 30) -> list[AnyMessage]:
    """Turns of customer text, a tool call and its result, and an answer."""
    messages: list[AnyMessage] = []
    for n in range(turns):
        messages.append(customer(f"turn {n}: " + "word " * words))
        messages.append(tool_call("check_availability", f"call-{n}", date="2026-12-05"))
        messages.append(tool_result(f"call-{n}", "slots: 09:00, 11:00 " * 5))
        messages.append(bot(f"answer {n}: " + "fine " * words))
    return messages


def test_the_bundled_tokenizer_is_the_models_own() -> None:
    encoding = bundled_encoding("o200k_base")
    assert encoding is not None
    counter = build_token_counter("openai:gpt-4o-mini")
    assert isinstance(counter, TiktokenCounter)
    assert "o200k_base" in counter.description and "own" in counter.description
    # Reference values of o200k_base (tiktoken's own test vectors).
    assert encoding.encode("hello world") == [24912, 2375]
    assert counter.count_text("Muraho! Ndashaka gukodesha igare.") > 8
    assert build_token_counter("openai:gpt-4").description.startswith("tiktoken cl100k_base")
    assert build_token_counter("ollama:llama3.1").description.endswith("(an approximation)")


def test_the_estimate_never_undercounts_non_latin_text() -> None:
    exact = build_token_counter("openai:gpt-4o")
    estimate = EstimatedCounter()
    for text in (
        "Hello, I would like to book a bike",
        "Ndashaka igare",
        "Привет, мне нужен велосипед",
    ):
        assert estimate.count_text(text) >= exact.count_text(text) * 0.8
    assert estimate.truncate("é" * 100, 10) == "é" * 20


def test_cuts_never_separate_a_tool_call_from_its_results() -> None:
    messages = conversation(3)
    cuts = valid_cuts(messages)
    for cut in cuts:
        assert not isinstance(messages[cut], ToolMessage)
        previous = messages[cut - 1] if cut else None
        assert not (isinstance(previous, AIMessage) and previous.tool_calls)
    assert current_turn_start(messages) == 8
    assert current_turn_start([*messages, customer("and one more"), customer("?")]) == 12


def test_the_model_is_sent_what_fits_starting_with_a_customer_message() -> None:
    counter = build_token_counter("openai:gpt-4o-mini")
    budget = HistoryBudget(counter, max_tokens=400, summary_tokens=100)
    messages = conversation(10)
    sent = budget.select(messages, summary=None)
    assert sum(counter.count_message(m) for m in sent) <= 400
    assert len(sent) > 4  # more than the current turn
    assert isinstance(sent[0], HumanMessage)
    assert sent[-1] is messages[-1]
    with_summary = budget.select(messages, summary="The customer is Grace. " * 20)
    assert len(with_summary) < len(sent)  # the summary takes its share of the budget


def test_the_current_turn_is_sent_even_when_it_alone_is_over_budget() -> None:
    counter = build_token_counter("openai:gpt-4o-mini")
    budget = HistoryBudget(counter, max_tokens=50, summary_tokens=20)
    messages = [*conversation(2), customer("word " * 200)]
    assert budget.select(messages, None) == [messages[-1]]


def test_folding_keeps_the_current_turn_and_lands_on_a_turn_start() -> None:
    counter = build_token_counter("openai:gpt-4o-mini")
    budget = HistoryBudget(counter, max_tokens=600, summary_tokens=100, refill_ratio=0.6)
    messages = [*conversation(12), customer("my last question")]
    assert budget.over(messages, None)
    cut = budget.fold_point(messages)
    assert isinstance(messages[cut], HumanMessage)
    kept = messages[cut:]
    assert sum(counter.count_message(m) for m in kept) <= (600 - 100) * 0.6
    assert kept[-1].content == "my last question"
    # A single long turn cannot be folded into itself.
    assert budget.fold_point([customer("word " * 2000)]) == 0
