"""A local MCP server written with the `mcp` package, for the MCP client tests.

Run over stdio as its own process (what a business's MCP command would be)::

    python -m tests.fakes.mcp_server --name shop

or over streamable HTTP inside the test process with `McpHttpServer` (uvicorn on
127.0.0.1, port 0, in a thread). Its tools:

- `order_status(order_id)`: a business lookup;
- `visit_count()`: counts calls in this server process, which shows whether the
  client kept one session (1, 2, 3 …) or started a new server per call (1, 1, 1 …);
- `crash()`: the server process exits at once, mid-call (stdio only);
- `whoami(customer_id)`: says which customer, conversation and channel the request's
  `_meta` names (what a real server must key its answers on) beside the customer id the
  arguments named (what a prompt-injected model controls).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from types import TracebackType

import uvicorn
from mcp.server.fastmcp import Context, FastMCP

ORDERS = {"A-100": "shipped on Monday", "A-200": "waiting for payment"}


def build_server(name: str) -> FastMCP:
    server = FastMCP(name, log_level="WARNING")
    visits = {"count": 0}

    @server.tool()
    def order_status(order_id: str) -> str:
        """The status of an order of this shop, by its id (e.g. A-100)."""
        status = ORDERS.get(order_id.strip().upper())
        return f"Order {order_id}: {status}" if status else f"No order {order_id}."

    @server.tool()
    def visit_count() -> str:
        """How many times this tool was called in this server process."""
        visits["count"] += 1
        return f"visit {visits['count']} (server {name})"

    @server.tool()
    def whoami(ctx: Context, customer_id: str = "") -> str:  # type: ignore[type-arg]
        """The customer this call is for, and the customer id the arguments name."""
        meta = ctx.request_context.meta
        sent = meta.model_dump() if meta is not None else {}
        told = [
            str(sent.get(f"wa-agent/{key}") or "-")
            for key in ("customer", "conversation", "channel")
        ]
        customer, conversation, channel = told
        argument = customer_id or "-"
        return (
            f"customer={customer} conversation={conversation} channel={channel} argument={argument}"
        )

    @server.tool()
    def crash() -> str:
        """Stops the server process immediately."""
        os._exit(3)

    return server


class McpHttpServer:
    """The same server over streamable HTTP, in a thread of the test process."""

    def __init__(self, name: str = "crm") -> None:
        app = build_server(name).streamable_http_app()
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> McpHttpServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the MCP HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/mcp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="shop")
    build_server(parser.parse_args().name).run(transport="stdio")


if __name__ == "__main__":
    main()
