-- Microsoft Graph allows 10,000 calls per app and mailbox in 10 minutes, whichever agents and
-- countries make them (issue 82): the controller reserves each job's calls before it goes.
--
-- `api_calls`, one row per job reserved: the mailbox (the keyed hash of user@host its round
-- logs in to, keyed by organization), the job's scheduled time and the calls it may make.
CREATE TABLE api_calls (
    job uuid PRIMARY KEY,
    mailbox text NOT NULL,
    at timestamptz NOT NULL,
    given integer NOT NULL CHECK (given > 0)
);
CREATE INDEX api_calls_mailbox ON api_calls (mailbox, at);

-- `api_calls_reserve` is the one rule of how many calls a pass's jobs (job, mailbox, scheduled
-- time, calls it needs) may make: each is given what it needs, or 0 (held: the agent ends it
-- `inconclusive`, throttled, unsent) when the calls reserved for its mailbox within `win`
-- either side of its time, plus its need, would pass `budget`. So any window of `win` holds at most `budget`
-- calls. Mailboxes are locked in key order (replicas reserving at once are counted one after
-- the other); rows older than `win` before `now_at` go.
CREATE FUNCTION api_calls_reserve(
    job_ids uuid[], mailboxes text[], ats timestamptz[], needs integer[],
    budget integer, win interval, now_at timestamptz
) RETURNS TABLE (job_id uuid, calls integer) LANGUAGE plpgsql AS $$
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
END $$;

-- The reservations of jobs that will never run (refused by admission) are given back.
CREATE FUNCTION api_calls_release(job_ids uuid[]) RETURNS void LANGUAGE sql AS $$
    DELETE FROM api_calls WHERE job = ANY (job_ids)
$$;
