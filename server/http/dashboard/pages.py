"""The admin dashboard at `/admin`: server-rendered pages over the admin API.

Pages read through the same functions as the JSON routes (server/http/dashboard/aggregates,
timeline) and act through the existing JSON routes (operator reply and release,
agent edits, flags), called by dashboard.js with the session cookie — nothing here
duplicates an action. Chart.js comes from the npm package installed under
server/http/dashboard/ (`npm ci`, by `make install`) and is served from there: no CDN, no
copy in the repository. The CSP of admin pages allows scripts from this origin only,
so the pages carry no inline script; chart data travels as a JSON data block.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from graph.privacy import mask_phone
from server.audit import record_audit, record_folded
from server.http.admin.auth import configured_tokens, match_token, record_refusal
from server.http.admin.flag_routes import list_flags
from server.http.admin.throttle import client_address, credential_failures
from server.http.dashboard import aggregates, timeline
from server.http.dashboard.aggregates import Window
from server.http.dashboard.session import close_session, open_session, session_admin
from server.http.dependencies import services_of
from server.operations.operator_inbox import canned_replies, notes_of
from server.outcomes.figures import outcome_figures
from server.services import Services

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
ASSETS = {
    "dashboard.js": (HERE / "static" / "dashboard.js", "text/javascript"),
    "dashboard.css": (HERE / "static" / "dashboard.css", "text/css"),
    "chart.js": (NODE_MODULES / "chart.js" / "dist" / "chart.umd.min.js", "text/javascript"),
}


@dataclass(frozen=True)
class Panel:
    """An extra overview panel filled from a JSON admin route (a dict or a list of
    rows), so another capability's figures (episodes, CSAT, caches) appear on the
    overview by adding one entry to `EXTRA_PANELS`."""

    title: str
    endpoint: str


EXTRA_PANELS: list[Panel] = []

INBOX_PAGE = 25  # threads shown at once, the most recently active first

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["mask_phone"] = mask_phone


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


templates.env.globals.update(percent=_percent, seconds=_seconds)
router = APIRouter(prefix="/admin", include_in_schema=False)


class LoginRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(303, "login required", {"Location": "/admin/login"})


async def require_session(request: Request) -> str:
    services = services_of(request)
    tokens = configured_tokens(services.settings)
    if not tokens:
        raise HTTPException(503, "admin dashboard disabled: set ADMIN_TOKEN or ADMIN_TOKENS")
    admin = await session_admin(request, tokens, services.pool)
    if admin is None:
        raise LoginRequired()
    return admin


Operator = Annotated[str, Depends(require_session)]


def _page(request: Request, template: str, admin: str | None, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"admin": admin, "page": template.removesuffix(".html"), **values}
    )


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None, error=None)


@router.post("/login", response_model=None)
async def login(
    request: Request, token: Annotated[str, Form(max_length=500)]
) -> HTMLResponse | RedirectResponse:
    """A session for a valid token, audited (`admin.login`) before the cookie is set.
    While the address is over its failed-login limit every try is 429 and the token is
    not even compared, so the answer tells a guesser nothing."""
    services = services_of(request)
    address = client_address(request)
    failures = credential_failures(request)
    wait = failures.retry_after(address)
    if wait is not None:
        return await _locked_out(services, request, address or None, wait)
    tokens = configured_tokens(services.settings)
    name = match_token(token.strip(), tokens) if tokens and token.strip() else None
    if name is None:
        failures.failed(address)
        await record_refusal(services, request, "dashboard_login")
        page = _page(request, "login.html", None, error="That token is not valid.")
        page.status_code = 401
        return page
    failures.succeeded(address)
    async with services.pool.connection() as conn:
        await record_audit(
            conn,
            actor=name,
            action="admin.login",
            target="dashboard",
            details={"session_hours": services.settings.dashboard_session_hours},
            remote_addr=address or None,
        )
    response = RedirectResponse("/admin", status_code=303)
    await open_session(response, services.settings, services.pool, name, tokens[name])
    log.info("dashboard.login", admin=name)
    return response


async def _locked_out(
    services: Services, request: Request, address: str | None, wait: int
) -> HTMLResponse:
    """429 with Retry-After; audited once per address per interval, like other refusals
    an outsider can repeat at will."""
    log.warning("dashboard.login_locked_out", remote_addr=address, retry_after=wait)
    await record_folded(
        services.pool,
        services.abuse.audit_throttle,
        action="admin.login_locked_out",
        key=address or "",
        target="dashboard",
        details={"retry_after": wait},
        remote_addr=address,
    )
    minutes = math.ceil(wait / 60)
    error = f"Too many failed logins from your address. Try again in {minutes} min."
    page = _page(request, "login.html", None, error=error)
    page.status_code = 429
    page.headers["Retry-After"] = str(wait)
    return page


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    """Ends the session on the server, not only in this browser: a copy of the cookie
    taken earlier stops working too. Audited when a session was open."""
    services = services_of(request)
    tokens = configured_tokens(services.settings)
    response = RedirectResponse("/admin/login", status_code=303)
    admin = await close_session(response, request, services.settings, services.pool, tokens)
    if admin is not None:
        async with services.pool.connection() as conn:
            await record_audit(
                conn,
                actor=admin,
                action="admin.logout",
                target="dashboard",
                details={},
                remote_addr=client_address(request) or None,
            )
    return response


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, admin: Operator, days: int | None = None) -> HTMLResponse:
    services = services_of(request)
    span = min(max(days or services.settings.dashboard_days, 1), 365)
    window = Window.last_days(span)
    figures = await aggregates.overview(services.pool, window)
    outcomes = await outcome_figures(services.pool, window.since, window.until)
    waiting = await timeline.waiting_count(services.pool)
    return _page(
        request,
        "overview.html",
        admin,
        figures=figures,
        # "<" escaped: the JSON sits in a <script type="application/json"> data block.
        chart_data=json.dumps(figures, default=str).replace("<", "\\u003c"),
        waiting=waiting,
        days=span,
        outcomes=outcomes,
        panels=EXTRA_PANELS,
    )


@router.get("/conversations", response_class=HTMLResponse)
async def conversations(request: Request, admin: Operator, q: str = "") -> HTMLResponse:
    found = await timeline.search(services_of(request).pool, q[:100], limit=100)
    return _page(request, "conversations.html", admin, conversations=found, q=q[:100])


@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
async def conversation(
    request: Request, conversation_id: uuid.UUID, admin: Operator
) -> HTMLResponse:
    pool = services_of(request).pool
    found = await timeline.conversation(pool, str(conversation_id))
    if found is None:
        raise HTTPException(404, "no such conversation")
    return _page(
        request,
        "conversation.html",
        admin,
        conversation=found,
        notes=await notes_of(pool, str(conversation_id)),
        canned=await canned_replies(pool),
    )


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request, admin: Operator) -> HTMLResponse:
    pool = services_of(request).pool
    waiting = await timeline.search(pool, "", status="escalated", limit=INBOX_PAGE)
    threads = [await timeline.conversation(pool, row["id"]) for row in waiting]
    return _page(
        request,
        "inbox.html",
        admin,
        threads=[t for t in threads if t],
        canned=await canned_replies(pool),
    )


@router.get("/agents", response_class=HTMLResponse)
async def agents(request: Request, admin: Operator) -> HTMLResponse:
    services = services_of(request)
    configured = list((await services.agents.current()).values())
    flags = await list_flags(request, admin)
    return _page(
        request,
        "agents.html",
        admin,
        agents=configured,
        flags=flags,
        tools=sorted(services.tool_names),
    )


@router.get("/blacklist", response_class=HTMLResponse)
async def blacklist(request: Request, admin: Operator) -> HTMLResponse:
    entries = [entry.as_json() for entry in await services_of(request).abuse.blacklist.active()]
    return _page(request, "blacklist.html", admin, entries=entries)


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    """The dashboard's own script and style, and Chart.js from node_modules."""
    if name not in ASSETS:
        raise HTTPException(404, "no such asset")
    path, media_type = ASSETS[name]
    if not path.exists():
        raise HTTPException(503, f"{name} is not installed: run `make install` (npm ci)")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})
