-- The queue wakes its workers only for a job they can take now.
--
-- procrastinate's trigger notifies every listening worker of each job inserted, even
-- one scheduled for later, which no worker may fetch before its time: every worker
-- process then fetched, found nothing and went back to waiting. The runner schedules
-- such a job after nearly every turn (the memory's remember job, a minute later), so
-- each turn cost a wasted fetch per worker process. A job scheduled for later is found
-- by the workers' polling once it is due, as it was before: the notification never
-- made it sooner. Same trigger name and function as procrastinate's schema (step 0000),
-- only the condition differs; should a later procrastinate migration recreate it, the
-- workers merely fetch in vain again.
DROP TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 ON procrastinate_jobs;
CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN (new.status = 'todo' AND (new.scheduled_at IS NULL OR new.scheduled_at <= now()))
    EXECUTE PROCEDURE procrastinate_notify_queue_job_inserted_v1();
