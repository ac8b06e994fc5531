"""The held-out cost conversations as data (tests/data/cost_conversations/), and how their
scripted model answers reach the right request of the real service.

A conversation file says, per turn, what the customer writes (or taps), which specialist
should answer it, and what a real model would answer there: tool calls, then the text.
Writing a script per *request* would break whenever the service changes how many calls a
turn makes, which is exactly what tuning changes; so answers are matched to requests by
their kind instead (`request_kind`):

- **router** (structured output whose schema has an `intent` enum): the turn's `agent`
  with confidence 0.9, as a good model would route it;
- **memory** (structured output with `memories`): the conversation's `memories`. This
  queued job runs after the turn (a minute later by default), so its conversation is
  found by content: the one whose distinctive customer lines the request quotes;
- **summary** (no tools, no schema: the running summary): the conversation's `summary`;
- any other structured output: the fake server's schema-valid default;
- **agent** (a request offering tools): the next scripted step of the current turn. The
  agent is told by the handoff tools offered (every agent is offered all others but
  itself). A scripted tool the agent in charge is not offered is preceded by a
  `transfer_to_<owner>` call, as a model would hand over; a scripted handoff to the
  agent already in charge is skipped; with no step left it says "Okay." and the run
  counts it as unscripted.

Placeholders in arguments and texts are what a model reads off earlier tool results:
`{day+N}` (the N-th day after today in Kigali that the shop is open: no Sundays),
`{slot:WORDS}` (the first slot of the latest availability list whose line holds every
word), `{booking}`, `{payment}`, `{ticket}` (the latest booking number, payment reference
and ticket number the tools returned).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from tests.fakes.openai_stream import JSON, Reply, ToolCall, content_text

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "tests" / "data" / "cost_conversations"
AGENTS_DIR = REPO / "prompts" / "agents"
TOPICS = frozenset({"booking", "purchase", "payment", "support", "faq", "escalation"})
LANGUAGES = frozenset({"en", "fr", "rw", "sw", "es", "pt"})
CONFIRMING = frozenset(
    {"create_booking", "reschedule_booking", "cancel_booking", "create_payment", "cancel_payment"}
)
HANDOFF = "transfer_to_"
HUMAN = "human"
ESCALATE = "escalate_to_human"
UNSCRIPTED_TEXT = "Okay."
DISTINCTIVE_CHARS = 12  # a customer line this long can tell its conversation apart


@dataclass(frozen=True)
class Step:
    """One model answer: a text to the customer, or one tool call."""

    text: str | None = None
    tool: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """What the customer sends (a text, or a tap on the waiting question's Confirm/Cancel
    button) and what the model answers in that turn."""

    customer: str | None
    tap: str | None  # "yes" | "no"
    agent: str | None  # who should answer a text turn (a router's truth)
    steps: tuple[Step, ...]

    @property
    def final_text(self) -> str | None:
        texts = [step.text for step in self.steps if step.text is not None]
        return texts[-1] if texts else None


@dataclass(frozen=True)
class Conversation:
    id: str
    topic: str
    languages: tuple[str, ...]
    customer_name: str
    turns: tuple[Turn, ...]
    summary: str
    memories: tuple[Mapping[str, Any], ...]


def agent_tools(directory: Path = AGENTS_DIR) -> dict[str, frozenset[str]]:
    """Each agent's own tools, read from the front matter of its prompt file: who owns a
    scripted tool follows the service's allow-lists as they are today."""
    owners: dict[str, frozenset[str]] = {}
    for path in sorted(directory.glob("*.md")):
        front = path.read_text(encoding="utf-8").split("---")[1]
        owners[path.stem] = frozenset(yaml.safe_load(front).get("tools") or [])
    return owners


def load_conversations(directory: Path = DATA_DIR) -> list[Conversation]:
    """Every `*.yaml` of the directory, in file-name order, checked (ValueError)."""
    owned = agent_tools()
    conversations = [_parse(path, owned) for path in sorted(directory.glob("*.yaml"))]
    if len({c.id for c in conversations}) != len(conversations):
        raise ValueError("conversation ids must be unique")
    for conversation in conversations:
        others = {t.customer for c in conversations if c is not conversation for t in c.turns}
        if not any(
            t.customer and len(t.customer) >= DISTINCTIVE_CHARS and t.customer not in others
            for t in conversation.turns
        ):
            raise ValueError(f"{conversation.id}: no customer line of its own to be found by")
    return conversations


def _parse(path: Path, owned: Mapping[str, frozenset[str]]) -> Conversation:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = path.name
    known_tools = set().union(*owned.values()) | {ESCALATE} | {HANDOFF + a for a in owned}
    turns: list[Turn] = []
    for index, item in enumerate(raw["turns"]):
        steps = tuple(_step(s, known_tools, f"{where} turn {index + 1}") for s in item["model"])
        turn = Turn(item.get("customer"), item.get("tap"), item.get("agent"), steps)
        _check_turn(turn, turns[-1] if turns else None, set(owned), f"{where} turn {index + 1}")
        turns.append(turn)
    conversation = Conversation(
        id=str(raw["id"]),
        topic=str(raw["topic"]),
        languages=tuple(raw["languages"]),
        customer_name=str(raw["customer"]),
        turns=tuple(turns),
        summary=str(raw["summary"]).strip(),
        memories=tuple(raw.get("memories") or ()),
    )
    if conversation.topic not in TOPICS or not set(conversation.languages) <= LANGUAGES:
        raise ValueError(f"{where}: unknown topic or language")
    if not 3 <= len(turns) <= 10:
        raise ValueError(f"{where}: {len(turns)} customer turns; 3 to 10 expected")
    for turn in turns[:-1]:  # a person has the conversation after these: the bot is silent
        if turn.agent == HUMAN or any(step.tool == ESCALATE for step in turn.steps):
            raise ValueError(f"{where}: only the last turn may hand over to a person")
    return conversation


def _step(raw: Mapping[str, Any], known_tools: set[str], where: str) -> Step:
    step = Step(raw.get("text"), raw.get("tool"), raw.get("args") or {})
    if (step.text is None) == (step.tool is None):
        raise ValueError(f"{where}: a step is either a text or a tool call")
    if step.tool is not None and step.tool not in known_tools:
        raise ValueError(f"{where}: unknown tool {step.tool}")
    return step


def _check_turn(turn: Turn, before: Turn | None, agents: set[str], where: str) -> None:
    if (turn.customer is None) == (turn.tap is None):
        raise ValueError(f"{where}: a turn is either a customer text or a tap")
    if turn.tap is not None:
        asked = before is not None and bool(before.steps) and before.steps[-1].tool in CONFIRMING
        if turn.tap not in ("yes", "no") or not asked:
            raise ValueError(f"{where}: a tap answers the question a confirming tool asked")
    elif turn.agent not in agents | {HUMAN}:
        raise ValueError(f"{where}: agent must be one of {sorted(agents | {HUMAN})}")
    if not turn.steps and turn.agent != HUMAN:
        raise ValueError(f"{where}: the model answers every turn but a person's")


# --- placeholders ----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(day\+\d+|slot:[^}]+|booking|payment|ticket)\}")
_LATEST = {
    "booking": re.compile(r"booking #(\d+)", re.IGNORECASE),
    "payment": re.compile(r"\b(PAY-[A-Z0-9-]+)"),
    "ticket": re.compile(r"Ticket #(\d+)", re.IGNORECASE),
}


def open_day(today: dt.date, days: int) -> dt.date:
    """The `days`-th day after today the shop is open (Sundays closed): distinct numbers
    give distinct days, so conversations never compete for a slot, whatever the weekday."""
    day = today
    for _ in range(days):
        day += dt.timedelta(days=1)
        if day.weekday() == 6:
            day += dt.timedelta(days=1)
    return day


class Resolver:
    """Fills placeholders from the tool results a request shows (newest last)."""

    def __init__(self, today: dt.date) -> None:
        self.today = today

    def value(self, raw: Any, seen: Sequence[str], missing: list[str]) -> Any:
        if isinstance(raw, Mapping):
            return {key: self.value(item, seen, missing) for key, item in raw.items()}
        if isinstance(raw, list):
            return [self.value(item, seen, missing) for item in raw]
        if not isinstance(raw, str):
            return raw
        text = _PLACEHOLDER.sub(lambda m: self._one(m.group(1), seen, missing), raw)
        whole = _PLACEHOLDER.fullmatch(raw) is not None
        return int(text) if whole and text.isdigit() else text

    def _one(self, name: str, seen: Sequence[str], missing: list[str]) -> str:
        if name.startswith("day+"):
            return open_day(self.today, int(name[4:])).isoformat()
        if name.startswith("slot:"):
            words = name[5:].casefold().split()
            for text in reversed(seen):
                for line in text.splitlines():
                    slot = re.match(r"slot (\d+):", line)
                    if slot and all(word in line.casefold() for word in words):
                        return slot.group(1)
        else:
            for text in reversed(seen):
                found = _LATEST[name].findall(text)
                if found:
                    return str(found[-1])
        missing.append(name)
        return "0"


# --- matching requests to answers ------------------------------------------------------


def request_kind(body: JSON, agents: Sequence[str]) -> tuple[str, str | None]:
    """("router" | "memory" | "structured" | "agent" | "summary" | "vision", the agent)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        properties = (fmt.get("json_schema", {}).get("schema") or {}).get("properties") or {}
        if "enum" in (properties.get("intent") or {}):
            return "router", None
        return ("memory" if "memories" in properties else "structured"), None
    tools = [str((t.get("function") or {}).get("name")) for t in body.get("tools") or []]
    if tools:
        handed = {name.removeprefix(HANDOFF) for name in tools if name.startswith(HANDOFF)}
        itself = [agent for agent in agents if agent not in handed]
        return "agent", itself[0] if len(itself) == 1 else None
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(p.get("type") != "text" for p in content):
            return "vision", None
    return "summary", None


@dataclass(frozen=True)
class Label:
    """Whose request it was and what kind: how the bench adds it up."""

    conversation: str | None
    kind: str
    agent: str | None


@dataclass
class _Progress:
    conversation: Conversation
    turn: int = -1
    step: int = 0
    handoffs: int = 0  # handoffs the script added before the current step
    seen: list[str] = field(default_factory=list)  # tool results, oldest first
    notes: list[str] = field(default_factory=list)


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
            self._current = progress

    def end(self) -> None:
        with self._lock:
            self._current = None

    def notes(self, conversation_id: str) -> list[str]:
        return list(self.progress[conversation_id].notes)

    def __call__(self, body: JSON) -> Reply | None:
        with self._lock:
            kind, agent = request_kind(body, list(self.owners))
            progress = self._by_content(body) if kind == "memory" else self._current
            if progress is None and kind != "memory":
                progress = self._by_content(body)
            owner = progress.conversation.id if progress is not None else None
            self.labels[id(body)] = Label(owner, kind, agent)
            if progress is None:
                return None
            return self._answer(progress, kind, agent, body)

    def _answer(
        self, progress: _Progress, kind: str, agent: str | None, body: JSON
    ) -> Reply | None:
        conversation = progress.conversation
        if kind == "router":
            turn = conversation.turns[max(progress.turn, 0)]
            schema = body["response_format"]["json_schema"]["schema"]["properties"]
            choices = schema["intent"]["enum"]
            intent = turn.agent if turn.agent in choices else choices[0]
            return json.dumps({"intent": intent, "confidence": 0.9, "reason": "as scripted"})
        if kind == "memory":
            return json.dumps({"memories": list(conversation.memories)})
        if kind == "summary":
            return str(self._resolved(progress, conversation.summary))
        if kind == "agent" and progress is self._current:
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
            target = self._owner(tool, turn.agent)
            handoff = HANDOFF + target if target else ""
            if not tool.startswith(HANDOFF) and handoff in offered and progress.handoffs < 2:
                progress.handoffs += 1
                progress.notes.append(f"turn {progress.turn + 1}: {agent} handed to {target}")
                reason = f"The customer needs {tool.replace('_', ' ')}."
                return [ToolCall(handoff, {"reason": reason})]
            if not tool.startswith(HANDOFF):
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
