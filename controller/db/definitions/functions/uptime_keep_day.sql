CREATE OR REPLACE FUNCTION public.uptime_keep_day(day date)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
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
$function$
;
