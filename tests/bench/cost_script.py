"""How the held-out conversations' scripted model answers reach the right request of the
real service (the conversations themselves: tests/bench/cost_data.py).

Writing a script per *request* would break whenever the service changes how many calls a
turn makes, which is exactly what tuning changes; so answers are matched to requests by
their kind instead (`request_kind`):

- **router** (structured output, as a JSON-schema response format or a forced function,
  whose schema has an `intent` enum): the turn's `agent` with confidence 0.9, as a good
  model would route it;
- **memory** (structured output with `memories`): the conversation's `memories`. This
  queued job runs after the turn (a minute later by default), so its conversation is
  found by content: the one whose distinctive customer lines the request quotes;
- **summary** (no tools, no schema: the running summary): the conversation's `summary`;
- any other structured output: the fake server's schema-valid default;
- **agent** (a request offering tools): the next scripted step of the current turn. The
  agent is told by the handoffs offered (every agent may hand over to all others but
  itself: one `hand_over` tool whose `agent` enum lists them, or, as the service once
  offered them, a `transfer_to_<agent>` tool each). A scripted tool the agent in charge
  is not offered is preceded by a handoff to its owner, as a model would hand over; a
  scripted handoff to the agent already in charge is skipped; with no step left it
  says "Okay." and the run counts it as unscripted.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from tests.bench.cost_data import (
    DISTINCTIVE_CHARS,
    ESCALATE,
    HANDOFF,
    Conversation,
    Resolver,
    agent_tools,
)
from tests.fakes.openai_stream import JSON, Reply, ToolCall, content_text

UNSCRIPTED_TEXT = "Okay."
HAND_OVER = "hand_over"


# --- matching requests to answers ------------------------------------------------------


def structured_output(body: JSON) -> tuple[JSON, str | None] | None:
    """The schema's properties of a structured-output request, and the forced function's
    name when it asks by function calling (None: a JSON-schema response format)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema", {}).get("schema") or {}).get("properties") or {}, None
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and (name := (choice.get("function") or {}).get("name")):
        for tool in body.get("tools") or []:
            function = tool.get("function") or {}
            if function.get("name") == name:
                return (function.get("parameters") or {}).get("properties") or {}, str(name)
    return None


def request_kind(body: JSON, agents: Sequence[str]) -> tuple[str, str | None]:
    """("router" | "memory" | "structured" | "agent" | "summary" | "vision", the agent)."""
    if (structured := structured_output(body)) is not None:
        properties = structured[0]
        if "enum" in (properties.get("intent") or {}):
            return "router", None
        return ("memory" if "memories" in properties else "structured"), None
    tools = [str((t.get("function") or {}).get("name")) for t in body.get("tools") or []]
    if tools:
        handed = {name.removeprefix(HANDOFF) for name in tools if name.startswith(HANDOFF)}
        handed |= hand_over_targets(body)
        itself = [agent for agent in agents if agent not in handed]
        return "agent", itself[0] if len(itself) == 1 else None
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(p.get("type") != "text" for p in content):
            return "vision", None
    return "summary", None


def hand_over_targets(body: JSON) -> set[str]:
    """The colleagues the request's `hand_over` tool lists (none: no such tool)."""
    for tool in body.get("tools") or []:
        function = tool.get("function") or {}
        if function.get("name") == HAND_OVER:
            agent = ((function.get("parameters") or {}).get("properties") or {}).get("agent")
            return {str(name) for name in (agent or {}).get("enum") or []}
    return set()


def handoff_call(body: JSON, target: str, reason: str) -> ToolCall | None:
    """A handoff to `target` the way this request offers it; None when it does not."""
    if target in hand_over_targets(body):
        return ToolCall(HAND_OVER, {"agent": target, "reason": reason})
    offered = {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}
    return ToolCall(HANDOFF + target, {"reason": reason}) if HANDOFF + target in offered else None


def _structured_reply(body: JSON, payload: JSON) -> Reply:
    """`payload` as the structured request asked for it: JSON text, or the forced call."""
    structured = structured_output(body)
    forced = structured[1] if structured else None
    return [ToolCall(forced, payload)] if forced else json.dumps(payload)


@dataclass(frozen=True)
class Label:
    """Whose request it was and what kind: how the bench adds it up."""

    conversation: str | None
    kind: str
    agent: str | None
    turn: int | None = None  # 1-based; None for calls outside the conversation's turns


@dataclass
class _Progress:
    conversation: Conversation
    turn: int = -1
    step: int = 0
    handoffs: int = 0  # handoffs the script added before the current step
    seen: list[str] = field(default_factory=list)  # tool results, oldest first
    notes: list[str] = field(default_factory=list)  # what did not go as scripted
    handoffs_added: list[str] = field(default_factory=list)  # the router chose otherwise
    agent_calls: int = 0  # in the current turn
    without_model: list[str] = field(default_factory=list)  # turns the service answered alone


class ScriptedModel:
    """The fake server's responder for a set of conversations played one turn at a time:
    `begin(conversation, turn)` before the turn's message is posted, `end()` after."""

    def __init__(self, conversations: Sequence[Conversation], today: dt.date) -> None:
        self.owners = agent_tools()
        self.resolver = Resolver(today)
        self.progress = {c.id: _Progress(c) for c in conversations}
        self.labels: dict[int, Label] = {}  # id() of each answered request's body
        self._current: _Progress | None = None
        self._lock = threading.Lock()

    @staticmethod
    def today_in(zone: str = "Africa/Kigali") -> dt.date:
        return dt.datetime.now(ZoneInfo(zone)).date()

    def begin(self, conversation_id: str, turn: int) -> None:
        with self._lock:
            progress = self.progress[conversation_id]
            progress.turn, progress.step, progress.handoffs = turn, 0, 0
            progress.agent_calls = 0
            self._current = progress

    def end(self) -> None:
        with self._lock:
            self._current = None

    def notes(self, conversation_id: str) -> list[str]:
        return list(self.progress[conversation_id].notes)

    def answered_without_model(self, conversation_id: str, reply: str) -> bool:
        """Whether the current turn made no agent call; if so it is noted with `reply`,
        what the service sent instead of the script's text (a rule's answer)."""
        with self._lock:
            progress = self.progress[conversation_id]
            if progress.agent_calls:
                return False
            progress.without_model.append(f"turn {progress.turn + 1}: {reply}")
            return True

    def without_model(self, conversation_id: str) -> list[str]:
        return list(self.progress[conversation_id].without_model)

    def handoffs_added(self, conversation_id: str) -> list[str]:
        """Handoffs the model made because the turn reached another agent than scripted:
        what a real model would do after that routing, not a failure of the script."""
        return list(self.progress[conversation_id].handoffs_added)

    def __call__(self, body: JSON) -> Reply | None:
        with self._lock:
            kind, agent = request_kind(body, list(self.owners))
            progress = self._by_content(body) if kind == "memory" else self._current
            if progress is None and kind != "memory":
                progress = self._by_content(body)
            owner = progress.conversation.id if progress is not None else None
            turn = progress.turn + 1 if progress is not None and progress is self._current else None
            self.labels[id(body)] = Label(owner, kind, agent, turn)
            if progress is None:
                return None
            return self._answer(progress, kind, agent, body)

    def _answer(
        self, progress: _Progress, kind: str, agent: str | None, body: JSON
    ) -> Reply | None:
        conversation = progress.conversation
        if kind == "router":
            turn = conversation.turns[max(progress.turn, 0)]
            structured = structured_output(body)
            choices = list(structured[0]["intent"]["enum"]) if structured else []
            intent = turn.agent if turn.agent in choices else choices[0]
            verdict = {"intent": intent, "confidence": 0.9, "reason": "as scripted"}
            return _structured_reply(body, verdict)
        if kind == "memory":
            return _structured_reply(body, {"memories": list(conversation.memories)})
        if kind == "summary":
            return str(self._resolved(progress, conversation.summary))
        if kind == "agent" and progress is self._current:
            progress.agent_calls += 1
            return self._agent_step(progress, agent, body)
        return None

    def _agent_step(self, progress: _Progress, agent: str | None, body: JSON) -> Reply:
        _remember_tool_results(progress, body)
        turn = progress.conversation.turns[progress.turn]
        offered = {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}
        while progress.step < len(turn.steps):
            step = turn.steps[progress.step]
            if step.text is not None:
                progress.step += 1
                return str(self._resolved(progress, step.text))
            tool = str(step.tool)
            if tool in offered:
                progress.step += 1
                return [ToolCall(tool, self._resolved(progress, dict(step.args)))]
            if tool.startswith(HANDOFF):  # a scripted handoff, offered another way
                progress.step += 1
                args = dict(step.args)
                call = handoff_call(body, tool.removeprefix(HANDOFF), str(args.get("reason")))
                if call is not None:
                    return [call]
                continue
            target = self._owner(tool, turn.agent)
            reason = f"The customer needs {tool.replace('_', ' ')}."
            handoff = handoff_call(body, target, reason) if target else None
            if handoff is not None and progress.handoffs < 2:
                progress.handoffs += 1
                progress.handoffs_added.append(f"turn {progress.turn + 1}: {agent} → {target}")
                return [handoff]
            progress.notes.append(f"turn {progress.turn + 1}: {agent} cannot {tool}")
            progress.step += 1
        progress.notes.append(f"turn {progress.turn + 1}: unscripted call to {agent}")
        return UNSCRIPTED_TEXT

    def _owner(self, tool: str, expected: str | None) -> str | None:
        owners = [name for name, tools in self.owners.items() if tool in tools]
        if expected in owners or (tool == ESCALATE and expected):
            return expected
        return owners[0] if owners else None

    def _resolved(self, progress: _Progress, raw: Any) -> Any:
        missing: list[str] = []
        value = self.resolver.value(raw, progress.seen, missing)
        for name in missing:
            progress.notes.append(f"turn {progress.turn + 1}: no {{{name}}} to be read")
        return value

    def resolved_text(self, conversation_id: str, raw: str) -> str:
        """A scripted text as it was sent (for checking what the customer received)."""
        with self._lock:
            progress = self.progress[conversation_id]
            return str(self.resolver.value(raw, progress.seen, []))

    def _by_content(self, body: JSON) -> _Progress | None:
        quoted = "\n".join(content_text(m.get("content")) for m in body.get("messages") or [])
        best, hits = None, 0
        for progress in self.progress.values():
            lines = [t.customer for t in progress.conversation.turns if t.customer]
            found = sum(1 for line in lines if len(line) >= DISTINCTIVE_CHARS and line in quoted)
            if found > hits:
                best, hits = progress, found
        return best


def _remember_tool_results(progress: _Progress, body: JSON) -> None:
    for message in body.get("messages") or []:
        if message.get("role") == "tool":
            text = content_text(message.get("content"))
            if text and text not in progress.seen:
                progress.seen.append(text)
