-- A round trip's look planned while its monitor's round was in flight in its country waits for
-- that round to end (issue 66): `after_round` is that round's scheduled time. When it is due, a
-- look whose awaited round found its message is answered `up` from that finding and not sent
-- (controller.roundtrips.sends.answer); else it goes, and finds what arrived late. NULL: a later
-- login of a round, as before.
ALTER TABLE deferred_jobs ADD COLUMN after_round timestamptz;
