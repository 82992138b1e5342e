CREATE OR REPLACE FUNCTION public.result_pack_holds(jobs uuid[], seed bytea, hour timestamp with time zone, at_line bytea, n integer, job uuid, at timestamp with time zone)
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    SELECT job = ANY(jobs) OR (seed IS NOT NULL AND EXISTS (
        SELECT 1 FROM unnest(jobs, result_running_sum(result_pack_decode(at_line, n)))
            AS x(j, at_ms)
        WHERE x.j IS NULL AND hour + x.at_ms * interval '1 ms' = at
            AND result_seeded_job(seed, x.at_ms::integer) = job))
$function$
;
