CREATE OR REPLACE FUNCTION public.api_calls_reserve(job_ids uuid[], mailboxes text[], ats timestamp with time zone[], needs integer[], budget integer, win interval, now_at timestamp with time zone)
 RETURNS TABLE(job_id uuid, calls integer)
 LANGUAGE plpgsql
AS $function$
DECLARE
    j record;
    used bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('api_calls:' || b, 0))
    FROM (SELECT DISTINCT b FROM unnest(mailboxes) AS b ORDER BY b) AS s;
    DELETE FROM api_calls a
    WHERE a.mailbox = ANY (mailboxes) AND a.at < now_at - win - win;
    FOR j IN
        SELECT u.job, u.box, u.at, u.need
        FROM unnest(job_ids, mailboxes, ats, needs) AS u (job, box, at, need)
        ORDER BY u.at, u.job
    LOOP
        SELECT coalesce(sum(a.given), 0) INTO used FROM api_calls a
        WHERE a.mailbox = j.box AND a.at > j.at - win AND a.at < j.at + win
            AND a.job <> j.job;
        IF used + j.need <= budget THEN
            INSERT INTO api_calls AS a VALUES (j.job, j.box, j.at, j.need)
            ON CONFLICT (job) DO UPDATE SET given = EXCLUDED.given;
            job_id := j.job; calls := j.need;
        ELSE
            job_id := j.job; calls := 0;
        END IF;
        RETURN NEXT;
    END LOOP;
END $function$
;
