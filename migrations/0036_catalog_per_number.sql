-- An item sold on one business number only (an agency's shops, a line of its own);
-- NULL: sold on every number. SKUs stay unique across the deployment.
ALTER TABLE catalog_items ADD COLUMN phone_number_id text;
CREATE INDEX catalog_items_number ON catalog_items (phone_number_id) WHERE phone_number_id IS NOT NULL;
