CREATE OR REPLACE FUNCTION public.api_calls_reserve(job_ids uuid[], mailboxes text[], ats timestamp with time zone[], needs integer[], budget integer, win interval, now_at timestamp with time zone)
 RETURNS TABLE(job_id uuid, calls integer)
 LANGUAGE plpgsql
AS $function$
-- The one rule of what a pass's jobs may spend on the mailboxes they call over one API: each
-- row (job, mailbox, scheduled time, need) asks; a job is given every need it asks (its calls
-- are their sum) when, for each of its mailboxes, what is reserved there within `win` either
-- side of its time plus its need stays within `budget`; else nothing (0: held, the agent ends
-- it `inconclusive`, throttled, unsent). So any window of `win` holds at most `budget` per
-- mailbox. Mailboxes are locked in key order (replicas reserving at once are counted one
-- after the other); rows older than `win` before `now_at` go.
DECLARE
    j record;
    fits boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('api_calls:' || b, 0))
    FROM (SELECT DISTINCT b FROM unnest(mailboxes) AS b ORDER BY b) AS s;
    DELETE FROM api_calls a
    WHERE a.mailbox = ANY (mailboxes) AND a.at < now_at - win - win;
    FOR j IN
        SELECT u.job, min(u.at) AS at, array_agg(u.box ORDER BY u.box) AS boxes,
            array_agg(u.need ORDER BY u.box) AS wants
        FROM unnest(job_ids, mailboxes, ats, needs) AS u (job, box, at, need)
        GROUP BY u.job
        ORDER BY min(u.at), u.job
    LOOP
        SELECT bool_and(coalesce(used.n, 0) + w.need <= budget) INTO fits
        FROM unnest(j.boxes, j.wants) AS w (box, need)
        LEFT JOIN LATERAL (
            SELECT sum(a.given) AS n FROM api_calls a
            WHERE a.mailbox = w.box AND a.at > j.at - win AND a.at < j.at + win
                AND a.job <> j.job
        ) AS used ON true;
        job_id := j.job;
        IF fits THEN
            INSERT INTO api_calls AS a
            SELECT j.job, w.box, j.at, w.need FROM unnest(j.boxes, j.wants) AS w (box, need)
            ON CONFLICT (job, mailbox) DO UPDATE SET given = EXCLUDED.given;
            calls := (SELECT sum(w)::integer FROM unnest(j.wants) AS w);
        ELSE
            calls := 0;
        END IF;
        RETURN NEXT;
    END LOOP;
END $function$
;
