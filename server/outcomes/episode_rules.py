"""When an episode ends and how it went: small pure rules, kept apart to be read at a glance.

A goodbye closes an episode when the customer's turn is only thanks or farewell words
(in the languages our customers write: English, French, Kinyarwanda, Swahili, Spanish,
Portuguese, German) and the agent answered it without asking anything back — a reply
with a question mark means the agent did not take it as the end ("Anything else?" keeps
the episode open until the idle time closes it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["resolved_bot", "resolved_human", "abandoned", "error"]
CloseReason = Literal["idle", "goodbye"]
RESOLVED: frozenset[str] = frozenset({"resolved_bot", "resolved_human"})

# Whole phrases first (so "thank you" is one unit), then single words.
_CLOSING_PHRASES = (
    "thank you",
    "thanks a lot",
    "thank you very much",
    "that's all",
    "thats all",
    "that is all",
    "see you",
    "have a nice day",
    "have a good day",
    "all good",
    "no thanks",
    "no thank you",
    "merci beaucoup",
    "au revoir",
    "bonne journee",
    "c'est tout",
    "murakoze cyane",
    "asante sana",
    "muchas gracias",
    "hasta luego",
    "muito obrigado",
    "muito obrigada",
    "vielen dank",
    "auf wiedersehen",
)
_CLOSING_WORDS = frozenset(
    "thanks thx ty bye goodbye cheers merci bye-bye ciao murakoze urakoze mwiriwe asante "
    "kwaheri gracias adios obrigado obrigada tchau danke tschuss".split()
)
# Alone these only acknowledge ("ok" mid-booking is not a goodbye); beside a closing
# word they are part of it ("ok great, thanks").
_ACK_WORDS = frozenset(
    "ok okay great perfect cool fine nice awesome done parfait super sawa vale".split()
)
_FILLER = frozenset("so very much and a lot you all for it the your help ".split())
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
_MAX_GOODBYE_WORDS = 8


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("’", "'")


def is_goodbye(text: str) -> bool:
    """True for "thanks!", "ok thank you, bye", "murakoze cyane"; False for anything
    that still asks or tells something ("thanks, and how much is a helmet?")."""
    plain = _plain(text).strip()
    if not plain or "?" in plain:
        return False
    for phrase in sorted(_CLOSING_PHRASES, key=len, reverse=True):
        plain = plain.replace(phrase, " thanks ")
    words = _WORD.findall(plain)
    if not words or len(words) > _MAX_GOODBYE_WORDS:
        return False
    known = _CLOSING_WORDS | _ACK_WORDS | _FILLER
    return any(w in _CLOSING_WORDS for w in words) and all(w in known for w in words)


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
