-- Readiness rounds take turns within an organization's DNS budget (issue 67): which rounds an
-- hour's budget asks is `readiness_reserve`'s rule alone.
--
-- `readiness_turns`, per monitor and country: `seen_at` the scheduled time of its latest
-- readiness round (asked or held), `served_hour` the hour of its latest round asked, and
-- `waiting_since` the hour of its first round held since then (NULL: not waiting).
CREATE TABLE readiness_turns (
    monitor_id bigint NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    country text NOT NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    seen_at timestamptz NOT NULL,
    served_hour timestamptz,
    waiting_since timestamptz,
    PRIMARY KEY (monitor_id, country)
);
-- The turn order of an organization's waiting monitors in a country.
CREATE INDEX readiness_turns_queue
ON readiness_turns (organization_id, country, waiting_since, served_hour NULLS FIRST, monitor_id)
WHERE waiting_since IS NOT NULL;
CREATE INDEX readiness_turns_seen ON readiness_turns (seen_at);

-- 0117's `readiness_reserve(org, cc, hour, wanted, per_round, budget)` stays for one release: a
-- scheduler of the previous release reserves through it during a rolling upgrade, against the same
-- budget rows (its rounds take no turns). The next release drops it.

-- The budget rows of the hours of rounds (monitor's public id, country, scheduled time), made
-- if missing and locked in key order: replicas reserving at once are counted one after the
-- other, never deadlocked.
CREATE FUNCTION readiness_lock(monitor_ids uuid[], ccs text[], ats timestamptz[])
RETURNS void LANGUAGE plpgsql AS $$
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
END $$;

-- `readiness_reserve` decides, for one pass's readiness rounds (job, monitor's public id,
-- country, scheduled time), which are asked: `asked`, or held because the hour's budget has no
-- room (`spent`) or because its room is kept for monitors waiting longer (`turn`).
--
-- The rule: an organization's rounds in a country and clock hour (UTC) each reserve
-- `per_round` queries until their facts arrive (then what they spent counts), and what is
-- spent plus reserved never exceeds `budget_queries`. The hour's room goes in turn order: the
-- monitors waiting since the earliest hour (then those asked longest ago, then by id), then
-- the others (never asked first, then asked longest ago). A waiting monitor not in the pass
-- whose next round is due in the hour (its latest round plus its cadence, the larger of
-- `dns_window` and its check interval, within a check interval; not disabled, with a mail
-- domain) keeps its place: the rounds behind it are held while the room left is its own. So a monitor held one hour goes before
-- those asked since, and none is held longer than the monitors ahead of it take to be asked.
--
-- It locks the budget rows of the pass's hours first (`readiness_lock`), and drops what is a
-- day before `now_at`.
CREATE FUNCTION readiness_reserve(
    job_ids uuid[], monitor_ids uuid[], ccs text[], ats timestamptz[],
    per_round integer, budget_queries integer, dns_window interval, now_at timestamptz
) RETURNS TABLE (job_id uuid, outcome text) LANGUAGE plpgsql AS $$
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
END $$;

-- `readiness_release` gives back the reservations of rounds reserved that will never run
-- (never below what settled), and their monitors wait their turn from that hour (as if held).
CREATE FUNCTION readiness_release(monitor_ids uuid[], ccs text[], ats timestamptz[])
RETURNS void LANGUAGE plpgsql AS $$
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
END $$;
