"""The naive WhatsApp adapter of public LangGraph templates, as a baseline to compare with.

    python -m tests.bench.naive_adapter      (reads the service's env vars, incl. PORT)

One FastAPI app: POST /webhook parses the body and, in a `BackgroundTasks` call, runs
one agent node (`langchain.agents.create_agent` with the same chat model and no tools)
checkpointed by one `AsyncPostgresSaver`, with the customer's wa_id as thread_id, and
POSTs the reply to the Graph API with httpx — what the public templates do. No inbox,
no queue, no dedupe, no outbox, no read receipt, no router, memory, accounting, limits
or outcomes: a crash or a redelivery loses or doubles a reply. It exists only for the
benchmarks; nothing in the service uses it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import structlog
import uvicorn
from fastapi import BackgroundTasks, FastAPI, Request
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from graph.infra.chat_models import build_chat_model
from graph.infra.database import create_checkpointer, open_pool
from graph.settings import Settings, get_settings

log = structlog.get_logger(__name__)

SYSTEM_PROMPT = "You are the WhatsApp assistant of a bike rental shop. Answer briefly."


def create_naive_app(settings: Settings) -> FastAPI:
    if not settings.database_url:
        raise SystemExit("the naive adapter needs DATABASE_URL")
    database_url = settings.database_url
    model = build_chat_model(settings)
    if model is None:
        raise SystemExit("the naive adapter needs a model (OPENAI_API_KEY)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        token = settings.whatsapp_access_token
        headers = {"Authorization": f"Bearer {token.get_secret_value() if token else ''}"}
        async with (
            open_pool(database_url, settings) as pool,
            httpx.AsyncClient(
                base_url=settings.whatsapp_api_base_url,
                headers=headers,
                timeout=settings.whatsapp_timeout_seconds,
            ) as http,
        ):
            saver = create_checkpointer(pool)
            app.state.agent = create_agent(
                model, tools=[], system_prompt=SYSTEM_PROMPT, checkpointer=saver
            )
            app.state.http = http
            yield

    app = FastAPI(title="naive adapter", lifespan=lifespan, docs_url=None, redoc_url=None)

    async def answer(wa_id: str, text: str) -> None:
        config: Any = {"configurable": {"thread_id": wa_id}}
        result = await app.state.agent.ainvoke({"messages": [HumanMessage(content=text)]}, config)
        reply = result["messages"][-1].content
        path = f"/{settings.whatsapp_api_version}/{settings.whatsapp_phone_number_id}/messages"
        payload = {
            "messaging_product": "whatsapp",
            "to": wa_id,
            "type": "text",
            "text": {"body": str(reply)},
        }
        response = await app.state.http.post(path, json=payload)
        response.raise_for_status()

    @app.post("/webhook")
    async def webhook(request: Request, background: BackgroundTasks) -> dict[str, str]:
        body = json.loads(await request.body())
        for entry in body.get("entry", []):
            for change in entry.get("changes", []):
                for message in change.get("value", {}).get("messages", []):
                    if message.get("type") == "text":
                        background.add_task(answer, message["from"], message["text"]["body"])
        return {"status": "ok"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    settings = get_settings()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    app = create_naive_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
