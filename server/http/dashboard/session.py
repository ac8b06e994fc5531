"""The dashboard's login: the admin token typed once, a session cookie after.

The cookie names a row of `dashboard_sessions` and carries the admin's name, an expiry
and an HMAC of all three keyed by that admin's token: nothing secret in the cookie, a
forged or altered one fails its signature without a database read, and changing or
removing a token ends every session it opened. The row is what logging out revokes: a
cookie copied from a browser (a shared machine, a leaked log) stops working the moment
its owner logs out, on every process, not when it would have expired.

It is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it)
and Secure (never sent over plain http, where anyone on the path could read it).
Browsers accept a Secure cookie from http://localhost too, so local development needs
nothing; `WA_AGENT_DASHBOARD_INSECURE_COOKIE=true` drops the flag for a development
host name they do not trust. It is not decided from the request's scheme or host: behind
a TLS-terminating proxy both look like plain http to 127.0.0.1.

The JSON admin API accepts the cookie too, so the dashboard's buttons use the very
routes scripts use; for those, a state-changing request must also carry
`X-WA-Agent-Dashboard: 1`, a header no other origin can add without a CORS preflight
that this service never approves.

Failed logins are counted per client address (`FailedLogins`, shared with wrong bearer
tokens: server/http/admin/throttle.py): after `WA_AGENT_AUTH_FAILURE_LIMIT` in
`WA_AGENT_AUTH_FAILURE_WINDOW_S` the address is answered 429 until the window ends,
whatever it types, so guessing tokens through the form is as slow as the limit makes it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import uuid
from collections.abc import Callable

from fastapi import Request, Response

from graph.infra.database import Pool
from graph.settings import Settings

COOKIE = "wa_agent_admin"
CSRF_HEADER = "x-wa-agent-dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LOGIN_FAILURE_LIMIT = 10
"""Failed logins one address may make per window by default: enough for a person who
mistypes or pastes the wrong token a few times, nothing for a script guessing tokens."""

LOGIN_FAILURE_WINDOW_SECONDS = 300.0
"""The default window those failures are counted in; the address waits for its end."""


def _signature(token: bytes, name: str, session: str, expires: int) -> str:
    return hmac.new(token, f"{name}:{session}:{expires}".encode(), hashlib.sha256).hexdigest()


def session_value(name: str, session: str, token: bytes, expires: int) -> str:
    return f"{name}:{session}:{expires}:{_signature(token, name, session, expires)}"


def signed_session(value: str | None, tokens: dict[str, bytes]) -> tuple[str, str] | None:
    """(admin, session id) when the cookie's signature holds and it has not expired;
    says nothing of revocation (see `session_admin`)."""
    parts = (value or "").split(":")
    if len(parts) != 4:
        return None
    name, session, expires_text, signature = parts
    token = tokens.get(name)
    if token is None or not expires_text.isdigit() or int(expires_text) < time.time():
        return None
    expected = _signature(token, name, session, int(expires_text))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    return name, session


async def session_admin(request: Request, tokens: dict[str, bytes], pool: Pool) -> str | None:
    """The admin's name when the cookie is genuine, fresh and not logged out."""
    signed = signed_session(request.cookies.get(COOKIE), tokens)
    if signed is None:
        return None
    name, session = signed
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM dashboard_sessions WHERE id = %s AND admin = %s"
            " AND revoked_at IS NULL AND expires_at > now()",
            (session, name),
        )
        live = await cur.fetchone()
    return name if live is not None else None


async def cookie_admin(request: Request, tokens: dict[str, bytes], pool: Pool) -> str | None:
    """The session's admin, if the request may act with it (see the module docstring)."""
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        return None
    return await session_admin(request, tokens, pool)


async def open_session(
    response: Response, settings: Settings, pool: Pool, name: str, token: bytes
) -> None:
    """A new session row and its cookie (expired rows of earlier sessions go)."""
    lifetime = settings.dashboard_session_hours * 3600
    expires = int(time.time() + lifetime)
    session = str(uuid.uuid4())
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO dashboard_sessions (id, admin, expires_at)"
            " VALUES (%s, %s, to_timestamp(%s))",
            (session, name, expires),
        )
    response.set_cookie(
        COOKIE,
        session_value(name, session, token, expires),
        max_age=int(lifetime),
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=not settings.dashboard_insecure_cookie,
    )


async def close_session(
    response: Response, request: Request, settings: Settings, pool: Pool, tokens: dict[str, bytes]
) -> str | None:
    """Revoke the request's session (whoever holds a copy of the cookie is out too) and
    clear the cookie; the admin's name, or None when there was no valid session."""
    signed = signed_session(request.cookies.get(COOKIE), tokens)
    if signed is not None:
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE dashboard_sessions SET revoked_at = now()"
                " WHERE id = %s AND revoked_at IS NULL",
                (signed[1],),
            )
    response.delete_cookie(
        COOKIE,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=not settings.dashboard_insecure_cookie,
    )
    return signed[0] if signed is not None else None


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
