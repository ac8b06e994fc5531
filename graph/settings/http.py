"""The HTTP surface's defences: proxies, credential guessing, cookies, web identities.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class HttpSecuritySettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""

    # Proxies whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes, comma-separated
    # addresses or networks ("10.0.0.5", "10.0.0.0/8", "*"). Empty: none — the client
    # address is the connection's, so no header can dodge a per-address limit. Set it to
    # the reverse proxy's address when there is one, or every client is the proxy.
    forwarded_allow_ips: str = Field(default="", validation_alias="WA_AGENT_FORWARDED_ALLOW_IPS")
    # Wrong admin/stream/conversation tokens and failed dashboard logins one client
    # address may present per window; past it every try is 429 until the window ends.
    auth_failure_limit: int = Field(
        default=10, ge=1, validation_alias="WA_AGENT_AUTH_FAILURE_LIMIT"
    )
    auth_failure_window_seconds: float = Field(
        default=300.0, gt=0, validation_alias="WA_AGENT_AUTH_FAILURE_WINDOW_S"
    )
    # The dashboard's session cookie is `Secure` (sent over HTTPS only; browsers also
    # accept it from http://localhost). true drops the flag: only for development over
    # plain http on a host name browsers do not treat as secure.
    dashboard_insecure_cookie: bool = Field(
        default=False, validation_alias="WA_AGENT_DASHBOARD_INSECURE_COOKIE"
    )
    # `/metrics` reads the queue's figures from the database at most this often; scrapes
    # in between (or floods of them) are answered from memory.
    metrics_cache_seconds: float = Field(
        default=5.0, ge=0, validation_alias="WA_AGENT_METRICS_CACHE_S"
    )
