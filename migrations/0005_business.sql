-- The business the agents serve: catalog, bookable slots, bookings, payments, support
-- tickets and the knowledge documents (their vectors are in 0006, which needs pgvector).
-- Every row keyed by a customer references contacts (wa_id) ON DELETE CASCADE, so
-- forgetting a customer removes their bookings, payments and tickets with them.
-- Money is an integer count of the currency's minor unit (RWF has none: francs).

CREATE TABLE catalog_items (
    id           bigserial PRIMARY KEY,
    sku          text NOT NULL UNIQUE CHECK (sku ~ '^[A-Z0-9][A-Z0-9-]{1,39}$'),
    kind         text NOT NULL CHECK (kind IN ('product', 'service')),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    description  text NOT NULL DEFAULT '',
    category     text NOT NULL,
    price_minor  bigint NOT NULL CHECK (price_minor >= 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    unit         text NOT NULL DEFAULT 'item',   -- item | slot | job: what the price buys
    stock        integer CHECK (stock IS NULL OR stock >= 0),  -- NULL: not stocked (services)
    active       boolean NOT NULL DEFAULT true,
    search       tsvector GENERATED ALWAYS AS (
                     to_tsvector('simple', name || ' ' || category || ' ' || description)
                 ) STORED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX catalog_items_search ON catalog_items USING gin (search);
CREATE INDEX catalog_items_category ON catalog_items (lower(category)) WHERE active;

-- What can be booked (a rental bike, the repair bench) and the slots it offers. Slots
-- are explicit rows (generated ahead from opening hours) so availability is a plain
-- query and a slot can be closed by deleting or deactivating it.
CREATE TABLE booking_resources (
    id           bigserial PRIMARY KEY,
    code         text NOT NULL UNIQUE,
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('rental', 'repair')),
    description  text NOT NULL DEFAULT '',
    service_sku  text NOT NULL REFERENCES catalog_items (sku),  -- the price of one slot
    active       boolean NOT NULL DEFAULT true
);

CREATE TABLE booking_slots (
    id           bigserial PRIMARY KEY,
    resource_id  bigint NOT NULL REFERENCES booking_resources (id) ON DELETE CASCADE,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    CHECK (ends_at > starts_at),
    UNIQUE (resource_id, starts_at)
);
CREATE INDEX booking_slots_start ON booking_slots (starts_at) WHERE active;

CREATE TABLE bookings (
    id               bigserial PRIMARY KEY,
    wa_id            text NOT NULL REFERENCES contacts (wa_id) ON DELETE CASCADE,
    slot_id          bigint NOT NULL REFERENCES booking_slots (id),
    status           text NOT NULL DEFAULT 'confirmed'
                         CHECK (status IN ('confirmed', 'cancelled', 'completed', 'no_show')),
    notes            text NOT NULL DEFAULT '',
    price_minor      bigint NOT NULL CHECK (price_minor >= 0),   -- the price when booked
    currency         text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,       -- a re-run tool call finds its booking
    cancel_reason    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz
);
-- No double booking: at most one live booking per slot, whatever the race.
CREATE UNIQUE INDEX bookings_one_per_slot ON bookings (slot_id) WHERE status <> 'cancelled';
CREATE INDEX bookings_customer ON bookings (wa_id, created_at);

CREATE TABLE payments (
    id                  bigserial PRIMARY KEY,
    reference           text NOT NULL UNIQUE,    -- ours, shown to the customer
    wa_id               text NOT NULL REFERENCES contacts (wa_id) ON DELETE CASCADE,
    booking_id          bigint REFERENCES bookings (id) ON DELETE SET NULL,
    items               jsonb NOT NULL DEFAULT '[]',   -- [{sku, name, quantity, unit_price_minor}]
    description         text NOT NULL,
    amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    provider            text NOT NULL,
    provider_reference  text,
    payment_url         text,
    instructions        text,
    status              text NOT NULL DEFAULT 'creating'
                            CHECK (status IN ('creating', 'pending', 'paid', 'failed',
                                              'cancelled', 'expired')),
    idempotency_key     text NOT NULL UNIQUE,    -- the confirmed tool call: pay once
    error               text,
    expires_at          timestamptz,
    paid_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_reference)
);
-- One open payment per booking: asking twice returns the link already made.
CREATE UNIQUE INDEX payments_one_open_per_booking ON payments (booking_id)
    WHERE status IN ('creating', 'pending', 'paid');
CREATE INDEX payments_customer ON payments (wa_id, created_at);

CREATE TABLE support_tickets (
    id               bigserial PRIMARY KEY,
    wa_id            text NOT NULL REFERENCES contacts (wa_id) ON DELETE CASCADE,
    subject          text NOT NULL,
    description      text NOT NULL,
    category         text NOT NULL
                         CHECK (category IN ('repair', 'rental', 'order', 'payment', 'other')),
    priority         text NOT NULL DEFAULT 'normal'
                         CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status           text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'in_progress', 'waiting_customer',
                                           'resolved', 'closed')),
    idempotency_key  text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz
);
CREATE INDEX support_tickets_customer ON support_tickets (wa_id, created_at);

CREATE TABLE support_ticket_comments (
    id          bigserial PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES support_tickets (id) ON DELETE CASCADE,
    author      text NOT NULL CHECK (author IN ('customer', 'operator', 'agent')),
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX support_ticket_comments_ticket ON support_ticket_comments (ticket_id, id);

-- The FAQ and policy documents (prompts/knowledge/*.md). The content hash and the
-- embeddings model say whether the chunks in knowledge_chunks (0006) are current.
CREATE TABLE knowledge_documents (
    id               bigserial PRIMARY KEY,
    source           text NOT NULL UNIQUE,       -- file name, e.g. rentals.md
    title            text NOT NULL,
    content          text NOT NULL,
    content_hash     text NOT NULL,
    embedding_model  text,                       -- NULL: not indexed yet
    chunk_count      integer NOT NULL DEFAULT 0,
    indexed_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
