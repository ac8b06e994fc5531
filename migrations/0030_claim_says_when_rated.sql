-- The claim also says when the customer last rated the conversation (a CSAT answer):
-- only a text soon after a rating can be its comment, so a turn of a customer who did not
-- rate anything lately needs no statement to find out (server/runner/runs.py reads it
-- beside `wa_claim_turn`, in the same round trip; server/outcomes/csat.py uses it).

CREATE INDEX csat_responses_conversation ON csat_responses (conversation_id, answered_at);
