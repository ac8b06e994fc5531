"""The entry `langgraph.json` names: the same graph, without a checkpointer of its own
(`langgraph dev` and LangGraph Platform bring theirs)."""

from __future__ import annotations

from graph.builder import build_graph
from graph.models import build_chat_model
from graph.prompts import load_prompts
from graph.settings import get_settings

_settings = get_settings()
graph = build_graph(build_chat_model(_settings), load_prompts(_settings.business_name))
