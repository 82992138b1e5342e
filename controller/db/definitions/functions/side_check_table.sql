CREATE OR REPLACE FUNCTION public.side_check_table(name text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
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
$function$
;
