-- requires extension: vector
-- The knowledge base's chunks, shaped for langchain-postgres' PGVectorStore. Kept apart
-- from 0005 so the business tables exist even on a server without pgvector. 384
-- dimensions like agent_embeddings: the local MiniLM default (OpenAI's
-- text-embedding-3 models produce 384 with `dimensions=384`).

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE knowledge_chunks (
    langchain_id        uuid PRIMARY KEY,
    content             text NOT NULL,
    embedding           vector(384) NOT NULL,
    langchain_metadata  jsonb NOT NULL DEFAULT '{}',
    document_id         bigint NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    source              text NOT NULL,
    heading             text NOT NULL DEFAULT '',
    chunk_index         integer NOT NULL
);
CREATE INDEX knowledge_chunks_hnsw ON knowledge_chunks
    USING hnsw (embedding vector_cosine_ops);
CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id);
