-- The claim also says when the customer last rated this conversation (a CSAT answer):
-- only a text soon after a rating can be its comment, so a turn of a customer who did not
-- rate anything lately needs no statement to find out (server/outcomes/csat.py). The
-- function is otherwise 0021's.

CREATE INDEX csat_responses_conversation ON csat_responses (conversation_id, answered_at);

DROP FUNCTION wa_claim_turn(uuid, bigint, text, uuid, float8);

CREATE FUNCTION wa_claim_turn(
    p_conversation uuid, p_job bigint, p_worker text, p_new_run uuid, p_quiet_s float8
) RETURNS TABLE (
    run_id uuid, resumed boolean, staged boolean, attempts integer, retry_at timestamptz,
    wait_s float8, wa_id text, profile_name text, status text, messages jsonb,
    rerun_from text, phone_number_id text, rated_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    conv record;
    run record;
    age float8;
BEGIN
    SELECT c.wa_id, k.profile_name, c.status, c.phone_number_id,
        (SELECT max(r.answered_at) FROM csat_responses r
         WHERE r.conversation_id = c.id AND r.rating IS NOT NULL) AS rated_at INTO conv
    FROM agent_conversations c JOIN contacts k USING (wa_id)
    WHERE c.id = p_conversation FOR UPDATE OF c;
    IF NOT FOUND THEN
        RETURN;  -- erased since the job was queued
    END IF;
    UPDATE conversation_runs r SET
        attempts = r.attempts + CASE WHEN r.retry_at > now() THEN 0 ELSE 1 END,
        job_id = p_job, worker = p_worker
    WHERE r.conversation_id = p_conversation AND r.status = 'running'
    RETURNING r.id, r.attempts, r.staged_at IS NOT NULL AS staged, r.rerun_from,
              CASE WHEN r.retry_at > now() THEN r.retry_at END AS retry_at
    INTO run;
    IF FOUND THEN
        RETURN QUERY SELECT run.id, true, run.staged, run.attempts, run.retry_at, 0::float8,
            conv.wa_id, conv.profile_name, conv.status, wa_run_messages(run.id), run.rerun_from,
            conv.phone_number_id, conv.rated_at;
        RETURN;
    END IF;
    IF p_quiet_s > 0 THEN
        SELECT EXTRACT(EPOCH FROM clock_timestamp() - max(m.received_at))::float8 INTO age
        FROM inbound_messages m WHERE m.conversation_id = p_conversation AND m.run_id IS NULL;
        IF age IS NOT NULL AND age < p_quiet_s THEN
            RETURN QUERY SELECT NULL::uuid, false, false, 0, NULL::timestamptz,
                p_quiet_s - age, conv.wa_id, conv.profile_name, conv.status, '[]'::jsonb,
                NULL::text, conv.phone_number_id, conv.rated_at;
            RETURN;
        END IF;
    END IF;
    UPDATE inbound_messages m SET run_id = p_new_run
    WHERE m.conversation_id = p_conversation AND m.run_id IS NULL AND m.processed_at IS NULL;
    IF NOT FOUND THEN
        RETURN;  -- nothing waits: an earlier job answered it
    END IF;
    INSERT INTO conversation_runs (id, conversation_id, job_id, worker)
    VALUES (p_new_run, p_conversation, p_job, p_worker);
    INSERT INTO agent_messages (conversation_id, run_id, role, content)
    SELECT p_conversation, p_new_run, 'customer', COALESCE(NULLIF(m.text, ''), '[' || m.kind || ']')
    FROM inbound_messages m WHERE m.run_id = p_new_run ORDER BY m.sent_at, m.id;
    RETURN QUERY SELECT p_new_run, false, false, 1, NULL::timestamptz, 0::float8,
        conv.wa_id, conv.profile_name, conv.status, wa_run_messages(p_new_run), NULL::text,
        conv.phone_number_id, conv.rated_at;
END;
$$;
