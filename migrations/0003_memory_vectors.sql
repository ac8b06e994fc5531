-- requires extension: vector
-- Applied only where pgvector is installed (the embedded server has it); elsewhere it
-- waits, and `wa-agent migrate` applies it once the extension is available.

CREATE EXTENSION IF NOT EXISTS vector;

-- Long-term memories, shaped for langchain-postgres' PGVectorStore (id, content,
-- embedding, metadata JSON) plus the columns memory queries filter on. 384 dimensions
-- is the local MiniLM default.
CREATE TABLE agent_embeddings (
    langchain_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    content             text NOT NULL,
    embedding           vector(384) NOT NULL,
    langchain_metadata  jsonb NOT NULL DEFAULT '{}',
    user_id             text NOT NULL,
    kind                text NOT NULL DEFAULT 'fact',   -- fact | preference | event
    importance          real NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
    conversation_id     uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_recalled_at    timestamptz
);
CREATE INDEX agent_embeddings_hnsw ON agent_embeddings USING hnsw (embedding vector_cosine_ops);
CREATE INDEX agent_embeddings_user ON agent_embeddings (user_id);
