"""The tool registry, built from settings: which tools exist, with which limits.

The one place the tool platform meets configuration (tools/ never reads settings):
the business tools (graph/composition/toolbox.py), web search and deep research when Tavily or
Perplexity is configured, the code interpreter, tools published by installed packages
(`wa_agent.tools` entry points) and MCP servers (`WA_AGENT_MCP_SERVERS`). Each optional
tool also has a feature flag, checked per customer at every turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_perplexity import ChatPerplexity
from perplexity import AsyncPerplexity
from tavily import AsyncTavilyClient

from graph.composition.toolbox import open_business_tools
from graph.infra.database import Pool
from graph.privacy import mask_record
from graph.settings import Settings
from tools.limits import RateLimit, RateLimiter
from tools.mcp import open_mcp_tools
from tools.monitoring import ExecutionRecorder
from tools.registry import ToolDeclaration, ToolRegistry
from tools.research import (
    DEEP_RESEARCH,
    make_composed_research_tool,
    make_perplexity_research_tool,
)
from tools.sandbox import SandboxLimits, make_code_interpreter_tool
from tools.web import WEB_SEARCH, WebSearcher, make_web_search_tool

log = structlog.get_logger(__name__)

CODE_INTERPRETER = "code_interpreter"


@asynccontextmanager
async def open_tool_registry(
    pool: Pool,
    database_url: str,
    settings: Settings,
    model: BaseChatModel | None,
    *,
    limiter: RateLimiter | None = None,
) -> AsyncIterator[ToolRegistry]:
    """Every tool of this deployment, declared once; the execution recorder and the
    clients (Tavily, Perplexity, MCP sessions) are closed on exit."""
    recorder = ExecutionRecorder(pool, mask_record)
    overrides = {name: o.changes() for name, o in settings.tool_overrides.items()}
    registry = ToolRegistry(limiter=limiter, recorder=recorder, overrides=overrides)
    async with AsyncExitStack() as stack:
        business = await stack.enter_async_context(
            open_business_tools(pool, database_url, settings)
        )
        registry.declare_all(
            ToolDeclaration.of(tool, timeout_seconds=settings.tool_timeout_seconds)
            for tool in business.values()
        )
        searcher = await stack.enter_async_context(_tavily(settings))
        research_model = await stack.enter_async_context(_perplexity(settings))
        registry.declare_all(_web_declarations(settings, searcher, research_model, model))
        registry.declare_all(_code_interpreter(settings))
        if settings.tool_entry_points:
            registry.load_entry_points()
        mcp = await stack.enter_async_context(open_mcp_tools(settings.mcp_servers))
        registry.declare_all(mcp)
        recorder.start()
        stack.push_async_callback(recorder.aclose)
        log.info("tools.ready", tools=sorted(registry.tools))
        yield registry


@asynccontextmanager
async def _tavily(settings: Settings) -> AsyncIterator[WebSearcher | None]:
    if settings.tavily_api_key is None:
        log.warning(
            "web_search.disabled",
            reason="TAVILY_API_KEY is not set",
            behaviour="no web_search tool; deep_research only with PERPLEXITY_API_KEY",
        )
        yield None
        return
    client = AsyncTavilyClient(
        api_key=settings.tavily_api_key.get_secret_value(),
        api_base_url=settings.tavily_base_url,
    )
    try:
        yield WebSearcher(
            client,
            max_results=settings.web_search_max_results,
            timeout_seconds=settings.web_search_timeout_seconds,
        )
    finally:
        await client.close()


@asynccontextmanager
async def _perplexity(settings: Settings) -> AsyncIterator[BaseChatModel | None]:
    if settings.perplexity_api_key is None:
        yield None
        return
    key = settings.perplexity_api_key.get_secret_value()
    client = AsyncPerplexity(
        api_key=key,
        base_url=settings.perplexity_base_url,
        timeout=settings.research_timeout_seconds,
        max_retries=2,
    )
    try:
        yield ChatPerplexity(
            model=settings.research_model,
            api_key=key,
            async_client=client,
            temperature=0.2,
            max_retries=2,
        )
    finally:
        await client.close()


def _web_declarations(
    settings: Settings,
    searcher: WebSearcher | None,
    research_model: BaseChatModel | None,
    model: BaseChatModel | None,
) -> Iterator[ToolDeclaration]:
    if searcher is not None:
        yield ToolDeclaration(
            name=WEB_SEARCH,
            factory=lambda: make_web_search_tool(searcher),
            description="Tavily web search",
            timeout_seconds=settings.web_search_timeout_seconds * 2,
            per_user_limit=RateLimit(30, 3600),
            global_limit=RateLimit(300, 60),
            flag=WEB_SEARCH,
        )
    research = None
    if research_model is not None:
        research = lambda: make_perplexity_research_tool(research_model)  # noqa: E731
        how = "Perplexity"
    elif searcher is not None and model is not None:
        research = lambda: make_composed_research_tool(searcher, model)  # noqa: E731
        how = "Tavily search + extract, synthesised by the chat model"
    if research is None:
        log.warning(
            "deep_research.disabled",
            reason="neither PERPLEXITY_API_KEY nor TAVILY_API_KEY (with a chat model) is set",
        )
        return
    yield ToolDeclaration(
        name=DEEP_RESEARCH,
        factory=research,
        description=f"Deep research ({how})",
        timeout_seconds=settings.research_timeout_seconds * 1.5,
        per_user_limit=RateLimit(5, 3600),
        global_limit=RateLimit(60, 60),
        flag=DEEP_RESEARCH,
    )


def _code_interpreter(settings: Settings) -> Iterator[ToolDeclaration]:
    """The sandboxed interpreter (tools/sandbox.py), offered only where the customer's
    `code_interpreter` flag is on; not built at all when the flag is forced off."""
    if f"-{CODE_INTERPRETER}" in settings.flags:
        return
    limits = sandbox_limits(settings)
    yield ToolDeclaration(
        name=CODE_INTERPRETER,
        factory=lambda: make_code_interpreter_tool(limits),
        description="Python in a bubblewrap sandbox",
        timeout_seconds=limits.wall_seconds + 5,
        per_user_limit=RateLimit(20, 3600),
        flag=CODE_INTERPRETER,
    )


def sandbox_limits(settings: Settings) -> SandboxLimits:
    """The code interpreter's limits, from the settings (tools never read them)."""
    return SandboxLimits(
        wall_seconds=settings.sandbox_wall_seconds,
        cpu_seconds=settings.sandbox_cpu_seconds,
        memory_bytes=settings.sandbox_memory_mb * 1024 * 1024,
        max_processes=settings.sandbox_max_processes,
        max_output_chars=settings.sandbox_output_chars,
        cpu_cores=settings.sandbox_cpu_cores,
        max_concurrent_runs=settings.sandbox_concurrency,
        cgroup=settings.sandbox_cgroup,
        python=settings.sandbox_python,
    )
