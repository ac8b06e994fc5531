-- A product's photo, sent to the customer beside the agent's answer about it: a public
-- https address WhatsApp fetches itself (nothing is stored or uploaded by the service).
ALTER TABLE catalog_items ADD COLUMN image_url text
    CHECK (image_url ~ '^https://\S+$' AND length(image_url) <= 2000);
