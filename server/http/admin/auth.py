"""Who may use `/admin`: a bearer token from `ADMIN_TOKEN` or the named `ADMIN_TOKENS`.

The dependency returns the token's name, which every audit row records as the actor:
give each operator their own token and the log says who did what. Tokens are compared
in constant time, against every configured token, so neither the answer time nor the
position of a match tells anything. Without any token configured the admin API is off
(503) rather than open. A wrong bearer token counts against the client's address
(server/http/admin/throttle.py): past the limit, 429 before any comparison.

Tokens shorter than `MIN_TOKEN_CHARS` are refused at start (`check_token_strength`): a
short token is guessable however slow each guess is made.
"""

from __future__ import annotations

import hmac

import structlog
from fastapi import HTTPException, Request

from graph.settings import Settings
from server.audit import record_folded
from server.http.admin.throttle import client_address, note_failure, refuse_if_throttled
from server.http.dashboard.session import cookie_admin
from server.http.dependencies import services_of
from server.services import Services

log = structlog.get_logger(__name__)

DEFAULT_ADMIN_NAME = "admin"
MIN_TOKEN_CHARS = 24
"""24 random URL-safe characters are 144 bits: beyond guessing at any rate."""


class WeakToken(ValueError):
    """A configured token is too short to be left facing the internet."""


def check_token_strength(settings: Settings) -> None:
    """Refuse to start with a token shorter than `MIN_TOKEN_CHARS`, naming which."""
    configured = {f"ADMIN_TOKENS entry {name!r}": s for name, s in settings.admin_tokens.items()}
    if settings.admin_token is not None:
        configured["ADMIN_TOKEN"] = settings.admin_token
    if settings.stream_api_token is not None:
        configured["WA_AGENT_STREAM_API_TOKEN"] = settings.stream_api_token
    short = [
        name
        for name, secret in configured.items()
        if len(secret.get_secret_value()) < MIN_TOKEN_CHARS
    ]
    if short:
        raise WeakToken(
            f"{', '.join(short)}: shorter than {MIN_TOKEN_CHARS} characters. Use a long "
            'random token, e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )


def configured_tokens(settings: Settings) -> dict[str, bytes]:
    """name → token; `ADMIN_TOKEN` is named "admin"."""
    tokens = {
        name: secret.get_secret_value().encode() for name, secret in settings.admin_tokens.items()
    }
    if settings.admin_token is not None:
        tokens.setdefault(DEFAULT_ADMIN_NAME, settings.admin_token.get_secret_value().encode())
    return tokens


def match_token(presented: str, tokens: dict[str, bytes]) -> str | None:
    """The name of the matching token; every token is compared, whatever matched first."""
    candidate = presented.encode("utf-8", "surrogateescape")
    matched: str | None = None
    for name, token in tokens.items():
        if hmac.compare_digest(candidate, token) and matched is None:
            matched = name
    return matched


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def require_admin(request: Request) -> str:
    """FastAPI dependency: the admin's name, or 401/429/503. A bearer token, or the
    dashboard's session cookie when no token is presented."""
    services = services_of(request)
    tokens = configured_tokens(services.settings)
    if not tokens:
        raise HTTPException(503, "admin API disabled: set ADMIN_TOKEN or ADMIN_TOKENS")
    presented = bearer_token(request)
    if presented is not None:
        await refuse_if_throttled(request, credential="admin_token")
        name = match_token(presented, tokens)
        if name is None:
            note_failure(request)
    else:  # the dashboard's session (server/http/dashboard)
        name = await cookie_admin(request, tokens, services.pool)
    if name is None:
        await record_refusal(services, request, "missing" if presented is None else "invalid")
        raise HTTPException(401, "a valid admin token is required", {"WWW-Authenticate": "Bearer"})
    return name


async def record_refusal(
    services: Services, request: Request, reason: str, *, surface: str = "admin"
) -> None:
    """Audit a refused credential (`<surface>.auth_failed`), one row per address per
    interval (an attacker's guesses must not become a flood of writes); never let the
    audit failure hide the refusal."""
    address = client_address(request) or None
    path = request.url.path
    log.warning(f"{surface}.auth_refused", reason=reason, path=path, remote_addr=address)
    await record_folded(
        services.pool,
        services.abuse.audit_throttle,
        action=f"{surface}.auth_failed",
        key=address or "",
        target=request.url.path,
        details={"reason": reason, "method": request.method},
        remote_addr=address,
    )
