-- Settled days (issue 24): up and down rounds per monitor and UTC day over its countries, for
-- days that ended at least an hour ago, so a status page of 1,000 services sums 90 small rows per
-- service instead of 90 days of hourly rollups per country (6.5 million rows at three
-- countries). Written from `result_rollups` by the status pages as they first need a day
-- (`status_store.daily`) and never changed after; the days still open are read from the hourly
-- rollups. Kept no longer than the hourly rollups (CHECK_HISTORY_DAYS, `ingest.retention`); a
-- day with no rollups is kept as zeros so it is not summed again.
CREATE TABLE result_days (
    monitor_id  bigint NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    day         date NOT NULL,
    up          integer NOT NULL,
    down        integer NOT NULL,
    PRIMARY KEY (monitor_id, day)
);
CREATE INDEX result_days_day ON result_days (day);
