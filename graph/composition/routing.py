"""The intent router, configured from settings (nodes/ never reads them)."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from graph.settings import Settings
from nodes.intents import RequestReader
from nodes.intents.shared import reader_over
from nodes.routing import IntentRouter, RouterConfig


def router_config(settings: Settings) -> RouterConfig:
    return RouterConfig(
        threshold=settings.router_threshold,
        switch_threshold=settings.router_switch_threshold,
        use_llm=settings.router_llm,
        llm_timeout_seconds=settings.router_llm_timeout_seconds,
    )


async def build_router(
    settings: Settings, embeddings: Embeddings, model: BaseChatModel | None
) -> IntentRouter:
    """Examples are embedded once; their vectors are cached under the data directory,
    so a restart with unchanged examples only refits the classifier (about a second)."""
    return await IntentRouter.acreate(
        embeddings,
        model=model,
        config=router_config(settings),
        vectors_cache=settings.data_dir / "cache",
    )


def menu_reader_over(router: IntentRouter) -> RequestReader:
    """What the rule-based menu reads typed requests with: this router's decisions, and
    a language guess fitted on its examples (no second copy of the classifier)."""
    return reader_over(router, dict(router.examples.by_language))
