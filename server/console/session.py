"""The dashboard's login: the admin token typed once, a signed session cookie after.

The cookie holds the token's name, an expiry and an HMAC of both keyed by that token
itself: no session table, nothing secret in the cookie, and changing or removing a
token ends every session it opened. It is HttpOnly (no script reads it), SameSite=
Strict (no other site's page sends it) and Secure when served over HTTPS.

The JSON admin API accepts the cookie too, so the dashboard's buttons use the very
routes scripts use; for those, a state-changing request must also carry
`X-WA-Agent-Dashboard: 1`, a header no other origin can add without a CORS preflight
that this service never approves.

Failed logins are counted per remote address (`FailedLogins`): after
`LOGIN_FAILURE_LIMIT` in `LOGIN_FAILURE_WINDOW_SECONDS` the address is answered 429
until the window ends, whatever it types, so guessing tokens through the form is as
slow as the limit makes it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable

from fastapi import Request, Response

from graph.settings import Settings

COOKIE = "wa_agent_admin"
CSRF_HEADER = "x-wa-agent-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LOGIN_FAILURE_LIMIT = 10
"""Failed logins one address may make per window: enough for a person who mistypes or
pastes the wrong token a few times, nothing for a script guessing tokens."""

LOGIN_FAILURE_WINDOW_SECONDS = 300.0
"""The window those failures are counted in; the address waits for its end."""


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


class FailedLogins:
    """Failed logins per remote address, in this process's memory.

    Each address has a fixed window opened by its first failure; once `limit` failures
    are in it, `retry_after` says how long the address must wait. Memory: a failure
    beyond `max_addresses` windows first drops the expired ones, then the oldest half:
    spraying from many addresses can at worst end some lockouts early, never grow the
    memory. Each process counts for itself: N replicas let an address try N times the
    limit.
    """

    def __init__(
        self,
        limit: int = LOGIN_FAILURE_LIMIT,
        window_seconds: float = LOGIN_FAILURE_WINDOW_SECONDS,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (opened, failures)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds this address must wait before trying again, or None."""
        opened, failures = self._current(address)
        if failures < self.limit:
            return None
        return max(1, math.ceil(opened + self.window_seconds - self.clock()))

    def failed(self, address: str) -> None:
        opened, failures = self._current(address)
        if failures == 0:
            opened = self.clock()
        self._windows.pop(address, None)
        self._windows[address] = (opened, failures + 1)
        if len(self._windows) > self.max_addresses:
            self._evict()

    def succeeded(self, address: str) -> None:
        self._windows.pop(address, None)

    def _current(self, address: str) -> tuple[float, int]:
        opened, failures = self._windows.get(address, (0.0, 0))
        if failures and self.clock() - opened >= self.window_seconds:
            del self._windows[address]
            return 0.0, 0
        return opened, failures

    def _evict(self) -> None:
        now = self.clock()
        for address, (opened, _) in list(self._windows.items()):
            if now - opened >= self.window_seconds:
                del self._windows[address]
        if len(self._windows) > self.max_addresses:
            for address in list(self._windows)[: len(self._windows) // 2]:
                del self._windows[address]
