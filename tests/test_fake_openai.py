"""The fake OpenAI server must satisfy the *real* langchain_openai client end to end.

Every other test that talks to a model relies on this fake, so these tests pin the parts
of the wire format the SDK actually parses: usage, tool calls, SSE deltas, structured
output, retries, auth errors, hold/release and embeddings.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from tests.fakes.openai_server import Error, FakeOpenAIServer, ToolCall


class Weather(BaseModel):
    """Forecast for a city."""

    city: str
    celsius: float
    sunny: bool
    kind: Literal["rain", "sun"]
    tags: list[str]


class Lookup(BaseModel):
    """Look an order up by id."""

    order_id: str


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def make_llm(server: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    options: dict[str, Any] = {"model": "gpt-test", "api_key": "sk-test", "max_retries": 0}
    options.update(kwargs)
    return ChatOpenAI(base_url=server.base_url + "/v1", **options)


async def test_ainvoke_echoes_current_user_turn_with_usage(server: FakeOpenAIServer) -> None:
    messages = [
        SystemMessage("you are terse"),
        HumanMessage("old"),
        AIMessage("earlier answer"),
        HumanMessage("a"),
        HumanMessage("b"),
        HumanMessage("c"),
    ]
    result = await make_llm(server).ainvoke(messages)
    assert result.content == "echo: a | b | c"
    assert result.response_metadata["model_name"] == "gpt-test"
    assert result.response_metadata["finish_reason"] == "stop"
    usage = result.usage_metadata
    assert usage is not None
    prompt_chars = len("you are terse" + "old" + "earlier answer" + "abc")
    assert usage["input_tokens"] == prompt_chars // 4 + 1
    assert usage["output_tokens"] == len("echo: a | b | c") // 4 + 1
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "you are terse"}


def test_sync_invoke_and_scripted_text(server: FakeOpenAIServer) -> None:
    server.script("scripted hello")
    llm = make_llm(server)
    assert llm.invoke("hi").content == "scripted hello"
    assert llm.invoke("again").content == "echo: again"
    assert server.pending == 0


async def test_bind_tools_scripted_tool_call(server: FakeOpenAIServer) -> None:
    server.script(ToolCall("Lookup", {"order_id": "A-1"}, id="call_1"))
    result = await make_llm(server).bind_tools([Lookup]).ainvoke("where is A-1?")
    assert isinstance(result, AIMessage)
    assert result.tool_calls == [
        {"name": "Lookup", "args": {"order_id": "A-1"}, "id": "call_1", "type": "tool_call"}
    ]
    assert result.response_metadata["finish_reason"] == "tool_calls"
    assert server.requests[0]["tools"][0]["function"]["name"] == "Lookup"


async def test_astream_text_reassembles(server: FakeOpenAIServer) -> None:
    chunks = [chunk async for chunk in make_llm(server).astream("one two three")]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 2
    assert "".join(str(t) for t in texts) == "echo: one two three"


async def test_astream_tool_call_deltas_aggregate(server: FakeOpenAIServer) -> None:
    args = {"order_id": "A-123456789", "note": "a fairly long argument value"}
    server.script([ToolCall("Lookup", args)])
    llm = make_llm(server).bind_tools([Lookup])
    total: AIMessageChunk | None = None
    fragments = 0
    async for chunk in llm.astream("go"):
        assert isinstance(chunk, AIMessageChunk)
        fragments += len(chunk.tool_call_chunks)
        total = chunk if total is None else total + chunk
    assert total is not None
    assert fragments > 2
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("Lookup", args)]
    assert str(total.tool_calls[0]["id"]).startswith("call_")


async def test_stream_usage_honours_include_usage(server: FakeOpenAIServer) -> None:
    total: AIMessageChunk | None = None
    async for chunk in make_llm(server, stream_usage=True).astream("count me"):
        total = chunk if total is None else total + chunk
    assert total is not None and total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == len("echo: count me") // 4 + 1
    assert server.requests[0]["stream_options"] == {"include_usage": True}

    plain: AIMessageChunk | None = None
    async for chunk in make_llm(server, stream_usage=False).astream("no usage"):
        plain = chunk if plain is None else plain + chunk
    assert plain is not None and plain.usage_metadata is None


async def test_structured_output_json_schema(server: FakeOpenAIServer) -> None:
    scripted = '{"city":"Lisbon","celsius":21.5,"sunny":true,"kind":"sun","tags":["warm"]}'
    server.script(scripted)
    llm = make_llm(server).with_structured_output(Weather, method="json_schema")
    assert await llm.ainvoke("weather?") == Weather.model_validate_json(scripted)
    unscripted = await llm.ainvoke("weather again?")
    assert unscripted == Weather(city="x", celsius=0.5, sunny=False, kind="rain", tags=[])
    assert server.requests[0]["response_format"]["type"] == "json_schema"


async def test_structured_output_function_calling(server: FakeOpenAIServer) -> None:
    llm = make_llm(server).with_structured_output(Lookup, method="function_calling")
    server.script(ToolCall("Lookup", {"order_id": "B-2"}))
    assert await llm.ainvoke("find B-2") == Lookup(order_id="B-2")
    assert await llm.ainvoke("anything") == Lookup(order_id="x")


async def test_fail_next_is_retried(server: FakeOpenAIServer) -> None:
    server.fail_next(1, 500)
    result = await make_llm(server, max_retries=2).ainvoke("retry me")
    assert result.content == "echo: retry me"
    assert len(server.requests) == 2


async def test_scripted_error_surfaces(server: FakeOpenAIServer) -> None:
    server.script(Error(status=429, message="slow down", type="requests"))
    with pytest.raises(openai.RateLimitError, match="slow down"):
        await make_llm(server).ainvoke("hi")


async def test_wrong_api_key_is_rejected(server: FakeOpenAIServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        await make_llm(server, api_key="sk-wrong").ainvoke("hi")
    assert server.requests == []


async def test_hold_release_with_concurrent_requests(server: FakeOpenAIServer) -> None:
    llm = make_llm(server)
    server.hold()
    first = asyncio.create_task(llm.ainvoke("first"))
    second = asyncio.create_task(llm.ainvoke("second"))
    await asyncio.to_thread(server.wait_for_requests, 2, 5.0)
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    assert server.waiting == 2
    server.release()
    results = await asyncio.gather(first, second)
    assert sorted(str(r.content) for r in results) == ["echo: first", "echo: second"]


def test_wait_for_requests_times_out(server: FakeOpenAIServer) -> None:
    with pytest.raises(AssertionError, match="expected 1 chat requests"):
        server.wait_for_requests(1, timeout=0.05)


def test_client_gone_while_held_consumes_no_script(server: FakeOpenAIServer) -> None:
    """A killed worker's in-flight call must not eat the reply meant for its retry."""
    server.script("kept for the retry")
    server.hold()
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))) as s:
        s.sendall(head + body)
        server.wait_for_requests(1)
    deadline = time.monotonic() + 2
    while server.waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    server.release()
    assert make_llm(server).invoke("retry").content == "kept for the retry"


async def test_delay_does_not_serialise_requests(server: FakeOpenAIServer) -> None:
    server.delay = 0.2
    llm = make_llm(server)
    started = time.monotonic()
    await asyncio.gather(*(llm.ainvoke(f"q{i}") for i in range(4)))
    assert 0.2 <= time.monotonic() - started < 0.7  # serial would be 0.8


async def test_embeddings_are_deterministic_unit_vectors(server: FakeOpenAIServer) -> None:
    def embedder(**kwargs: Any) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(  # type: ignore[call-arg]  # pydantic aliases
            base_url=server.base_url + "/v1",
            api_key="sk-test",
            check_embedding_ctx_length=False,
            **kwargs,
        )

    vectors = embedder().embed_documents(["hola", "hola", "adiós"])
    assert [len(v) for v in vectors] == [1536, 1536, 1536]
    assert vectors[0] == vectors[1] != vectors[2]
    assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
    small = await embedder(model="text-embedding-3-small", dimensions=64).aembed_query("hola")
    assert len(small) == 64
    assert server.embedding_requests[-1]["dimensions"] == 64
