"""How `wa-agent serve` runs uvicorn: which proxies it believes about client addresses.

uvicorn rewrites a request's client address from `X-Forwarded-For` when the peer is in
`forwarded_allow_ips`, and that defaults to 127.0.0.1 — so a client talking to the
service directly on the same machine, or through any local tunnel, picks its own
address with one header, and every per-address defence (the login lockout, the token
throttle, the audit log's "from where") believes it. The list is therefore always given
explicitly, from `WA_AGENT_FORWARDED_ALLOW_IPS`: empty (the default) trusts no proxy and
turns proxy headers off; a deployment behind a reverse proxy names that proxy.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from graph.settings import Settings


def trusted_proxies(settings: Settings) -> list[str]:
    return [item.strip() for item in settings.forwarded_allow_ips.split(",") if item.strip()]


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server's configuration (tests pass `port=0`)."""
    proxies = trusted_proxies(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_level": "warning",
        "proxy_headers": bool(proxies),
        # Never None: uvicorn would read FORWARDED_ALLOW_IPS or trust 127.0.0.1 itself.
        "forwarded_allow_ips": proxies,
        **overrides,
    }
    return uvicorn.Config(app, **options)
