-- Uptime is time (issue 66): the one rule every uptime statement calls.
--
-- Per country of monitor `monitor`, within [since, until): each state (`up` or `down`) lasts
-- from its result to the next result of that country, whatever its status; repeated results of
-- one state (confirmation rounds) only continue it, so they add no weight. A `missed` or
-- `inconclusive` result (one no later result replaced) ends the known state: the time until the
-- next result counts for neither. The state at `since` is that of the country's last result in
-- the day before it; the last result's state lasts until `until`. `covered_from`: when the
-- window's known time really starts (its first result, or `since`), so a page can say the
-- window it covers. Results replaced by a later one (status + 8) count not at all.
CREATE FUNCTION uptime_ms(monitor bigint, since timestamptz, until timestamptz)
RETURNS TABLE (country smallint, up_ms bigint, down_ms bigint, covered_from timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH told AS (
        SELECT r.country, r.scheduled_at AS at, r.status
        FROM result_rows r
        WHERE r.monitor_id = monitor AND r.status < 8
          AND r.scheduled_at >= since AND r.scheduled_at < until
        UNION ALL
        SELECT * FROM (
            SELECT DISTINCT ON (r.country) r.country, since, r.status
            FROM result_rows r
            WHERE r.monitor_id = monitor AND r.status < 8
              AND r.scheduled_at >= since - interval '1 day' AND r.scheduled_at < since
            ORDER BY r.country, r.scheduled_at DESC, r.status DESC
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
-- day), kept in `result_days` beside its rounds. A day whose raw results are gone already
-- (older than CHECK_RAW_DAYS when first summed) keeps its share of up rounds, weighed as the
-- whole day: the only measure left of it.
CREATE FUNCTION uptime_day_ms(monitor bigint, day date, up integer, down integer)
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

ALTER TABLE result_days ADD COLUMN up_ms bigint, ADD COLUMN down_ms bigint;
UPDATE result_days r SET up_ms = t.up_ms, down_ms = t.down_ms
FROM result_days d CROSS JOIN LATERAL uptime_day_ms(d.monitor_id, d.day, d.up, d.down) t
WHERE r.monitor_id = d.monitor_id AND r.day = d.day;
ALTER TABLE result_days ALTER COLUMN up_ms SET NOT NULL, ALTER COLUMN down_ms SET NOT NULL;
