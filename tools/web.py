"""web_search: Tavily, trimmed to what the model needs, with numbered sources.

The model reads a handful of results (title, URL, a short extract) instead of Tavily's
whole answer, which keeps a search at a few hundred tokens, and it is told to cite the
numbers so the customer can check. The client is built by the caller (key and base URL
from settings); calls have a timeout and bounded retries on network errors and 5xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import tavily
from langchain_core.tools import BaseTool
from pydantic import Field
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from tools.common import ToolArgs
from tools.reporting import failing_tool

T = TypeVar("T")

WEB_SEARCH = "web_search"


@dataclass(frozen=True)
class WebResult:
    title: str
    url: str
    content: str


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError | tavily.TimeoutError)


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int) -> T:
    """Run `call`, again on network errors and 5xx, at most `attempts` times."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception(_retryable),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")


class WebSearcher:
    """Tavily search and extract with this deployment's limits; shared by both tools."""

    def __init__(
        self,
        client: tavily.AsyncTavilyClient,
        *,
        max_results: int = 5,
        timeout_seconds: float = 15.0,
        max_attempts: int = 3,
        content_chars: int = 400,
    ) -> None:
        self.client = client
        self.max_results = max_results
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.content_chars = content_chars

    async def search(self, query: str, max_results: int | None = None) -> list[WebResult]:
        response: Mapping[str, Any] = await with_retries(
            lambda: self.client.search(
                query,
                max_results=max_results or self.max_results,
                search_depth="basic",
                timeout=self.timeout_seconds,
            ),
            self.max_attempts,
        )
        return [
            WebResult(
                title=_clean(str(item.get("title") or item.get("url", "")), 120),
                url=str(item.get("url", "")),
                content=_clean(str(item.get("content") or ""), self.content_chars),
            )
            for item in response.get("results", [])
            if item.get("url")
        ]

    async def extract(self, urls: Sequence[str], chars_per_page: int) -> dict[str, str]:
        """The readable text of each page that could be fetched, by URL."""
        response: Mapping[str, Any] = await with_retries(
            lambda: self.client.extract(list(urls), timeout=self.timeout_seconds),
            self.max_attempts,
        )
        return {
            str(item["url"]): _clean(str(item.get("raw_content") or ""), chars_per_page)
            for item in response.get("results", [])
            if item.get("url")
        }


def _clean(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def format_results(query: str, results: Sequence[WebResult]) -> str:
    if not results:
        return f'No web results for "{query}". Say you could not find it online.'
    lines = [f'Web results for "{query}" — cite them as [n] with the URL:']
    for number, result in enumerate(results, 1):
        lines.append(f"[{number}] {result.title} — {result.url}\n    {result.content}")
    return "\n".join(lines)


class WebSearchArgs(ToolArgs):
    query: str = Field(min_length=2, max_length=400)


def make_web_search_tool(searcher: WebSearcher) -> BaseTool:
    async def web_search(query: str) -> str:
        return format_results(query, await searcher.search(query))

    return failing_tool(
        web_search,
        name=WEB_SEARCH,
        description=(
            "The public web, for what our own tools do not hold (compatibility, "
            "specifications, other places): numbered sources to cite."
        ),
        args_schema=WebSearchArgs,
    )
