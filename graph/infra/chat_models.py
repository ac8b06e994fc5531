"""The chat model, from `WA_AGENT_MODEL` through LangChain's `init_chat_model`."""

from __future__ import annotations

from typing import Any

import structlog
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_openai import ChatOpenAI

from graph.context import AgentConfig
from graph.settings import Settings

log = structlog.get_logger(__name__)


def build_chat_model(
    settings: Settings, *, temperature: float | None = None
) -> BaseChatModel | None:
    """The configured model, or None when it cannot work (no key): the graph then
    answers with the rule-based menu, and the log says so once at start."""
    provider = settings.model.split(":", 1)[0] if ":" in settings.model else "openai"
    kwargs: dict[str, Any] = {
        "timeout": settings.model_timeout_seconds,
        "max_retries": settings.model_max_retries,
    }
    if temperature is not None:
        kwargs["temperature"] = temperature
    if provider == "openai":
        if not settings.model_configured:
            log.warning(
                "model.unavailable",
                reason="no OPENAI_API_KEY or OPENAI_BASE_URL",
                behaviour="answering with the rule-based fallback menu",
            )
            return None
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
        kwargs["api_key"] = key
        # A streamed call reports its tokens only when asked (stream_options), and
        # langchain-openai asks by default only of api.openai.com; the daily budget and
        # the console's metering count streamed turns too, whatever the server.
        kwargs["stream_usage"] = True
        if settings.openai_base_url:
            kwargs["base_url"] = settings.openai_base_url
    if provider == "openai" and ":" in settings.model:
        model: BaseChatModel = ChatOpenAIPlainBody(model=settings.model.split(":", 1)[1], **kwargs)
    else:
        model = init_chat_model(settings.model, **kwargs)
    log.info("model.ready", model=settings.model, base_url=settings.openai_base_url)
    return model


class ChatOpenAIPlainBody(ChatOpenAI):
    """ChatOpenAI whose messages and tool schemas skip the openai SDK's request transform.

    Before each request the SDK copies the whole body while checking it against its
    TypedDict annotations (for aliases, dates and file uploads); for chat messages and
    function tools the copy is identical. With 13 tool schemas and a short history that
    walk was the largest client-side cost of a call (2-3 ms of CPU on this machine,
    BENCHMARKS.md, multi-agent turns). Handing both over as `extra_body` sends the same
    JSON without the walk. Structured-output calls (`response_format`) keep the SDK's path.
    """

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "messages" not in payload or "response_format" in payload:
            return payload
        extra = dict(payload.get("extra_body") or {})
        extra["messages"] = payload["messages"]
        if "tools" in payload:
            extra["tools"] = payload.pop("tools")
        payload["messages"] = []  # the SDK's required argument; extra_body's copy wins
        payload["extra_body"] = extra
        return payload


class ChatModels:
    """One chat model per (model id, temperature), built on first use and reused: an
    agent's model settings are data, and the same settings share one client pool."""

    def __init__(self, settings: Settings, default: BaseChatModel) -> None:
        self.settings = settings
        self.default = default
        self._built: dict[tuple[str, float | None], BaseChatModel] = {}

    def for_agent(self, config: AgentConfig) -> BaseChatModel:
        if config.model is None and config.temperature is None:
            return self.default
        key = (config.model or self.settings.model, config.temperature)
        if key not in self._built:
            overrides = self.settings.model_copy(update={"model": key[0]})
            model = build_chat_model(overrides, temperature=config.temperature)
            self._built[key] = model if model is not None else self.default
        return self._built[key]
