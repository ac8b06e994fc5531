"""Replay a conversation from its checkpoints: list them, re-run the steps after one,
or fork a turn with an edited customer message — without touching the live thread.

Why a copy: LangGraph replays by writing new checkpoints on the same thread, branching
from the chosen one, and the newest checkpoint becomes the thread's head. The next real
customer message would then continue from the replay's invented answer. So a replay
copies the chosen checkpoint into a throw-away thread (`replay-<uuid>`), runs there,
reads the new answers, and deletes that thread: the live conversation's head, history
and next turn are exactly as before, and no replayed text lingers in the database
(where `forget` would not find it).

Nothing here sends anything; the caller decides (`wa-agent replay --send`).
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.types import StateSnapshot

from graph.composition.builder import ConversationGraph
from graph.composition.turns import DURABILITY, GraphStandIn, replayed_outcome, run_turn
from graph.context import ConversationContext
from graph.infra.trace_metadata import traced_turn, with_trace_metadata
from graph.state import (
    ConversationState,
    Reply,
    customer_message,
    latest_customer_messages,
    reply_text,
)
from tools.registry import HELD

REPLAY_THREAD_PREFIX = "replay-"


class ReplayError(ValueError):
    """Bad input (unknown conversation or checkpoint, nothing to replay): nothing ran."""


class ReplayNotFound(ReplayError):
    """The conversation, its turns or the checkpoint named do not exist."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One step of a conversation as a developer picks it: what ran, what comes next."""

    checkpoint_id: str
    step: int
    source: str  # input (a turn starts) | loop (a node finished) | update | fork
    ran: list[str]  # the node(s) whose writes this checkpoint holds
    next: list[str]  # the node(s) a replay from here re-runs
    created_at: str
    run_id: str | None
    customer_text: str | None  # on a turn's input checkpoint: what the customer wrote

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReplayResult:
    kind: Literal["replay", "fork"]
    conversation_id: str
    from_checkpoint: str | None
    replies: list[Reply]
    ran: list[str] = field(default_factory=list)
    waiting: str | None = None
    # Tool calls the replay stopped before, not made (tools/registry.py `side_effects`).
    held_tools: list[dict[str, Any]] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [reply_text(reply) for reply in self.replies]

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "texts": self.texts}


def _thread(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def checkpoint_history(
    graph: ConversationGraph, conversation_id: str, *, limit: int = 50
) -> list[CheckpointInfo]:
    """The newest `limit` checkpoints, newest first."""
    snapshots = [s async for s in graph.aget_state_history(_thread(conversation_id))]
    parents: list[StateSnapshot | None] = [*snapshots[1:], None]
    children: list[StateSnapshot | None] = [None, *snapshots[:-1]]
    described = zip(snapshots, parents, children, strict=True)
    return [_describe(s, parent, child) for s, parent, child in described][:limit]


def _describe(
    snapshot: StateSnapshot, parent: StateSnapshot | None, child: StateSnapshot | None
) -> CheckpointInfo:
    """`parent.next` ran to write this checkpoint; a turn's input is in its child."""
    metadata: Mapping[str, Any] = snapshot.metadata or {}
    source = str(metadata.get("source", ""))
    customer_text = None
    if source == "input" and child is not None:
        turn = latest_customer_messages(list(child.values.get("messages", [])))
        customer_text = "\n".join(str(m.content) for m in turn) or None
    return CheckpointInfo(
        checkpoint_id=str(snapshot.config["configurable"]["checkpoint_id"]),
        step=int(metadata.get("step", -1)),
        source=source,
        ran=list(parent.next) if parent is not None and source == "loop" else [],
        next=list(snapshot.next),
        created_at=_local_time(snapshot.created_at),
        run_id=metadata.get("run_id"),
        customer_text=customer_text,
    )


def _local_time(created_at: str | None) -> str:
    if not created_at:
        return ""
    return datetime.fromisoformat(created_at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _check_state_edit(state: Mapping[str, Any] | None) -> None:
    """Only the state's own fields; `messages` is appended to (or replaced by id)."""
    unknown = set(state or {}) - set(ConversationState.__annotations__)
    if unknown:
        raise ReplayError(f"not fields of the conversation state: {sorted(unknown)}")


class _Dry(GraphStandIn):
    """The graph as a replay runs it (graph/composition/turns.py's `TurnGraph`). The replay's
    context says `replay`, so the tool registry holds every side-effecting call, from
    whichever node (tools/registry.py): the run stops there on a `held` interrupt, and
    the calls it stopped before are kept here for the report."""

    def __init__(self, graph: ConversationGraph) -> None:
        super().__init__(graph)
        self.held: list[dict[str, Any]] = []

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        durability: Any = None,
        interrupt_before: Any = None,
    ) -> Any:
        result = await self.graph.ainvoke(
            input, config, context=context, durability=durability, interrupt_before=interrupt_before
        )
        self.held += [
            {key: value for key, value in i.value.items() if key != "type"}
            for i in result.get("__interrupt__") or ()
            if isinstance(i.value, dict) and i.value.get("type") == HELD
        ]
        return result


class Replayer:
    """Runs replays of one conversation on a borrowed compiled graph."""

    def __init__(self, graph: ConversationGraph, version: str) -> None:
        saver = graph.checkpointer
        if not isinstance(saver, BaseCheckpointSaver):
            raise ReplayError("replay needs a graph compiled with a checkpointer")
        self.graph = graph
        self.saver: BaseCheckpointSaver[Any] = saver
        self.version = version

    async def replay(
        self,
        context: ConversationContext,
        checkpoint_id: str | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> ReplayResult:
        """Re-run the steps after `checkpoint_id`, with `state` written over that
        checkpoint first (`update_state`, as the node that wrote it: e.g. another
        `active_agent` re-routes what follows). Default: the last turn, from the state
        before it with the same customer messages (a turn saves one checkpoint at its
        end, so its start is that state plus its input)."""
        conversation_id = context.conversation_id
        if checkpoint_id is None:
            return await self._replay_latest_turn(context, state)
        source = await self._checkpoint(conversation_id, checkpoint_id)
        at = await self.graph.aget_state(_thread(conversation_id, checkpoint_id))
        if not at.next:
            raise ReplayError(
                "nothing runs after that checkpoint (a turn's end): pick an earlier one,"
                " or fork the next turn with a message"
            )
        _check_state_edit(state)
        guarded = _Dry(self.graph)
        writer = await self._writer_of(at) if state else None
        async with self._copy(source, context) as (config, replay_context):
            if state:
                await self.graph.aupdate_state(config, dict(state), as_node=writer)
            async with traced_turn(
                config, {"from_checkpoint": checkpoint_id}, name="replay_turn"
            ) as trace:
                result = await guarded.ainvoke(
                    None, config, context=replay_context, durability=DURABILITY
                )
                outcome = replayed_outcome(result, replay_context.language)
                trace.record(result, outcome.replies)
            ran = await self._nodes_run(config)
        return ReplayResult(
            "replay",
            conversation_id,
            checkpoint_id,
            outcome.replies,
            ran,
            outcome.waiting,
            guarded.held,
        )

    async def _replay_latest_turn(
        self, context: ConversationContext, state: Mapping[str, Any] | None
    ) -> ReplayResult:
        conversation_id = context.conversation_id
        base, messages = await self._latest_turn(conversation_id)
        _check_state_edit(state)
        source = await self._checkpoint(conversation_id, base) if base else None
        guarded = _Dry(self.graph)
        async with self._copy(source, context) as (config, replay_context):
            if state and source is not None:
                await self.graph.aupdate_state(config, dict(state))
            texts = [str(m.content) for m in messages]
            async with traced_turn(config, {"messages": texts}, name="replay_turn") as trace:
                outcome = await run_turn(
                    guarded, config, replay_context, messages, str(uuid.uuid4()), step_by_step=True
                )
                trace.record(outcome.state, outcome.replies)
            ran = await self._nodes_run(config)
        return ReplayResult(
            "replay", conversation_id, base, outcome.replies, ran, outcome.waiting, guarded.held
        )

    async def fork(
        self, context: ConversationContext, text: str, checkpoint_id: str | None = None
    ) -> ReplayResult:
        """The turn again with the customer's message replaced by `text`: from the state
        before that turn (default: the last one), or from `checkpoint_id`."""
        if not text.strip():
            raise ReplayError("the edited message is empty")
        conversation_id = context.conversation_id
        base = checkpoint_id or await self._before_latest_turn(conversation_id)
        source = await self._checkpoint(conversation_id, base) if base else None
        message = customer_message(text, wamid=f"replay-{uuid.uuid4().hex}", kind="text")
        run_id = str(uuid.uuid4())
        guarded = _Dry(self.graph)
        async with self._copy(source, context) as (config, replay_context):
            async with traced_turn(config, {"messages": [text]}, name="replay_turn") as trace:
                outcome = await run_turn(
                    guarded, config, replay_context, [message], run_id, step_by_step=True
                )
                trace.record(outcome.state, outcome.replies)
            ran = await self._nodes_run(config)
        return ReplayResult(
            "fork", conversation_id, base, outcome.replies, ran, outcome.waiting, guarded.held
        )

    async def _latest_turn(self, conversation_id: str) -> tuple[str | None, list[HumanMessage]]:
        """The checkpoint before the conversation's last turn (None: the turn was its
        first), and the customer's messages that turn answered."""
        history = [s async for s in self.graph.aget_state_history(_thread(conversation_id))]
        if not history:
            raise ReplayNotFound("this conversation has no recorded turn")
        last_run = (history[0].metadata or {}).get("run_id")
        before = next((s for s in history if (s.metadata or {}).get("run_id") != last_run), None)
        seen = {m.id for m in (before.values.get("messages", []) if before else [])}
        messages = [
            m
            for m in history[0].values.get("messages", [])
            if isinstance(m, HumanMessage) and m.id not in seen
        ]
        if not messages:
            raise ReplayNotFound("the last turn has no customer message to replay")
        base = str(before.config["configurable"]["checkpoint_id"]) if before else None
        return base, messages

    async def _before_latest_turn(self, conversation_id: str) -> str | None:
        return (await self._latest_turn(conversation_id))[0]

    async def _checkpoint(self, conversation_id: str, checkpoint_id: str) -> CheckpointTuple:
        saved = await self.saver.aget_tuple(_thread(conversation_id, checkpoint_id))
        if saved is None:
            raise ReplayNotFound(f"no checkpoint {checkpoint_id} in this conversation")
        return saved

    async def _writer_of(self, snapshot: StateSnapshot) -> str | None:
        """The node an edit at `snapshot` is written as. Of several run in one step (recall
        and summarize beside the router), the one whose edges lead on: written as a node
        without edges, the edit would end the run there. None: LangGraph tells."""
        if snapshot.parent_config is None:
            return None
        parent = await self.graph.aget_state(snapshot.parent_config)
        ran = [node for node in parent.next if node != "__start__"]
        if len(ran) < 2:
            return None
        builder = self.graph.builder
        leads_on = {start for start, _ in builder.edges} | set(builder.branches)
        return next((node for node in ran if node in leads_on), ran[-1])

    def _copy(self, source: CheckpointTuple | None, context: ConversationContext) -> _ReplayThread:
        return _ReplayThread(self, source, context)

    async def _nodes_run(self, config: RunnableConfig) -> list[str]:
        """The nodes the replay ran, in order (its thread's history, oldest first)."""
        history = [s async for s in self.graph.aget_state_history(config)]
        ran: list[str] = []
        for snapshot, parent in itertools.pairwise(history):
            if (snapshot.metadata or {}).get("source") == "loop":
                ran[:0] = [n for n in parent.next if n != "__start__"]
        return ran


class _ReplayThread:
    """`async with`: a throw-away thread holding a copy of `source`, deleted on exit."""

    def __init__(
        self,
        replayer: Replayer,
        source: CheckpointTuple | None,
        context: ConversationContext,
    ) -> None:
        self.replayer = replayer
        self.source = source
        self.thread_id = f"{REPLAY_THREAD_PREFIX}{uuid.uuid4()}"
        self.context = dataclasses.replace(context, replay=True)

    async def __aenter__(self) -> tuple[RunnableConfig, ConversationContext]:
        saver = self.replayer.saver
        if self.source is not None:
            checkpoint = self.source.checkpoint
            copied = self.source.metadata.copy()
            copied["source"] = "fork"
            await saver.aput(
                _thread(self.thread_id), checkpoint, copied, dict(checkpoint["channel_versions"])
            )
        config = with_trace_metadata(
            {
                "configurable": {"thread_id": self.thread_id, "wa_id": self.context.wa_id},
                "metadata": {"replay_of": self.context.conversation_id},
            },
            version=self.replayer.version,
            channel=self.context.channel,
            replay=True,
        )
        # Traces group under the conversation replayed, not the throw-away thread.
        metadata = dict(config.get("metadata") or {})
        metadata["thread_id"] = metadata["conversation_id"] = self.context.conversation_id
        return {**config, "metadata": metadata}, self.context

    async def __aexit__(self, *exc_info: object) -> None:
        await self.replayer.saver.adelete_thread(self.thread_id)
