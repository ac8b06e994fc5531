"""Prometheus counters of the conversation graph (served by the app's `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter

ROUTE_DECISIONS = Counter(
    "wa_agent_route_decisions_total", "Router decisions by intent and method", ["intent", "method"]
)
HANDOFFS = Counter("wa_agent_handoffs_total", "Handoffs between agents", ["source", "target"])
