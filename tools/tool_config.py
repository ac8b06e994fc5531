"""Shapes of the tool platform's JSON settings, validated where they are read.

Plain pydantic models with no heavy imports, so graph/settings/tools.py can use them
for `WA_AGENT_TOOLS` and `WA_AGENT_MCP_SERVERS` and a typo fails at start with the
field's name instead of at the first call.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.limits import RateLimit

_SERVER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def _check_limit(value: str | None) -> str | None:
    if value is not None:
        RateLimit.parse(value)
    return value


class ToolOverride(BaseModel):
    """An operator's changes to one tool's declaration (`WA_AGENT_TOOLS={"name": {...}}`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    per_user_limit: str | None = None  # "5/1m"
    global_limit: str | None = None
    agents: list[str] | None = None
    flag: str | None = None

    _limits = field_validator("per_user_limit", "global_limit")(_check_limit)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class McpServerConfig(BaseModel):
    """One MCP server of `WA_AGENT_MCP_SERVERS={"name": {...}}`; its tools are named
    `<name>_<tool>`."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["stdio", "streamable_http"]
    command: str | None = None  # stdio
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None  # streamable_http
    headers: dict[str, str] | None = None
    # Per call; the registry's timeout for these tools is the same.
    timeout_seconds: float = Field(default=20.0, gt=0)
    agents: list[str] | None = None  # None: the agents' allow-lists decide
    per_user_limit: str | None = None
    global_limit: str | None = None

    _limits = field_validator("per_user_limit", "global_limit")(_check_limit)

    @model_validator(mode="after")
    def _endpoint_given(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio MCP server needs a command")
        if self.transport == "streamable_http" and not self.url:
            raise ValueError("a streamable_http MCP server needs a url")
        return self


def check_server_names(servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
    for name in servers:
        if not _SERVER_NAME.match(name):
            raise ValueError(
                f"MCP server name {name!r}: letters, digits, _ or -, starting with a letter"
            )
    return servers
