-- Room on every page for the next version of a row, so the updates made on every check round
-- (monitors.next_due_at by the scheduler, monitors.last_checked_at and the per-country state by
-- the ingester) stay on their page (HOT) instead of touching each index of the table.
-- Applies to pages written from now on; VACUUM FULL rewrites existing ones when convenient.
ALTER TABLE monitors SET (fillfactor = 80);
ALTER TABLE monitor_country_state SET (fillfactor = 80);
