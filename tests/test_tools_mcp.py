"""MCP tools from configuration, against a local MCP server built with the `mcp` package:
over stdio (its own process) and streamable HTTP, names prefixed by server, one kept
session per server, and a server that crashes or never starts taking nobody else down.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.mcp_server import McpHttpServer
from tests.fakes.meta_payloads import text_message
from tests.fakes.openai_server import FakeOpenAIServer, ToolCall
from tests.support import REPO, running_service
from tests.test_agent_flows import say
from tests.test_tool_registry import executions, tool_messages, tool_settings
from tools.mcp import open_mcp_tools
from tools.registry import ToolRegistry
from tools.tool_config import McpServerConfig

CRASHING_APP = "the app keeps crashing when I open it"  # routed to tech support locally


def stdio_server(name: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.fakes.mcp_server", "--name", name]
    return {"transport": "stdio", "command": command[0], "args": command[1:], "cwd": str(REPO)}


@pytest.fixture
def crm() -> Iterator[McpHttpServer]:
    with McpHttpServer("crm") as server:
        yield server


def mcp_servers(crm: McpHttpServer) -> dict[str, Any]:
    return {
        "shop": {**stdio_server("shop"), "agents": ["tech_support"]},
        "crm": {"transport": "streamable_http", "url": crm.url, "agents": ["tech_support"]},
        "broken": {"transport": "stdio", "command": "/nonexistent/mcp-server"},
    }


async def test_mcp_tools_answer_through_kept_sessions(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, crm: McpHttpServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(db_url, graph_api, openai_server, mcp_servers=mcp_servers(crm))
    async with running_service(settings) as service:
        names = service.services.tool_names
        assert {"shop_order_status", "shop_visit_count", "crm_order_status"} <= names
        assert not any(name.startswith("broken") for name in names)  # failed at start, alone
        openai_server.script(
            ToolCall("shop_order_status", {"order_id": "A-100"}),
            ToolCall("shop_visit_count", {}),
            ToolCall("shop_visit_count", {}),
            ToolCall("crm_visit_count", {}),
            "Your order A-100 shipped on Monday.",
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        assert graph_api.texts_to(customer)[-1] == "Your order A-100 shipped on Monday."
        rows = await executions(service, 4)
    assert tool_messages(openai_server.requests[4]) == [
        "Order A-100: shipped on Monday",
        "visit 1 (server shop)",
        "visit 2 (server shop)",  # the same server process: one session, kept
        "visit 1 (server crm)",
    ]
    assert all(r["success"] and r["agent"] == "tech_support" for r in rows)


async def test_the_server_is_told_the_runs_customer_and_no_argument_changes_it(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, crm: McpHttpServer
) -> None:
    """A prompt-injected model names another customer in the arguments, and even tries
    to write `_meta` itself: both servers (stdio and HTTP) still read the customer of the
    run from the request's `_meta`, beside the argument the model chose."""
    customer = "2507" + str(uuid.uuid4().int)[:8]
    victim = "250700000999"
    settings = tool_settings(db_url, graph_api, openai_server, mcp_servers=mcp_servers(crm))
    async with running_service(settings) as service:
        forged = {"customer_id": victim, "_meta": {"wa-agent/customer": victim}}
        openai_server.script(
            ToolCall("shop_whoami", forged),
            ToolCall("crm_whoami", {"customer_id": victim}),
            "Here is what I found.",
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        rows = await service.fetch("SELECT id FROM agent_conversations WHERE wa_id = %s", customer)
    conversation = str(rows[0]["id"])
    told = f"customer={customer} conversation={conversation} channel=whatsapp"
    assert tool_messages(openai_server.requests[-1]) == [
        f"{told} argument={victim}",
        f"{told} argument={victim}",
    ]


async def test_a_call_outside_any_conversation_names_no_customer() -> None:
    servers = {"shop": McpServerConfig.model_validate(stdio_server("shop"))}
    async with open_mcp_tools(servers) as declarations:
        registry = ToolRegistry()
        registry.declare_all(declarations)
        call = {"name": "shop_whoami", "args": {}, "id": "call-1", "type": "tool_call"}
        message = await registry.tools["shop_whoami"].ainvoke(call)
    assert isinstance(message, ToolMessage)
    assert message.content == "customer=- conversation=- channel=- argument=-"


async def test_a_crashing_mcp_server_is_isolated(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, crm: McpHttpServer
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    settings = tool_settings(db_url, graph_api, openai_server, mcp_servers=mcp_servers(crm))
    async with running_service(settings) as service:
        openai_server.script(
            ToolCall("shop_crash", {}),
            ToolCall("shop_order_status", {"order_id": "A-100"}),
            ToolCall("crm_order_status", {"order_id": "A-200"}),
            "The shop system is down, but your order A-200 is waiting for payment.",
        )
        await say(service, graph_api, customer, text_message(customer, CRASHING_APP))
        assert graph_api.texts_to(customer)[-1].startswith("The shop system is down")
        rows = await executions(service, 3)
    crashed, after, other = tool_messages(openai_server.requests[3])
    assert crashed.startswith("The shop service did not answer this call")
    assert after.startswith("The shop service did not answer this call")
    assert other == "Order A-200: waiting for payment"
    assert [(r["tool"], r["success"]) for r in rows] == [
        ("shop_crash", False),
        ("shop_order_status", False),
        ("crm_order_status", True),
    ]


async def test_a_crashed_server_is_reconnected_after_the_retry_delay() -> None:
    servers = {"shop": McpServerConfig.model_validate(stdio_server("shop"))}
    async with open_mcp_tools(servers, retry_seconds=0.3) as declarations:
        registry = ToolRegistry()
        registry.declare_all(declarations)

        async def call(name: str) -> ToolMessage:
            message = await registry.tools[name].ainvoke(
                {"name": name, "args": {}, "id": "call-1", "type": "tool_call"}
            )
            assert isinstance(message, ToolMessage)
            return message

        assert (await call("shop_visit_count")).content == "visit 1 (server shop)"
        assert (await call("shop_crash")).status == "error"
        assert (await call("shop_visit_count")).status == "error"  # too soon: not retried
        await asyncio.sleep(0.4)
        again = await call("shop_visit_count")
    assert again.status == "success" and again.content == "visit 1 (server shop)"  # new process


def test_mcp_server_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a url"):
        McpServerConfig.model_validate({"transport": "streamable_http"})
    with pytest.raises(ValueError, match="transport"):
        McpServerConfig.model_validate({"transport": "carrier-pigeon", "command": "x"})
