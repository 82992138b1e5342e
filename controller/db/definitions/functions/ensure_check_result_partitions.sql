CREATE OR REPLACE FUNCTION public.ensure_check_result_partitions(first_day date, days integer)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
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
$function$
;
