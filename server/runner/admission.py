"""A claimed run at the door: the abuse gate admits it, or it is refused and closed here.

A refused turn's messages are marked handled (the reason in `inbound_messages.gate`),
its run is `refused`, and the customer gets at most one notice per step of the ladder
through the outbox — never a model call, never a token. Each decision is written on the
run before anything else happens, so a run resumed after a crash neither counts the
same messages twice nor sends a second notice.
"""

from __future__ import annotations

import structlog

from graph.infra.database import Pool
from graph.state import text_reply
from server.abuse.gate import ADMITTED, AbuseGate, GateRequest
from server.runner.customer_language import CustomerVoice
from server.runner.outbox import deliver_parts, stage_parts
from server.runner.runs import Claim, close_refused_run, gate_of, record_gate
from server.runner.transport import Transport, Watched
from server.telemetry import RUNS

log = structlog.get_logger(__name__)


async def admit(
    gate: AbuseGate,
    pool: Pool,
    claim: Claim,
    transport: Transport | None,
    *,
    voice: CustomerVoice,
    max_attempts: int,
) -> bool:
    """True: run the graph. False: the turn was refused and is closed already, its
    notice (if any) sent through `transport`, the conversation's channel. A run that may
    be tried again (`max_attempts`) waits when the limiter is down and the gate fails
    closed; a watched one (the web stream, someone waiting) is refused instead."""
    reason = await gate_of(pool, claim.run_id) if claim.resumed else None
    if reason == ADMITTED:
        return True
    if reason is None:
        watched = isinstance(transport, Watched)
        can_wait = claim.attempts < max_attempts and not watched
        request = GateRequest(claim.wa_id, claim.conversation_id, len(claim.messages), can_wait)
        decision = await gate.screen(request)
        if decision.admitted:
            await record_gate(pool, claim.run_id, ADMITTED)
            return True
        # Written only when someone reads it: a flood's refusals mostly notify nobody.
        shown = decision.message if decision.notify or watched else None
        text = await voice.say(claim, shown.key, **shown.values) if shown else None
        if decision.notify and text:
            await stage_parts(
                pool,
                conversation_id=claim.conversation_id,
                run_id=claim.run_id,
                wa_id=claim.wa_id,
                parts=[text_reply(text)],
                agent="gate",
            )
        await record_gate(pool, claim.run_id, decision.reason)
        reason = decision.reason
        if isinstance(transport, Watched):
            await transport.refused(decision.reason, text)
    await deliver_parts(pool, transport, claim.run_id)
    await close_refused_run(pool, claim.run_id, reason)
    RUNS.labels(outcome="refused").inc()
    log.info("abuse.turn_refused", reason=reason, messages=len(claim.messages))
    return False
