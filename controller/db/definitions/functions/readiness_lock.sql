CREATE OR REPLACE FUNCTION public.readiness_lock(monitor_ids uuid[], ccs text[], ats timestamp with time zone[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO readiness_budget (organization_id, country, hour)
    SELECT DISTINCT m.organization_id, u.cc, date_trunc('hour', u.at, 'UTC')
    FROM unnest(monitor_ids, ccs, ats) AS u (public_id, cc, at)
    JOIN monitors m ON m.public_id = u.public_id
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM readiness_budget rb
    WHERE (rb.organization_id, rb.country, rb.hour) IN (
        SELECT m.organization_id, u.cc, date_trunc('hour', u.at, 'UTC')
        FROM unnest(monitor_ids, ccs, ats) AS u (public_id, cc, at)
        JOIN monitors m ON m.public_id = u.public_id
    )
    ORDER BY rb.organization_id, rb.country, rb.hour
    FOR UPDATE;
END $function$
;
