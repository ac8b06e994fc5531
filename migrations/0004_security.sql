-- Abuse protection and the audit trail.
-- Redis (or the in-process limiter) answers "may this customer be served now?" fast;
-- these tables are what must survive a restart or a Redis without persistence: the
-- blacklist, the penalty ladder, and who did what when.

-- Who did what, when, from where: admin actions, blacklist changes, signature and login
-- failures, rate-limit escalations, erasures. Rows are never rewritten.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,          -- admin token name, cli:<user>@<host>, system
    action       text NOT NULL,          -- blacklist.add, abuse.blocked, webhook.signature_invalid...
    target       text,                   -- a wa_id, an agent, a conversation
    details      jsonb NOT NULL DEFAULT '{}',
    remote_addr  text
);
CREATE INDEX audit_log_occurred ON audit_log (occurred_at DESC);
CREATE INDEX audit_log_action ON audit_log (action, occurred_at DESC);
CREATE INDEX audit_log_target ON audit_log (target, occurred_at DESC) WHERE target IS NOT NULL;

CREATE FUNCTION audit_log_no_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log rows are never rewritten';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_no_rewrite();

-- The source of truth for blocked customers; Redis holds a cache of it.
CREATE TABLE blacklist (
    wa_id       text PRIMARY KEY,
    reason      text NOT NULL,
    source      text NOT NULL CHECK (source IN ('manual', 'automatic')),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz               -- NULL: until someone unblocks
);

-- The penalty ladder of customers who went over a rate limit recently, written at each
-- escalation (rare) and loaded back into the limiter at start.
CREATE TABLE abuse_penalties (
    wa_id              text PRIMARY KEY,
    level              smallint NOT NULL,     -- 1: warned
    blocks             integer NOT NULL,      -- temporary blocks so far
    blocked_until      timestamptz,
    last_violation_at  timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Why a message or a run was not answered by the graph (NULL: it was answered):
-- rate_limited (warned), blocked, blacklisted, over_budget, unavailable.
-- On runs, 'admitted' records that the gate let it through, so a retried job does not
-- count the same messages twice.
ALTER TABLE inbound_messages ADD COLUMN gate text;
ALTER TABLE conversation_runs ADD COLUMN gate text;
