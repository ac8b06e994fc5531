-- Reminders sent before bookings (server/outcomes/reminders.py): one row per booking
-- and start time, written before the template is staged, so a booking is reminded at
-- most once for each time it is due (a booking moved to another slot is reminded again
-- for its new time). Cascades with the booking, and so with an erased customer.
CREATE TABLE booking_reminders (
    booking_id  bigint NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (booking_id, starts_at)
);
