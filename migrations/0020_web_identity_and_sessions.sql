-- Web conversations and dashboard sessions: identities the HTTP surface hands out.
--
-- A web conversation (POST /v1/conversations) is a conversation of its own, with a
-- customer key of its own ("web:..."), never a WhatsApp thread; its row here holds the
-- SHA-256 of the per-conversation token that alone may stream turns into it (the
-- token itself is shown once, to the web chat's backend that created it). A
-- conversation without a row here cannot be driven from the web API at all.
CREATE TABLE web_conversations (
    conversation_id  uuid PRIMARY KEY REFERENCES agent_conversations (id) ON DELETE CASCADE,
    token_sha256     bytea NOT NULL,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per dashboard login: the cookie names its row, so logging out (revoked_at)
-- ends the session on every process at once, and a copied cookie dies with it.
CREATE TABLE dashboard_sessions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    admin       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
