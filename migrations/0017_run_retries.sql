-- A run that cannot go on now (the model, a tool or the database failed; Meta refused a
-- send) waits for its own next attempt instead of asking the queue to retry its job:
-- a retried job collides with the job already waiting for the same conversation
-- (procrastinate's queueing lock) and would stay `doing` for good. The run keeps when
-- it may be tried again and what it waits for; the job that finds it too early simply
-- schedules the next one.

ALTER TABLE conversation_runs
    ADD COLUMN retry_at    timestamptz,   -- not before this time
    ADD COLUMN waiting_on  text,          -- graph | whatsapp: what failed last
    ADD COLUMN staged_at   timestamptz;   -- its replies are in the outbox: only sends remain

-- The self-healing sweep looks for messages nobody answered; that set is small.
CREATE INDEX inbound_messages_unanswered ON inbound_messages (conversation_id)
    WHERE processed_at IS NULL;
