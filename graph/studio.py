"""The entry `langgraph.json` names: the same graph, without a checkpointer of its own
(`langgraph dev` and LangGraph Platform bring theirs).

It has the router and the five specialists with their handoffs; the business tools
need the service's database pool, so Studio runs without them (agents answer without
looking anything up) — run `wa-agent serve` for the full service.
"""

from __future__ import annotations

from graph.agents import load_default_agents
from graph.builder import build_graph
from graph.embeddings import build_embeddings
from graph.models import ChatModels, build_chat_model
from graph.prompts import load_prompts
from graph.routing import router_config
from graph.settings import get_settings
from nodes.routing import IntentRouter

_settings = get_settings()
_model = build_chat_model(_settings)
_router = (
    IntentRouter.create(
        build_embeddings(_settings),
        model=_model,
        config=router_config(_settings),
        vectors_cache=_settings.data_dir / "cache",
    )
    if _model is not None
    else None
)
graph = build_graph(
    _model,
    load_prompts(_settings.business_name),
    router=_router,
    agents=load_default_agents(_settings.business_name),
    chat_model_for=ChatModels(_settings, _model).for_agent if _model is not None else None,
)
