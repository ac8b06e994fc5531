"""Tools a business exposes through MCP servers (stdio or streamable HTTP).

Each configured server gets one persistent session (`MultiServerMCPClient.session` +
`load_mcp_tools`), held open by a task of its own: starting a stdio server per call
costs ~700 ms and loses whatever state the server keeps, a kept session answers in
milliseconds. Tool names are prefixed by the server (`shop_order_status`).

Failures stay with their server. A server that cannot start at boot contributes no
tools (logged) and the others load; a server that crashes later makes its own calls
fail with a message to the model, and the next call after `retry_seconds` reconnects.
The session lives inside its keeper task, so a transport's task group failing can only
end that task, never the caller's.

Who a call is for travels beside the model's arguments, never inside them. The model
writes a tool's arguments, and a prompt-injected customer ("my order id is the one of
+250 788 …") can make it write anything there; so every `tools/call` request carries the
run's identity in the MCP request's `_meta` (`IDENTITY_KEYS`: the customer key, the
conversation, the channel), read from the LangGraph run the call belongs to. A server
whose tools are keyed by customer, order or account MUST take the customer from
`_meta` and check every id the arguments name against it, never trust an argument
for it, and refuse such a call when `_meta` carries no customer (a call made outside
a conversation). See docs/mcp.md. `_meta` rather than an HTTP header: it reaches stdio
and streamable-HTTP servers alike, and a kept session's HTTP headers are fixed when it
opens (langchain-mcp-adapters 0.3.2 changes headers per call only by opening a new
session for each), so the calls go through the MCP `ClientSession` itself
(`call_tool(..., meta=...)`), which the adapter's own tools do not expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from langchain_core.tools import BaseTool, ToolException
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.sessions import Connection
from langchain_mcp_adapters.tools import load_mcp_tools
from langgraph.config import get_config
from langgraph.runtime import get_runtime
from mcp import ClientSession
from mcp.types import CallToolResult

from tools.limits import RateLimit
from tools.registry import ToolDeclaration
from tools.reporting import failing_tool
from tools.tool_config import McpServerConfig

log = structlog.get_logger(__name__)

MCP_FLAG = "mcp_tools"

CUSTOMER_KEY = "wa-agent/customer"
CONVERSATION_KEY = "wa-agent/conversation"
CHANNEL_KEY = "wa-agent/channel"
IDENTITY_KEYS = (CUSTOMER_KEY, CONVERSATION_KEY, CHANNEL_KEY)
"""`_meta` keys of every tools/call: the run's customer key (a WhatsApp number or user
id, or `web:<visitor>`), its conversation id and its channel ("whatsapp", "web")."""


class ServerDown(RuntimeError):
    """The server's session is closed and it is too soon to reconnect."""


def connection_of(config: McpServerConfig) -> Connection:
    """The adapter's connection dict for one configured server."""
    session_kwargs = {"read_timeout_seconds": timedelta(seconds=config.timeout_seconds)}
    if config.transport == "stdio":
        assert config.command is not None  # checked by McpServerConfig
        return {
            "transport": "stdio",
            "command": config.command,
            "args": list(config.args),
            "env": config.env,
            "cwd": config.cwd,
            "session_kwargs": session_kwargs,
        }
    assert config.url is not None
    return {
        "transport": "streamable_http",
        "url": config.url,
        "headers": config.headers,
        "timeout": timedelta(seconds=config.timeout_seconds),
        "session_kwargs": session_kwargs,
    }


def run_identity() -> dict[str, str]:
    """The customer, conversation and channel of the LangGraph run this call belongs to
    (its runtime context, else its `configurable`); empty outside a run."""
    try:
        config = get_config()
    except RuntimeError:
        return {}
    configurable = config.get("configurable") or {}
    context = getattr(get_runtime(), "context", None)

    def read(name: str, fallback: Any) -> str:
        value = getattr(context, name, "") or fallback
        return value if isinstance(value, str) else ""

    identity = {
        CUSTOMER_KEY: read("wa_id", configurable.get("wa_id")),
        CONVERSATION_KEY: read("conversation_id", configurable.get("thread_id")),
        CHANNEL_KEY: read("channel", ""),
    }
    if not identity[CUSTOMER_KEY]:
        return {}
    return {key: value for key, value in identity.items() if value}


def result_text(result: CallToolResult) -> str:
    """MCP content blocks as the text the model reads."""
    parts = [
        block.text if block.type == "text" else f"[{block.type}]"
        for block in result.content
        if getattr(block, "type", None)
    ]
    return "\n".join(part for part in parts if part)


class McpServer:
    """One server's session, kept open by a task, reconnected after a failure."""

    def __init__(
        self,
        name: str,
        connection: Connection,
        *,
        start_timeout: float = 20.0,
        retry_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.client = MultiServerMCPClient({name: connection}, tool_name_prefix=True)
        self.start_timeout = start_timeout
        self.retry_seconds = retry_seconds
        self.tools: dict[str, BaseTool] = {}  # the server's tools, by prefixed name
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._down_since: float | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and not self._stop.is_set()

    async def connect(self) -> None:
        """Open the session and load its tools, or raise within `start_timeout`."""
        ready: asyncio.Future[dict[str, BaseTool]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._keep(ready), name=f"mcp-session-{self.name}")
        try:
            async with asyncio.timeout(self.start_timeout):
                self.tools = await asyncio.shield(ready)
        except BaseException:
            await self.aclose()
            self._down_since = time.monotonic()
            raise
        self._down_since = None

    async def _keep(self, ready: asyncio.Future[dict[str, BaseTool]]) -> None:
        try:
            async with self.client.session(self.name) as session:
                tools = await load_mcp_tools(session, server_name=self.name, tool_name_prefix=True)
                self._session = session
                ready.set_result({tool.name: tool for tool in tools})
                await self._stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:  # an ExceptionGroup from the transport's task group
            if not ready.done():
                ready.set_exception(ConnectionError(f"MCP server {self.name}: {exc!r}"))
            log.warning("mcp.session_ended", server=self.name, error=repr(exc)[:300])

    async def call(
        self, tool_name: str, arguments: dict[str, Any], identity: Mapping[str, str]
    ) -> str:
        """Call one tool with the model's `arguments` and the run's `identity` in the
        request's `_meta`, which no argument can reach."""
        session = await self._live_session(tool_name)
        original = tool_name.removeprefix(f"{self.name}_")
        try:
            result = await session.call_tool(original, arguments, meta=dict(identity) or None)
        except Exception:
            self._mark_down()
            raise
        if result.isError:  # the server answered with an error: the session is fine
            raise ToolException(result_text(result) or f"{tool_name} failed")
        return result_text(result)

    async def _live_session(self, tool_name: str) -> ClientSession:
        async with self._lock:
            if not self.alive:
                since = self._down_since or 0.0
                if time.monotonic() - since < self.retry_seconds:
                    raise ServerDown(f"MCP server {self.name} is down")
                log.info("mcp.reconnecting", server=self.name)
                await self.aclose()
                await self.connect()
        if tool_name not in self.tools or self._session is None:
            raise ToolException(f"{tool_name} is no longer offered by {self.name}")
        return self._session

    def _mark_down(self) -> None:
        log.warning("mcp.server_down", server=self.name)
        self._down_since = time.monotonic()
        self._stop.set()

    async def aclose(self) -> None:
        self._stop.set()
        self._session = None
        if self._task is None:
            return
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(self._task)
        except (TimeoutError, Exception):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None

    def declarations(self, config: McpServerConfig) -> list[ToolDeclaration]:
        return [self._declaration(tool, config) for tool in self.tools.values()]

    def _declaration(self, tool: BaseTool, config: McpServerConfig) -> ToolDeclaration:
        name = tool.name

        async def call(**arguments: Any) -> str:
            return await self.call(name, arguments, run_identity())

        proxy = failing_tool(
            call,
            name=name,
            description=f"[{self.name}] {tool.description}",
            args_schema=tool.args_schema or {"type": "object", "properties": {}},
            unavailable=(
                f"The {self.name} service did not answer this call. Do not retry now; tell "
                "the customer it is unavailable at the moment, or hand over to a person."
            ),
        )
        return ToolDeclaration.of(
            proxy,
            timeout_seconds=config.timeout_seconds,
            per_user_limit=_limit(config.per_user_limit),
            global_limit=_limit(config.global_limit),
            agents=frozenset(config.agents) if config.agents is not None else None,
            flag=MCP_FLAG,
            source=f"mcp:{self.name}",
        )


def _limit(text: str | None) -> RateLimit | None:
    return RateLimit.parse(text) if text else None


@asynccontextmanager
async def open_mcp_tools(
    servers: Mapping[str, McpServerConfig], *, retry_seconds: float = 5.0
) -> AsyncIterator[list[ToolDeclaration]]:
    """Connect every configured server at once; those that fail are logged and left
    out. Sessions close on exit."""
    started = [
        McpServer(
            name,
            connection_of(config),
            start_timeout=config.timeout_seconds,
            retry_seconds=retry_seconds,
        )
        for name, config in servers.items()
    ]
    outcomes = await asyncio.gather(*(s.connect() for s in started), return_exceptions=True)
    declarations: list[ToolDeclaration] = []
    for server, outcome in zip(started, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.warning("mcp.unavailable", server=server.name, error=repr(outcome)[:300])
            continue
        declarations.extend(server.declarations(servers[server.name]))
        log.info("mcp.connected", server=server.name, tools=sorted(server.tools))
    try:
        yield declarations
    finally:
        for server in started:
            await server.aclose()
