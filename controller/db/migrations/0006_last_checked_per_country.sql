-- The end of the latest check that ran, per monitor and country: the ingester already updates
-- this row for every result, so a monitor's `lastCheckedAt` (the latest over its countries) no
-- longer costs an update of the wide, many-indexed `monitors` row per result.
ALTER TABLE monitor_country_state ADD COLUMN last_checked_at timestamptz;
UPDATE monitor_country_state s SET last_checked_at = m.last_checked_at
FROM monitors m WHERE m.id = s.monitor_id;
ALTER TABLE monitors DROP COLUMN last_checked_at;
-- Every result rewrites its state row, and a row grows from its placeholder to a full result:
-- half of each page free keeps those updates on their page (HOT). The table is small (a row per
-- monitor and country).
ALTER TABLE monitor_country_state SET (fillfactor = 50);
