-- Business outcomes: conversation episodes, CSAT answers, answer-cache
-- events, and the content versions that invalidate cached answers.

-- An episode is one stretch of a conversation about one need: it opens with the
-- customer's first message after the previous episode closed, and closes after an idle
-- time (periodic job) or on a goodbye the agent answered without a question.
CREATE TABLE conversation_episodes (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id    uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    wa_id              text NOT NULL,
    started_at         timestamptz NOT NULL,         -- the first customer message, received
    first_response_at  timestamptz,                  -- the first reply handed to WhatsApp
    last_response_at   timestamptz,
    last_customer_at   timestamptz NOT NULL,
    agents             text[] NOT NULL DEFAULT '{}', -- specialists involved, first seen first
    handoffs           integer NOT NULL DEFAULT 0,
    escalated          boolean NOT NULL DEFAULT false,
    human_replied      boolean NOT NULL DEFAULT false,
    turns              integer NOT NULL DEFAULT 0,
    failed_turns       integer NOT NULL DEFAULT 0,
    last_turn_failed   boolean NOT NULL DEFAULT false,
    waiting            text,                         -- confirmation | human after the last turn
    cached_answers     integer NOT NULL DEFAULT 0,
    tokens             bigint NOT NULL DEFAULT 0,
    cost_usd           numeric(14, 8) NOT NULL DEFAULT 0,
    closed_at          timestamptz,
    close_reason       text CHECK (close_reason IN ('idle', 'goodbye')),
    outcome            text CHECK (outcome IN ('resolved_bot', 'resolved_human', 'abandoned', 'error')),
    csat_requested_at  timestamptz
);
CREATE UNIQUE INDEX conversation_episodes_open ON conversation_episodes (conversation_id)
    WHERE closed_at IS NULL;
CREATE INDEX conversation_episodes_closed ON conversation_episodes (closed_at);
CREATE INDEX conversation_episodes_csat ON conversation_episodes (wa_id, csat_requested_at)
    WHERE csat_requested_at IS NOT NULL;

-- One answer per episode (a second tap updates it); rating NULL = the customer skipped.
CREATE TABLE csat_responses (
    episode_id       uuid PRIMARY KEY REFERENCES conversation_episodes (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    agent            text,                           -- the specialist who answered last
    rating           smallint CHECK (rating BETWEEN 1 AND 5),
    comment          text CHECK (length(comment) <= 1000),
    answered_at      timestamptz NOT NULL DEFAULT now(),
    commented_at     timestamptz,
    comment_wamid    text                            -- the message kept as the comment
);
CREATE INDEX csat_responses_answered ON csat_responses (answered_at);

-- Every answer-cache lookup that was allowed to look (hit or miss), for the hit rate
-- and the tokens saved; no question text, no customer: nothing personal is kept.
CREATE TABLE answer_cache_events (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid REFERENCES agent_conversations (id) ON DELETE SET NULL,
    run_id           uuid,
    agent            text NOT NULL,
    language         text NOT NULL,
    hit              boolean NOT NULL,
    similarity       real,
    tokens_saved     integer NOT NULL DEFAULT 0,
    latency_ms       real,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX answer_cache_events_created ON answer_cache_events (created_at);
CREATE INDEX answer_cache_events_run ON answer_cache_events (run_id) WHERE hit;

-- What cached answers were built from. Any write to the knowledge base or the catalog
-- bumps its counter (triggers, so every writer counts: the tools, seed-demo, plain
-- SQL); a cached answer stamped with an older counter is never served again.
CREATE TABLE content_versions (
    scope       text PRIMARY KEY,
    version     bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO content_versions (scope) VALUES ('knowledge'), ('catalog');

CREATE FUNCTION bump_content_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO content_versions (scope) VALUES (TG_ARGV[0])
    ON CONFLICT (scope) DO UPDATE
        SET version = content_versions.version + 1, updated_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER knowledge_documents_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON knowledge_documents
    FOR EACH STATEMENT EXECUTE FUNCTION bump_content_version('knowledge');
CREATE TRIGGER catalog_items_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON catalog_items
    FOR EACH STATEMENT EXECUTE FUNCTION bump_content_version('catalog');
