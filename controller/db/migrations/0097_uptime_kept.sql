-- Uptime is time (issue 66): the one rule every uptime statement calls, and what retention keeps
-- of the results for it.

-- Before retention drops a day's raw rows (CHECK_RAW_DAYS) it keeps here the results of that
-- day the rule needs, per monitor and country: the first result of each run of one status, and
-- the day's first and last result. `uptime_ms` gives the same time over these as over all the
-- day's results: a run's repeated results only continue it, and the state at a window's start
-- (the last result in the day before it) is found as before, as a day's first and last result
-- are kept. Rows of a day still held raw are a subset of its raw rows, and a result read twice
-- adds no time (the span between equal rows is zero), so readers read both with no boundary
-- between them.
CREATE TABLE uptime_results (
    monitor_id  bigint NOT NULL,
    at          timestamptz NOT NULL,  -- the result's scheduled time
    country     smallint NOT NULL,
    status      smallint NOT NULL,  -- result_status_code: up, down, missed, inconclusive
    PRIMARY KEY (monitor_id, at, country, status)
);
-- Kept as long as the hourly rollups (CHECK_HISTORY_DAYS) and a day more, for the state at the
-- start of the longest window (`ingest.retention`).
CREATE INDEX uptime_results_at ON uptime_results (at);

-- The results of UTC day `day` that `uptime_ms` needs (see above), kept once however often it
-- runs (retention passes, two controllers); returns how many were new.
CREATE OR REPLACE FUNCTION uptime_keep_day(day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    kept integer;
BEGIN
    INSERT INTO uptime_results (monitor_id, at, country, status)
    SELECT m.monitor_id, m.at, m.country, m.status
    FROM (
        SELECT r.monitor_id, r.scheduled_at AS at, r.country, r.status,
            lag(r.status) OVER w AS before,
            lead(r.status) OVER w AS after
        FROM result_rows r
        WHERE r.status < 8
          AND r.scheduled_at >= day::timestamp AT TIME ZONE 'UTC'
          AND r.scheduled_at < (day + 1)::timestamp AT TIME ZONE 'UTC'
        WINDOW w AS (PARTITION BY r.monitor_id, r.country ORDER BY r.scheduled_at, r.status)
    ) m
    WHERE m.before IS DISTINCT FROM m.status OR m.after IS NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS kept = ROW_COUNT;
    RETURN kept;
END;
$$;

-- Per country of monitor `monitor`, within [since, until), from its result rows and the
-- results kept of days whose rows are gone: each state (`up` or `down`) lasts from its result to
-- the next result of that country, whatever its status; repeated results of one state
-- (confirmation rounds) only continue it, so they add no weight. A `missed` or `inconclusive`
-- result (one no later result replaced) ends the known state: the time until the next result
-- counts for neither. The state at `since` is that of the country's last result in the day
-- before it; the last result's state lasts until `until`. `covered_from`: when the window's
-- known time really starts (its first result, or `since`), so a page can say the window it
-- covers. Results replaced by a later one (status + 8) count not at all.
CREATE OR REPLACE FUNCTION uptime_ms(monitor bigint, since timestamptz, until timestamptz)
RETURNS TABLE (country smallint, up_ms bigint, down_ms bigint, covered_from timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH known AS (
        SELECT r.country, r.scheduled_at AS at, r.status
        FROM result_rows r
        WHERE r.monitor_id = monitor AND r.status < 8
          AND r.scheduled_at >= since - interval '1 day' AND r.scheduled_at < until
        UNION ALL
        SELECT k.country, k.at, k.status
        FROM uptime_results k
        WHERE k.monitor_id = monitor
          AND k.at >= since - interval '1 day' AND k.at < until
    ), told AS (
        SELECT k.country, k.at, k.status FROM known k WHERE k.at >= since
        UNION ALL
        SELECT * FROM (
            SELECT DISTINCT ON (k.country) k.country, since, k.status
            FROM known k WHERE k.at < since
            ORDER BY k.country, k.at DESC, k.status DESC
        ) before
    ), spans AS (
        SELECT t.country, t.at, t.status,
            coalesce(lead(t.at) OVER (PARTITION BY t.country ORDER BY t.at, t.status), until)
                - t.at AS span
        FROM told t
    )
    SELECT s.country,
        coalesce(sum(extract(epoch FROM s.span) * 1000) FILTER (WHERE s.status = 0), 0)::bigint,
        coalesce(sum(extract(epoch FROM s.span) * 1000) FILTER (WHERE s.status = 1), 0)::bigint,
        min(s.at)
    FROM spans s GROUP BY s.country
$$;

-- A settled day's time up and down of a monitor over its countries (`uptime_ms` over the UTC
-- day), kept in `result_days` beside its rounds. A day with neither result rows nor kept
-- results (dropped before this migration) keeps its share of up rounds, weighed as the whole
-- day: the only measure left of it.
CREATE OR REPLACE FUNCTION uptime_day_ms(monitor bigint, day date, up integer, down integer)
RETURNS TABLE (up_ms bigint, down_ms bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN t.up_ms + t.down_ms > 0 OR up + down = 0 THEN t.up_ms
            ELSE (86400000::bigint * up / (up + down)) END,
        CASE WHEN t.up_ms + t.down_ms > 0 OR up + down = 0 THEN t.down_ms
            ELSE 86400000::bigint - (86400000::bigint * up / (up + down)) END
    FROM (
        SELECT coalesce(sum(u.up_ms), 0)::bigint AS up_ms,
            coalesce(sum(u.down_ms), 0)::bigint AS down_ms
        FROM uptime_ms(monitor, day::timestamp AT TIME ZONE 'UTC',
            (day + 1)::timestamp AT TIME ZONE 'UTC') u
    ) t
$$;

-- The settled days kept so far get their time (the columns may exist: a database migrated by
-- an earlier build of this file).
ALTER TABLE result_days ADD COLUMN IF NOT EXISTS up_ms bigint,
    ADD COLUMN IF NOT EXISTS down_ms bigint;
UPDATE result_days r SET up_ms = t.up_ms, down_ms = t.down_ms
FROM result_days d CROSS JOIN LATERAL uptime_day_ms(d.monitor_id, d.day, d.up, d.down) t
WHERE r.monitor_id = d.monitor_id AND r.day = d.day;
ALTER TABLE result_days ALTER COLUMN up_ms SET NOT NULL, ALTER COLUMN down_ms SET NOT NULL;
