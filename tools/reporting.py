"""Tools whose failures are reported as failures.

The business tools turn an exception into a polite text (tools/common.py
`answers_model`), which the model reads like any answer. The platform's tools (web,
research, MCP) do the same but mark the message as an error (ToolMessage status
"error"), so the registry counts and records the call as failed and the operator sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from langchain_core.tools import StructuredTool, ToolException
from langchain_core.tools.base import ArgsSchema
from langgraph.errors import GraphBubbleUp

from tools.common import validation_message

log = structlog.get_logger(__name__)


def failing_tool(
    coroutine: Callable[..., Awaitable[str]],
    *,
    name: str,
    description: str,
    args_schema: ArgsSchema,
    unavailable: str | None = None,
) -> StructuredTool:
    """`unavailable`: what the model reads when the call fails (a default otherwise)."""
    message = unavailable or (
        f"{name} is unavailable right now. Answer without it, or tell the customer you "
        "cannot look this up at the moment."
    )

    async def run(**kwargs: Any) -> str:
        try:
            return await coroutine(**kwargs)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            log.warning("tool.failed", tool=name, error_type=type(exc).__name__)
            raise ToolException(f"{message} ({type(exc).__name__})") from exc

    return StructuredTool.from_function(
        coroutine=run,
        name=name,
        description=description,
        args_schema=args_schema,
        handle_tool_error=True,
        handle_validation_error=validation_message,
    )
