CREATE OR REPLACE FUNCTION public.readiness_reserve(job_ids uuid[], monitor_ids uuid[], ccs text[], ats timestamp with time zone[], per_round integer, budget_queries integer, dns_window interval, now_at timestamp with time zone)
 RETURNS TABLE(job_id uuid, outcome text)
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM readiness_lock(monitor_ids, ccs, ats);

    RETURN QUERY
    WITH x AS (
        SELECT u.job, m.id AS monitor_id, m.organization_id AS org, u.cc,
            date_trunc('hour', u.at, 'UTC') AS h, u.at
        FROM unnest(job_ids, monitor_ids, ccs, ats) AS u (job, public_id, cc, at)
        JOIN monitors m ON m.public_id = u.public_id
    ), b AS (
        SELECT rb.organization_id AS org, rb.country AS cc, rb.hour AS h,
            GREATEST(
                (budget_queries - rb.spent - GREATEST(rb.asked - rb.settled, 0) * per_round)
                    / per_round,
                0
            ) AS room
        FROM readiness_budget rb
        WHERE (rb.organization_id, rb.country, rb.hour) IN (SELECT x.org, x.cc, x.h FROM x)
    ), pass AS (
        SELECT x.*, t.waiting_since IS NOT NULL AND row_number() OVER (
                PARTITION BY x.monitor_id, x.cc, x.h ORDER BY x.at, x.job
            ) = 1 AS waiting,
            t.waiting_since, t.served_hour
        FROM x
        LEFT JOIN readiness_turns t ON t.monitor_id = x.monitor_id AND t.country = x.cc
    ), ranked AS (
        SELECT p.*,
            row_number() OVER (
                PARTITION BY p.org, p.cc, p.h
                ORDER BY p.waiting DESC, p.waiting_since, p.served_hour NULLS FIRST,
                    p.monitor_id, p.at, p.job
            ) AS pass_place,
            row_number() OVER (
                PARTITION BY p.org, p.cc, p.h, p.waiting
                ORDER BY p.served_hour NULLS FIRST, p.monitor_id, p.at, p.job
            ) AS others_place
        FROM pass p
    ), front AS (
        -- The first `room` waiting monitors in turn order, of those in the pass or due in the
        -- hour: the hour's room is theirs.
        SELECT b.org, b.cc, b.h, f.monitor_id
        FROM b
        CROSS JOIN LATERAL (
            SELECT t.monitor_id
            FROM readiness_turns t
            JOIN monitors m ON m.id = t.monitor_id
            CROSS JOIN LATERAL (
                SELECT t.seen_at + GREATEST(dns_window, make_interval(secs => m.check_interval))
                    AS due,
                    LEAST(dns_window, make_interval(secs => m.check_interval)) AS jitter
            ) n
            WHERE t.organization_id = b.org AND t.country = b.cc
                AND t.waiting_since IS NOT NULL
                AND (
                    EXISTS (
                        SELECT 1 FROM x
                        WHERE x.monitor_id = t.monitor_id AND x.cc = b.cc AND x.h = b.h
                    )
                    OR m.status <> 'disabled' AND m.mail_domain IS NOT NULL
                        AND n.due - n.jitter < b.h + interval '1 hour'
                        AND n.due + n.jitter >= b.h
                )
            ORDER BY t.waiting_since, t.served_hour NULLS FIRST, t.monitor_id
            LIMIT b.room
        ) f
    ), decided AS (
        SELECT r.job, r.at, r.monitor_id, r.org, r.cc, r.h,
            CASE
                WHEN r.waiting THEN EXISTS (
                    SELECT 1 FROM front f
                    WHERE (f.org, f.cc, f.h, f.monitor_id) = (r.org, r.cc, r.h, r.monitor_id)
                )
                ELSE r.others_place <= b.room - (
                    SELECT count(*) FROM front f WHERE (f.org, f.cc, f.h) = (r.org, r.cc, r.h)
                )
            END AS granted,
            r.pass_place <= b.room AS room_but_turn
        FROM ranked r JOIN b ON (b.org, b.cc, b.h) = (r.org, r.cc, r.h)
    ), asked AS (
        UPDATE readiness_budget rb SET asked = rb.asked + d.n
        FROM (
            SELECT d.org, d.cc, d.h, count(*) AS n FROM decided d WHERE d.granted
            GROUP BY d.org, d.cc, d.h
        ) d
        WHERE (rb.organization_id, rb.country, rb.hour) = (d.org, d.cc, d.h)
    ), turned AS (
        INSERT INTO readiness_turns AS t
            (monitor_id, country, organization_id, seen_at, served_hour, waiting_since)
        SELECT d.monitor_id, d.cc, min(d.org), max(d.at), max(d.h) FILTER (WHERE d.granted),
            CASE WHEN bool_or(d.granted) THEN NULL ELSE min(d.h) END
        FROM decided d
        GROUP BY d.monitor_id, d.cc
        ORDER BY d.monitor_id, d.cc
        ON CONFLICT (monitor_id, country) DO UPDATE SET
            seen_at = GREATEST(t.seen_at, EXCLUDED.seen_at),
            served_hour = GREATEST(t.served_hour, EXCLUDED.served_hour),
            waiting_since = CASE
                WHEN EXCLUDED.served_hour IS NOT NULL THEN NULL
                ELSE COALESCE(t.waiting_since, EXCLUDED.waiting_since)
            END
    )
    SELECT d.job,
        CASE WHEN d.granted THEN 'asked' WHEN d.room_but_turn THEN 'turn' ELSE 'spent' END
    FROM decided d;

    DELETE FROM readiness_budget WHERE hour < now_at - interval '1 day';
    DELETE FROM readiness_settled WHERE hour < now_at - interval '1 day';
    DELETE FROM readiness_turns WHERE seen_at < now_at - dns_window - interval '1 day';
END $function$
;

CREATE OR REPLACE FUNCTION public.readiness_reserve(org bigint, cc text, h timestamp with time zone, wanted integer, per_round integer, budget integer)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    b readiness_budget%ROWTYPE;
    got integer;
BEGIN
    INSERT INTO readiness_budget (organization_id, country, hour) VALUES (org, cc, h)
    ON CONFLICT DO NOTHING;
    SELECT * INTO b FROM readiness_budget
    WHERE organization_id = org AND country = cc AND hour = h FOR UPDATE;
    got := LEAST(
        wanted,
        GREATEST((budget - b.spent - GREATEST(b.asked - b.settled, 0) * per_round) / per_round, 0)
    );
    IF got > 0 THEN
        UPDATE readiness_budget SET asked = asked + got
        WHERE organization_id = org AND country = cc AND hour = h;
    END IF;
    RETURN got;
END $function$
;
