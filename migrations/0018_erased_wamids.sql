-- Tombstones of erased messages. After `wa-agent forget`, Meta may still deliver one of
-- the customer's messages again (it retries for days); without a trace of it, that
-- delivery would re-create the customer the erasure removed. Only the SHA-256 of each
-- message id is kept, as lowercase hex: it recognises the same wamid again but says
-- nothing about the message, nor who sent it. The webhook treats a tombstoned wamid as
-- a duplicate.

CREATE TABLE erased_wamids (
    wamid_sha256 text PRIMARY KEY CHECK (wamid_sha256 ~ '^[0-9a-f]{64}$'),
    erased_at    timestamptz NOT NULL DEFAULT now()
);
