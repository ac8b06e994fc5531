"""The fake OpenAI server's usage in "openai" mode: o200k token counts and automatic prompt
caching as OpenAI reports them (1,024 tokens at least, 128-token steps, a 5-minute window),
seen through the real `openai` SDK, streamed or not. Cost benchmarks depend on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.fakes.openai_usage import (
    PromptCache,
    Tokenizer,
    default_tokenizer,
    prompt_token_ids,
)

# About 2,600 o200k tokens of instructions: well over the 1,024 that caching needs.
LONG_PROMPT = " ".join(
    f"Rule {n}: answer the customer of the bike shop politely and briefly." for n in range(200)
)


class Clock:
    """Time that passes only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[FakeOpenAIServer]:
    cache = PromptCache(clock=clock)
    with FakeOpenAIServer(usage_mode="openai", prompt_cache=cache) as fake:
        yield fake


def client(server: FakeOpenAIServer) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key="sk-test", max_retries=0)


def ask(server: FakeOpenAIServer, messages: Any, **extra: Any) -> Any:
    """One chat completion; its `usage` as the SDK parsed it."""
    create: Any = client(server).chat.completions.create
    return create(model="gpt-4o-mini", messages=messages, **extra).usage


def conversation(question: str, system: str = LONG_PROMPT) -> Any:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def cookbook_count(messages: list[dict[str, str]]) -> int:
    """OpenAI cookbook's count for gpt-4o models: 3 per message, its values, 3 per reply."""
    encoding = default_tokenizer().encoding
    assert encoding is not None, "bpe-openai's o200k_base should be available in the venv"
    values = sum(len(encoding.encode(value)) for m in messages for value in m.values())
    return 3 * len(messages) + values + 3


def test_prompt_tokens_are_o200k_counts_as_openai_counts_them(server: FakeOpenAIServer) -> None:
    messages = [
        {"role": "system", "content": "You are the assistant of Inzira Bikes."},
        {"role": "user", "content": "Murakoze! Mufungura saa ngahe ku wa gatandatu?"},
    ]
    usage = ask(server, messages)
    assert usage.prompt_tokens == cookbook_count(messages)
    # The reply ("echo: ...") is counted with the same tokenizer, plus its end token.
    encoding = default_tokenizer().encoding
    assert encoding is not None
    echo = "echo: Murakoze! Mufungura saa ngahe ku wa gatandatu?"
    assert usage.completion_tokens == len(encoding.encode(echo)) + 1


def test_tool_schemas_count_close_to_openais_published_formula(server: FakeOpenAIServer) -> None:
    """The cookbook's `num_tokens_for_tools` constants for gpt-4o-mini, on flat tools."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "check_availability",
                "description": "Free bike-rental slots on a given day",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "description": "The day, YYYY-MM-DD"},
                        "kind": {
                            "type": "string",
                            "description": "What to rent",
                            "enum": ["city", "mountain", "ebike"],
                        },
                    },
                    "required": ["date"],
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "any e-bike tomorrow?"}]
    encoding = default_tokenizer().encoding
    assert encoding is not None
    formula = 7 + len(encoding.encode("check_availability:Free bike-rental slots on a given day"))
    formula += 3 + 3 + len(encoding.encode("date:string:The day, YYYY-MM-DD"))
    formula += 3 - 3 + sum(3 + len(encoding.encode(item)) for item in ("city", "mountain", "ebike"))
    formula += len(encoding.encode("kind:string:What to rent")) + 12
    tools_counted = ask(server, messages, tools=tools).prompt_tokens - cookbook_count(messages)
    assert abs(tools_counted - formula) <= 0.1 * formula, (tools_counted, formula)


def test_a_prompt_under_1024_tokens_is_never_cached(server: FakeOpenAIServer) -> None:
    short = conversation("hi", system="You are the assistant of a bike shop.")
    first, second = ask(server, short), ask(server, short)
    assert second.prompt_tokens == first.prompt_tokens < 1024
    assert first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details.cached_tokens == 0


def test_a_repeated_long_prompt_is_cached_in_128_token_steps(server: FakeOpenAIServer) -> None:
    messages = conversation("Do you rent e-bikes?")
    first, second = ask(server, messages), ask(server, messages)
    assert first.prompt_tokens > 2000
    assert first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details.cached_tokens == first.prompt_tokens // 128 * 128


def test_a_new_question_after_the_same_instructions_reuses_their_prefix(
    server: FakeOpenAIServer,
) -> None:
    first = conversation("Do you rent e-bikes?")
    then = conversation("Where is the shop?")
    ask(server, first)
    usage = ask(server, then)
    tokenizer = default_tokenizer()
    a, b = (
        prompt_token_ids({"messages": first}, tokenizer),
        prompt_token_ids({"messages": then}, tokenizer),
    )
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert shared > 2000  # everything up to the question
    assert usage.prompt_tokens_details.cached_tokens == shared // 128 * 128


def test_a_prompt_that_differs_early_shares_nothing(server: FakeOpenAIServer) -> None:
    ask(server, conversation("Do you rent e-bikes?"))
    usage = ask(server, conversation("Do you rent e-bikes?", system="Hello! " + LONG_PROMPT))
    assert usage.prompt_tokens > 2000
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_a_prefix_unused_for_five_minutes_has_expired(
    server: FakeOpenAIServer, clock: Clock
) -> None:
    messages = conversation("Do you rent e-bikes?")
    ask(server, messages)
    clock.now += 299  # still warm, and this use keeps it warm
    assert ask(server, messages).prompt_tokens_details.cached_tokens > 0
    clock.now += 299
    assert ask(server, messages).prompt_tokens_details.cached_tokens > 0
    clock.now += 301
    assert ask(server, messages).prompt_tokens_details.cached_tokens == 0


def test_streamed_usage_reports_cached_tokens_too(server: FakeOpenAIServer) -> None:
    messages = conversation("Do you rent e-bikes?")
    ask(server, messages)
    stream = client(server).chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    usages: list[Any] = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(usages) == 1
    assert usages[0].prompt_tokens_details.cached_tokens == usages[0].prompt_tokens // 128 * 128
    assert [e.streamed for e in server.exchanges] == [False, True]
    assert server.exchanges[1].usage == usages[0].model_dump(exclude_none=True)


def test_requests_from_other_clients_share_one_cache(server: FakeOpenAIServer) -> None:
    """One organisation's cache: a prefix one process sent helps another's request."""
    messages = conversation("Do you rent e-bikes?")
    ask(server, messages)
    again = OpenAI(base_url=server.base_url + "/v1", api_key="sk-test")
    answer = again.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert (answer.usage.prompt_tokens_details.cached_tokens or 0) > 1024


def test_the_default_mode_keeps_the_character_estimate_and_caches_nothing() -> None:
    messages = conversation("Do you rent e-bikes?")
    with FakeOpenAIServer() as fake:
        ask(fake, messages)
        usage = ask(fake, messages)
    assert usage.prompt_tokens == (len(LONG_PROMPT) + len("Do you rent e-bikes?")) // 4 + 1
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_without_the_tokenizer_four_characters_make_a_token_and_caching_still_works() -> None:
    fallback = Tokenizer(None)
    assert len(fallback.encode("abcdefgh")) == 2 and len(fallback.encode("abcdefghi")) == 3
    body = {"messages": conversation("Do you rent e-bikes?")}
    tokens = prompt_token_ids(body, fallback)
    assert abs(len(tokens) - len(LONG_PROMPT) / 4) < 40
    cache = PromptCache()
    assert cache.lookup(tokens) == 0
    assert cache.lookup(tokens) == len(tokens) // 128 * 128


def test_a_responder_answers_what_is_not_scripted(server: FakeOpenAIServer) -> None:
    seen: list[str] = []

    def responder(body: dict[str, Any]) -> Any:
        seen.append(body["messages"][-1]["content"])
        return [ToolCall("search_catalog", {"query": "helmet"})]

    server.responder = responder
    server.script("scripted first")
    answers = [
        client(server).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        for text in ("one", "two")
    ]
    assert answers[0].choices[0].message.content == "scripted first"
    calls: Any = answers[1].choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "search_catalog"
    assert seen == ["two"]
    assert [e.reply for e in server.exchanges] == [
        "scripted first",
        [ToolCall("search_catalog", {"query": "helmet"})],
    ]
