"""The language the service speaks to a customer in: their words, else what they last
wrote in, else the default of the number they wrote to, else the business's.

Recognised on a customer's first words (once: the turns after pay nothing for it) and
again whenever a notice is about to be written (an apology, a refusal, a cap), so a
customer who switches language is followed at their next notice. What is recognised is
kept on the contact (`contacts.language`): a turn without words — a tap, a photo, "STOP"
— and a notice sent outside a turn are still in the customer's language.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from langchain_core.messages import HumanMessage

from graph.infra.database import Pool
from graph.state import whatsapp_meta
from nodes.notices import Notices, RecognisesLanguage
from server.runner.conversations import remember_language
from server.runner.runs import Claim


def typed_words(messages: list[HumanMessage]) -> str:
    """What the customer wrote in these messages (taps and media captions aside)."""
    texts = [
        str(message.content).strip()
        for message in messages
        if whatsapp_meta(message).get("kind", "text") == "text"
    ]
    return " ".join(text for text in texts if text)


# How sure the guess must be before a language is kept for the customer: two English
# words like "first question" read as French at 0.94; "nataka kulipa" is Swahili at 1.0.
KEEP_PROBABILITY = 0.97


class CustomerVoice:
    """Notices in the customer's language."""

    def __init__(
        self,
        pool: Pool,
        notices: Notices,
        guess: RecognisesLanguage,
        default: str,
        number_default: Callable[[str], str | None] = lambda phone_number_id: None,
    ) -> None:
        self.pool = pool
        self.notices = notices
        self.guess = guess
        self.default = default
        # A business number's own language (a French line beside an English one).
        self.number_default = number_default

    async def recognise_newcomer(self, claim: Claim) -> Claim:
        """The claim with its customer's language, recognised now if it is not known yet."""
        if claim.language is not None:
            return claim
        return dataclasses.replace(claim, language=await self._recognise(claim))

    async def language(self, claim: Claim) -> str:
        recognised = await self._recognise(claim)
        return recognised or self.or_default(claim.language, claim.phone_number_id)

    async def _recognise(self, claim: Claim) -> str | None:
        """The language of the claim's words (kept on the contact), or None."""
        words = typed_words(claim.messages)
        recognised = self.guess(words, min_probability=KEEP_PROBABILITY) if words else None
        if recognised is not None and recognised != claim.language:
            await remember_language(self.pool, claim.wa_id, recognised)
        return recognised

    def or_default(self, language: str | None, phone_number_id: str) -> str:
        """`language`, else the default of the business number, else the business's."""
        return language or self.number_default(phone_number_id) or self.default

    def say_kept(self, claim: Claim, key: str, **values: object) -> str:
        """Notice `key` in the language kept on the contact: for turns whose words tell
        none (a tap, "STOP")."""
        language = self.or_default(claim.language, claim.phone_number_id)
        return self.notices.say(key, language, **values)

    async def say(self, claim: Claim, key: str, **values: object) -> str:
        """Notice `key` of prompts/notices/ for this claim's customer."""
        return self.notices.say(key, await self.language(claim), **values)
