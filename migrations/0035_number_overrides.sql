-- Where a business number differs from the deployment: the agents that answer its
-- customers (NULL: every enabled agent) and feature flags set for its customers only
-- (over the `feature_flags` table; WA_AGENT_FLAGS still wins).
ALTER TABLE business_numbers
    ADD COLUMN agents text[] CHECK (agents IS NULL OR cardinality(agents) > 0),
    ADD COLUMN flags jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(flags) = 'object');
