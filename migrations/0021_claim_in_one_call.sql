-- A turn's claim and end in one round trip each (they were five to twelve statements):
-- lock the conversation row (the one the webhook locks while it inserts, so no message
-- can be committed unseen), then either resume its open run or open a run for every
-- waiting message. The claim says which channel the conversation is on (its business
-- number: a WhatsApp phone_number_id, or "terminal" / "web"). server/runs.py is the
-- only caller and says what each result means.
--
-- p_quiet_s > 0 (the optional double-texting window): when the newest waiting message is
-- younger than that, nothing is claimed and `wait_s` says how long to wait first.
--
-- Double texting without a fixed delay: a turn starts at once; when the customer writes
-- again before any part of the reply went out, the run takes the new messages and runs
-- again from the state before it (`rerun_from`, the checkpoint it started from), so all
-- of them are answered together. A run resumed after a crash in between knows to do so.

ALTER TABLE conversation_runs ADD COLUMN rerun_from text;

-- The messages a run answers, in the order the customer sent them.
CREATE FUNCTION wa_run_messages(p_run uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
        'id', m.id, 'wamid', m.wamid, 'kind', m.kind, 'text', m.text,
        'supported', m.supported, 'reply_id', m.reply_id) ORDER BY m.sent_at, m.id), '[]')
    FROM inbound_messages m WHERE m.run_id = p_run
$$;

CREATE FUNCTION wa_claim_turn(
    p_conversation uuid, p_job bigint, p_worker text, p_new_run uuid, p_quiet_s float8
) RETURNS TABLE (
    run_id uuid, resumed boolean, staged boolean, attempts integer, retry_at timestamptz,
    wait_s float8, wa_id text, profile_name text, status text, messages jsonb,
    rerun_from text, phone_number_id text
) LANGUAGE plpgsql AS $$
DECLARE
    conv record;
    run record;
    age float8;
BEGIN
    SELECT c.wa_id, k.profile_name, c.status, c.phone_number_id INTO conv
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
            conv.phone_number_id;
        RETURN;
    END IF;
    IF p_quiet_s > 0 THEN
        SELECT EXTRACT(EPOCH FROM clock_timestamp() - max(m.received_at))::float8 INTO age
        FROM inbound_messages m WHERE m.conversation_id = p_conversation AND m.run_id IS NULL;
        IF age IS NOT NULL AND age < p_quiet_s THEN
            RETURN QUERY SELECT NULL::uuid, false, false, 0, NULL::timestamptz,
                p_quiet_s - age, conv.wa_id, conv.profile_name, conv.status, '[]'::jsonb,
                NULL::text, conv.phone_number_id;
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
        conv.phone_number_id;
END;
$$;

-- The messages that arrived since the run claimed its own, claimed into it too (with
-- their transcript lines); `p_base`: the checkpoint the run will run again from.
CREATE FUNCTION wa_claim_more(p_run uuid, p_conversation uuid, p_base text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    claimed integer;
BEGIN
    WITH more AS (
        UPDATE inbound_messages m SET run_id = p_run
        WHERE m.conversation_id = p_conversation AND m.run_id IS NULL
          AND m.processed_at IS NULL
        RETURNING m.id, m.text, m.kind, m.sent_at
    )
    INSERT INTO agent_messages (conversation_id, run_id, role, content)
    SELECT p_conversation, p_run, 'customer', COALESCE(NULLIF(more.text, ''), '[' || more.kind || ']')
    FROM more ORDER BY more.sent_at, more.id;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    UPDATE conversation_runs SET rerun_from = p_base WHERE id = p_run;
    RETURN wa_run_messages(p_run);
END;
$$;

-- A run's end in one round trip: the run done, its messages answered, and whether more
-- wait (then the same job goes on with them instead of ending).
CREATE FUNCTION wa_finish_run(p_run uuid) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    conversation uuid;
BEGIN
    UPDATE conversation_runs SET status = 'done', finished_at = now(), retry_at = NULL,
        waiting_on = NULL
    WHERE id = p_run RETURNING conversation_id INTO conversation;
    UPDATE inbound_messages SET processed_at = now() WHERE run_id = p_run;
    RETURN EXISTS (
        SELECT 1 FROM inbound_messages
        WHERE conversation_id = conversation AND run_id IS NULL AND processed_at IS NULL);
END;
$$;
