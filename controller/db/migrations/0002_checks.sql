-- Check results (time-partitioned, idempotent on job id) and the latest state per country.

-- One row per check round and country. Status is the agent's `up`/`down`, or `missed` for a round
-- no agent ran in time: error_kind `no_agent` (the controller found no live agent of the country,
-- agent_id is null) or `expired` (an agent got the job after its expiry). A missed round counts
-- neither as up nor as down.
--
-- Job ids are deterministic from (monitor, country, scheduled time), so a job id always comes
-- with the same scheduled_at and the key below, which must hold the partition key, is unique on
-- the job id alone. monitor_id has no foreign key: a partitioned table of this size should not be
-- scanned on every monitor delete; results of a deleted monitor age out with their partition.
CREATE TABLE check_results (
    job_id              text NOT NULL,
    scheduled_at        timestamptz NOT NULL,
    monitor_id          bigint NOT NULL,
    monitor_public_id   uuid NOT NULL,
    monitor_type        text NOT NULL,
    country             text NOT NULL,
    agent_id            text,
    status              text NOT NULL CHECK (status IN ('up', 'down', 'missed')),
    error_kind          text,
    message             text NOT NULL DEFAULT '',
    banner              text,
    response_time_ms    double precision,
    phases              jsonb,
    tls                 jsonb,
    address             text,
    started_at          timestamptz,
    finished_at         timestamptz,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, scheduled_at)
) PARTITION BY RANGE (scheduled_at);

-- Rows outside every daily partition land here, so nothing is ever refused.
CREATE TABLE check_results_default PARTITION OF check_results DEFAULT;

CREATE INDEX check_results_monitor_time ON check_results (monitor_id, scheduled_at DESC);

-- Daily partitions `check_results_pYYYYMMDD` (UTC days) for `days` days from `first_day`.
-- Safe to call concurrently (advisory lock) and repeatedly (IF NOT EXISTS). A day whose rows are
-- already in the default partition keeps them there (a warning, not an error).
CREATE FUNCTION ensure_check_result_partitions(first_day date, days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    created integer := 0;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('check_results partitions'));
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        part := 'check_results_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF check_results FOR VALUES FROM (%L) TO (%L)',
                part,
                d::timestamp AT TIME ZONE 'UTC',
                (d + 1)::timestamp AT TIME ZONE 'UTC'
            );
            created := created + 1;
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'check_results: rows of % stay in the default partition', d;
        END;
    END LOOP;
    RETURN created;
END;
$$;

SELECT ensure_check_result_partitions((now() AT TIME ZONE 'UTC')::date - 1, 4);

-- The latest result per monitor and country, and the current run of failures or successes.
-- A missed round updates last_* but neither counter.
CREATE TABLE monitor_country_state (
    monitor_id              bigint NOT NULL REFERENCES monitors(id) ON DELETE CASCADE,
    country                 text NOT NULL,
    last_status             text NOT NULL,
    last_error_kind         text,
    last_message            text NOT NULL DEFAULT '',
    last_scheduled_at       timestamptz NOT NULL,
    last_job_id             text NOT NULL,
    consecutive_failures    integer NOT NULL DEFAULT 0,
    consecutive_successes   integer NOT NULL DEFAULT 0,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor_id, country)
);
