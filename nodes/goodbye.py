"""The zero-token goodbye: "thanks!" after an answer is answered by the service itself.

A customer's "merci beaucoup" or "asante sana" at the end of a conversation asks for
nothing, yet a model call would re-read the whole conversation to write "You're
welcome" — the costliest call of a short conversation. When the turn is only thanks or
farewell words (in the languages our customers write: English, French, Kinyarwanda,
Swahili, Spanish, Portuguese, German) and the bot's last answer asked nothing back, the
notice `goodbye` (prompts/notices/) answers in the customer's language instead. After a
question ("Shall I book it?") the same words may be an answer ("ok thanks" = yes), so
the agent reads them.

The same rule tells the outcome hooks that a conversation ended on a goodbye
(server/outcomes/episode_rules.py).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from graph.context import ConversationContext
from graph.state import ConversationState, text_reply, whatsapp_meta
from nodes.fallback import as_history
from nodes.node_types import ContextNode
from nodes.notices import GuessLanguage, Notices, customer_language

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
    "ok okay great perfect cool fine nice awesome done parfait super sawa vale perfecto perfeito"
    " beleza".split()
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


def ends_conversation(state: ConversationState) -> bool:
    """The customer's turn is only typed thanks or farewells, and the bot's last message
    before it answered without asking anything (and there was one)."""
    turn: list[HumanMessage] = []
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            turn.append(message)
            continue
        if not turn or not isinstance(message, AIMessage) or message.tool_calls:
            return False
        asked = "?" in message.text or "؟" in message.text
        typed = all(not whatsapp_meta(m).get("reply_id") for m in turn)
        text = " ".join(str(m.content) for m in reversed(turn))
        return not asked and typed and is_goodbye(text)
    return False


def make_goodbye_node(notices: Notices, language_of: GuessLanguage | None) -> ContextNode:
    """The node that answers a goodbye, in the language of the customer's latest words
    that tell one, else the one kept on the contact, else English."""

    async def say_goodbye(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> dict[str, Any]:
        language = customer_language(state, runtime.context, language_of)
        reply = text_reply(notices.say("goodbye", language))
        return {"messages": [as_history(reply, "goodbye")], "replies": [reply]}

    return say_goodbye
