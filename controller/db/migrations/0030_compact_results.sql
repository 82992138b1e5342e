-- Compact result storage and hourly rollups (issue 24).
--
-- Every stored result is one narrow row of `result_rows`. A result that says what the last full
-- one of its monitor and country said (status `up`, the same facts: error kind, message, banner,
-- TLS and certificate facts, address, capabilities, round-trip facts, mail DNS) is a compact row:
-- its own times, response time, phases and agent, and a reference (`detail_ms`, `ref_tag`) to
-- that full row's `result_details`, from the same UTC day, so both drop with the same daily
-- partition. Any other result (a change, a failure, a missed or inconclusive round, a result a
-- later one replaced) is a full row with a detail row of its own, which also keeps its exact
-- times. `check_results` becomes a view that rebuilds every row as it was, so its readers and
-- the API answer as before.
--
-- `result_rollups` counts per monitor, country and UTC hour (up, down, missed including
-- inconclusive, and response times in fixed buckets), maintained by the ingester in the same
-- statement as the rows; uptime reads them. Raw rows keep CHECK_RAW_DAYS, rollups
-- CHECK_HISTORY_DAYS (the hourly partition job drops what is older).
--
-- Job ids are UUID-shaped (JobIds); a row stores its job id as a uuid, and is unique on
-- (monitor, round, country, the job id's first 16 bits): the same job id always gives the same
-- key, which keeps storing idempotent on the job id.

-- Country codes (two ASCII characters) as a number: first * 256 + second.
CREATE FUNCTION result_country_code(cc text) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(cc) = 2 AND length(cc) = 2
    THEN (ascii(cc) * 256 + ascii(substr(cc, 2)))::smallint END
$$;

CREATE FUNCTION result_country(code smallint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT chr(code / 256) || chr(code % 256)
$$;

-- Statuses as numbers; 8 is added once a later result replaced the row (a real result over a
-- `missed` or `inconclusive` one).
CREATE FUNCTION result_status_code(status text) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'up' THEN 0 WHEN 'down' THEN 1 WHEN 'missed' THEN 2
    WHEN 'inconclusive' THEN 3 END
$$;

CREATE FUNCTION result_status(code smallint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (ARRAY['up', 'down', 'missed', 'inconclusive'])[(code & 7) + 1]
$$;

-- The first 16 bits of a job id, which with the monitor, round and country make a row's key.
CREATE FUNCTION result_tag(job uuid) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (get_byte(uuid_send(job), 0) * 256 + get_byte(uuid_send(job), 1) - 32768)::smallint
$$;

-- A phase in whole microseconds (-1: not reached); NULL when it cannot be kept exactly.
CREATE FUNCTION result_phase_us(ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms IS NULL THEN -1
    WHEN ms >= 0 AND ms < 2000000 AND abs(ms * 1000 - round(ms * 1000)) < 1e-6
        THEN round(ms * 1000)::integer END
$$;

CREATE FUNCTION result_phase_ms(us integer) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN us >= 0 THEN round(us::numeric / 1000, 3) END
$$;

-- Response-time buckets of the rollups: counts of results up to each bound (ms), the last one
-- for the rest.
CREATE FUNCTION result_latency_bounds() RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]::double precision[]
$$;

CREATE FUNCTION result_counts_add(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT x + y FROM unnest(a, b) AS t(x, y))
$$;

-- Agent ids as numbers in result rows (never reused; a name is looked up by its md5, as an
-- agent id has no length bound).
CREATE TABLE result_agents (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
CREATE UNIQUE INDEX result_agents_name ON result_agents (md5(name));

-- Columns in order of alignment, no NULL in a compact row (so no null bitmap): 88 bytes of
-- data. Full rows: times, agent and phases live in their detail row, the columns here are NULL
-- (started_ms, finished_ms, stored_ms, detail_ms) or -1 (phases).
CREATE TABLE result_rows (
    scheduled_at        timestamptz NOT NULL,
    monitor_id          bigint NOT NULL,
    response_time_ms    double precision,
    job                 uuid NOT NULL,
    started_ms          integer,            -- started_at - scheduled_at (compact rows)
    finished_ms         integer,            -- finished_at - scheduled_at
    stored_ms           integer,            -- stored_at - scheduled_at
    detail_ms           integer,            -- scheduled_at - the full row's (NULL: this one)
    agent               integer,            -- result_agents.id; NULL: the controller's row
    dns_us              integer NOT NULL DEFAULT -1,
    connect_us          integer NOT NULL DEFAULT -1,
    tls_us              integer NOT NULL DEFAULT -1,
    greeting_us         integer NOT NULL DEFAULT -1,
    auth_us             integer NOT NULL DEFAULT -1,
    country             smallint NOT NULL,
    status              smallint NOT NULL,
    tag                 smallint NOT NULL,  -- result_tag(job)
    ref_tag             smallint NOT NULL DEFAULT 0  -- the full row's tag (compact rows)
) PARTITION BY RANGE (scheduled_at);
CREATE TABLE result_rows_default PARTITION OF result_rows DEFAULT;
-- The only index: idempotency and every reader's (monitor, time range) in one.
CREATE UNIQUE INDEX result_rows_key ON result_rows (monitor_id, scheduled_at, country, tag);

CREATE TABLE result_details (
    scheduled_at            timestamptz NOT NULL,
    monitor_id              bigint NOT NULL,
    country                 smallint NOT NULL,
    tag                     smallint NOT NULL,
    started_at              timestamptz,
    finished_at             timestamptz,
    stored_at               timestamptz NOT NULL,
    monitor_public_id       uuid NOT NULL,
    monitor_type            text NOT NULL,
    error_kind              text,
    message                 text NOT NULL DEFAULT '',
    banner                  text,
    phases                  jsonb,
    tls                     jsonb,
    address                 text,
    folder                  text,
    hops                    jsonb,
    auth_results            jsonb,
    capabilities            jsonb,
    capabilities_before_tls jsonb,
    mail_dns                jsonb,
    PRIMARY KEY (monitor_id, scheduled_at, country, tag)
) PARTITION BY RANGE (scheduled_at);
CREATE TABLE result_details_default PARTITION OF result_details DEFAULT;

CREATE TABLE result_rollups (
    hour        timestamptz NOT NULL,
    monitor_id  bigint NOT NULL,
    country     smallint NOT NULL,
    up          integer NOT NULL,
    down        integer NOT NULL,
    missed      integer NOT NULL,  -- missed and inconclusive rounds
    latency     integer[] NOT NULL,  -- results per result_latency_bounds() bucket
    PRIMARY KEY (monitor_id, hour, country)
) PARTITION BY RANGE (hour);
-- Updated in place on every batch: room for the new version on its page (each partition).
CREATE TABLE result_rollups_default PARTITION OF result_rollups DEFAULT WITH (fillfactor = 70);

-- Where the next compact row of a monitor and country may point: its latest full row.
ALTER TABLE monitor_country_state
    ADD COLUMN detail_at timestamptz,
    ADD COLUMN detail_tag smallint,
    ADD COLUMN detail_facts uuid;

-- Daily partitions (UTC days) of result_rows, result_details and result_rollups for `days`
-- days from `first_day`; same contract as before (advisory lock, IF NOT EXISTS, a day whose
-- rows sit in the default partition stays there with a warning).
DROP FUNCTION ensure_check_result_partitions(date, integer);
CREATE FUNCTION ensure_check_result_partitions(first_day date, days integer)
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
        FOREACH parent IN ARRAY ARRAY['result_rows', 'result_details', 'result_rollups'] LOOP
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
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                RAISE WARNING '%: rows of % stay in the default partition', parent, d;
            END;
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;

-- The rows stored so far move over as full rows, with their rollups; partitions first for every
-- day they cover.
ALTER TABLE check_results RENAME TO check_results_before_0030;
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    first_day date;
BEGIN
    SELECT min(to_date(substr(c.relname, 16), 'YYYYMMDD')) INTO first_day
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'check_results_before_0030'::regclass
      AND c.relname ~ '^check_results_p[0-9]{8}$';
    first_day := least(coalesce(first_day, today - 1), today - 1);
    PERFORM ensure_check_result_partitions(first_day, today + 3 - first_day);
END;
$$;

CREATE TEMPORARY TABLE moved ON COMMIT DROP AS
SELECT o.*,
    CASE WHEN o.job_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        THEN o.job_id::uuid ELSE md5(o.job_id)::uuid END AS job,
    result_country_code(o.country) AS cc
FROM check_results_before_0030 o;
DELETE FROM moved WHERE cc IS NULL;

INSERT INTO result_agents (name)
SELECT DISTINCT agent_id FROM moved WHERE agent_id IS NOT NULL;

INSERT INTO result_rows (scheduled_at, monitor_id, response_time_ms, job, agent, country, status, tag)
SELECT m.scheduled_at, m.monitor_id, m.response_time_ms, m.job, a.id, m.cc,
    result_status_code(m.status), result_tag(m.job)
FROM moved m LEFT JOIN result_agents a ON md5(a.name) = md5(m.agent_id)
ON CONFLICT DO NOTHING;

INSERT INTO result_details (scheduled_at, monitor_id, country, tag, started_at, finished_at,
    stored_at, monitor_public_id, monitor_type, error_kind, message, banner, phases, tls, address,
    folder, hops, auth_results, capabilities, capabilities_before_tls, mail_dns)
SELECT scheduled_at, monitor_id, cc, result_tag(job), started_at, finished_at, stored_at,
    monitor_public_id, monitor_type, error_kind, message, banner, phases, tls, address, folder,
    hops, auth_results, capabilities, capabilities_before_tls, mail_dns
FROM moved
ON CONFLICT DO NOTHING;

INSERT INTO result_rollups (hour, monitor_id, country, up, down, missed, latency)
SELECT date_trunc('hour', scheduled_at, 'UTC'), monitor_id, cc,
    count(*) FILTER (WHERE status = 'up'), count(*) FILTER (WHERE status = 'down'),
    count(*) FILTER (WHERE status IN ('missed', 'inconclusive')),
    ARRAY[count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 0)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 1)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 2)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 3)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 4)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 5)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 6)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 7)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 8)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 9)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 10)::int,
        count(*) FILTER (WHERE status IN ('up', 'down') AND width_bucket(response_time_ms, result_latency_bounds()) = 11)::int]
FROM moved GROUP BY 1, 2, 3;

DROP TABLE check_results_before_0030;

-- Every row as it was stored before: a compact row takes its facts from its full row.
CREATE VIEW check_results AS
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
    d.mail_dns
FROM result_rows r
JOIN result_details d ON d.monitor_id = r.monitor_id AND d.country = r.country
    AND d.scheduled_at = r.scheduled_at - coalesce(r.detail_ms, 0) * interval '1 ms'
    AND d.tag = CASE WHEN r.detail_ms IS NULL THEN r.tag ELSE r.ref_tag END;
