-- A job deferred unless one holding the same queueing lock already waits: one
-- statement that never fails.
--
-- A conversation has at most one waiting answer job and one waiting remember job
-- (procrastinate's queueing locks); whoever defers another finds it and is covered by
-- it. Deferred through procrastinate's client, that was an insert failing on the lock's
-- unique index: a rolled-back transaction and an ERROR with its statement in Postgres's
-- log, for nearly every message a customer sent (the remember job, deferred after each
-- turn, waits a minute) and for every run postponed while a newer message's job waited
-- (a Meta outage: exactly when someone reads that log). Here the violation is caught, as
-- wa_record_inbound (migration 0023) catches it, and the job is deferred exactly as
-- procrastinate defers one (its own procrastinate_defer_jobs_v1, from the schema
-- applied as migration 0000). `p_at` NULL: due now.
CREATE FUNCTION wa_defer_job(
    p_queue text, p_task text, p_lock text, p_args jsonb, p_at timestamptz
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
        p_queue, p_task, 0, p_lock, p_lock, p_args, p_at
    )::procrastinate_job_to_defer_v1]);
    RETURN true;
EXCEPTION WHEN unique_violation THEN
    RETURN false;  -- a job holding the lock already waits
END;
$$;
