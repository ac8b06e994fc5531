-- Customers, their conversations, and every WhatsApp message in and out.
-- The inbox (inbound_messages) and the outbox (outbound_messages) are what make
-- "nothing lost, nothing doubled" hold across crashes.

CREATE TABLE contacts (
    wa_id         text PRIMARY KEY,
    user_id       text,                       -- Meta's business-scoped user id, when sent
    profile_name  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_user_id ON contacts (user_id) WHERE user_id IS NOT NULL;

-- One row per (business number, customer); its id is the LangGraph thread_id, so no
-- phone number ever appears in checkpoints' keys or in traces.
CREATE TABLE agent_conversations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone_number_id  text NOT NULL,
    wa_id            text NOT NULL REFERENCES contacts (wa_id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'active',
    active_agent     text,
    last_inbound_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (phone_number_id, wa_id)
);

CREATE TABLE inbound_messages (
    id               bigserial PRIMARY KEY,
    wamid            text NOT NULL UNIQUE,      -- Meta redelivers: a duplicate is a no-op
    conversation_id  uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    wa_id            text NOT NULL,
    kind             text NOT NULL,
    text             text NOT NULL DEFAULT '',
    supported        boolean NOT NULL DEFAULT true,  -- false: the bot cannot read this kind
    reply_id         text,                      -- id of a tapped button or list row
    payload          jsonb NOT NULL,
    sent_at          timestamptz NOT NULL,      -- Meta's timestamp of the message
    received_at      timestamptz NOT NULL DEFAULT now(),
    run_id           uuid,                      -- the run that claimed it; NULL = waiting
    processed_at     timestamptz
);
CREATE INDEX inbound_messages_waiting ON inbound_messages (conversation_id, id)
    WHERE run_id IS NULL;
CREATE INDEX inbound_messages_run ON inbound_messages (run_id);

-- A run is one graph invocation answering the messages it claimed. A run left
-- 'running' by a crashed worker is resumed by the retried job.
CREATE TABLE conversation_runs (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    job_id           bigint,
    worker           text,                      -- host:pid of the last attempt
    status           text NOT NULL DEFAULT 'running',   -- running | done | failed
    attempts         integer NOT NULL DEFAULT 1,
    error            text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX conversation_runs_open ON conversation_runs (conversation_id)
    WHERE status = 'running';

-- The outbox: one row per message part of a run's reply. UNIQUE (run_id, part) is what
-- keeps a retried run from sending the same part twice.
CREATE TABLE outbound_messages (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    run_id           uuid NOT NULL,
    part             integer NOT NULL,
    wa_id            text NOT NULL,
    kind             text NOT NULL,             -- text | interactive
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
        -- pending | sending | sent | delivered | read | failed | unknown
    wamid            text UNIQUE,
    error_code       integer,
    error_title      text,
    error_details    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, part)
);
CREATE INDEX outbound_messages_conversation ON outbound_messages (conversation_id, id);
