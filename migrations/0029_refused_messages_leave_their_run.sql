-- Messages taken into a running run (double texting) and refused there by the abuse
-- gate keep the run's id (the run answered around them) but carry the refusal in
-- `gate`: a run resumed after a crash must not feed them to the graph
-- (server/runner/conversation_runner.py, `_screen_more`).
CREATE OR REPLACE FUNCTION wa_run_messages(p_run uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
        'id', m.id, 'wamid', m.wamid, 'kind', m.kind, 'text', m.text,
        'supported', m.supported, 'reply_id', m.reply_id) ORDER BY m.sent_at, m.id), '[]')
    FROM inbound_messages m WHERE m.run_id = p_run AND m.gate IS NULL
$$;
