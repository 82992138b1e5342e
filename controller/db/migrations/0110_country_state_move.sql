-- How a batch of stored results moves a (monitor, country) state, decided once for the two
-- statements that move one (controller/ingest/store_results.sql: the batch's own; and
-- store_state.sql: a state another transaction made while the batch's statement ran).
-- `LANGUAGE sql` and IMMUTABLE, one expression (a SQL-standard body, kept parsed, its
-- dependencies on the table and types recorded): the planner inlines it into both statements,
-- so it costs what the expressions it replaces cost (tests/pipeline/test_state_move.py checks
-- that no call is left in a plan, and the rule on a table of cases).

-- A batch's effect on one state (the results store's `u`, and its `lost` column as JSON): the
-- latest round of the batch (with the values a scrape shows of it), the end of the latest
-- check that was counted, the counters' moves, the latest full row.
CREATE TYPE country_state_move AS (
    monitor_id bigint,
    country text,
    status text,
    error_kind text,
    message text,
    scheduled_at timestamptz,
    job_id text,
    checked_at timestamptz,
    add_fail int,
    reset_fail boolean,
    add_succ int,
    reset_succ boolean,
    detail_at timestamptz,
    detail_tag smallint,
    detail_facts uuid,
    response_time_ms double precision,
    phases_ms double precision[],
    cert_not_after text
);

-- The state `s` after the move `u`: whether it moves (`moves`: a state newer than the batch
-- stays), and its columns after it. The latest round's values are the batch's; `last_checked_at`
-- only grows; a success ends a run of failures and the other way round, each counter adding the
-- batch's run at its end; the latest full row (where the next compact rows point) is the
-- batch's when not older than the state's.
CREATE TYPE country_state_moved AS (
    moves boolean,
    last_status text,
    last_error_kind text,
    last_message text,
    last_scheduled_at timestamptz,
    last_job_id text,
    last_checked_at timestamptz,
    consecutive_failures int,
    consecutive_successes int,
    last_response_time_ms double precision,
    last_phases_ms double precision[],
    last_cert_not_after text,
    detail_at timestamptz,
    detail_tag smallint,
    detail_facts uuid
);

CREATE FUNCTION country_state_moved(s monitor_country_state, u country_state_move)
RETURNS country_state_moved
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(
        u.scheduled_at >= s.last_scheduled_at,
        u.status, u.error_kind, u.message, u.scheduled_at, u.job_id,
        greatest(s.last_checked_at, u.checked_at),
        CASE WHEN u.reset_fail THEN 0 ELSE s.consecutive_failures END + u.add_fail,
        CASE WHEN u.reset_succ THEN 0 ELSE s.consecutive_successes END + u.add_succ,
        u.response_time_ms, u.phases_ms, u.cert_not_after,
        CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')
            THEN u.detail_at ELSE s.detail_at END,
        CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')
            THEN u.detail_tag ELSE s.detail_tag END,
        CASE WHEN u.detail_at >= coalesce(s.detail_at, '-infinity')
            THEN u.detail_facts ELSE s.detail_facts END
    )::country_state_moved;
