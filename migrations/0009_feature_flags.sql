-- Feature flags an operator switches at run time; WA_AGENT_FLAGS overrides them per
-- process. rollout_percent applies to a stable hash of (flag, customer).
CREATE TABLE feature_flags (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{1,40}$'),
    enabled          boolean NOT NULL DEFAULT false,
    rollout_percent  integer NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 0 AND 100),
    description      text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL DEFAULT now()
);
