"""Wire-format builders for the fake OpenAI server (tests/fakes/openai_server.py).

Kept separate from the HTTP plumbing so that the shapes the real `openai` SDK and
`langchain_openai` parse (completions, SSE chunks, errors, embeddings) live in one place
and can be read against OpenAI's API reference without the threading noise around them.
Everything here is pure: request dict in, response dict / bytes out.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import random
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any]

FINGERPRINT = "fp_fake_openai"
DEFAULT_EMBEDDING_DIM = 1536
_ARGUMENT_FRAGMENT = 12  # chars per streamed tool-argument delta: several deltas per call
_SCALARS: dict[str, Any] = {
    "string": "x",
    "number": 0.5,
    "integer": 0,
    "boolean": False,
    "null": None,
}


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake model should emit; `id` is generated when None."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Error:
    """An HTTP error the fake model should answer with, in OpenAI's error shape."""

    status: int = 500
    message: str = "The fake server had an error while processing your request."
    type: str | None = None  # None: derived from status like OpenAI does
    code: str | None = None


Reply: TypeAlias = str | list[ToolCall]
Scripted: TypeAlias = str | list[ToolCall] | Error
# Answers a chat request from its body when nothing is scripted; None: the default reply.
Responder: TypeAlias = Callable[[JSON], Scripted | None]


@dataclass(frozen=True)
class Exchange:
    """One chat request answered (not failed): what came in, what went out, and the usage
    reported with it, streamed or not."""

    body: JSON
    reply: Reply
    usage: JSON
    streamed: bool


def error_body(err: Error) -> JSON:
    """OpenAI's `{"error": {...}}` envelope, which the SDK turns into typed exceptions."""
    kind = err.type or ("server_error" if err.status >= 500 else "invalid_request_error")
    return {"error": {"message": err.message, "type": kind, "param": None, "code": err.code}}


def content_text(content: Any) -> str:
    """Text of a message `content`, which is a str or a list of typed parts (text, image…)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and "text" in p]
        return " ".join(parts)
    return ""


# The service's own user-role notes (the profile-name note of nodes/specialists.py) are
# context for the model, not the customer's words; echoing them would only add noise.
SERVICE_NOTE = "[Context, not a request:"


def echo_text(messages: Sequence[JSON]) -> str:
    """Default reply: the customer's texts of the current turn, so tests see what the
    model saw of them."""
    turn: list[str] = []
    for message in messages:
        if message.get("role") == "assistant":
            turn = []
        elif message.get("role") == "user":
            text = content_text(message.get("content"))
            if not text.startswith(SERVICE_NOTE):
                turn.append(text)
    return "echo: " + " | ".join(turn)


def _resolve_ref(root: JSON, ref: str) -> JSON:
    node: Any = root
    for part in ref.removeprefix("#").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node if isinstance(node, dict) else {}


def _schema_type(schema: JSON) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else "string"


def sample_schema(schema: JSON, root: JSON | None = None, depth: int = 0) -> Any:
    """Smallest value that validates against a simple JSON schema.

    Lets `with_structured_output` work unscripted: required properties are filled with
    fixed placeholders, optional ones omitted, and recursion bottoms out on `null`.
    """
    root = schema if root is None else root
    if "$ref" in schema:
        return sample_schema(_resolve_ref(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    variants = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if variants:
        nullable = [v for v in variants if v.get("type") == "null"]
        if nullable and depth > 6:
            return None
        chosen = next((v for v in variants if v.get("type") != "null"), variants[0])
        return sample_schema(chosen, root, depth + 1)
    kind = _schema_type(schema)
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", [])
        return {name: sample_schema(props.get(name, {}), root, depth + 1) for name in required}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [sample_schema(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    return _SCALARS.get(kind, "x")


def _forced_tool(body: JSON) -> JSON | None:
    """The tool definition the request forces (`tool_choice` named or "required")."""
    tools: list[JSON] = [
        t.get("function", {}) for t in body.get("tools") or [] if t.get("type") == "function"
    ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name")
        return next((t for t in tools if t.get("name") == name), None)
    if choice == "required" and tools:
        return tools[0]
    return None


def default_reply(body: JSON) -> Reply:
    """What the model says when nothing is scripted: echo, or a schema-valid structure."""
    forced = _forced_tool(body)
    if forced is not None:
        args = sample_schema(forced.get("parameters") or {"type": "object"})
        return [ToolCall(forced["name"], args if isinstance(args, dict) else {})]
    echo = echo_text(body.get("messages") or [])
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(sample_schema(fmt.get("json_schema", {}).get("schema") or {}))
    if fmt.get("type") == "json_object":
        return json.dumps({"echo": echo})
    return echo


def _wire_tool_calls(calls: list[ToolCall], seq: int) -> list[JSON]:
    return [
        {
            "id": call.id or f"call_fake{seq}_{index}",
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for index, call in enumerate(calls)
    ]


def _usage(body: JSON, reply: Reply) -> JSON:
    """Token estimate (~4 chars/token) so callbacks and budgets see plausible numbers."""
    prompt_chars = sum(len(content_text(m.get("content"))) for m in body.get("messages") or [])
    if isinstance(reply, str):
        completion_chars = len(reply)
    else:
        completion_chars = sum(len(c.name) + len(json.dumps(c.arguments)) for c in reply)
    prompt, completion = prompt_chars // 4 + 1, completion_chars // 4 + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _envelope(body: JSON, seq: int, obj: str) -> JSON:
    return {
        "id": f"chatcmpl-fake{seq}",
        "object": obj,
        "created": int(time.time()),
        "model": body.get("model") or "gpt-fake",
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def completion_body(body: JSON, reply: Reply, seq: int, usage: JSON | None = None) -> JSON:
    """A non-streamed `chat.completion` object, usage included as OpenAI always does
    (`usage`: the caller's figures, else the ~4 characters/token estimate)."""
    message: JSON = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    if isinstance(reply, str):
        message["content"] = reply
        finish = "stop"
    else:
        message["tool_calls"] = _wire_tool_calls(reply, seq)
        finish = "tool_calls"
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {
        **_envelope(body, seq, "chat.completion"),
        "choices": [choice],
        "usage": usage or _usage(body, reply),
    }


def _text_deltas(text: str) -> list[JSON]:
    """Content deltas split after each space, so streaming consumers see several pieces."""
    return [{"content": piece} for piece in re.split(r"(?<= )", text) if piece]


def _tool_deltas(calls: list[ToolCall], seq: int) -> list[JSON]:
    """First delta per call carries id/name, the following ones argument fragments."""
    deltas: list[JSON] = []
    for index, wire in enumerate(_wire_tool_calls(calls, seq)):
        function = {"name": wire["function"]["name"], "arguments": ""}
        head = {"index": index, "id": wire["id"], "type": "function", "function": function}
        deltas.append({"tool_calls": [head]})
        args = wire["function"]["arguments"]
        for start in range(0, len(args), _ARGUMENT_FRAGMENT):
            fragment = {"arguments": args[start : start + _ARGUMENT_FRAGMENT]}
            deltas.append({"tool_calls": [{"index": index, "function": fragment}]})
    return deltas


def _sse(data: JSON | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def stream_events(body: JSON, reply: Reply, seq: int, usage: JSON | None = None) -> list[bytes]:
    """The SSE events of a streamed reply, ending with a usage chunk (if asked) and [DONE];
    `usage` as in `completion_body`."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = _envelope(body, seq, "chat.completion.chunk")
    if include_usage:
        base["usage"] = None

    def chunk(delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    if isinstance(reply, str):
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk(delta) for delta in _text_deltas(reply)]
        events.append(chunk({}, "stop"))
    else:
        deltas = _tool_deltas(reply, seq)
        if deltas:
            deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
        events = [chunk(delta) for delta in deltas] + [chunk({}, "tool_calls")]
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": usage or _usage(body, reply)}))
    events.append(_sse("[DONE]"))
    return events


@functools.lru_cache(maxsize=4096)
def _vector(key: str, dim: int) -> tuple[float, ...]:
    """Hash-seeded unit vector: identical text → identical vector, across processes too."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return tuple(x / norm for x in raw)


def _embedding_inputs(value: Any) -> list[str]:
    """Normalise `input` (str, [str], tokens [int], [[int]]) to one hashable key each."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and isinstance(value[0], int):
        return [json.dumps(value)]
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return [json.dumps(value)]


def embeddings_body(body: JSON) -> JSON:
    """`POST /v1/embeddings` answer; base64 float32 when asked (the SDK's default)."""
    dim = int(body.get("dimensions") or DEFAULT_EMBEDDING_DIM)
    as_base64 = body.get("encoding_format") == "base64"
    data: list[JSON] = []
    total_chars = 0
    for index, key in enumerate(_embedding_inputs(body.get("input"))):
        vector = _vector(key, dim)
        total_chars += len(key)
        embedding: Any = list(vector)
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = total_chars // 4 + 1
    return {
        "object": "list",
        "data": data,
        "model": body.get("model") or "text-embedding-fake",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
