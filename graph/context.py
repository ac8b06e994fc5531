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
    # on: long answers go out in up to three WhatsApp messages as the model writes them
    "partial_delivery": False,
    "spending_caps": True,  # off: WA_AGENT_*_CAP never applies to this customer
    # on: one satisfaction question after a resolved episode (server/outcomes/csat.py)
    "csat": False,
    # on: a booking's customer gets the reminder template before it starts, when one is
    # configured (server/outcomes/reminders.py)
    "booking_reminders": True,
    "payment_nudges": True,  # on: one nudge for a booking's open payment, when configured
    "answer_cache": False,  # on: common questions answered from the semantic answer cache
    # Tools (graph/composition/tool_platform.py); each exists only when configured, the flag then
    # decides per customer whether agents are offered it.
    "web_search": True,
    "deep_research": True,
    "mcp_tools": True,
    "code_interpreter": False,  # on: agents may run Python in the sandbox (tools/sandbox.py)
    # Media understanding (server/media/); off: the agent reads "[image]", "[voice note]".
    "media_documents": True,  # PDF, DOCX, TXT, CSV parsed into text
    "media_images": True,  # photos described by the vision model
    "media_voice": True,  # voice notes transcribed
    # on: every step of this customer's turns is checkpointed, so an operator can replay
    # from any step (after the router, say); off: one checkpoint per turn, plus one
    # before each tool step (graph/composition/turns.py), which is what the service can afford.
    "step_checkpoints": False,
}


@dataclass(frozen=True)
class ConversationContext:
    conversation_id: str = ""
    wa_id: str = ""
    customer_name: str | None = None
    channel: str = "whatsapp"
    # The business number the customer wrote to ("" in Studio and tests: every number's
    # catalog); a number may sell items of its own (catalog_items.phone_number_id).
    phone_number_id: str = ""
    # A replay re-runs history for a developer: it must never message the customer.
    replay: bool = False
    # The language the customer was last recognised writing in (contacts.language), for
    # the notices a node writes when this turn's words do not tell (nodes/notices.py).
    language: str | None = None
    # Empty means "the defaults the graph was built with" (LangGraph Studio, tests).
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    # This customer's flags, resolved by the worker (rollout is per customer).
    flags: Mapping[str, bool] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return self.flags.get(name, FLAG_DEFAULTS.get(name, False))
