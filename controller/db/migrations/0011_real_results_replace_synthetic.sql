-- A real result that arrives after the alerter closed its round (a restart, a redelivery) replaces
-- the `expired` row written for it; the alerter then re-judges the monitor's state from that round
-- on. `revised_from`: the earliest round whose stored result was so replaced since the alerter
-- last evaluated the monitor (NULL: none).
ALTER TABLE alert_queue ADD COLUMN revised_from timestamptz;
