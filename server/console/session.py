"""The dashboard's login: the admin token typed once, a signed session cookie after.

The cookie holds the token's name, an expiry and an HMAC of both keyed by that token
itself: no session table, nothing secret in the cookie, and changing or removing a
token ends every session it opened. It is HttpOnly (no script reads it), SameSite=
Strict (no other site's page sends it) and Secure when served over HTTPS.

The JSON admin API accepts the cookie too, so the dashboard's buttons use the very
routes scripts use; for those, a state-changing request must also carry
`X-WA-Agent-Dashboard: 1`, a header no other origin can add without a CORS preflight
that this service never approves.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import Request, Response

from graph.settings import Settings

COOKIE = "wa_agent_admin"
CSRF_HEADER = "x-wa-agent-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _signature(token: bytes, name: str, expires: int) -> str:
    return hmac.new(token, f"{name}:{expires}".encode(), hashlib.sha256).hexdigest()


def session_value(name: str, token: bytes, *, lifetime_seconds: float) -> str:
    expires = int(time.time() + lifetime_seconds)
    return f"{name}:{expires}:{_signature(token, name, expires)}"


def session_admin(value: str | None, tokens: dict[str, bytes]) -> str | None:
    """The admin's name when the cookie is genuine and fresh, else None."""
    if not value:
        return None
    name, _, rest = value.partition(":")
    expires_text, _, signature = rest.partition(":")
    token = tokens.get(name)
    if token is None or not expires_text.isdigit() or int(expires_text) < time.time():
        return None
    expected = _signature(token, name, int(expires_text))
    return name if hmac.compare_digest(expected.encode(), signature.encode()) else None


def cookie_admin(request: Request, tokens: dict[str, bytes]) -> str | None:
    """The session's admin, if the request may act with it (see the module docstring)."""
    admin = session_admin(request.cookies.get(COOKIE), tokens)
    if admin is None:
        return None
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        return None
    return admin


def open_session(
    response: Response, request: Request, settings: Settings, name: str, token: bytes
) -> None:
    lifetime = settings.dashboard_session_hours * 3600
    response.set_cookie(
        COOKIE,
        session_value(name, token, lifetime_seconds=lifetime),
        max_age=int(lifetime),
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def close_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
