CREATE OR REPLACE FUNCTION public.readiness_release(monitor_ids uuid[], ccs text[], ats timestamp with time zone[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM readiness_lock(monitor_ids, ccs, ats);
    UPDATE readiness_budget rb SET asked = GREATEST(rb.asked - g.n, rb.settled)
    FROM (
        SELECT m.organization_id AS org, u.cc, date_trunc('hour', u.at, 'UTC') AS h,
            count(*) AS n
        FROM unnest(monitor_ids, ccs, ats) AS u (public_id, cc, at)
        JOIN monitors m ON m.public_id = u.public_id
        GROUP BY 1, 2, 3
    ) g
    WHERE (rb.organization_id, rb.country, rb.hour) = (g.org, g.cc, g.h);
    PERFORM 1 FROM readiness_turns t
    WHERE (t.monitor_id, t.country) IN (
        SELECT m.id, u.cc
        FROM unnest(monitor_ids, ccs) AS u (public_id, cc)
        JOIN monitors m ON m.public_id = u.public_id
    )
    ORDER BY t.monitor_id, t.country
    FOR UPDATE;
    UPDATE readiness_turns t SET waiting_since = COALESCE(t.waiting_since, g.h)
    FROM (
        SELECT m.id AS monitor_id, u.cc, min(date_trunc('hour', u.at, 'UTC')) AS h
        FROM unnest(monitor_ids, ccs, ats) AS u (public_id, cc, at)
        JOIN monitors m ON m.public_id = u.public_id
        GROUP BY 1, 2
    ) g
    WHERE (t.monitor_id, t.country) = (g.monitor_id, g.cc);
END $function$
;
