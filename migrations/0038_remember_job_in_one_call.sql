-- The remember job deferred after a turn, in one statement that never fails.
--
-- One waiting job per conversation (procrastinate's queueing lock) reads every turn
-- that ends before it runs, so after a conversation's first turn the deferral of each
-- later one within the minute is a no-op. Deferred through procrastinate's client, that
-- no-op was an insert failing on the lock's unique index: a rolled-back transaction and
-- an ERROR with its statement in Postgres's log for nearly every message a customer
-- sent. Here the violation is caught, as wa_record_inbound (migration 0023) catches it,
-- and the job is deferred exactly as procrastinate defers one (its own
-- procrastinate_defer_jobs_v1, from the schema applied as migration 0000).
CREATE FUNCTION wa_defer_remember(
    p_queue text, p_task text, p_lock text, p_args jsonb, p_delay_s double precision
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
        p_queue, p_task, 0, p_lock, p_lock, p_args,
        CASE WHEN p_delay_s > 0 THEN now() + make_interval(secs => p_delay_s) END
    )::procrastinate_job_to_defer_v1]);
    RETURN true;
EXCEPTION WHEN unique_violation THEN
    RETURN false;  -- a job already waits for this conversation: it covers this turn
END;
$$;
