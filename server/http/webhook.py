"""`/webhook`: Meta's verification handshake and its signed message deliveries.

The POST path checks, parses and stores, then answers 200: no model call, no outbound
HTTP, so it stays fast under Meta's retries and bursts. Once it has answered 200 the
message is committed together with the job that will answer it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Annotated

import psycopg
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from psycopg_pool import PoolTimeout

from server.abuse.validation import InvalidWebhook, parse_webhook
from server.http.dependencies import services_of
from server.outcomes.template_catalog import apply_status_update
from server.runner.inbox import record_inbound
from server.runner.outbox import record_status
from server.services import Services
from server.telemetry import WEBHOOK_LATENCY, WEBHOOK_REQUESTS
from server.whatsapp.models import WebhookPayload

log = structlog.get_logger(__name__)

router = APIRouter()


@router.get("/webhook")
async def verify_subscription(
    request: Request,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> Response:
    expected = services_of(request).settings.whatsapp_verify_token
    if (
        mode == "subscribe"
        and expected is not None
        and token is not None
        and hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        return PlainTextResponse(challenge or "")
    log.warning("webhook.verify_refused")
    return PlainTextResponse("verification failed", status_code=403)


@router.post("/webhook")
async def receive_webhook(request: Request) -> Response:
    started = time.perf_counter()
    response = await _acknowledge(request)
    WEBHOOK_LATENCY.observe(time.perf_counter() - started)
    WEBHOOK_REQUESTS.labels(status=str(response.status_code)).inc()
    return response


async def _acknowledge(request: Request) -> Response:
    services = services_of(request)
    settings = services.settings
    body = await request.body()  # raw: the signature covers raw bytes (size: body_limit)
    signature = request.headers.get("x-hub-signature-256")
    remote_addr = request.client.host if request.client else None
    if not signature:
        await services.abuse.signature_failed("missing", remote_addr)
        return _error(401, "missing X-Hub-Signature-256")
    signed = await services.numbers.signers(body, signature)
    if not signed:
        if not await services.numbers.has_app_secret():
            log.error("webhook.no_app_secret", behaviour="refusing every delivery")
            return _error(
                403,
                "webhook signature cannot be checked: no business number has an app secret"
                " (WHATSAPP_APP_SECRET, or `wa-agent numbers add`)",
            )
        await services.abuse.signature_failed("invalid", remote_addr)
        return _error(403, "invalid signature")
    try:
        payload = parse_webhook(
            body,
            max_text_chars=settings.max_text_chars,
            max_age_days=settings.webhook_max_age_days,
        )
    except InvalidWebhook as exc:
        log.warning("webhook.malformed", error=str(exc)[:300])
        return _error(400, f"malformed payload: {exc}"[:300])
    refused = await _refuse_foreign_numbers(services, payload, body, signature, signed)
    try:
        async with asyncio.timeout(settings.webhook_db_timeout_seconds):
            counts = await _store_retrying(services, payload, remote_addr)
    except (TimeoutError, psycopg.OperationalError, PoolTimeout) as exc:
        # Nothing is acknowledged that was not stored: Meta delivers the body again, and
        # what was stored of it by then is a duplicate (a no-op).
        log.error("webhook.database_unavailable", error=type(exc).__name__)
        return JSONResponse(
            {"error": "database unavailable, deliver again later"},
            status_code=503,
            headers={"Retry-After": "10"},
        )
    if refused:
        # What was for the numbers answered here is stored; a redelivery, once the
        # number is added, stores the rest and finds the first part a duplicate.
        return JSONResponse(
            {"error": "business number not answered here", "refused": refused, **counts},
            status_code=403,
        )
    if counts["dropped"]:
        # Not a 200: Meta delivers the body again later, the messages stored now are
        # duplicates then (no-ops), the dropped ones get another chance. Nothing is lost.
        return JSONResponse(counts, status_code=429, headers={"Retry-After": "60"})
    return JSONResponse(counts)


async def _refuse_foreign_numbers(
    services: Services,
    payload: WebhookPayload,
    body: bytes,
    signature: str,
    signed: frozenset[str],
) -> dict[str, str]:
    """Leave out of `payload` the messages and statuses of numbers this delivery may not
    speak for (unknown here, or whose app did not sign it); each refused number with
    its reason. A second number's customers are never answered from the first."""
    events, statuses = list(payload.iter_messages()), list(payload.iter_statuses())
    mentioned = {event.phone_number_id for event in events} | {n for n, _ in statuses}
    refused: dict[str, str] = {}
    for number in sorted(mentioned):
        reason = await services.numbers.refusal(number, body, signature, signed)
        if reason is not None:
            refused[number] = reason
            log.error("webhook.number_refused", phone_number_id=number, reason=reason)
    if refused:
        payload.keep_only(
            (event for event in events if event.phone_number_id not in refused),
            (status for status in statuses if status[0] not in refused),
        )
    return refused


async def _store_retrying(
    services: Services, payload: WebhookPayload, remote_addr: str | None
) -> dict[str, int]:
    """Store, once more if a connection turned out dead: after a database restart the
    pool still holds connections to the old server, and each fails once before the
    pool replaces it. The caller's deadline bounds both tries."""
    try:
        return await _store(services, payload, remote_addr)
    except psycopg.OperationalError:
        await services.pool.check()
        return await _store(services, payload, remote_addr)


async def _store(
    services: Services, payload: WebhookPayload, remote_addr: str | None
) -> dict[str, int]:
    counts = {"stored": 0, "duplicates": 0, "enqueued": 0, "statuses": 0, "dropped": 0}
    for event in payload.iter_messages():
        if not event.sender_id:
            log.warning("webhook.message_without_sender", kind=event.message.kind)
            continue
        if not services.abuse.ingress.allow(event.sender_id):
            counts["dropped"] += 1  # a flood: refused with 429, not stored (abuse/ingress.py)
            await services.abuse.dropped_at_ingress(event.sender_id, remote_addr)
            continue
        async with services.abuse.ingress.lane(event.sender_id), services.pool.connection() as conn:
            stored, enqueued = await record_inbound(conn, event)
        counts["stored" if stored else "duplicates"] += 1
        counts["enqueued"] += int(enqueued)
    for _, status in payload.iter_statuses():
        async with services.pool.connection() as conn:
            counts["statuses"] += int(await record_status(conn, status))
    for update in payload.iter_template_updates():
        async with services.pool.connection() as conn:
            await apply_status_update(conn, update)
    return counts


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
