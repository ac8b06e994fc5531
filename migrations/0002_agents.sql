-- The agent side: configurations, transcript, metering.

CREATE TABLE agent_configurations (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    display_name   text NOT NULL,
    description    text NOT NULL DEFAULT '',
    system_prompt  text,                        -- NULL: use the prompt file in prompts/
    model          text,                        -- NULL: WA_AGENT_MODEL
    temperature    real,
    tools          text[] NOT NULL DEFAULT '{}',
    enabled        boolean NOT NULL DEFAULT true,
    settings       jsonb NOT NULL DEFAULT '{}',
    version        integer NOT NULL DEFAULT 1,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The readable transcript (the checkpoint holds the model's view, this the business's).
CREATE TABLE agent_messages (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    run_id           uuid,
    role             text NOT NULL,             -- customer | agent | operator | system
    agent            text,
    content          text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_messages_conversation ON agent_messages (conversation_id, id);

CREATE TABLE agent_metrics (
    id                 bigserial PRIMARY KEY,
    conversation_id    uuid,
    run_id             uuid,
    agent              text,
    node               text,
    model              text,
    prompt_tokens      integer NOT NULL DEFAULT 0,
    completion_tokens  integer NOT NULL DEFAULT 0,
    cached_tokens      integer NOT NULL DEFAULT 0,
    cost_usd           numeric(14, 8) NOT NULL DEFAULT 0,
    latency_ms         real,
    success            boolean NOT NULL,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_metrics_conversation ON agent_metrics (conversation_id);
CREATE INDEX agent_metrics_created ON agent_metrics (created_at);

CREATE TABLE agent_tool_executions (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid,
    run_id           uuid,
    agent            text,
    tool             text NOT NULL,
    arguments        jsonb NOT NULL DEFAULT '{}',   -- masked
    result_size      integer,
    success          boolean NOT NULL,
    duration_ms      real,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_tool_executions_conversation ON agent_tool_executions (conversation_id);
