-- Side checks (issue 65): each keeps its facts by job id in a table of its own, `side_<name>`,
-- made by `side_check_table(name)` (a side check's migration is that one line): the job, its
-- monitor, country and scheduled time, and the facts as the agent sent them (its wire type as
-- JSON, bounded by the ingester). Kept as long as raw results (CHECK_RAW_DAYS, by
-- scheduled_at); no view lists them: controller.sidechecks.facts_store reads them by job id.
CREATE FUNCTION side_check_table(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF name !~ '^[a-z_]{1,32}$' THEN
        RAISE EXCEPTION 'not a side check name: %', name;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I (job uuid PRIMARY KEY, monitor_id bigint NOT NULL,'
        ' country text NOT NULL, scheduled_at timestamptz NOT NULL, facts jsonb NOT NULL)',
        'side_' || name);
    -- retention drops by scheduled time; a monitor's page reads its latest per country
    EXECUTE format('CREATE INDEX %I ON %I (scheduled_at)',
        'side_' || name || '_scheduled_at', 'side_' || name);
    EXECUTE format('CREATE INDEX %I ON %I (monitor_id, scheduled_at)',
        'side_' || name || '_monitor', 'side_' || name);
END
$$;

-- Reverse DNS, the first side check on the frame: its facts so far (result_details.reverse_dns,
-- migration 0048) move to its table; the column is no longer written.
SELECT side_check_table('reverse_dns');
INSERT INTO side_reverse_dns (job, monitor_id, country, scheduled_at, facts)
SELECT job_id::uuid, monitor_id, country, scheduled_at, reverse_dns
FROM check_results WHERE reverse_dns IS NOT NULL
ON CONFLICT (job) DO NOTHING;
