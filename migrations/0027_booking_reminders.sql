-- Messages sent first about bookings (server/outcomes/reminders.py): a reminder before
-- the booking, a nudge when its payment is still open. One row per booking, kind and
-- start time, written before the template is staged, so each goes out at most once for
-- each time the booking is due (a booking moved to another slot is reminded again for
-- its new time). Cascades with the booking, and so with an erased customer.
CREATE TABLE booking_reminders (
    booking_id  bigint NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    kind        text NOT NULL,            -- booking | payment
    starts_at   timestamptz NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (booking_id, kind, starts_at)
);
