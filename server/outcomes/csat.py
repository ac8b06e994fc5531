"""CSAT over WhatsApp: one short question after a resolved episode, its answer recorded.

The question is a WhatsApp list (reply buttons allow only three; the scale needs five
plus "skip"): rows `csat:<episode>:<1-5|skip>`. It is sent at most once per episode
(`csat_requested_at` is set before sending, in the transaction that checks it), never
more than once per `WA_AGENT_CSAT_MIN_INTERVAL_H` per customer, never while the
conversation waits for a person, never outside WhatsApp's 24-hour window, never to a
customer who opted out of messages they did not ask for (server/outcomes/consent.py),
and only with the `csat` flag on for that customer.

A tap is recorded in the worker without any graph run (no model call, no new episode):
the rating is tied to the episode and its last agent. A text the customer writes within
`WA_AGENT_CSAT_COMMENT_MIN` of a rating, without a question mark, is kept as its comment
and thanked for; a question goes to the agents as usual.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from langchain_core.messages import HumanMessage

from graph.composition.feature_flags import FeatureFlags
from graph.infra.database import Pool
from graph.state import MenuReply, Reply, text_reply, whatsapp_meta
from nodes.notices import Notices
from server.outcomes.consent import may_message_first
from server.outcomes.episode_rules import RESOLVED
from server.outcomes.episodes import ClosedEpisode
from server.runner.conversation_runner import Claim
from server.runner.conversations import find_conversation
from server.runner.customer_language import CustomerVoice
from server.runner.outbox import deliver_parts, stage_parts
from server.runner.transport import Channels
from server.whatsapp.graph_errors import WhatsAppError

log = structlog.get_logger(__name__)

PREFIX = "csat:"
SKIP = "skip"
# Meta refuses free-form messages 24 h after the customer's last one; keep a margin.
SERVICE_WINDOW = timedelta(hours=23, minutes=30)
_CSAT_NAMESPACE = uuid.UUID("5b1f9a52-2f53-4a55-9d8e-0c7f0b4c6d11")

# Row values and the notices (prompts/notices/) of their title and description.
_ROWS = (
    ("5", "csat_5", "csat_5_description"),
    ("4", "csat_4", None),
    ("3", "csat_3", None),
    ("2", "csat_2", None),
    ("1", "csat_1", "csat_1_description"),
    (SKIP, "csat_skip", "csat_skip_description"),
)


def csat_question(episode_id: str, notices: Notices, language: str | None) -> MenuReply:
    """The rating question as a WhatsApp list, its rows bound to the episode."""
    rows = []
    for value, title, description in _ROWS:
        row: dict[str, str] = {
            "id": f"{PREFIX}{episode_id}:{value}",
            "title": notices.say(title, language),
        }
        if description:
            row["description"] = notices.say(description, language)
        rows.append(row)
    section = {"title": notices.say("csat_section", language), "rows": rows}
    return {
        "kind": "menu",
        "body": notices.say("csat_question", language),
        "button": notices.say("csat_button", language),
        "sections": [section],  # type: ignore[list-item]
    }


def parse_tap(reply_id: object) -> tuple[str, int | None] | None:
    """(episode id, rating or None for skip) of a CSAT row id; None for anything else."""
    if not isinstance(reply_id, str) or not reply_id.startswith(PREFIX):
        return None
    episode, _, value = reply_id.removeprefix(PREFIX).rpartition(":")
    try:
        episode = str(uuid.UUID(episode))
    except ValueError:
        return None
    if value == SKIP:
        return episode, None
    if value in {"1", "2", "3", "4", "5"}:
        return episode, int(value)
    return None


def csat_run_id(episode_id: str) -> str:
    """The outbox key of an episode's question: staging it twice sends it once."""
    return str(uuid.uuid5(_CSAT_NAMESPACE, episode_id))


class Csat:
    def __init__(
        self,
        pool: Pool,
        channels: Channels,
        flags: FeatureFlags | None,
        *,
        voice: CustomerVoice,
        min_interval: timedelta,
        comment_window: timedelta,
    ) -> None:
        self.pool = pool
        self.channels = channels
        self.flags = flags
        self.voice = voice
        self.min_interval = min_interval
        self.comment_window = comment_window

    async def request(self, episode: ClosedEpisode) -> bool:
        """Ask the closed episode's customer for a rating, if every rule allows it."""
        if episode.outcome not in RESOLVED or episode.escalation_open:
            return False
        if datetime.now(UTC) - episode.last_customer_at > SERVICE_WINDOW:
            return False
        conversation = await find_conversation(self.pool, episode.conversation_id)
        if conversation is None or self.flags is None:
            return False
        number = conversation.phone_number_id  # the question comes from the number they wrote to
        if not (await self.flags.for_customer(episode.wa_id, number)).get("csat"):
            return False
        if not await may_message_first(self.pool, episode.wa_id):
            return False  # they wrote STOP: a rating question is not theirs to answer
        reserved, language = await self._reserve(episode)
        if not reserved:
            return False
        run_id = csat_run_id(episode.id)
        await stage_parts(
            self.pool,
            conversation_id=episode.conversation_id,
            run_id=run_id,
            wa_id=episode.wa_id,
            parts=[
                csat_question(
                    episode.id, self.voice.notices, self.voice.or_default(language, number)
                )
            ],
            agent="csat",
        )
        try:
            await deliver_parts(self.pool, self.channels.for_number(number), run_id)
        except WhatsAppError as exc:  # retryable and refused again: not worth chasing
            log.warning("csat.not_delivered", episode_id=episode.id, title=exc.title)
        return True

    async def _reserve(self, episode: ClosedEpisode) -> tuple[bool, str | None]:
        """Mark the episode asked, unless it was, or this customer was asked recently;
        with the language kept on the customer's contact. The advisory lock makes two
        episodes closing at once ask only one question."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (episode.wa_id,))
            cur = await conn.execute(
                """
                UPDATE conversation_episodes e SET csat_requested_at = now()
                WHERE e.id = %(id)s AND e.csat_requested_at IS NULL
                  AND NOT EXISTS (
                    SELECT 1 FROM conversation_episodes o
                    WHERE o.wa_id = e.wa_id AND o.csat_requested_at > now() - %(interval)s)
                RETURNING (SELECT k.language FROM contacts k WHERE k.wa_id = e.wa_id)
                """,
                {"id": episode.id, "interval": self.min_interval},
            )
            row = await cur.fetchone()
            return row is not None, row["language"] if row is not None else None

    async def take_feedback(self, claim: Claim) -> tuple[Claim, list[Reply]]:
        """Record ratings and comments; return the claim without them, and the thanks."""
        remaining: list[HumanMessage] = []
        replies: list[Reply] = []
        # A comment follows a rating: without a recent one (the claim says when the last
        # was), no text of this turn is looked at as a comment.
        rated_lately = claim.rated_at is not None and (
            claim.rated_at > datetime.now(UTC) - self.comment_window
        )
        for message in claim.messages:
            tap = parse_tap(whatsapp_meta(message).get("reply_id"))
            if tap is not None:
                rated = await self._record_rating(claim.conversation_id, *tap)
                if rated is not None:
                    thanks = "csat_thanks_rated" if rated else "csat_thanks_skipped"
                    replies.append(text_reply(self.voice.say_kept(claim, thanks)))
                rated_lately = rated_lately or bool(rated)
                continue
            if rated_lately and await self._record_comment(claim.conversation_id, message):
                replies.append(text_reply(self.voice.say_kept(claim, "csat_thanks_comment")))
                continue
            remaining.append(message)
        if len(remaining) == len(claim.messages):
            return claim, []
        return dataclasses.replace(claim, messages=remaining), replies[-1:]

    async def _record_rating(
        self, conversation_id: str, episode_id: str, rating: int | None
    ) -> bool | None:
        """True: rated, False: skipped, None: not this conversation's question (ignored)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                INSERT INTO csat_responses (episode_id, conversation_id, agent, rating)
                SELECT e.id, e.conversation_id, e.agents[array_length(e.agents, 1)], %s
                FROM conversation_episodes e
                WHERE e.id = %s AND e.conversation_id = %s AND e.csat_requested_at IS NOT NULL
                ON CONFLICT (episode_id) DO UPDATE
                    SET rating = EXCLUDED.rating, answered_at = now()
                RETURNING episode_id
                """,
                (rating, episode_id, conversation_id),
            )
            recorded = await cur.fetchone() is not None
        if not recorded:
            log.warning("csat.tap_ignored", conversation_id=conversation_id)
            return None
        log.info("csat.recorded", episode_id=episode_id, rating=rating)
        return rating is not None

    async def _record_comment(self, conversation_id: str, message: HumanMessage) -> bool:
        meta = whatsapp_meta(message)
        text = str(message.content).strip()
        if meta.get("kind") != "text" or not text or "?" in text:
            return False
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                UPDATE csat_responses SET comment = left(%(text)s, 1000),
                    commented_at = now(), comment_wamid = %(wamid)s
                WHERE episode_id = (
                    SELECT episode_id FROM csat_responses
                    WHERE conversation_id = %(c)s AND rating IS NOT NULL
                      AND answered_at > now() - %(window)s
                      AND (comment IS NULL OR comment_wamid = %(wamid)s)
                    ORDER BY answered_at DESC LIMIT 1)
                RETURNING episode_id
                """,
                {
                    "text": text,
                    "wamid": message.id,
                    "c": conversation_id,
                    "window": self.comment_window,
                },
            )
            return await cur.fetchone() is not None
