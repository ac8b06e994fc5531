-- requires extension: vector
-- The answer cache's entries, apart from 0014_outcomes so that episodes and
-- CSAT work on a server without pgvector (the cache then stays off and says so).
-- 384 dimensions: the local MiniLM default, like agent_embeddings and knowledge_chunks.
-- No customer identity is stored: only questions and answers judged free of personal data.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE answer_cache (
    id            bigserial PRIMARY KEY,
    agent         text NOT NULL,
    language      text NOT NULL,
    stamp         text NOT NULL,            -- content versions + agent configuration hash
    question      text NOT NULL,            -- normalised
    embedding     vector(384) NOT NULL,
    answer        text NOT NULL,
    tokens        integer NOT NULL DEFAULT 0,   -- model tokens the original answer cost
    hits          integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_hit_at   timestamptz,
    UNIQUE (agent, language, stamp, question)
);
CREATE INDEX answer_cache_scope ON answer_cache (agent, language, stamp, expires_at);
