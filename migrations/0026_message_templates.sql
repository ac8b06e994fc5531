-- The business's message templates (server/outcomes/templates.py): what may be sent
-- once a customer's 24-hour window has closed. Filled from Meta's listing (`source`
-- 'cloud', replaced at each sync), or declared in WA_AGENT_TEMPLATES_FILE for a service
-- without a business account id (`source` 'configured'); the webhook's
-- message_template_status_update keeps `status` current between syncs.
CREATE TABLE message_templates (
    name         text NOT NULL,
    language     text NOT NULL,
    status       text NOT NULL,              -- APPROVED, PENDING, REJECTED, PAUSED, DISABLED…
    category     text NOT NULL DEFAULT '',   -- UTILITY, MARKETING, AUTHENTICATION
    body         text NOT NULL DEFAULT '',
    variables    text[] NOT NULL DEFAULT '{}',  -- the body's variables, in order
    unsupported  text NOT NULL DEFAULT '',   -- why it cannot be sent here; '' when it can
    source       text NOT NULL,              -- cloud | configured
    reason       text,                       -- Meta's reason for the last status change
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, language)
);
