CREATE OR REPLACE FUNCTION public.public_uptime_days(monitors bigint[], first date, until timestamp with time zone)
 RETURNS TABLE(monitor_id bigint, day date, up_ms bigint, down_ms bigint)
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    WITH watched AS (
        SELECT m.id, m.created_at FROM monitors m
        WHERE m.id = ANY(monitors)
          AND (EXISTS (SELECT 1 FROM monitor_country_state s WHERE s.monitor_id = m.id)
               OR EXISTS (SELECT 1 FROM heartbeat_watch h WHERE h.monitor_id = m.id))
    ), merged AS (
        -- Each monitor's incidents over the window as one multirange, merged once.
        SELECT i.monitor_id AS id,
            range_agg(tstzrange(i.started_at, coalesce(i.ended_at, until))) AS down
        FROM incidents i
        WHERE i.monitor_id = ANY(monitors) AND i.started_at < until
          AND (i.ended_at IS NULL OR i.ended_at > first::timestamp AT TIME ZONE 'UTC')
          AND coalesce(i.ended_at, until) > i.started_at
        GROUP BY i.monitor_id
    ), spans AS (
        SELECT w.id, g.d::date AS day,
            tstzrange(greatest(g.d AT TIME ZONE 'UTC', w.created_at),
                      least((g.d + interval '1 day') AT TIME ZONE 'UTC', until)) AS span
        FROM watched w,
            generate_series(first::timestamp, (until AT TIME ZONE 'UTC')::date::timestamp,
                            interval '1 day') g(d)
        WHERE greatest(g.d AT TIME ZONE 'UTC', w.created_at)
            < least((g.d + interval '1 day') AT TIME ZONE 'UTC', until)
    )
    SELECT t.id, t.day, (t.span_ms - t.down_ms)::bigint, t.down_ms::bigint
    FROM (
        SELECT s.id, s.day, extract(epoch FROM upper(s.span) - lower(s.span)) * 1000 AS span_ms,
            CASE WHEN m.down && s.span THEN (
                SELECT sum(extract(epoch FROM upper(r) - lower(r)) * 1000)
                FROM unnest(m.down * tstzmultirange(s.span)) r
            ) ELSE 0 END AS down_ms
        FROM spans s LEFT JOIN merged m ON m.id = s.id
    ) t
$function$
;
