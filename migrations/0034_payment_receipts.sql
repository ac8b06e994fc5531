-- The provider's receipt of a paid payment (a PDF at an https address), sent to the
-- customer as a document when they ask about the payment.
ALTER TABLE payments ADD COLUMN receipt_url text
    CHECK (receipt_url ~ '^https://\S+$' AND length(receipt_url) <= 2000);
