-- Whether a customer may be written to first (server/outcomes/consent.py). A customer
-- who writes STOP is opted out of every message they did not ask for (the CSAT
-- question today; reminders and templates later) and may still write to us at any
-- time; START opts them back in. One row per customer, only once they used a keyword:
-- no row means nobody said no.
--
-- Keyed by the customer and cascading from their contact row, so forgetting them
-- (server/operations/erasure.py) removes their choice with them. Retention keeps it:
-- a "no" must outlive the messages that said it.
CREATE TABLE proactive_consent (
    wa_id       text PRIMARY KEY REFERENCES contacts (wa_id) ON DELETE CASCADE,
    opted_out   boolean NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),  -- when it last flipped
    source      text NOT NULL                        -- how: 'keyword' (a STOP/START message)
);
