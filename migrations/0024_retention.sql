-- Retention (server/retention.py): old rows of every growing table go in small batches,
-- each its own short transaction. Two guards stand in the way, and each gets a narrow,
-- transaction-local door rather than being switched off.

-- 1. The console's rollups are kept current by triggers that also subtract what an
--    erasure deletes. Rows that merely age out must leave the daily figures standing
--    (that is what the rollups are for), so the subtracting triggers stay quiet in a
--    transaction that says it is retention.
DROP TRIGGER agent_metrics_roll_up_delete ON agent_metrics;
CREATE TRIGGER agent_metrics_roll_up_delete AFTER DELETE ON agent_metrics
    REFERENCING OLD TABLE AS changed_calls
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('wa_agent.retention', true), '') <> 'on')
    EXECUTE FUNCTION console_roll_up_calls();

DROP TRIGGER agent_turn_events_roll_up_delete ON agent_turn_events;
CREATE TRIGGER agent_turn_events_roll_up_delete AFTER DELETE ON agent_turn_events
    REFERENCING OLD TABLE AS changed_events
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('wa_agent.retention', true), '') <> 'on')
    EXECUTE FUNCTION console_roll_up_events();

-- 2. The audit log refuses DELETE (migration 0016). It now lets through exactly one
--    kind: rows older than the expiry cutoff that `audit_log_expire` raises for the
--    length of its own transaction. Younger rows, UPDATE outside a pseudonymisation,
--    and TRUNCATE are refused as before; the guard function itself is unchanged.
DROP TRIGGER audit_log_guard_delete ON audit_log;
CREATE TRIGGER audit_log_guard_delete BEFORE DELETE ON audit_log
    FOR EACH ROW
    WHEN (NOT (OLD.occurred_at < coalesce(
        nullif(current_setting('wa_agent.audit_expiry', true), '')::timestamptz,
        '-infinity'::timestamptz)))
    EXECUTE FUNCTION audit_log_guard();

-- Deletes at most `batch` audit rows older than `cutoff`, oldest first; returns how
-- many. Refuses a cutoff less than 30 days ago: the audit trail is kept longest, and
-- a mistyped setting must not be able to empty it.
CREATE FUNCTION audit_log_expire(cutoff timestamptz, batch integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    removed integer;
BEGIN
    IF cutoff IS NULL OR cutoff > now() - interval '30 days' THEN
        RAISE EXCEPTION 'audit rows are kept at least 30 days (cutoff % refused)', cutoff;
    END IF;
    PERFORM set_config('wa_agent.audit_expiry', cutoff::text, true);
    DELETE FROM audit_log WHERE id IN (
        SELECT id FROM audit_log WHERE occurred_at < cutoff ORDER BY occurred_at LIMIT batch
    );
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('wa_agent.audit_expiry', '', true);
    RETURN removed;
END;
$$;

-- Every other table is deleted from by an index it already has (a time column, or its
-- id in insertion order): this migration adds none, so the webhook's and the turn's
-- inserts cost what they did.
