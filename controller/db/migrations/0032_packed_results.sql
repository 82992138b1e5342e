-- Packed hours of compact results (issue 24).
--
-- Once a UTC hour is closed, the packer (controller/ingest/packer.py) moves the compact rows of
-- each monitor, country and hour out of `result_rows` into one `result_packs` row of arrays, in
-- one transaction: per result its job id (a keyed MAC the database cannot recompute, so it is
-- kept) and thirteen numbers. A compact row's facts are those of its full row, which stays in
-- `result_details`; its status is `up`. The numbers are two two-dimensional arrays (int, smallint), one
-- line per field, so that PostgreSQL compresses them together: mostly repeated values (the scheduled
-- time as a delta from the previous result, the agent, the full row it points at, unused
-- phases) cost next to nothing.
--
-- `check_results` reads the packs back (`unnest`), with the open rows, and has a column `hour`
-- (the UTC hour of `scheduled_at`): a reader that bounds `scheduled_at` bounds `hour` too, which
-- the packs' index can use. A result that arrives for a packed hour is stored as a row, never
-- twice (the ingester looks its job id up in the pack), and a later pass merges it in.
-- Packs keep CHECK_RAW_DAYS, in daily partitions with the rows and details they point at.

-- The numbers of one result, in the order of the lines of `result_packs.nums`:
--  1 scheduled_at: ms after the previous result's (the first: after the hour)
--  2 stored_at: ms after the previous result's (the first: after the hour)
--  3 response time in microseconds
--  4-8 dns_us, connect_us, tls_us, greeting_us, auth_us (-1: not reached)
--  9 agent (result_agents.id)
--  10 the full row's scheduled_at in ms after the hour (negative: an earlier hour of the day)
--  11 the full row's tag
-- and of `spans` (smallint: a result whose check took longer than 32 s stays a row):
--  1-2 started_ms, finished_ms: as in result_rows (ms after scheduled_at)
CREATE TABLE result_packs (
    hour        timestamptz NOT NULL,
    monitor_id  bigint NOT NULL,
    country     smallint NOT NULL,
    jobs        uuid[] STORAGE EXTERNAL NOT NULL,
    nums        integer[] STORAGE MAIN NOT NULL,
    spans       smallint[] STORAGE MAIN NOT NULL,
    PRIMARY KEY (monitor_id, hour, country)
) PARTITION BY RANGE (hour);

-- A running sum, for the scheduled times.
CREATE FUNCTION result_running_sum(deltas integer[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_agg(s ORDER BY i) FROM (
        SELECT sum(d) OVER (ORDER BY i) AS s, i FROM unnest(deltas) WITH ORDINALITY AS u(d, i)
    ) t
$$;

-- A response time in ms from microseconds, as a float8 that equals the one stored when the
-- packer checked it did.
CREATE FUNCTION result_us_ms(us integer) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (us::numeric / 1000)::double precision
$$;

-- Every partition compresses the numbers and keeps them in line (out of line only past a
-- page's size); the job ids, which do not compress, go out of line into TOAST chunks, so that
-- the heap tuples stay small enough to fill their pages whatever the hour's number of results.
CREATE FUNCTION result_packs_partition(part text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I SET (toast_tuple_target = 128)', part);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN jobs SET STORAGE EXTERNAL,'
        ' ALTER COLUMN nums SET STORAGE MAIN, ALTER COLUMN spans SET STORAGE MAIN', part);
END;
$$;

CREATE TABLE result_packs_default PARTITION OF result_packs DEFAULT;
SELECT result_packs_partition('result_packs_default');

-- Daily partitions of result_packs too (same contract as 0030's).
CREATE OR REPLACE FUNCTION ensure_check_result_partitions(first_day date, days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    created integer := 0;
    parent text;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('check_results partitions'));
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        FOREACH parent IN ARRAY ARRAY['result_rows', 'result_details', 'result_rollups',
            'result_packs'] LOOP
            part := parent || '_p' || to_char(d, 'YYYYMMDD');
            CONTINUE WHEN to_regclass(part) IS NOT NULL;
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)%s',
                    part,
                    parent,
                    d::timestamp AT TIME ZONE 'UTC',
                    (d + 1)::timestamp AT TIME ZONE 'UTC',
                    CASE WHEN parent = 'result_rollups' THEN ' WITH (fillfactor = 70)' ELSE '' END
                );
                IF parent = 'result_packs' THEN
                    PERFORM result_packs_partition(part);
                END IF;
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                RAISE WARNING '%: rows of % stay in the default partition', parent, d;
            END;
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;

DO $$
DECLARE
    first_day date;
BEGIN
    SELECT min(to_date(substr(c.relname, 14), 'YYYYMMDD')) INTO first_day
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'result_rows'::regclass AND c.relname ~ '^result_rows_p[0-9]{8}$';
    IF first_day IS NOT NULL THEN
        PERFORM ensure_check_result_partitions(first_day,
            (now() AT TIME ZONE 'UTC')::date + 3 - first_day);
    END IF;
END;
$$;

-- Every row as it was stored: the rows (compact ones take their facts from their full row), and
-- the packed results, each a compact row as it was.
CREATE OR REPLACE VIEW check_results AS
SELECT
    r.job::text AS job_id,
    r.scheduled_at,
    r.monitor_id,
    d.monitor_public_id,
    d.monitor_type,
    result_country(r.country) AS country,
    (SELECT a.name FROM result_agents a WHERE a.id = r.agent) AS agent_id,
    result_status(r.status) AS status,
    d.error_kind,
    d.message,
    d.banner,
    r.response_time_ms,
    CASE WHEN r.detail_ms IS NULL THEN d.phases ELSE jsonb_strip_nulls(jsonb_build_object(
        'dnsMs', result_phase_ms(r.dns_us), 'connectMs', result_phase_ms(r.connect_us),
        'tlsMs', result_phase_ms(r.tls_us), 'greetingMs', result_phase_ms(r.greeting_us),
        'authMs', result_phase_ms(r.auth_us))) END AS phases,
    d.tls,
    d.address,
    CASE WHEN r.detail_ms IS NULL THEN d.started_at
        ELSE r.scheduled_at + r.started_ms * interval '1 ms' END AS started_at,
    CASE WHEN r.detail_ms IS NULL THEN d.finished_at
        ELSE r.scheduled_at + r.finished_ms * interval '1 ms' END AS finished_at,
    CASE WHEN r.detail_ms IS NULL THEN d.stored_at
        ELSE r.scheduled_at + r.stored_ms * interval '1 ms' END AS stored_at,
    d.folder,
    d.hops,
    d.auth_results,
    d.capabilities,
    d.capabilities_before_tls,
    d.mail_dns,
    date_trunc('hour', r.scheduled_at, 'UTC') AS hour
FROM result_rows r
JOIN result_details d ON d.monitor_id = r.monitor_id AND d.country = r.country
    AND d.scheduled_at = r.scheduled_at - coalesce(r.detail_ms, 0) * interval '1 ms'
    AND d.tag = CASE WHEN r.detail_ms IS NULL THEN r.tag ELSE r.ref_tag END
UNION ALL
SELECT
    u.job::text,
    u.scheduled_at,
    p.monitor_id,
    d.monitor_public_id,
    d.monitor_type,
    result_country(p.country),
    (SELECT a.name FROM result_agents a WHERE a.id = u.agent),
    'up',
    d.error_kind,
    d.message,
    d.banner,
    result_us_ms(u.response_us),
    jsonb_strip_nulls(jsonb_build_object(
        'dnsMs', result_phase_ms(u.dns_us), 'connectMs', result_phase_ms(u.connect_us),
        'tlsMs', result_phase_ms(u.tls_us), 'greetingMs', result_phase_ms(u.greeting_us),
        'authMs', result_phase_ms(u.auth_us))),
    d.tls,
    d.address,
    u.scheduled_at + u.started_ms * interval '1 ms',
    u.scheduled_at + u.finished_ms * interval '1 ms',
    u.scheduled_at + u.stored_ms * interval '1 ms',
    d.folder,
    d.hops,
    d.auth_results,
    d.capabilities,
    d.capabilities_before_tls,
    d.mail_dns,
    p.hour
FROM result_packs p
CROSS JOIN LATERAL (
    SELECT x.job, p.hour + x.at_ms * interval '1 ms' AS scheduled_at, x.started_ms,
        x.finished_ms, x.stored_ms - x.at_ms AS stored_ms, x.response_us, x.dns_us, x.connect_us, x.tls_us,
        x.greeting_us, x.auth_us, x.agent, x.ref_ms, x.ref_tag
    FROM unnest(p.jobs, result_running_sum(p.nums[1:1]), p.spans[1:1], p.spans[2:2],
        result_running_sum(p.nums[2:2]), p.nums[3:3], p.nums[4:4], p.nums[5:5], p.nums[6:6], p.nums[7:7],
        p.nums[8:8], p.nums[9:9], p.nums[10:10], p.nums[11:11])
        AS x(job, at_ms, started_ms, finished_ms, stored_ms, response_us, dns_us, connect_us,
            tls_us, greeting_us, auth_us, agent, ref_ms, ref_tag)
) u
JOIN result_details d ON d.monitor_id = p.monitor_id AND d.country = p.country
    AND d.scheduled_at = p.hour + u.ref_ms * interval '1 ms' AND d.tag = u.ref_tag;
