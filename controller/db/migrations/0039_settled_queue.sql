-- Evaluating only what changed (issue 24): a queue row the alerter released `settled` (the
-- monitor judged up on its batch path, with nothing pending: no incident, no login back-off,
-- no posture drift being counted, no finding open, no maintenance window, no held recovery) is
-- not woken by a batch of routine results (`up`, stored compact: what the last full row said).
-- Those rounds are judged at the row's due time, the close of the first round after the
-- alerter's cursor, which also judges a round nobody reported on: an outage is seen when it
-- is today, and a failing or changed result wakes the alerter at once as before. Any other
-- release clears it.
ALTER TABLE alert_queue ADD COLUMN settled boolean NOT NULL DEFAULT false;
