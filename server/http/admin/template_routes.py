"""Message templates: the business's list, its sync from the Cloud API, and an
approved template sent to one customer — the only way to reach them once their 24-hour
window has closed (server/outcomes/template_catalog.py, server/whatsapp/templates.py)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from graph.state import TemplateReply
from server.http.admin.auth import require_admin
from server.http.admin.conversation_routes import ActionAccepted, queue_action
from server.http.dependencies import services_of
from server.outcomes.consent import may_message_first
from server.outcomes.template_catalog import find_template, list_templates, sync_templates
from server.runner.conversations import find_conversation
from server.runner.queue import OPERATOR_TEMPLATE_TASK
from server.runner.transport import NOT_WHATSAPP
from server.whatsapp.graph_errors import WhatsAppError
from server.whatsapp.templates import MessageTemplate, check_parameters, render_body

router = APIRouter(tags=["templates"])

Admin = Annotated[str, Depends(require_admin)]


class TemplateSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=16)
    values: list[str] = Field(default_factory=list, max_length=60)


def describe(template: MessageTemplate) -> dict[str, Any]:
    return {
        "name": template.name,
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "body": template.body,
        "variables": list(template.variables),
        "sendable": template.sendable,
        "unsupported": template.unsupported or None,
    }


@router.get("/templates")
async def templates(request: Request, _: Admin) -> list[dict[str, Any]]:
    return [describe(t) for t in await list_templates(services_of(request).pool)]


@router.post("/templates/sync")
async def sync(request: Request, _: Admin) -> dict[str, int]:
    """Read the account's templates from the Cloud API; they replace the last listing."""
    services = services_of(request)
    settings = services.settings
    account = settings.whatsapp_business_account_id
    number = settings.whatsapp_phone_number_id
    whatsapp = await services.numbers.client_for(number) if number else None
    if whatsapp is None or not account:
        raise HTTPException(
            409,
            "templates are listed with the environment's number (WHATSAPP_PHONE_NUMBER_ID,"
            " WHATSAPP_ACCESS_TOKEN) and WHATSAPP_BUSINESS_ACCOUNT_ID; without them,"
            " declare them in WA_AGENT_TEMPLATES_FILE",
        )
    try:
        listed = await whatsapp.list_templates(account)
    except WhatsAppError as exc:
        raise HTTPException(502, f"the Cloud API refused the listing: {exc}") from None
    return {"templates": await sync_templates(services.pool, listed)}


@router.post("/conversations/{conversation_id}/template", status_code=202)
async def send_template(
    request: Request, conversation_id: uuid.UUID, body: TemplateSend, admin: Admin
) -> ActionAccepted:
    """Queued under the conversation's lock and sent through the outbox, at any time:
    404 for an unknown conversation or template, 409 for a template Meta would refuse
    now or a customer who opted out, 422 for values that do not fill its body."""
    services = services_of(request)
    found = await find_conversation(services.pool, str(conversation_id))
    if found is None:
        raise HTTPException(404, "no such conversation")
    if found.phone_number_id in NOT_WHATSAPP:
        raise HTTPException(409, "templates are WhatsApp messages; this conversation is not")
    template = await find_template(services.pool, body.name, body.language)
    if template is None:
        raise HTTPException(404, f"no template {body.name!r} in {body.language!r}")
    if not template.sendable:
        why = template.unsupported or f"its status is {template.status}"
        raise HTTPException(409, f"template {body.name!r} cannot be sent: {why}")
    try:
        check_parameters(template, body.values)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not await may_message_first(services.pool, found.wa_id):
        raise HTTPException(409, "the customer opted out of messages they did not ask for")
    reply: TemplateReply = {
        "kind": "template",
        "name": template.name,
        "language": template.language,
        "values": dict(zip(template.variables, body.values, strict=True)),
        "named": template.named,
        "body": render_body(template, body.values),
    }
    return await queue_action(
        request,
        found,
        admin,
        OPERATOR_TEMPLATE_TASK,
        "conversation.template",
        template=json.dumps(reply),
    )
