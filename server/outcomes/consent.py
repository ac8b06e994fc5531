"""Whether we may write to a customer first: their STOP and START, by keyword.

A customer who writes only a stop word ("STOP", "unsubscribe", "arrêter", "parar",
"acha", "hagarara"…) is opted out of every message they did not ask for: the CSAT
question, an operator's template (server/http/admin/template_routes.py). Each sender asks
`may_message_first` before it writes. The customer can still write to us at any time
and is answered as usual; "START" (or "commencer", "anza", "tangira"…) opts them back in.

The keyword must be the whole message (case, punctuation and accents aside): "the chain
won't stop making noise" is a question for the agents, not an opt-out. A stop word is
always honoured; a start word only when the customer is opted out, because "start" is
also how many people open a chat with a bot, and that greeting belongs to the agents.

Like a CSAT tap, a keyword is answered in the worker without any graph run (no model
call, no episode turn): `take_keywords` takes it out of the claim and returns the short
confirmation to send instead. The choice is one row per customer
(migrations/0025_proactive_consent.sql), which erasure removes with the contact.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Literal

import structlog
from langchain_core.messages import HumanMessage

from graph.infra.database import Pool
from graph.state import Reply, text_reply, whatsapp_meta
from server.runner.conversation_runner import Claim
from server.runner.customer_language import CustomerVoice

log = structlog.get_logger(__name__)

Keyword = Literal["stop", "start"]
KEYWORD_SOURCE = "keyword"

# Written by the customer, or the title of a template's quick-reply button (Meta's
# marketing templates offer "Stop promotions"). Our own menus' taps are never keywords.
_KINDS = frozenset({"text", "button"})

# Normalised (see `normalise`): lower case, no accents, words joined by one space. Not
# the carriers' "cancel", "end" or "quit" (nor Spanish "cancelar"): here those answer a
# booking's confirmation or leave a menu, and belong to the agents.
STOP_WORDS = frozenset(
    {
        # English
        "stop", "stopall", "stop all", "stop promotions", "unsubscribe", "opt out",
        "optout",
        # French
        "arreter", "arrete", "arretez", "desabonner", "me desabonner", "se desabonner",
        "desinscrire", "me desinscrire",
        # Portuguese, Spanish
        "parar", "pare", "sair", "descadastrar", "baja", "darme de baja",
        # Swahili
        "acha", "sitisha",
        # Kinyarwanda
        "hagarara", "hagarika",
        # German
        "stopp", "abmelden",
    }
)  # fmt: skip
START_WORDS = frozenset(
    {
        # English
        "start", "unstop", "subscribe", "opt in", "optin",
        # French
        "commencer", "demarrer", "abonner", "s abonner", "m abonner",
        # Portuguese, Spanish
        "comenzar", "empezar", "iniciar", "comecar",
        # Swahili
        "anza",
        # Kinyarwanda
        "tangira",
    }
)  # fmt: skip

_WORDS = re.compile(r"[^\W_]+")


def normalise(text: str) -> str:
    """Lower case, accents and punctuation gone, words joined by one space:
    " Arrêter ! " → "arreter", "opt-out" → "opt out"."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORDS.findall(bare.casefold()))


def keyword_of(text: str) -> Keyword | None:
    """The keyword the whole message is ("stop" or "start"), or None."""
    words = normalise(text)
    if words in STOP_WORDS:
        return "stop"
    if words in START_WORDS:
        return "start"
    return None


async def may_message_first(pool: Pool, wa_id: str) -> bool:
    """Whether a message the customer did not ask for may go to them: False once they
    opted out (and until they opt back in). Every proactive sender asks this first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM proactive_consent"
            " WHERE wa_id = %s AND opted_out) AS may",
            (wa_id,),
        )
        row = await cur.fetchone()
    return bool(row and row["may"])


async def opt_out(pool: Pool, wa_id: str, *, source: str = KEYWORD_SOURCE) -> bool:
    """Record the customer opted out; True when that changed anything. A repeated STOP
    keeps the time of the first, which is when they said no."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """
            INSERT INTO proactive_consent (wa_id, opted_out, source) VALUES (%s, true, %s)
            ON CONFLICT (wa_id) DO UPDATE
                SET opted_out = true, changed_at = now(), source = EXCLUDED.source
                WHERE NOT proactive_consent.opted_out
            RETURNING wa_id
            """,
            (wa_id, source),
        )
        return await cur.fetchone() is not None


async def opt_in(pool: Pool, wa_id: str, *, source: str = KEYWORD_SOURCE) -> bool:
    """Record the opted-out customer opted back in; False when they were not opted out
    (nothing to undo, nothing written)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE proactive_consent SET opted_out = false, changed_at = now(), source = %s"
            " WHERE wa_id = %s AND opted_out RETURNING wa_id",
            (source, wa_id),
        )
        return await cur.fetchone() is not None


@dataclasses.dataclass(frozen=True)
class Consent:
    """The runner's hook for keywords (chained in `OutcomeHooks.before_turn`). The
    confirmation is in the language kept on the contact ("STOP" tells none)."""

    pool: Pool
    voice: CustomerVoice

    async def take_keywords(self, claim: Claim) -> tuple[Claim, list[Reply]]:
        """Record STOP and START; return the claim without them, and the confirmation
        (the last one, when a customer changed their mind within one claim)."""
        remaining: list[HumanMessage] = []
        replies: list[Reply] = []
        for message in claim.messages:
            confirmation = await self._apply(claim, message)
            if confirmation is None:
                remaining.append(message)
            else:
                replies.append(text_reply(confirmation))
        if len(remaining) == len(claim.messages):
            return claim, []
        return dataclasses.replace(claim, messages=remaining), replies[-1:]

    async def _apply(self, claim: Claim, message: HumanMessage) -> str | None:
        """The confirmation of a keyword taken, or None: the message is for the agents."""
        if whatsapp_meta(message).get("kind") not in _KINDS:
            return None
        keyword = keyword_of(str(message.content))
        if keyword == "stop":
            await opt_out(self.pool, claim.wa_id)
            log.info("consent.opted_out", conversation_id=claim.conversation_id)
            return self.voice.say_kept(claim, "opted_out")
        if keyword == "start" and await opt_in(self.pool, claim.wa_id):
            log.info("consent.opted_in", conversation_id=claim.conversation_id)
            return self.voice.say_kept(claim, "opted_in")
        return None
