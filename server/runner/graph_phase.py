"""The graph phase of a run: from the claimed messages to the replies to stage.

Feedback taps are answered without the graph (outcomes); documents, photos and voice
notes become text first (media); the spending caps may refuse the turn (accounting);
then the graph runs on the conversation's thread, streamed into early WhatsApp parts
when partial delivery is on. Nothing here sends or stages: the runner does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog
from langgraph.checkpoint.base import BaseCheckpointSaver

from graph.composition.agent_configs import AgentDirectory
from graph.composition.event_stream import StreamingGraph
from graph.composition.feature_flags import FeatureFlags
from graph.composition.graph_pool import GraphPool
from graph.composition.turns import THREAD_START, TurnOutcome, run_turn, thread_config
from graph.context import AgentConfig, ConversationContext
from graph.infra.database import Pool
from graph.infra.trace_metadata import app_version, traced_turn, with_trace_metadata
from graph.state import Reply, text_reply
from server.media import MediaUnderstanding
from server.runner.accounting import Accounting
from server.runner.conversations import record_waiting
from server.runner.customer_language import CustomerVoice
from server.runner.partial_delivery import FLAG as PARTIAL_DELIVERY
from server.runner.partial_delivery import PartialOptions, partial_delivery_if, streamed_for
from server.runner.runs import Claim
from server.runner.transport import Transport, Watched, channel_name
from server.whatsapp.numbers import WhatsAppNumbers

log = structlog.get_logger(__name__)

STEP_CHECKPOINTS = "step_checkpoints"


class TurnHooks(Protocol):
    """Business outcomes around a turn (server/outcomes/hooks.py): feedback taps answered
    without the graph, and the episode bookkeeping once the replies went out."""

    async def before_turn(self, claim: Claim) -> tuple[Claim, list[Reply]]: ...

    async def after_turn(
        self, claim: Claim, *, failed: bool, tokens: int, outcome: TurnOutcome | None
    ) -> None: ...


@dataclass(frozen=True)
class Thought:
    """What the graph phase produced: the replies, and what the episode needs after."""

    claim: Claim
    replies: list[Reply] = field(default_factory=list)
    outcome: TurnOutcome | None = None
    # Partial delivery was on: parts of this run's answer may have gone out already.
    sent_early: bool = False


@dataclass(frozen=True)
class GraphPhase:
    pool: Pool
    graphs: GraphPool
    # Each business number's client: media is downloaded with the receiving number's.
    numbers: WhatsAppNumbers
    partial: PartialOptions
    # Notices (a spending cap's) in the customer's language.
    voice: CustomerVoice
    # The release name traces carry (`WA_AGENT_APP_VERSION`); None: the package version.
    version: str | None = None
    agents: AgentDirectory | None = None
    flags: FeatureFlags | None = None
    outcomes: TurnHooks | None = None
    # Meters every model call of a run and applies the spending caps.
    accounting: Accounting | None = None
    media: MediaUnderstanding | None = None

    async def think(self, claim: Claim, transport: Transport | None = None) -> Thought:
        """Feedback taps are answered without a graph run; the rest goes to the graph.
        `transport`: the channel's, where early parts go (partial delivery)."""
        direct: list[Reply] = []
        if self.outcomes is not None:
            claim, direct = await self.outcomes.before_turn(claim)
        if not claim.messages:
            return Thought(claim, direct)
        if self.media is not None and channel_name(claim.phone_number_id) == "whatsapp":
            client = await self.numbers.client_for(claim.phone_number_id)
            if client is not None:
                understood = await self.media.understand(
                    claim.run_id, claim.wa_id, claim.messages, client
                )
                claim = replace(claim, messages=understood)
        outcome, partial = await self._run_graph(claim, transport)
        return Thought(claim, [*direct, *outcome.replies], outcome, sent_early=partial)

    async def _agents_of(self, phone_number_id: str) -> dict[str, AgentConfig]:
        """Today's agents, as the business number allows them: a support line may be
        answered by its own few agents only (the others are off for its customers)."""
        agents = dict(await self.agents.current()) if self.agents else {}
        allowed = self.numbers.agents_of(phone_number_id)
        if allowed is None:
            return agents
        return {
            name: config if name in allowed else replace(config, enabled=False)
            for name, config in agents.items()
        }

    async def _run_graph(
        self, claim: Claim, transport: Transport | None
    ) -> tuple[TurnOutcome, bool]:
        """The turn's outcome, and whether partial delivery was on for this customer."""
        channel = channel_name(claim.phone_number_id)
        config = with_trace_metadata(
            thread_config(claim.conversation_id, run_id=claim.run_id, wa_id=claim.wa_id),
            version=app_version(self.version),
            channel=channel,
        )
        context = await self._context_of(claim, channel)
        if self.accounting is not None:
            plan = await self.accounting.plan_turn(config, context)
            if plan.capped:
                text = plan.cap_message or await self.voice.say(claim, "spending_cap")
                return TurnOutcome(replies=[text_reply(text)]), False
            config, context = plan.config, plan.context
        partial_on = context.flag(PARTIAL_DELIVERY)
        inputs = {"messages": [m.content for m in claim.messages]}
        async with (
            traced_turn(config, inputs) as trace,
            partial_delivery_if(
                partial_on and not claim.resumed and not isinstance(transport, Watched),
                self.pool,
                transport,
                self.partial,
                conversation_id=claim.conversation_id,
                run_id=claim.run_id,
                wa_id=claim.wa_id,
                typing_on=str(claim.messages[-1].id),
            ) as partial,
            self.graphs.borrow() as graph,
        ):
            saver = graph.checkpointer
            if claim.rerun_from == THREAD_START and isinstance(saver, BaseCheckpointSaver):
                # Going again from the first turn's start: the thread held only that turn.
                await saver.adelete_thread(claim.conversation_id)
            turn_graph = (
                StreamingGraph(graph, transport.on_event)
                if isinstance(transport, Watched)
                else streamed_for(graph, partial)
            )
            outcome = await run_turn(
                turn_graph,
                config,
                context,
                claim.messages,
                claim.run_id,
                step_by_step=context.flag(STEP_CHECKPOINTS),
                fork_from=claim.rerun_from,
            )
            trace.record(outcome.state, outcome.replies)
        await self._record_waiting(claim, outcome)
        return outcome, partial_on

    async def _context_of(self, claim: Claim, channel: str) -> ConversationContext:
        """Who the run is for and what is on for them: the business number's agents and
        language, the customer's flags."""
        flags = (
            await self.flags.for_customer(claim.wa_id, claim.phone_number_id) if self.flags else {}
        )
        return ConversationContext(
            conversation_id=claim.conversation_id,
            wa_id=claim.wa_id,
            customer_name=claim.customer_name,
            channel=channel,
            phone_number_id=claim.phone_number_id,
            language=claim.language or self.voice.number_default(claim.phone_number_id),
            agents=await self._agents_of(claim.phone_number_id),
            flags=flags,
        )

    async def _record_waiting(self, claim: Claim, outcome: TurnOutcome) -> None:
        """The operator's inbox lists conversations waiting for a person."""
        status = "escalated" if outcome.waiting == "human" else "active"
        if status == claim.status:
            return
        await record_waiting(self.pool, claim.conversation_id, status)
