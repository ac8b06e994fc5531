"""Tool platform: registry, web search, deep research, MCP.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob. The Tavily and Perplexity keys
and base URLs are the stable names in Settings itself (TAVILY_*, PERPLEXITY_*).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

from tools.tool_config import McpServerConfig, ToolOverride, check_server_names


class ToolSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # A call slower than this is stopped and the model told so (per tool: WA_AGENT_TOOLS).
    tool_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="WA_AGENT_TOOL_TIMEOUT_S"
    )
    # Per-tool changes as JSON: {"web_search": {"per_user_limit": "5/1h", "enabled": false,
    # "timeout_seconds": 20, "global_limit": "100/1m", "agents": ["sales"], "flag": "x"}}.
    tool_overrides: dict[str, ToolOverride] = Field(
        default_factory=dict, validation_alias="WA_AGENT_TOOLS"
    )
    # Load tools that installed packages publish in the `wa_agent.tools` entry-point group.
    tool_entry_points: bool = Field(default=True, validation_alias="WA_AGENT_TOOL_ENTRY_POINTS")
    web_search_max_results: int = Field(
        default=5, ge=1, le=20, validation_alias="WA_AGENT_WEB_SEARCH_MAX_RESULTS"
    )
    web_search_timeout_seconds: float = Field(
        default=15.0, gt=0, validation_alias="WA_AGENT_WEB_SEARCH_TIMEOUT_S"
    )
    # Perplexity's model for deep_research (sonar, sonar-pro, sonar-deep-research).
    research_model: str = Field(default="sonar", validation_alias="WA_AGENT_RESEARCH_MODEL")
    research_timeout_seconds: float = Field(
        default=60.0, gt=0, validation_alias="WA_AGENT_RESEARCH_TIMEOUT_S"
    )
    # MCP servers as JSON: {"shop": {"transport": "stdio", "command": "shop-mcp", "args": []},
    # "crm": {"transport": "streamable_http", "url": "https://crm.example/mcp"}}.
    mcp_servers: dict[str, McpServerConfig] = Field(
        default_factory=dict, validation_alias="WA_AGENT_MCP_SERVERS"
    )

    # Web search (Tavily) and deep research (Perplexity); unset: those tools are not offered.
    tavily_api_key: SecretStr | None = Field(default=None, validation_alias="TAVILY_API_KEY")
    tavily_base_url: str | None = Field(default=None, validation_alias="TAVILY_BASE_URL")
    perplexity_api_key: SecretStr | None = Field(
        default=None, validation_alias="PERPLEXITY_API_KEY"
    )
    perplexity_base_url: str | None = Field(default=None, validation_alias="PERPLEXITY_BASE_URL")

    @field_validator("mcp_servers")
    @classmethod
    def _valid_server_names(cls, servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        return check_server_names(servers)
