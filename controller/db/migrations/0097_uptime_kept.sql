-- Uptime outlives the raw results (issue 66). `uptime_ms` (0091) times each state from its
-- result to the country's next result; retention drops raw rows after CHECK_RAW_DAYS, so before
-- it drops a day it keeps in `uptime_results` the results of that day the rule needs, per
-- monitor and country: the first result of each run of one status, and the day's first and
-- last result. The rule gives the same time over these as over all the day's results: a run's
-- repeated results only continue it, and the state at a window's start (the last result in the
-- day before it) is found as before, as a day's first and last result are kept. Rows of a day
-- still held raw are subsets of its raw rows, and a result read twice adds no time (the span
-- between equal rows is zero), so readers read both with no boundary between them.
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
CREATE FUNCTION uptime_keep_day(day date) RETURNS integer
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

-- The one rule of 0091, now over the raw results and the kept ones alike.
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
-- day, from its raw or kept results), kept in `result_days` beside its rounds. A day with
-- neither (its raw rows dropped before this migration kept any) keeps its share of up rounds,
-- weighed as the whole day: the only measure left of it.
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
