"""Guessing credentials, slowed down per client address.

Every kind of secret an outsider can try at will — an admin bearer token, the stream API
token, a web conversation's token, the dashboard's login form — counts its failures in
one window per client address (`FailedLogins`, kept on the app's state: it lives and
dies with the app). Past `WA_AGENT_AUTH_FAILURE_LIMIT` failures in
`WA_AGENT_AUTH_FAILURE_WINDOW_S`, the address is answered 429 with `Retry-After` before
anything it presents is even compared, until the window ends; the refusals are audited
folded (one row per address per interval), so a guesser cannot flood the audit log.
Each process counts for itself: N replicas let an address try N times the limit.

The address is the one uvicorn resolved for the connection (`request.client`): the
peer itself, unless the peer is a proxy named in `WA_AGENT_FORWARDED_ALLOW_IPS`
(server/http/serving.py), whose X-Forwarded-For then names the client. Nothing else is
trusted, so no header a client writes can move it to a fresh window.
"""

from __future__ import annotations

import structlog
from fastapi import HTTPException, Request

from server.audit import record_folded
from server.http.dashboard.session import FailedLogins
from server.http.dependencies import services_of

log = structlog.get_logger(__name__)


def client_address(request: Request) -> str:
    """The client's address as uvicorn resolved it ("" when the server gave none)."""
    return request.client.host if request.client else ""


def credential_failures(request: Request) -> FailedLogins:
    """The app's one counter of failed credentials, built from its settings on first use."""
    state = request.app.state
    if not hasattr(state, "credential_failures"):
        settings = state.services.settings
        state.credential_failures = FailedLogins(
            settings.auth_failure_limit, settings.auth_failure_window_seconds
        )
    counter: FailedLogins = state.credential_failures
    return counter


def note_failure(request: Request) -> None:
    credential_failures(request).failed(client_address(request))


async def refuse_if_throttled(request: Request, *, credential: str) -> None:
    """429 (with Retry-After) when this address has used up its failed attempts."""
    address = client_address(request)
    wait = credential_failures(request).retry_after(address)
    if wait is None:
        return
    services = services_of(request)
    log.warning("auth.throttled", credential=credential, path=request.url.path, remote_addr=address)
    await record_folded(
        services.pool,
        services.abuse.audit_throttle,
        action="auth.throttled",
        key=address,
        target=request.url.path,
        details={"credential": credential, "retry_after": wait},
        remote_addr=address or None,
    )
    raise HTTPException(
        429,
        "too many failed attempts from this address; try again later",
        {"Retry-After": str(wait)},
    )
