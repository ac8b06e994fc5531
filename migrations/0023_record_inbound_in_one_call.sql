-- The webhook's write in one statement (it was ten round trips: a transaction, the
-- tombstone check, two upserts, the insert, a savepoint around the job): the message
-- and the job that will answer it commit together or not at all. server/inbox.py is
-- its only caller.
--
-- The job is deferred exactly as procrastinate defers one (its own
-- procrastinate_defer_jobs_v1, from the schema applied as migration 0000). A job
-- already waiting for the conversation (its queueing lock) covers this message: the
-- unique violation is caught here, so the insert above it still commits.

CREATE FUNCTION wa_record_inbound(
    p_wamid text, p_phone_number_id text, p_wa_id text, p_user_id text, p_profile_name text,
    p_kind text, p_text text, p_supported boolean, p_reply_id text, p_payload jsonb,
    p_sent_at timestamptz, p_silent boolean, p_queue text, p_task text
) RETURNS TABLE (stored boolean, enqueued boolean) LANGUAGE plpgsql AS $$
DECLARE
    conversation uuid;
BEGIN
    -- An erased customer's message delivered again must not bring them back. The
    -- contact row lock waits for an erasure in progress, so its tombstones are visible.
    PERFORM 1 FROM contacts WHERE wa_id = p_wa_id FOR KEY SHARE;
    IF EXISTS (SELECT 1 FROM erased_wamids
               WHERE wamid_sha256 = encode(sha256(convert_to(p_wamid, 'UTF8')), 'hex')) THEN
        RETURN QUERY SELECT false, false;
        RETURN;
    END IF;
    INSERT INTO contacts (wa_id, user_id, profile_name) VALUES (p_wa_id, p_user_id, p_profile_name)
    ON CONFLICT (wa_id) DO UPDATE SET
        user_id = COALESCE(EXCLUDED.user_id, contacts.user_id),
        profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
        last_seen_at = now();
    -- Locks the conversation row until commit: the claim takes the same lock, so no job
    -- can read the inbox between this insert and its commit and miss the message.
    INSERT INTO agent_conversations (phone_number_id, wa_id, last_inbound_at)
    VALUES (p_phone_number_id, p_wa_id, now())
    ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET
        last_inbound_at = now(), updated_at = now()
    RETURNING id INTO conversation;
    INSERT INTO inbound_messages (wamid, conversation_id, wa_id, kind, text, supported,
                                  reply_id, payload, sent_at, processed_at)
    VALUES (p_wamid, conversation, p_wa_id, p_kind, p_text, p_supported, p_reply_id,
            p_payload, p_sent_at, CASE WHEN p_silent THEN now() END)
    ON CONFLICT (wamid) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, false;  -- Meta delivered it again: a no-op
        RETURN;
    END IF;
    IF p_silent OR p_queue IS NULL THEN
        -- Silent kinds need no answer; a NULL queue: the caller answers it itself, now
        -- (the web stream, under the conversation's lock).
        RETURN QUERY SELECT true, false;
        RETURN;
    END IF;
    BEGIN
        PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
            p_queue, p_task, 0, conversation::text, conversation::text,
            jsonb_build_object('conversation_id', conversation::text), NULL
        )::procrastinate_job_to_defer_v1]);
    EXCEPTION WHEN unique_violation THEN
        RETURN QUERY SELECT true, false;  -- a job already waits for this conversation
        RETURN;
    END;
    RETURN QUERY SELECT true, true;
END;
$$;
