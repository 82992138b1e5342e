-- The rows of a monitor's results that name the address they connected to, newest first
-- (issue 80): what `controller.ingest.store.RECENT_ADDRESSES` reads for the flow grouping and
-- the confirmation siblings. A monitor whose checks connect nowhere (a down server, an agent
-- that reports no address) costs no rows to read, not a day of them.
CREATE INDEX result_details_addressed ON result_details (monitor_id, scheduled_at DESC)
    WHERE address IS NOT NULL;
