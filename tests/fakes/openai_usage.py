"""Token usage the way OpenAI reports it: o200k counts and automatic prompt caching.

Why: a cost figure is only as good as the `usage` the model reports. The fake's default
usage is a characters/4 estimate over message texts, with `cached_tokens` always 0: it
leaves out the tool schemas and per-message framing a real prompt carries, and it can
never show what prompt caching saves. `FakeOpenAIServer(usage_mode="openai")` uses
what is here instead.

**Prompt caching**, as OpenAI describes it ("Prompt Caching in the API",
https://openai.com/index/api-prompt-caching/, and the guide at
https://developers.openai.com/api/docs/guides/prompt-caching): automatic for prompts of
1,024 tokens or more; "the API caches the longest prefix of a prompt that has been
previously computed, starting at 1,024 tokens and increasing in 128-token increments";
reported as `usage.prompt_tokens_details.cached_tokens`; "caches are typically cleared
after 5-10 minutes of inactivity". Here a prefix stays for `CACHE_TTL_SECONDS` = 300 s
after its last use: the low end of that range, so savings are never overstated. Every
request is remembered as a prefix for later ones, whoever sent it (one organisation).

**What is tokenized.** OpenAI does not publish how a chat request is laid out before
tokenization; this follows the layout OpenAI published for its open models (the harmony
format, https://github.com/openai/openai-cookbook/blob/main/articles/openai-harmony.md):
each message is `<|start|>{role}<|message|>{content}<|end|>`; function tools are a
TypeScript-like `namespace functions { ... }` block placed after the first system
message's text ("# Instructions ... # Tools"), so a system prompt that changes between
requests also changes the cached prefix of the tools after it; a structured-output
schema comes first ("the structured output schema serves as a prefix to the system
message", the guide above). A reply is primed with `<|start|>assistant<|message|>`. That
gives OpenAI's cookbook count of 3 tokens per message plus the role, and 3 per reply
(https://github.com/openai/openai-cookbook/blob/main/examples/How_to_count_tokens_with_tiktoken.ipynb).
Tool-call ids are left out (they are metadata, and unique per run anyway).

**Tokenizer**: tiktoken's `o200k_base` (gpt-4o, gpt-4o-mini), from the rank file the
`bpe-openai` package bundles, since tiktoken cannot download it here: the file is put
where tiktoken's own cache would hold it (`<cache dir>/<sha1 of its URL>`), so tiktoken
still checks its SHA-256 (the trick /work/shared/STACK.md describes). Without it, every
4 characters count as one token (the fake's old estimate), for counts and prefixes alike.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken

from tests.fakes.openai_stream import JSON, Reply, content_text

CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT = 128
CACHE_TTL_SECONDS = 300.0
# harmony's <|start|>, <|end|> and <|message|> (o200k_harmony ids, outside o200k_base's).
START, END, MESSAGE = 200006, 200007, 200008
_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
_FALLBACK_CHARS = 4


class Tokenizer:
    """o200k_base token ids, or (no encoding) one pseudo-token per 4 characters."""

    def __init__(self, encoding: tiktoken.Encoding | None) -> None:
        self.encoding = encoding

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    def encode(self, text: str) -> list[int]:
        if self.encoding is not None:
            return self.encoding.encode(text, disallowed_special=())
        pieces = range(0, len(text), _FALLBACK_CHARS)
        return [hash(text[i : i + _FALLBACK_CHARS]) for i in pieces]


def _tiktoken_cache_dir() -> Path | None:
    """Where tiktoken looks for cached files (tiktoken/load.py); None: caching is off."""
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            return Path(os.environ[name]) if os.environ[name] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def o200k_encoding() -> tiktoken.Encoding | None:
    """tiktoken's o200k_base built from bpe-openai's bundled copy; None when absent."""
    spec = importlib.util.find_spec("bpe_openai")  # found, not imported: its import is heavy
    cache_dir = _tiktoken_cache_dir()
    if spec is None or not spec.submodule_search_locations or cache_dir is None:
        return None
    bundled = Path(next(iter(spec.submodule_search_locations))) / "data" / "o200k_base.tiktoken.gz"
    target = cache_dir / hashlib.sha1(_O200K_URL.encode()).hexdigest()
    try:
        if not target.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(gzip.decompress(bundled.read_bytes()))
            partial.replace(target)  # atomic: another process may be doing the same
        return tiktoken.get_encoding("o200k_base")
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """One per process: loading the 200k-token vocabulary takes about a second."""
    return Tokenizer(o200k_encoding())


# --- the prompt as the model sees it -------------------------------------------------


def _ts_type(schema: JSON, root: JSON) -> str:
    """A JSON schema as the TypeScript-like type harmony writes for a parameter."""
    if "$ref" in schema:
        node: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return _ts_type(node if isinstance(node, dict) else {}, root)
    if "enum" in schema:
        return " | ".join(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return " | ".join(_ts_type(variant, root) for variant in variants)
    kind = schema.get("type", "object" if "properties" in schema else "any")
    if kind == "array":
        return f"{_ts_type(schema.get('items') or {}, root)}[]"
    if kind == "object" and schema.get("properties"):
        return "{\n" + _ts_fields(schema, root) + "}"
    return {"integer": "number", "object": "object"}.get(str(kind), str(kind))


def _ts_fields(schema: JSON, root: JSON) -> str:
    required = set(schema.get("required") or [])
    lines = []
    for name, prop in (schema.get("properties") or {}).items():
        if prop.get("description"):
            lines.append(f"// {prop['description']}\n")
        default = prop.get("default")
        shown = default if isinstance(default, str) else json.dumps(default)
        note = "" if default is None else f" // default: {shown}"
        optional = "" if name in required else "?"
        lines.append(f"{name}{optional}: {_ts_type(prop, root)},{note}\n")
    return "".join(lines)


def render_tools(tools: Sequence[JSON]) -> str:
    """Function tools as harmony's `namespace functions` block."""
    parts = ["# Tools\n\n## functions\n\nnamespace functions {\n\n"]
    for tool in tools:
        function = tool.get("function") or {}
        if function.get("description"):
            parts.append(f"// {function['description']}\n")
        parameters = function.get("parameters") or {}
        if parameters.get("properties"):
            fields = _ts_fields(parameters, parameters)
            parts.append(f"type {function.get('name')} = (_: {{\n{fields}}}) => any;\n\n")
        else:
            parts.append(f"type {function.get('name')} = () => any;\n\n")
    parts.append("} // namespace functions")
    return "".join(parts)


def _response_format(body: JSON) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        return ""
    spec = fmt.get("json_schema") or {}
    schema = json.dumps(spec.get("schema") or {}, separators=(",", ":"), ensure_ascii=False)
    return f"# Response Formats\n\n## {spec.get('name', 'response')}\n\n{schema}"


def _message(tokenizer: Tokenizer, header: str, content: str) -> list[int]:
    return [START, *tokenizer.encode(header), MESSAGE, *tokenizer.encode(content), END]


def _assistant(tokenizer: Tokenizer, message: JSON) -> list[int]:
    tokens: list[int] = []
    text = content_text(message.get("content"))
    if text or not message.get("tool_calls"):
        tokens += _message(tokenizer, "assistant", text)
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        header = f"assistant to=functions.{function.get('name')}"
        tokens += _message(tokenizer, header, str(function.get("arguments") or ""))
    return tokens


def prompt_token_ids(body: JSON, tokenizer: Tokenizer) -> list[int]:
    """The request's prompt as one token sequence: what is counted and what is cached."""
    messages: list[JSON] = list(body.get("messages") or [])
    tools = render_tools(body["tools"]) if body.get("tools") else ""
    tokens: list[int] = []
    if schema := _response_format(body):
        tokens += _message(tokenizer, "developer", schema)
    if tools and not (messages and messages[0].get("role") in ("system", "developer")):
        tokens += _message(tokenizer, "developer", tools)
        tools = ""
    names: dict[str, str] = {}  # tool_call_id → function name, for tool results
    for message in messages:
        role = str(message.get("role") or "user")
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                names[str(call.get("id"))] = str((call.get("function") or {}).get("name"))
            tokens += _assistant(tokenizer, message)
            continue
        text = content_text(message.get("content"))
        if role == "tool":
            header = f"functions.{names.get(str(message.get('tool_call_id')), 'tool')}"
        else:
            header = role + (f":{message['name']}" if message.get("name") else "")
        if tools:  # the first message is the system prompt: the tools follow its text
            text, tools = f"# Instructions\n\n{text}\n\n{tools}", ""
        tokens += _message(tokenizer, header, text)
    return [*tokens, START, *tokenizer.encode("assistant"), MESSAGE]


def completion_token_count(reply: Reply, tokenizer: Tokenizer) -> int:
    """Tokens the model wrote: the text, or each call's recipient and JSON arguments."""
    if isinstance(reply, str):
        return len(tokenizer.encode(reply)) + 1  # and <|end|>
    return sum(
        len(tokenizer.encode(f" to=functions.{call.name} json"))
        + len(tokenizer.encode(json.dumps(call.arguments)))
        + 1  # <|call|>
        for call in reply
    )


# --- the cache -----------------------------------------------------------------------


class PromptCache:
    """Prefixes of recent prompts, shared by every request the server answers.

    `lookup(tokens)` returns how many leading tokens were cached (0, or 1,024 + k x 128)
    and then remembers `tokens` for later requests. A prefix expires `ttl_seconds` after
    its last use; `clock` is injectable so a test can make time pass.
    """

    def __init__(
        self,
        ttl_seconds: float = CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 4096,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        # keyed by the first 1,024 tokens: prompts that differ there share nothing cacheable
        self._entries: dict[tuple[int, ...], list[_Entry]] = {}

    def lookup(self, tokens: Sequence[int]) -> int:
        if len(tokens) < CACHE_MIN_TOKENS:
            return 0
        tokens = tuple(tokens)  # compared block by block with the tuples kept below
        key = tokens[:CACHE_MIN_TOKENS]
        with self._lock:
            now = self.clock()
            live = [e for e in self._entries.get(key, []) if now - e.used_at <= self.ttl_seconds]
            best: _Entry | None = None
            blocks = 0
            for entry in live:
                shared = _shared_blocks(entry.tokens, tokens)
                if shared > blocks:
                    best, blocks = entry, shared
            if best is not None:
                best.used_at = now
            live.append(_Entry(tokens, now))
            self._entries[key] = live
            self._evict()
        cached = blocks * CACHE_INCREMENT
        return cached if cached >= CACHE_MIN_TOKENS else 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _evict(self) -> None:
        """Keep at most `max_entries` prefixes, dropping the least recently used."""
        count = sum(len(group) for group in self._entries.values())
        if count <= self.max_entries:
            return
        ordered = sorted(e.used_at for group in self._entries.values() for e in group)
        cutoff = ordered[count - self.max_entries - 1]
        for key in list(self._entries):
            kept = [e for e in self._entries[key] if e.used_at > cutoff]
            if kept:
                self._entries[key] = kept
            else:
                del self._entries[key]


class _Entry:
    __slots__ = ("tokens", "used_at")

    def __init__(self, tokens: tuple[int, ...], used_at: float) -> None:
        self.tokens = tokens
        self.used_at = used_at


def _shared_blocks(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """Whole 128-token blocks both sequences start with."""
    blocks = 0
    limit = min(len(cached), len(tokens)) // CACHE_INCREMENT
    while blocks < limit:
        start, stop = blocks * CACHE_INCREMENT, (blocks + 1) * CACHE_INCREMENT
        if cached[start:stop] != tokens[start:stop]:
            break
        blocks += 1
    return blocks


def openai_usage(body: JSON, reply: Reply, tokenizer: Tokenizer, cache: PromptCache) -> JSON:
    """The `usage` object OpenAI would report for this request and reply."""
    tokens = prompt_token_ids(body, tokenizer)
    prompt, completion = len(tokens), completion_token_count(reply, tokenizer)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache.lookup(tokens), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
