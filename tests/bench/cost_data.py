"""The held-out cost conversations (tests/data/cost_conversations/) as checked data.

A conversation file says, per turn, what the customer writes (or taps), which specialist
should answer it, and what a real model would answer there: tool calls, then the text
(the format is in that folder's README.md). Loading checks what would otherwise surface
as a confusing benchmark figure: unknown tools, a tap with no question before it, a turn
after a handover to a person, a conversation that cannot be told apart by its lines.

Placeholders in arguments and texts are what a model reads off earlier tool results:
`{day+N}` (the N-th day after today in Kigali that the shop is open: no Sundays),
`{slot:WORDS}` (the first slot of the latest availability list whose line holds every
word), `{booking}`, `{payment}`, `{ticket}` (the latest booking number, payment reference
and ticket number the tools returned).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support_availability import LISTED_SLOT

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


def _listed_slots(text: str) -> list[tuple[str, str]]:
    """(slot id, "span bike") of each slot in a check_availability answer, in order: one
    line per span, "08:00–12:30 (rental): City bike 1 (slot 21), … at 6,000 RWF; …", or
    one line per slot, "slot 21: Tue 08 Dec 08:00–12:30, City bike 1 (rental) — …" (the
    service before 2026-12-07)."""
    found = []
    for line in text.splitlines():
        if one := re.match(r"slot (\d+):", line):
            found.append((one.group(1), line))
            continue
        span = line.split(" ", 1)[0]
        for listed in LISTED_SLOT.finditer(line):
            found.append((listed.group(2), f"{span} {listed.group(1)}"))
    return found


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
                for slot_id, listed in _listed_slots(text):
                    if all(word in listed.casefold() for word in words):
                        return slot_id
        else:
            for text in reversed(seen):
                found = _LATEST[name].findall(text)
                if found:
                    return str(found[-1])
        missing.append(name)
        return "0"
