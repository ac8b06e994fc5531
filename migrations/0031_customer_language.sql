-- The language a customer writes in, as last recognised from their typed words: the
-- service's notices (apology, refusals, caps, the handover) are written in it, also on
-- turns that carry no words (a tap, a photo). NULL: not recognised yet, the default.
ALTER TABLE contacts ADD COLUMN language text CHECK (language ~ '^[a-z]{2,3}$');
