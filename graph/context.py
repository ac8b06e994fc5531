"""Per-run facts handed to nodes through LangGraph's runtime context.

Long-lived dependencies (chat models, tools, the router) are given to node factories
when the graph is built; what changes from one run to the next lives here, including
the agents' configuration as the operator last saved it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AgentConfig:
    """One specialist, as a row of `agent_configurations` (defaults from prompts/agents/)."""

    name: str
    display_name: str
    description: str
    system_prompt: str
    tools: tuple[str, ...] = ()
    model: str | None = None
    temperature: float | None = None
    enabled: bool = True
    version: int = 1


# Every optional capability has a flag; the value here is what it is when nothing
# (environment, `feature_flags` table) says otherwise.
FLAG_DEFAULTS: Mapping[str, bool] = {
    "ai_agent": True,  # off: the rule-based menu answers instead of the agents
}


@dataclass(frozen=True)
class ConversationContext:
    conversation_id: str = ""
    wa_id: str = ""
    customer_name: str | None = None
    channel: str = "whatsapp"
    # A replay re-runs history for a developer: it must never message the customer.
    replay: bool = False
    # Empty means "the defaults the graph was built with" (LangGraph Studio, tests).
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    # This customer's flags, resolved by the worker (rollout is per customer).
    flags: Mapping[str, bool] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return self.flags.get(name, FLAG_DEFAULTS.get(name, False))
