"""deep_research: a question answered from several sources, with citations.

Two ways, same tool for the model:

- Perplexity's sonar models (OpenAI-compatible chat completions that search the web
  themselves and return `citations` / `search_results`), through langchain-perplexity.
- Without Perplexity but with Tavily, a composed chain: search, extract the top pages
  with Tavily's extract API, then the chat model writes the answer from those pages only,
  citing them by number. This is what makes tool composition real: one tool built from
  another tool's parts and the agents' own model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from pydantic import Field

from tools.common import ToolArgs
from tools.reporting import failing_tool
from tools.web import WebResult, WebSearcher

DEEP_RESEARCH = "deep_research"

_DESCRIPTION = (
    "An answer from several web sources, with citations. Slow: only when web_search "
    "does not settle it."
)
_RESEARCH_PROMPT = (
    "You research questions for a customer-service agent. Answer factually and briefly "
    "(at most 8 sentences), cite sources as [n], and say plainly when sources disagree or "
    "do not answer the question."
)
_SYNTHESIS_PROMPT = (
    "Answer the question using only the numbered sources below. Cite them as [n]. If they "
    "do not answer it, say so. At most 8 sentences.\n\n{sources}"
)


class ResearchArgs(ToolArgs):
    question: str = Field(min_length=3, max_length=1000)


def with_sources(answer: str, sources: Sequence[tuple[str, str]]) -> str:
    """The answer followed by its numbered sources (title, url)."""
    if not sources:
        return answer
    listed = "\n".join(f"[{n}] {title} — {url}" for n, (title, url) in enumerate(sources, 1))
    return f"{answer}\n\nSources:\n{listed}"


def perplexity_sources(message: AIMessage) -> list[tuple[str, str]]:
    """(title, url) from Perplexity's `search_results`, else its bare `citations`."""
    extra: Mapping[str, Any] = message.additional_kwargs
    results = extra.get("search_results") or []
    if results:
        return [
            (str(_field(r, "title") or _field(r, "url")), str(_field(r, "url")))
            for r in results
            if _field(r, "url")
        ]
    return [(str(url), str(url)) for url in extra.get("citations") or []]


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def make_perplexity_research_tool(model: BaseChatModel) -> BaseTool:
    """`model`: a ChatPerplexity (or any chat model returning Perplexity's citations)."""

    async def deep_research(question: str) -> str:
        response = await model.ainvoke(
            [SystemMessage(content=_RESEARCH_PROMPT), HumanMessage(content=question)]
        )
        if not isinstance(response, AIMessage):
            raise TypeError("the research model returned no message")
        return with_sources(response.text.strip(), perplexity_sources(response))

    return failing_tool(
        deep_research, name=DEEP_RESEARCH, description=_DESCRIPTION, args_schema=ResearchArgs
    )


def make_composed_research_tool(
    searcher: WebSearcher,
    model: BaseChatModel,
    *,
    pages: int = 3,
    chars_per_page: int = 3000,
) -> BaseTool:
    """Search → extract the top `pages` → the chat model answers from them, citing."""

    async def deep_research(question: str) -> str:
        found = await searcher.search(question, max_results=max(pages * 2, 5))
        if not found:
            return f'Nothing was found on the web about "{question}". Say so.'
        top = found[:pages]
        texts = await searcher.extract([r.url for r in top], chars_per_page)
        sources = _numbered_sources(top, texts)
        prompt = _SYNTHESIS_PROMPT.format(sources=sources)
        response = await model.ainvoke(
            [SystemMessage(content=prompt), HumanMessage(content=question)]
        )
        answer = response.text.strip() if isinstance(response, AIMessage) else ""
        if not answer:
            raise ValueError("the model wrote no answer")
        return with_sources(answer, [(r.title, r.url) for r in top])

    return failing_tool(
        deep_research, name=DEEP_RESEARCH, description=_DESCRIPTION, args_schema=ResearchArgs
    )


def _numbered_sources(results: Sequence[WebResult], texts: Mapping[str, str]) -> str:
    """Each page's extracted text, or its search snippet when it could not be fetched."""
    return "\n\n".join(
        f"[{n}] {r.title} ({r.url})\n{texts.get(r.url) or r.content}"
        for n, r in enumerate(results, 1)
    )
