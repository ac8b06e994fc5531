-- The business numbers one deployment answers, beyond the environment's single number
-- (WHATSAPP_PHONE_NUMBER_ID). Secrets are never stored here: the columns hold where to
-- read them (`env:NAME` or `file:/path`), resolved by each process when it reads the rows.
CREATE TABLE business_numbers (
    phone_number_id text PRIMARY KEY
        CHECK (phone_number_id ~ '^[0-9A-Za-z_-]{1,64}$'
               AND phone_number_id NOT IN ('web', 'terminal')),
    display_number text NOT NULL DEFAULT '' CHECK (length(display_number) <= 32),
    access_token_ref text NOT NULL CHECK (access_token_ref ~ '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$'),
    app_secret_ref text NOT NULL CHECK (app_secret_ref ~ '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$'),
    default_language text CHECK (default_language ~ '^[a-z]{2,3}$'),
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
