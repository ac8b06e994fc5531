"""When an episode ends and how it went: small pure rules, kept apart to be read at a glance.

A goodbye closes an episode when the customer's turn is only thanks or farewell words
(nodes/goodbye.py `is_goodbye`) and the agent answered it without asking anything back —
a reply with a question mark means the agent did not take it as the end ("Anything
else?" keeps the episode open until the idle time closes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["resolved_bot", "resolved_human", "abandoned", "error"]
CloseReason = Literal["idle", "goodbye"]
RESOLVED: frozenset[str] = frozenset({"resolved_bot", "resolved_human"})


def agent_confirms_goodbye(reply_texts: list[str]) -> bool:
    """The agent said something and asked nothing back."""
    return bool(reply_texts) and not any("?" in text for text in reply_texts)


@dataclass(frozen=True)
class EpisodeFacts:
    """What the outcome is decided from, read from the episode row when it closes."""

    last_turn_failed: bool
    human_replied: bool
    escalated: bool
    waiting: str | None
    answered_last_message: bool


def decide_outcome(facts: EpisodeFacts, reason: CloseReason) -> Outcome:
    """In order: a last turn that failed is an error; a person who replied resolved it;
    an escalation nobody answered, a question left waiting for a tap, or a customer
    message left without a reply is abandoned; otherwise the bot resolved it (on a
    goodbye, or by answering and hearing nothing more within the idle time)."""
    if facts.last_turn_failed:
        return "error"
    if facts.human_replied:
        return "resolved_human"
    if facts.escalated or facts.waiting is not None:
        return "abandoned"
    if reason == "goodbye" or facts.answered_last_message:
        return "resolved_bot"
    return "abandoned"
