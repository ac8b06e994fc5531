-- The operator's inbox (server/operations/operator_inbox.py): who a conversation is
-- assigned to, when an operator took it over from the bot (the bot's replies are
-- withheld from then until it is handed back: outbound_messages.status 'withheld'),
-- internal notes (never sent to the customer; they go with the conversation when it
-- is erased or expires), and the business's canned replies.
ALTER TABLE agent_conversations ADD COLUMN assigned_to text,
                                ADD COLUMN taken_over_at timestamptz;

CREATE TABLE conversation_notes (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES agent_conversations (id) ON DELETE CASCADE,
    author           text NOT NULL,
    text             text NOT NULL CHECK (length(text) BETWEEN 1 AND 4096),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_notes_by_conversation ON conversation_notes (conversation_id, id);

CREATE TABLE canned_replies (
    name        text PRIMARY KEY,
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 4096),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
