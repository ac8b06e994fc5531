"""`wa-agent replay` and the admin replay routes share this: find the conversation,
run the replay or fork on a borrowed graph (graph/composition/replay.py), and send the new answers
to the customer only when asked to.

Replays are counted apart (`wa_agent_replays_total`) and traced with the `replay` tag
and metadata, so they never pass for production turns in metrics or LangSmith.

Every replay and fork is audited (`conversation.replay`, `conversation.fork`) with who
ran it — an admin token's name, or `cli:user@host` for `wa-agent replay`. The row is
committed before anything is sent, so a crash can leave a recorded send that never
left, never a send without its record; its `run_id` is the outbox's, where each part's
delivery is tracked.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from graph.composition.agent_configs import AgentDirectory
from graph.composition.feature_flags import FeatureFlags
from graph.composition.graph_pool import GraphPool
from graph.composition.replay import (
    CheckpointInfo,
    Replayer,
    ReplayError,
    ReplayNotFound,
    ReplayResult,
    checkpoint_history,
)
from graph.context import ConversationContext
from graph.infra.database import Pool
from graph.infra.trace_metadata import app_version
from graph.state import Reply
from server.audit import record_audit
from server.runner.conversations import find_conversation
from server.runner.outbox import deliver_parts, reply_parts, stage_parts
from server.runner.transport import Channels

REPLAYS = Counter("wa_agent_replays_total", "Replays and forks run by developers", ["kind", "sent"])


@dataclass(frozen=True)
class Replays:
    """What a replay uses of the running service: its pool and graphs, today's agents and
    flags (a replay runs with the configuration of now), the channels a sent answer goes
    out through (its conversation's number), and the version stamped on its traces."""

    pool: Pool
    graphs: GraphPool
    agents: AgentDirectory
    flags: FeatureFlags
    channels: Channels
    version: str | None


@dataclass(frozen=True)
class ReplayRequest:
    conversation_id: str
    checkpoint_id: str | None = None
    fork_text: str | None = None
    send: bool = False
    # Fields written over the checkpoint before a replay (not with a fork).
    state: dict[str, Any] | None = None


async def conversation_context(replays: Replays, conversation_id: str) -> ConversationContext:
    """The context a turn of this conversation runs with today (agents, flags)."""
    try:
        conversation_id = str(uuid.UUID(conversation_id))
    except ValueError as exc:
        raise ReplayNotFound(f"not a conversation id: {conversation_id!r}") from exc
    found = await find_conversation(replays.pool, conversation_id)
    if found is None:
        raise ReplayNotFound(f"no conversation {conversation_id}")
    return ConversationContext(
        conversation_id=conversation_id,
        wa_id=found.wa_id,
        customer_name=found.customer_name,
        phone_number_id=found.phone_number_id,
        agents=await replays.agents.current(),
        flags=await replays.flags.for_customer(found.wa_id, found.phone_number_id),
    )


async def list_checkpoints(
    replays: Replays, conversation_id: str, limit: int = 50
) -> list[CheckpointInfo]:
    context = await conversation_context(replays, conversation_id)
    async with replays.graphs.borrow() as graph:
        return await checkpoint_history(graph, context.conversation_id, limit=limit)


async def run_replay(
    replays: Replays, request: ReplayRequest, *, actor: str, remote_addr: str | None = None
) -> tuple[ReplayResult, int]:
    """The replay's result and how many messages went to the customer (0 unless `send`);
    audited as `actor` before anything is sent."""
    context = await conversation_context(replays, request.conversation_id)
    version = app_version(replays.version)
    async with replays.graphs.borrow() as graph:
        replayer = Replayer(graph, version)
        if request.fork_text is not None and request.state:
            raise ReplayError("edit the message (fork) or the state (replay), not both")
        if request.fork_text is not None:
            result = await replayer.fork(context, request.fork_text, request.checkpoint_id)
        else:
            result = await replayer.replay(context, request.checkpoint_id, request.state)
    parts = reply_parts(result.replies) if request.send else []
    run_id = str(uuid.uuid4()) if request.send else None
    async with replays.pool.connection() as conn:
        await record_audit(
            conn,
            actor=actor,
            action=f"conversation.{result.kind}",
            target=context.conversation_id,
            details={
                "checkpoint_id": result.from_checkpoint,
                "send": request.send,
                "parts": len(parts),
                "run_id": run_id,
            },
            remote_addr=remote_addr,
        )
    sent = await send_replies(replays, context, parts, run_id) if run_id else 0
    REPLAYS.labels(kind=result.kind, sent="yes" if request.send else "no").inc()
    return result, sent


async def send_replies(
    replays: Replays, context: ConversationContext, parts: list[Reply], run_id: str
) -> int:
    """Through the outbox like any answer (its own run id: each part at most once)."""
    await stage_parts(
        replays.pool,
        conversation_id=context.conversation_id,
        run_id=run_id,
        wa_id=context.wa_id,
        parts=parts,
        agent="replay",
    )
    channel = replays.channels.for_number(context.phone_number_id)
    return await deliver_parts(replays.pool, channel, run_id)


# --- the command line -----------------------------------------------------------------


def add_command(commands: Any) -> None:
    replay = commands.add_parser(
        "replay", help="list a conversation's checkpoints, replay or fork from one"
    )
    replay.add_argument("conversation", help="the conversation id (agent_conversations.id)")
    replay.add_argument("--list", action="store_true", help="list the checkpoints, newest first")
    replay.add_argument("--limit", type=int, default=50, help="checkpoints listed")
    replay.add_argument("--checkpoint", help="replay from this checkpoint id")
    replay.add_argument("--fork", metavar="TEXT", help="the turn again with this message")
    replay.add_argument(
        "--state", metavar="JSON", type=json.loads, help='edit the checkpoint first: {"f": v}'
    )
    replay.add_argument("--send", action="store_true", help="send the new answer to the customer")
    replay.add_argument("--json", action="store_true", help="print JSON instead of text")


def print_checkpoints(checkpoints: list[CheckpointInfo], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([c.as_dict() for c in checkpoints], indent=2))
        return
    print(f"{'checkpoint':36}  {'step':>4}  {'time':23}  {'ran':24}  next")
    for c in checkpoints:
        ran = ",".join(c.ran) or c.source
        line = f"{c.checkpoint_id:36}  {c.step:>4}  {c.created_at:23}  {ran:24}  "
        line += ",".join(c.next) or "-"
        if c.customer_text:
            line += f"  customer: {c.customer_text[:60]!r}"
        print(line)


def print_result(result: ReplayResult, sent: int, *, as_json: bool, send: bool) -> None:
    if as_json:
        print(json.dumps({**result.as_dict(), "sent": sent}, indent=2, default=str))
        return
    print(f"{result.kind} from checkpoint {result.from_checkpoint or '(the start)'}")
    print(f"ran: {' -> '.join(result.ran) or 'nothing'}")
    for text in result.texts:
        print(f"bot> {text}")
    if result.waiting:
        print(f"(waiting for {result.waiting})")
    for call in result.held_tools:
        arguments = json.dumps(call.get("args", {}), default=str)
        print(f"stopped before {call['name']}({arguments}): a replay changes nothing")
    print(f"sent to the customer: {sent}" if send else "not sent (use --send to send it)")
