CREATE OR REPLACE FUNCTION public.uptime_ms(monitor bigint, since timestamp with time zone, until timestamp with time zone)
 RETURNS TABLE(country smallint, up_ms bigint, down_ms bigint, covered_from timestamp with time zone)
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
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
$function$
;
