-- What the bot understood of a document, photo or voice note (server/media/): the text
-- the agent read in its place, or why it could not. A retried run reads it from here
-- instead of downloading and transcribing again; an operator sees what the bot saw.
CREATE TABLE inbound_media (
    inbound_id  bigint PRIMARY KEY REFERENCES inbound_messages (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('document', 'image', 'audio')),
    status      text NOT NULL CHECK (status IN ('understood', 'refused', 'failed')),
    mime_type   text,
    size_bytes  bigint,
    text        text NOT NULL,              -- what the agent read instead of "[image]"
    detail      text NOT NULL DEFAULT '',   -- why refused or failed, for operators
    seconds     real NOT NULL DEFAULT 0,    -- download + parse / describe / transcribe
    created_at  timestamptz NOT NULL DEFAULT now()
);
