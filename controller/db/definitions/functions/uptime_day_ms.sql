CREATE OR REPLACE FUNCTION public.uptime_day_ms(monitor bigint, day date, up integer, down integer)
 RETURNS TABLE(up_ms bigint, down_ms bigint)
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
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
$function$
;
