-- requires extension: vector
-- Conversation memory: long-term memories per customer (agent_embeddings, 0003), the
-- embedding cache, and how far each conversation has been read for memories.
-- Needs pgvector like 0003; without it the service runs with short-term memory only.

-- Which model made a memory's vector: a model change re-embeds (see graph/memory.py)
-- instead of comparing vectors of two different spaces. `updated_at` moves when a
-- near-duplicate refreshes a memory; `recall_count` feeds the cleanup policy.
ALTER TABLE agent_embeddings
    ADD COLUMN embedding_model  text NOT NULL DEFAULT 'local:minilm/384',
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN recall_count     integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT agent_embeddings_kind CHECK (kind IN ('fact', 'preference', 'event'));

-- Content hash → vector, so the same text is never embedded twice. `scope` is the
-- customer whose words these are ('' for text that belongs to nobody), which lets an
-- erasure remove the vectors of a customer's words with the rest of them. The vector
-- column has no fixed size: each model's vectors are keyed by `model`.
CREATE TABLE embedding_cache (
    model         text NOT NULL,
    scope         text NOT NULL DEFAULT '',
    content_hash  bytea NOT NULL,
    embedding     vector NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, scope, content_hash)
);
CREATE INDEX embedding_cache_scope ON embedding_cache (scope) WHERE scope <> '';
CREATE INDEX embedding_cache_last_used ON embedding_cache (last_used_at);

-- The last transcript line (agent_messages.id) the remember job has read: a job that
-- runs after several turns reads them all, a retried job reads nothing twice.
ALTER TABLE agent_conversations
    ADD COLUMN remembered_message_id bigint NOT NULL DEFAULT 0;
