"""Security headers on every response, stricter ones on `/admin`; no CORS at all.

No CORS middleware is installed, on purpose: the admin API is for the dashboard served
by this same origin and for scripts with a token, never for another site's JavaScript,
so a browser on another origin gets no `Access-Control-Allow-*` header and cannot read
an answer. The headers below keep the dashboard from being framed, sniffed, cached or
made to load scripts from elsewhere.

A pure ASGI middleware (not `BaseHTTPMiddleware`): it only adds headers to the response
start, so it costs the webhook nothing measurable and never buffers a stream.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVERY_RESPONSE: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

ADMIN_RESPONSES: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
    (b"cache-control", b"no-store"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    # Browsers honour it only over HTTPS, which is how the admin pages are meant to be served.
    (b"strict-transport-security", b"max-age=31536000"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = EVERY_RESPONSE
        if str(scope.get("path", "")).startswith("/admin"):
            extra = EVERY_RESPONSE + ADMIN_RESPONSES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
